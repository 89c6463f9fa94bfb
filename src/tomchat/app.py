"""Wiring: settings → services → Litestar (REST) with Socket.IO mounted beside it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import socketio
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsPlugin

from tomchat import __version__, logs
from tomchat.chat.access import install_log_redaction
from tomchat.domain import limits
from tomchat.http import slow_clients
from tomchat.http.api import RoomController, health, me
from tomchat.http.characters import CharacterController
from tomchat.http.features import Features, features
from tomchat.http.fork import fork_room
from tomchat.http.guards import TOKEN_PARAMETERS, room_guard
from tomchat.http.media import media_router
from tomchat.http.openapi import document_problems
from tomchat.http.ops import prometheus_metrics, ready
from tomchat.http.problems import PROBLEMS
from tomchat.http.transcripts import transcript_routes
from tomchat.http.web import web_router
from tomchat.lifecycle import Lifecycle
from tomchat.live.sendbuffer import BoundedAsyncServer
from tomchat.runtime import tune_runtime
from tomchat.services import Services
from tomchat.settings import Settings

log = logging.getLogger("tomchat")


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
    slow_clients.configure(settings.http_head_timeout_seconds, settings.http_body_timeout_seconds)
    return create_app(settings, migrate=False)


class TomchatApp(socketio.ASGIApp):  # type: ignore[misc]  # python-socketio is untyped
    """Socket.IO beside Litestar, and the services both run on (for tests and tools that
    run the app in-process, and may swap a part before it starts)."""

    def __init__(self, sio: socketio.AsyncServer, api: Litestar, services: Services) -> None:
        super().__init__(sio, other_asgi_app=api, socketio_path="socket.io")
        self.services = services


def dependencies(services: Services) -> dict[str, Provide]:
    """What the REST handlers ask for by parameter name. Read when a request comes, so a
    part swapped on ``app.services`` before start-up is the one they get."""

    def part(name: str) -> Provide:
        def provide() -> Any:
            return getattr(services, name)

        provide.__name__ = f"provide_{name}"
        return Provide(provide, use_cache=False, sync_to_thread=False)

    names = (
        "db",
        "store",
        "reader",
        "conversation",
        "access",
        "people",
        "trusted",
        "presence",
        "cluster",
        "media",
        "library",
        "tree",
    )
    provided = {name: part(name) for name in names}

    def provide_capabilities() -> Features:
        settings = services.settings
        return Features(
            tts=services.voice is not None,
            asr=services.transcriber is not None,
            llm=settings.llm,
            # Set by the parts of the server that add them; absent here means off.
            characters=True,
            trustedIdentity=bool(getattr(settings, "trusted_user_header", None)),
        )

    # The room-creation budget, per address, shared with joinRoom (``live.server``).
    provided["room_creations"] = Provide(
        lambda: services.live.rooms_limit, use_cache=False, sync_to_thread=False
    )
    provided["capabilities"] = Provide(provide_capabilities, use_cache=False, sync_to_thread=False)
    return provided


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``tomchat serve`` passes to uvicorn beyond host and port: the HTTP protocol
    that times out half-sent request heads and stalled bodies (``http.slow_clients``)."""
    slow_clients.configure(settings.http_head_timeout_seconds, settings.http_body_timeout_seconds)
    return slow_clients.uvicorn_options()


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> TomchatApp:
    """The whole tomchat ASGI application for these settings."""
    settings = settings or Settings.from_env()
    sio = create_socketio(settings)
    services = Services.build(settings, sio)
    install_log_redaction()  # invite tokens in query strings stay out of the access log
    # Draining (see lifecycle.py): replies end interrupted and reach the room, then sockets close.
    lifecycle = Lifecycle()
    lifecycle.on_drain(services.conversation.close)
    lifecycle.on_drain(services.publisher.close)
    lifecycle.on_drain(lambda: _close_sockets(sio))

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        tune_runtime()  # the process is a server from here on (``tomchat.runtime``)
        async with services.running(migrate=migrate):
            lifecycle.started = True
            lifecycle.drain_on_signals()
            try:
                yield
            finally:
                await lifecycle.drain()  # once: a signal may have begun it already
                lifecycle.restore_signals()

    def document() -> None:
        document_problems(api.openapi_schema)  # before anyone has fetched /schema

    api = Litestar(
        route_handlers=[
            health,
            me,
            features,
            ready,
            prometheus_metrics,
            # Everything under a room: documented with the invite token parameters.
            Router(
                "/",
                route_handlers=[RoomController, *transcript_routes, fork_room],
                parameters=TOKEN_PARAMETERS,
            ),
            CharacterController,
            media_router(services.access),
            web_router(settings.static_dir),
        ],
        dependencies={
            **dependencies(services),
            "lifecycle": Provide(lambda: lifecycle, use_cache=False, sync_to_thread=False),
        },
        # Every route with a room_id, whichever router it is on, needs a private room's token.
        guards=[room_guard(services.access, services.people)],
        lifespan=[lifespan],
        on_startup=[document],
        plugins=[
            ProblemDetailsPlugin(
                ProblemDetailsConfig(
                    enable_for_all_http_exceptions=True,
                    exception_to_problem_detail_map=PROBLEMS,
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
    return TomchatApp(sio, api, services)
