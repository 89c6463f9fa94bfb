"""REST: rooms, transcript pages and the raw log, with RFC 9457 problems for bad requests."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunningServer
from tomchat.domain.events import MessagePosted

pytestmark = pytest.mark.timeout(60)


async def test_rooms(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/api/health")).json()["database"] == "ok"
        made = await http.post("/api/rooms", json={"name": "Book club", "id": "books"})
        assert made.status_code == 201
        room = made.json()
        assert room["id"] == "books" and room["name"] == "Book club" and room["character"] == "Tom"
        again = await http.post("/api/rooms", json={"name": "Book club", "id": "books"})
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        auto = (await http.post("/api/rooms", json={"name": "Late night / talk"})).json()
        assert auto["id"].startswith("Late-night-talk-")
        listed = {r["id"] for r in (await http.get("/api/rooms")).json()["rooms"]}
        assert {"books", auto["id"]} <= listed
        assert (await http.get("/api/rooms/books")).json()["version"] == 3
        missing = await http.get("/api/rooms/nope")
        assert missing.status_code == 404 and missing.json()["status"] == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/rooms", {"name": ""}, 400),
        ("POST", "/api/rooms", {"name": "x", "id": "has space"}, 400),
        ("POST", "/api/rooms", {"name": "x" * 101}, 400),
        ("POST", "/api/rooms", {"name": "x", "extra": 1}, 400),
        ("GET", "/api/rooms/bad%20id", None, 400),
        ("GET", "/api/rooms/books/messages?limit=abc", None, 400),
        ("GET", "/api/rooms/books/messages?limit=0", None, 400),
        ("GET", "/api/rooms/books/events?after=-1", None, 400),
        ("GET", "/api/rooms/none/messages", None, 404),
    ],
)
async def test_bad_requests_are_problem_details(
    server: RunningServer, method: str, path: str, body: object, status: int
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.post("/api/rooms", json={"name": "Book club", "id": "books"})
        response = await http.request(method, path, json=body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status


async def test_message_pages_and_the_raw_log(server: RunningServer) -> None:
    svc = server.services
    await svc.conversation.ensure_room("paged")
    for i in range(7):
        await svc.store.append(
            "paged", [MessagePosted(message_id=f"m{i}", username="ann", content=f"n{i}")]
        )
    async with httpx.AsyncClient(base_url=server.url) as http:
        first = (await http.get("/api/rooms/paged/messages", params={"limit": 3})).json()
        assert [m["content"] for m in first["messages"]] == ["n4", "n5", "n6"]
        second = (
            await http.get(
                "/api/rooms/paged/messages", params={"limit": 3, "before": first["nextBefore"]}
            )
        ).json()
        assert [m["content"] for m in second["messages"]] == ["n1", "n2", "n3"]
        third = (
            await http.get(
                "/api/rooms/paged/messages", params={"limit": 3, "before": second["nextBefore"]}
            )
        ).json()
        assert [m["isAI"] for m in third["messages"]] == [True, False]
        assert third["nextBefore"] is None
        log = (await http.get("/api/rooms/paged/events", params={"after": 2, "limit": 4})).json()
        assert [e["version"] for e in log["events"]] == [3, 4, 5, 6]
        assert log["events"][1]["type"] == "message.posted"
        assert log["events"][1]["data"]["content"] == "n0"
        assert log["next"] == 6 and log["version"] == 10
