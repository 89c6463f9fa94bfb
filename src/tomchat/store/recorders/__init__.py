"""One recorder per backend (``Recorder`` in ``base``), chosen from the database URL here."""

from __future__ import annotations

from tomchat.store.recorders.base import Recorder
from tomchat.store.recorders.postgres import PostgresRecorder
from tomchat.store.recorders.sqlite import SqliteRecorder

__all__ = ["PostgresRecorder", "Recorder", "SqliteRecorder", "recorder_class"]


def recorder_class(url: str) -> type[Recorder]:
    """The recorder of the backend ``url`` names; ValueError for any other."""
    if url.startswith("sqlite"):
        return SqliteRecorder
    if url.startswith("postgresql"):
        return PostgresRecorder
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")
