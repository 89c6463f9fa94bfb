"""Log lines: plain text by default, one JSON object per line with ``TOMCHAT_LOG_FORMAT=json``.

JSON lines carry the room and message a line is about: from ``extra={"room_id": ...}`` or,
without it, from the context the reply loop and the Socket.IO handlers ``bind``."""

from __future__ import annotations

import copy
import logging
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
TEXT = "%(levelname)s %(name)s: %(message)s"

_room_id: ContextVar[str | None] = ContextVar("tomchat_room_id", default=None)
_message_id: ContextVar[str | None] = ContextVar("tomchat_message_id", default=None)


def bind(*, room_id: str | None = None, message_id: str | None = None) -> None:
    """Name the room (and message) the current task works for, in its JSON log lines.
    Tasks started from here on inherit it (contextvars)."""
    if room_id is not None:
        _room_id.set(room_id)
    if message_id is not None:
        _message_id.set(message_id)


class JsonLines(JsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "{asctime}{levelname}{name}{message}")
        kwargs.setdefault("style", "{")
        kwargs.setdefault(
            "rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"}
        )
        super().__init__(*args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        for key, var in (("room_id", _room_id), ("message_id", _message_id)):
            if key not in log_data and (value := var.get()) is not None:
                log_data[key] = value


def formatter(log_format: str) -> logging.Formatter:
    return JsonLines() if log_format == "json" else logging.Formatter(TEXT)


def configure(log_format: str) -> None:
    """The root logger of a command or a worker process."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def litestar_formatters(log_format: str) -> dict[str, dict[str, Any]]:
    """Litestar's ``LoggingConfig.formatters``: its handlers (root's too) format with "standard"."""
    if log_format == "json":
        return {"standard": {"()": JsonLines}}
    return {}


def uvicorn_log_config(log_format: str) -> dict[str, Any]:
    """uvicorn's own logging config, its formatters swapped for JSON lines when asked."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    if log_format == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": "tomchat.logs.JsonLines"}
    return config
