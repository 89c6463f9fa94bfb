"""Wiring: settings → services → Litestar (REST) with Socket.IO mounted beside it."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from tomchat import __version__, logs
from tomchat.chat.access import install_log_redaction
from tomchat.cluster.presence import Presence, SharedPresence
from tomchat.domain import limits
from tomchat.http.api import RoomController, health
from tomchat.http.guards import TOKEN_PARAMETERS, room_guard
from tomchat.http.media import media_router
from tomchat.http.openapi import document_problems
from tomchat.http.ops import prometheus_metrics, ready
from tomchat.http.transcripts import transcript_routes
from tomchat.http.web import web_router
from tomchat.lifecycle import Lifecycle
from tomchat.live.publisher import Publisher
from tomchat.live.sendbuffer import BoundedAsyncServer
from tomchat.live.server import LiveServer
from tomchat.live.voice_messages import VoiceMessages
from tomchat.media.files import MediaStore
from tomchat.services import Services
from tomchat.settings import Settings
from tomchat.store.database import StoreUnavailable
from tomchat.store.migrate import upgrade_async

log = logging.getLogger("tomchat")


def _unavailable(exc: StoreUnavailable) -> ProblemDetailsException:
    return ProblemDetailsException(
        detail=f"{exc}; try again shortly", status_code=503, title="Service Unavailable"
    )


def _internal(exc: Exception) -> ProblemDetailsException:
    log.error("unhandled error", exc_info=exc)
    return ProblemDetailsException(
        detail="the server could not handle this request",
        status_code=500,
        title="Internal Server Error",
    )


async def _close_sockets(sio: socketio.AsyncServer) -> None:
    # Ends every long-poll at once (uvicorn would wait for them) and tells clients to go.
    if sio.eio.sockets:
        await sio.eio.disconnect()


def create_socketio(settings: Settings) -> socketio.AsyncServer:
    # Every emit goes through Redis to every process's sockets (the channel is per
    # deployment, like all of tomchat's Redis names).
    manager = (
        socketio.AsyncRedisManager(settings.redis_url, channel=f"{settings.redis_prefix}:socketio")
        if settings.redis_url
        else None
    )
    return BoundedAsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins="*",
        max_http_buffer_size=limits.MAX_PACKET_BYTES,
        send_buffer_bytes=settings.live_limits.send_buffer_bytes,
        ping_interval=10,
        ping_timeout=10,
    )


def create_worker_app() -> Any:
    """The app of one ``tomchat serve --workers N`` process (uvicorn imports it by name);
    the command has migrated the database already."""
    settings = Settings.from_env()
    logs.configure(settings.log_format)
    return create_app(settings, migrate=False)


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> Any:
    """The whole tomchat ASGI application for these settings."""
    settings = settings or Settings.from_env()
    services = Services.build(settings)
    sio = create_socketio(settings)
    media = services.media or MediaStore(settings.media_dir)
    voice_messages = VoiceMessages(services.conversation, media, services.transcriber)
    cluster = services.cluster
    assert cluster is not None
    presence = (
        SharedPresence(cluster.redis, cluster.prefix, cluster.identity)
        if cluster.redis is not None
        else Presence()
    )
    services.live = LiveServer(
        sio,
        services.conversation,
        services.reader,
        voice_messages,
        access=services.access,
        live_limits=settings.live_limits,
        presence=presence,
    )
    install_log_redaction()  # invite tokens in query strings stay out of the access log
    publisher = Publisher(sio, services.reader)
    services.store.subscribe(publisher.on_commit)
    # Draining (see lifecycle.py): replies end interrupted and reach the room, then sockets close.
    lifecycle = Lifecycle()
    lifecycle.on_drain(services.conversation.close)
    lifecycle.on_drain(publisher.close)
    lifecycle.on_drain(lambda: _close_sockets(sio))

    async def start() -> None:
        document_problems(api.openapi_schema)  # before anyone has fetched /schema
        if migrate:
            await upgrade_async(settings.database_url)
        settings.media_dir.mkdir(parents=True, exist_ok=True)
        services.store.start()
        publisher.start()
        await cluster.start()
        assert services.live is not None
        await presence.start(services.live.announce)
        recovered = await services.conversation.recover()
        if recovered:
            log.warning("taking over %d rooms left mid-reply by stopped processes", recovered)
        services.conversation.start()
        lifecycle.started = True
        lifecycle.drain_on_signals()

    async def stop() -> None:
        await lifecycle.drain()
        lifecycle.restore_signals()
        await services.conversation.close()
        if services.voice is not None:
            await services.voice.aclose()  # before the store closes: it records the audio
        if services.transcriber is not None:
            await services.transcriber.aclose()
        await services.store.close()
        await publisher.close()
        await services.model.aclose()
        await presence.close()
        await cluster.close()
        await services.db.dispose()

    api = Litestar(
        route_handlers=[
            health,
            ready,
            prometheus_metrics,
            # Everything under a room: documented with the invite token parameters.
            Router(
                "/",
                route_handlers=[RoomController, *transcript_routes],
                parameters=TOKEN_PARAMETERS,
            ),
            media_router(media),
            web_router(settings.static_dir),
        ],
        # Every route with a room_id, whichever router it is on, needs a private room's token.
        guards=[room_guard],
        on_startup=[start],
        on_shutdown=[stop],
        state=State({"services": services, "lifecycle": lifecycle}),
        plugins=[
            ProblemDetailsPlugin(
                ProblemDetailsConfig(
                    enable_for_all_http_exceptions=True,
                    exception_to_problem_detail_map={
                        StoreUnavailable: _unavailable,
                        Exception: _internal,
                    },
                )
            )
        ],
        openapi_config=OpenAPIConfig(title="tomchat", version=__version__, path="/schema"),
        logging_config=LoggingConfig(
            log_exceptions="always",
            disable_stack_trace={404, 400},
            formatters=logs.litestar_formatters(settings.log_format),
        ),
    )
    app = socketio.ASGIApp(sio, other_asgi_app=api, socketio_path="socket.io")
    app.services = services  # for tests and tools that run the app in-process
    return app
