"""The one table from errors to answers (``tomchat.wire.errors``): every mapping, every
exception class under the root, and the same error told alike by both edges of a real
server."""

from __future__ import annotations

import errno
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import socketio

import tomchat
from tests.conftest import start_server
from tests.support.settings import make_settings
from tomchat.ai.characters import CardError
from tomchat.ai.protocols import ChatModelError
from tomchat.domain.errors import ConfigError, RateLimited, TomchatError
from tomchat.http.problems import PROBLEMS, problem
from tomchat.live.server import refusal
from tomchat.media.files import MediaNotFound
from tomchat.store.database import StoreUnavailable
from tomchat.store.event_store import (
    AppendConflict,
    ConcurrencyError,
    IdempotencyConflict,
    LeaseLost,
)
from tomchat.wire.errors import CODES, ERRORS, answer
from tomchat.wire.incoming import PayloadError


def _all_exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(tomchat.__path__, "tomchat."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("tomchat."):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def test_every_exception_class_of_tomchat_derives_from_the_root() -> None:
    classes = _all_exception_classes()
    assert len(classes) >= 16
    outside = [c.__qualname__ for c in classes if not issubclass(c, TomchatError)]
    assert outside == []


def test_classes_keep_the_library_bases_callers_catch() -> None:
    assert issubclass(CardError, ValueError)
    assert issubclass(MediaNotFound, LookupError)
    assert issubclass(ConcurrencyError, AppendConflict)
    # Old import paths still work for code and scripts that use them.
    from tomchat.cluster.ratelimit import RateLimited as from_live
    from tomchat.settings import ConfigError as from_settings

    assert from_settings is ConfigError and from_live is RateLimited


@pytest.mark.parametrize(
    ("code", "status", "title"),
    [
        ("bad_request", 400, "Bad Request"),
        ("forbidden", 403, "Forbidden"),
        ("not_found", 404, "Not Found"),
        ("too_large", 413, "Content Too Large"),
        ("unavailable", 503, "Service Unavailable"),
    ],
)
def test_a_payload_error_answers_with_its_own_code(code: str, status: int, title: str) -> None:
    said = answer(PayloadError(code, "what went wrong"))
    assert (said.code.code, said.code.status, said.code.title) == (code, status, title)
    assert said.message == "what went wrong"
    assert said.extra == {} and said.log == "none"


def test_a_payload_error_with_a_code_not_in_the_table_is_a_bad_request() -> None:
    assert answer(PayloadError("odd", "x")).code == CODES["bad_request"]


def test_rate_limited_says_when_to_come_back() -> None:
    said = answer(RateLimited("messages", 1.23))
    assert (said.code.code, said.code.status) == ("rate_limited", 429)
    assert said.message == "too many messages; try again in 1.3 s"
    assert said.extra == {"retryAfter": 1.3}
    assert said.headers == {"Retry-After": "2"}


def test_store_unavailable_is_503_to_try_again() -> None:
    said = answer(StoreUnavailable("the database is read-only"))
    assert (said.code.code, said.code.status) == ("unavailable", 503)
    assert said.message == "the database is read-only; try again shortly"
    assert said.log == "none"


def test_missing_media_is_not_found() -> None:
    said = answer(MediaNotFound("abc.mp3"))
    assert (said.code.code, said.code.status, said.message) == (
        "not_found",
        404,
        "no media named 'abc.mp3'",
    )


@pytest.mark.parametrize(
    "exc",
    [
        AppendConflict("a duplicate id"),
        ConcurrencyError("r", 3, 4),
        IdempotencyConflict("some ids recorded"),
        LeaseLost("r"),
    ],
)
def test_append_conflicts_are_conflicts(exc: AppendConflict) -> None:
    said = answer(exc)
    assert (said.code.code, said.code.status, said.message) == ("conflict", 409, str(exc))


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_full_or_read_only_disk_is_unavailable(number: int) -> None:
    said = answer(OSError(number, "No space left on device"))
    assert (said.code.code, said.code.status) == ("unavailable", 503)
    assert said.message == "the server's disk is full or read-only; try later"
    assert said.log == "line"


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EACCES, "Permission denied"),
        ValueError("a bug"),
        ConfigError("TOMCHAT_X is wrong"),
        ChatModelError("model down"),
        TomchatError("anything else of ours"),
    ],
)
def test_everything_else_is_internal_and_says_nothing_of_it(exc: Exception) -> None:
    said = answer(exc)
    assert (said.code.code, said.code.status) == ("internal", 500)
    assert said.message == "the server could not handle this request"
    assert str(exc) not in said.message
    assert said.log == "traceback"


def test_both_edges_translate_through_the_table() -> None:
    exc = RateLimited("joins", 0.5)
    assert refusal("joinRoom", exc) == {
        "ok": False,
        "error": {"code": "rate_limited", "message": str(exc), "retryAfter": 0.5},
    }
    http = problem(exc)
    assert (http.status_code, http.title, http.detail) == (429, "Too Many Requests", str(exc))
    assert http.extra == {"retryAfter": 0.5} and http.headers == {"Retry-After": "1"}
    # REST handles every class of the table, a disk error and anything else.
    assert set(PROBLEMS) == {*ERRORS, OSError, Exception}


async def test_a_read_only_database_is_503_on_rest_and_unavailable_on_socketio(
    postgres_url: str, tmp_path: Path
) -> None:
    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    name = plain.rsplit("/", 1)[1]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(plain.rsplit("/", 1)[0] + "/postgres")
        try:
            await conn.execute(sql)
            # Sessions pick the setting up when they start: end the server's.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()

    server, stop = await start_server(make_settings(tmp_path, database_url=postgres_url))
    sio = socketio.AsyncClient(reconnection=False)
    try:
        await sio.connect(server.url, transports=["websocket"], wait_timeout=10)
        joined = await sio.call("joinRoom", {"roomId": "ro", "username": "ann"}, timeout=10)
        assert joined["ok"], joined
        await admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')

        # The pool's connections are replaced as they fail: a few tries may see old ones.
        made: httpx.Response | None = None
        async with httpx.AsyncClient(base_url=server.url) as http:
            for i in range(20):
                made = await http.post("/api/rooms", json={"name": f"More {i}"})
                if made.status_code != 201:
                    break
        assert made is not None and made.status_code == 503, made and made.text
        assert made.headers["content-type"] == "application/problem+json"
        body = made.json()
        assert body["status"] == 503 and body["title"] == "Service Unavailable"
        assert "read-only" in body["detail"]
        assert body["detail"].endswith("; try again shortly")

        refused: Any = None
        for i in range(20):
            refused = await sio.call("sendMessage", {"roomId": "ro", "content": f"{i}"}, timeout=10)
            if not refused["ok"]:
                break
        assert refused["error"]["code"] == "unavailable", refused
        assert refused["error"]["message"] == body["detail"]  # one error, told alike
    finally:
        await admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await sio.disconnect()
        await stop()
