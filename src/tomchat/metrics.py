"""Prometheus metrics of one tomchat process (served at ``/metrics`` by ``http/ops.py``).

With ``tomchat serve --workers N`` every worker writes its samples into the folder named by
``PROMETHEUS_MULTIPROC_DIR`` (the command sets it up before the workers start) and
``/metrics`` on any worker sums them all; gauges say how they are combined."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

_COUNTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30)

EVENTS_APPENDED = Counter("tomchat_events_appended", "Events appended to the log")
GROUP_COMMIT_EVENTS = Histogram(
    "tomchat_group_commit_events", "Events written by one group commit", buckets=_COUNTS
)
GROUP_COMMIT_SECONDS = Histogram(
    "tomchat_group_commit_seconds", "Time one group commit took", buckets=_FAST
)
CATCH_UP_EVENTS = Histogram(
    "tomchat_catch_up_events", "Events sent by one join or resync catch-up", buckets=(0, *_COUNTS)
)
CONNECTED_SOCKETS = Gauge(
    "tomchat_connected_sockets", "Socket.IO connections open", multiprocess_mode="livesum"
)
ROOMS_STREAMING = Gauge(
    "tomchat_rooms_streaming", "Rooms with a reply being written", multiprocess_mode="livesum"
)
CHUNK_DELIVERY_LAG = Histogram(
    "tomchat_chunk_delivery_lag_seconds",
    "From a reply chunk's commit to its emit to the room",
    buckets=_FAST,
)
LLM_FIRST_TOKEN = Histogram(
    "tomchat_llm_first_token_seconds", "From asking the model to its first text", buckets=_SLOW
)
TTS_FIRST_AUDIO = Histogram(
    "tomchat_tts_first_audio_seconds", "From a reply's first text to its first audio", buckets=_SLOW
)
ERRORS = Counter("tomchat_errors", "Error acks and problems sent, by code", ["code"])
RATE_LIMITED = Counter("tomchat_rate_limit_refusals", "Requests refused by a rate limit", ["limit"])


def exposition() -> tuple[bytes, str]:
    """The text format of every metric of this process, or of all workers when scaled out."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
