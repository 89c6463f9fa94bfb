"""The mid-reply join with the official JS socket.io-client (npm), driven by node."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import RunningServer

JS = Path(__file__).parent / "js"

pytestmark = [pytest.mark.node, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def js_client() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (JS / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("run `npm ci` in tests/js (the README test command does)")
    return JS / "late_joiner.mjs"


async def test_js_client_joining_mid_reply_ends_with_the_reply(
    server: RunningServer, js_client: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(js_client),
        server.url,
        "jsroom",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out.decode().strip().splitlines()[-1])
    reply = await server.services.reader.message(seen["replyId"])
    assert reply is not None and reply.status == "complete"
    [mid] = seen["joinedMidReply"]
    assert mid["messageId"] == seen["replyId"] and mid["content"], "bob joined mid-reply"
    assert reply.content.startswith(mid["content"]) and reply.content != mid["content"]
    assert seen["a"]["text"] == reply.content
    assert seen["b"]["text"] == reply.content
    applied = seen["b"]["applied"]
    assert applied == list(range(seen["joinVersion"], seen["b"]["version"] + 1))


async def test_js_client_is_told_a_name_is_taken(server: RunningServer, js_client: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(js_client.with_name("name_taken.mjs")),
        server.url,
        "names",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["first"]["ok"] is True
    assert seen["first"]["you"] == {"username": "Alice", "role": "host"}
    assert "memberKey" not in seen["first"]  # the client brought its own
    for refused in (seen["taken"], seen["keyless"]):
        assert refused == {
            "ok": False,
            "error": {
                "code": "forbidden",
                "message": refused["error"]["message"],
            },
        }
        assert "is taken in this room" in refused["error"]["message"]
    assert seen["made"]["ok"] is True and len(seen["made"]["memberKey"]) >= 16
    assert seen["back"]["ok"] is True and seen["back"]["you"] == {
        "username": "bob",
        "role": "member",
    }
