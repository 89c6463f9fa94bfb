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


async def test_js_client_sees_the_tree_as_everyone_does(
    server: RunningServer, js_client: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(JS / "tree.mjs"),
        server.url,
        "jstree",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["refusals"] == {
        "missing": "not_found",
        "notLatest": "not_latest",
        "noAlternatives": "not_found",
        "editOthers": "forbidden",
        "deleteOthers": "forbidden",
        "deleteReply": "forbidden",
    }
    assert seen["afterRefusals"] == seen["before"], "refusals append nothing"
    assert seen["regenerated"]["ok"] and seen["busy"]["error"]["code"] == "busy"
    assert seen["chosen"]["ok"] and seen["edited"]["ok"] and seen["deleted"]["ok"]
    # Two members and a late joiner see the same tree, and it is the server's.
    assert seen["a"] == seen["b"] == seen["c"]
    rows, _ = await server.services.reader.page("jstree", None, 50)
    assert seen["c"] == [
        [r.id, r.content, r.alternative_of, r.shown, r.edited, r.deleted] for r in rows
    ]
    reply, again = seen["reply"], seen["regenerated"]["messageId"]
    by_id = {line[0]: line for line in seen["c"]}
    assert by_id[reply][3] is True and by_id[again][2] == reply and by_id[again][3] is False
    deleted = [line for line in seen["c"] if line[5]]
    assert len(deleted) == 1 and deleted[0][1] == "" and deleted[0][4] is True
