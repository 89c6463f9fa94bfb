"""schemathesis against the server's own OpenAPI document (``/schema``): generated requests,
valid and not, to every operation. No answer may be a 5xx, and every answer must match the
schema (status, content type, body), RFC 9457 problems included."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import RunningServer, start_server
from tests.fakes.background import BackgroundLoop
from tests.hardening.conftest import GENEROUS
from tests.support.settings import make_settings

pytestmark = pytest.mark.timeout(180)

EXAMPLES = int(os.environ.get("TOMCHAT_SCHEMATHESIS_EXAMPLES", "40"))


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[RunningServer]:
    loop = BackgroundLoop("schemathesis-server")
    settings_ = make_settings(tmp_path, demo_delay_ms=0, live_limits=GENEROUS)
    server, stop = loop.run(start_server(settings_), timeout=30)
    # Rooms the generated ids may hit, so success answers are checked too, not only 404s.
    for room_id in ("a", "b", "A", "0", "-", "_"):
        loop.run(server.services.conversation.ensure_room(room_id))
    try:
        yield server
    finally:
        loop.run(stop(), timeout=30)
        loop.close()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_server_errors_and_every_answer_matches_the_schema(api_server: RunningServer) -> None:
    # schemathesis's own pytest plugin does not run under this pytest; its operations and
    # hypothesis strategies are driven directly instead, the same checks applied.
    schema = schemathesis.openapi.from_url(f"{api_server.url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/api/rooms", "/api/rooms/{room_id}/replay", "/media/{name}"} <= paths, paths
    tried: list[str] = []
    for operation, mode in itertools.product(operations, list(GenerationMode)):
        # Positive cases follow the schema (the server must answer 2xx or a documented
        # problem); negative ones break it (the server must refuse them, never crash).

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            if case.path.endswith("/replay"):
                # Paced to the log's own gaps: keep the pace quick so a case ends in time.
                case.query = {**(case.query or {}), "speed": 1000, "maxPause": 0}
            response = case.call(timeout=20)
            case.validate_response(response, checks=CHECKS)

        try:
            exercise()
        except Unsatisfiable:
            # Nothing to break: an operation without parameters or body has no negative case.
            assert mode is GenerationMode.NEGATIVE, operation.path
            continue
        tried.append(f"{mode.value} {operation.method.upper()} {operation.path}")
    negative = [t for t in tried if t.startswith("negative")]
    assert len(tried) > len(operations) and len(negative) >= 5, tried
