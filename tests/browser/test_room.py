"""Two people in one room, in headless Chromium, against a real ``tomchat serve``."""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import WebSocketRoute, expect

from tests.browser.conftest import PeopleFactory, ServerProcess
from tests.browser.people import new_room_id, rest_json, rest_message

pytestmark = pytest.mark.browser


def test_reply_streams_in_for_every_member(people: PeopleFactory, output_dir: Path) -> None:
    room = new_room_id()
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)
    # Ann made the room by joining it first: she hosts it (and may remove Bob).
    expect(ann.page.get_by_test_id("member")).to_have_text(["ann (you)host", "bobRemove"])

    ann.send("Tell me about lighthouses and storms at sea")
    expect(bob.messages.filter(has_text="lighthouses and storms")).to_have_count(1)

    # Bob watches the reply being written: the text grows, with the cursor at its end.
    reply_id = bob.wait_reply_started(min_chars=1)
    reply = bob.message(reply_id)
    expect(reply.get_by_test_id("cursor")).to_be_visible()
    expect(bob.page.get_by_test_id("stop-button")).to_be_visible()
    seen = [len(bob.content_of(reply_id).text_content() or "")]
    deadline = time.monotonic() + 10
    while len(set(seen)) < 3 and time.monotonic() < deadline:
        bob.page.wait_for_timeout(150)
        seen.append(len(bob.content_of(reply_id).text_content() or ""))
    assert len(set(seen)) >= 3, f"the reply did not grow on Bob's screen: {seen}"
    assert seen == sorted(seen), f"the reply's text went backwards: {seen}"
    bob.page.screenshot(path=output_dir / "room-mid-reply.png")

    final = bob.wait_reply_finished(reply_id)
    expect(reply.get_by_test_id("cursor")).to_have_count(0)
    expect(bob.page.get_by_test_id("stop-button")).to_have_count(0)
    assert final == rest_message(bob.base_url, room, reply_id)["content"]
    assert ann.wait_reply_finished(reply_id) == final
    bob.page.screenshot(path=output_dir / "room-finished.png")
    assert ann.message_ids() == bob.message_ids()
    assert not ann.errors and not bob.errors


def test_reload_mid_reply_ends_with_the_full_text(people: PeopleFactory, output_dir: Path) -> None:
    room = new_room_id()
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)

    ann.send("What do you think about mountain trains?")
    reply_id = bob.wait_reply_started(min_chars=12)
    bob.page.reload()
    bob.expect_live()
    # The snapshot brought the reply back, still being written or already finished.
    expect(bob.message(reply_id)).to_have_count(1)
    bob.page.screenshot(path=output_dir / "reload-after.png")

    final = bob.wait_reply_finished(reply_id)
    assert final == rest_message(bob.base_url, room, reply_id)["content"]
    assert final == ann.wait_reply_finished(reply_id)
    ids = bob.message_ids()
    assert len(ids) == len(set(ids)), "a message is shown twice after the reload"
    assert ids == ann.message_ids()


def test_offline_mid_reply_catches_up_without_hole_or_duplicate(
    people: PeopleFactory, output_dir: Path
) -> None:
    room = new_room_id()
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)

    ann.send("Could you explain how bees find their way home?")
    reply_id = ann.wait_reply_started(min_chars=8)
    ann.context.set_offline(True)
    expect(ann.connection).to_have_attribute("data-state", "reconnecting")
    frozen = ann.content_of(reply_id).text_content() or ""
    # Tom goes on talking while Ann is away; Bob sees it.
    bob.page.wait_for_function(
        """([id, n]) => {
            const el = document.querySelector(`[data-message-id="${id}"] [data-testid=message-content]`);
            return el && el.textContent.length > n + 10;
        }""",
        arg=[reply_id, len(frozen)],
    )
    assert (ann.content_of(reply_id).text_content() or "") == frozen
    ann.page.screenshot(path=output_dir / "offline.png")

    ann.context.set_offline(False)
    ann.expect_live()
    final = ann.wait_reply_finished(reply_id)
    assert final.startswith(frozen)
    assert final == rest_message(ann.base_url, room, reply_id)["content"]
    assert final == bob.wait_reply_finished(reply_id)
    ids = ann.message_ids()
    assert len(ids) == len(set(ids)), "a message is shown twice after coming back"
    assert ids == bob.message_ids()


def test_a_stopped_reply_shows_as_stopped(people: PeopleFactory) -> None:
    room = new_room_id()
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)

    ann.send("Describe the longest river you can think of, in detail")
    reply_id = ann.wait_reply_started(min_chars=5)
    ann.page.get_by_test_id("stop-button").click()

    for person in (ann, bob):
        text = person.wait_reply_finished(reply_id, status="stopped")
        expect(person.message(reply_id).get_by_test_id("message-status")).to_have_text("stopped")
        expect(person.page.get_by_test_id("stop-button")).to_have_count(0)
    stored = rest_message(ann.base_url, room, reply_id)
    assert stored["status"] == "stopped"
    assert text == stored["content"]


def test_html_in_a_message_is_shown_as_text(people: PeopleFactory) -> None:
    room = new_room_id()
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)

    payload = "<img src=x onerror=alert(1)>"
    ann.send(payload)
    for person in (ann, bob):
        shown = person.messages.filter(has_text=payload)
        expect(shown).to_have_count(1)
        expect(shown.get_by_test_id("message-content")).to_have_text(payload)
        # No image came from the text (the characters' avatars are the client's own).
        expect(person.page.locator("[data-testid=message-content] img")).to_have_count(0)
    # Give an injected handler every chance to fire, then check that none did.
    bob.page.wait_for_timeout(500)
    assert ann.dialogs == [] and bob.dialogs == []


def test_lobby_creates_a_room_and_remembers_the_name(
    people: PeopleFactory, tomchat_server: ServerProcess
) -> None:
    cleo = people("")
    page = cleo.page
    page.goto(tomchat_server.url + "/")
    page.get_by_test_id("username-input").fill("cleo")
    page.get_by_test_id("room-name-input").fill("Book club")
    page.get_by_role("button", name="Create room").click()
    expect(page).to_have_url(re.compile(r"/room/Book-club-[0-9a-f]+$"))
    cleo.expect_live()
    expect(page.get_by_test_id("room-name")).to_have_text("Book club")
    expect(page.get_by_test_id("member")).to_have_text(["cleo (you)host"])
    room_id = page.url.rsplit("/", 1)[1]

    # A second person joins by pasting the link.
    dan = people("dan")
    dan.page.goto(tomchat_server.url + "/")
    dan.page.get_by_test_id("room-link-input").fill(f"{tomchat_server.url}/room/{room_id}")
    dan.page.get_by_role("button", name="Join").click()
    dan.expect_live()
    expect(dan.page.get_by_test_id("member")).to_have_text(["cleohost", "dan (you)"])

    # Back in the lobby Cleo sees the room with Dan in it, and her name is remembered.
    page.go_back()
    item = page.locator(f"[data-testid=room-item][data-room-id='{room_id}']")
    expect(item).to_contain_text("Book club")
    expect(item.get_by_test_id("room-members")).to_have_text("1 online")
    page.reload()
    expect(page.get_by_test_id("username-input")).to_have_value("cleo")


async def _post_messages(url: str, room_id: str, texts: list[str]) -> None:
    """Fill a room through the real Socket.IO API, as a crowd of other clients would.

    The server limits each person to a burst of messages and each room to so many waiting
    for Tom's answer, so the crowd is several people, and waits when it is told to.
    """
    import socketio

    per_person = 8  # the server's burst of messages per person
    crowd: list[socketio.AsyncClient] = []
    try:
        for n in range((len(texts) + per_person - 1) // per_person):
            client = socketio.AsyncClient()
            await client.connect(url, transports=["websocket"], wait_timeout=10)
            crowd.append(client)
            join = {"roomId": room_id, "username": f"seeder{n}"}
            ack = await client.call("joinRoom", join, timeout=10)
            assert ack["ok"], ack
        for i, text in enumerate(texts):
            message = {"roomId": room_id, "content": text, "clientId": f"seed-{i}"}
            for _ in range(30):
                ack = await crowd[i // per_person].call("sendMessage", message, timeout=10)
                if ack["ok"] or ack["error"]["code"] != "rate_limited":
                    break
                await asyncio.sleep(float(ack["error"].get("retryAfter", 1.0)))
            assert ack["ok"], ack
    finally:
        for client in crowd:
            await client.disconnect()


def test_older_messages_load_when_scrolling_up(
    people: PeopleFactory, tomchat_server: ServerProcess
) -> None:
    room = new_room_id()
    # More than the join snapshot's page of 50, replies included.
    texts = [f"seed message {i:03d}" for i in range(52)]
    # Its own thread: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _post_messages(tomchat_server.url, room, texts)).result()

    ann = people("ann")
    ann.open_room(room)
    expect(
        ann.page.get_by_test_id("message-content").filter(has_text="seed message 051")
    ).to_be_visible()
    # The join snapshot holds only the newest page; the oldest messages are not there yet.
    expect(ann.messages.filter(has_text="seed message 000")).to_have_count(0)

    transcript = ann.page.get_by_test_id("transcript")
    for _ in range(10):  # page by page, as a reader scrolling up would
        if ann.page.get_by_test_id("beginning").count():
            break
        transcript.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
        ann.page.wait_for_timeout(300)
    expect(ann.page.get_by_test_id("beginning")).to_be_visible()
    expect(ann.messages.filter(has_text="seed message 000")).to_have_count(1)

    ids = ann.message_ids()
    assert len(ids) == len(set(ids)), "a message is shown twice after paging"
    page = rest_json(tomchat_server.url, f"/api/rooms/{room}/messages?limit=200")
    assert isinstance(page, dict)
    assert ids == [m["id"] for m in page["messages"]]


def test_a_lost_event_is_recovered_by_resync(people: PeopleFactory) -> None:
    """Drop one chunk on its way to the browser: the hole must be noticed and filled."""
    room = new_room_id()
    ann, bob = people("ann"), people("bob")
    dropped: list[dict[str, object]] = []
    resyncs: list[dict[str, object]] = []

    def intercept(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_client(message: str | bytes) -> None:
            name, data = _socketio_event(message)
            if name == "aiTextChunk" and data.get("index") == 3 and not dropped:
                dropped.append(data)
                return
            ws.send(message)

        def to_server(message: str | bytes) -> None:
            name, data = _socketio_event(message)
            if name == "resync":
                resyncs.append(data)
            server.send(message)

        server.on_message(to_client)
        ws.on_message(to_server)

    bob.page.route_web_socket(re.compile(r"/socket\.io/"), intercept)
    ann.open_room(room)
    bob.open_room(room)

    ann.send("What makes a good cup of tea?")
    reply_id = ann.wait_reply_started()
    final = ann.wait_reply_finished(reply_id)
    assert dropped, "the test did not manage to drop a chunk"
    assert bob.wait_reply_finished(reply_id) == final
    # It asked from the last version it had applied: the one before the lost chunk.
    assert resyncs, "Bob's client never asked to resync"
    assert resyncs[0] == {"roomId": room, "since": int(str(dropped[0]["version"])) - 1}
    assert bob.message_ids() == ann.message_ids()


def _socketio_event(frame: str | bytes) -> tuple[str | None, dict[str, object]]:
    """The name and payload of a Socket.IO event frame (``42["name",{...}]`` or with an ack
    id, ``421["name",{...}]``); (None, {}) for anything else."""
    if not isinstance(frame, str) or not frame.startswith("42"):
        return None, {}
    body = frame[2:].lstrip("0123456789")
    try:
        decoded = json.loads(body)
    except ValueError:
        return None, {}
    if not isinstance(decoded, list) or not decoded or not isinstance(decoded[0], str):
        return None, {}
    data = decoded[1] if len(decoded) > 1 and isinstance(decoded[1], dict) else {}
    return decoded[0], data


def test_replay_shows_the_conversation_again(people: PeopleFactory, output_dir: Path) -> None:
    room = new_room_id()
    ann = people("ann")
    ann.open_room(room)
    ann.send("Let us talk about old maps")
    reply_id = ann.wait_reply_started()
    ann.page.get_by_test_id("stop-button").click()
    ann.wait_reply_finished(reply_id, status="stopped")
    ann.send("And new ones?")
    ann.wait_reply_finished(ann.wait_reply_started())
    contents = ann.page.get_by_test_id("message-content").all_text_contents()
    statuses = ann.messages.evaluate_all("els => els.map(e => e.dataset.status)")

    viewer = people("viewer")
    viewer.page.goto(f"{viewer.base_url}/room/{room}/replay?speed=20")
    expect(viewer.page.get_by_test_id("replay")).to_have_attribute(
        "data-state", "finished", timeout=30_000
    )
    assert viewer.message_ids() == ann.message_ids()
    assert viewer.page.get_by_test_id("message-content").all_text_contents() == contents
    assert viewer.messages.evaluate_all("els => els.map(e => e.dataset.status)") == statuses
    viewer.page.screenshot(path=output_dir / "replay.png")


def test_a_private_room_is_joined_by_its_invite_link(
    people: PeopleFactory, tomchat_server: ServerProcess
) -> None:
    eve = people("eve")
    page = eve.page
    page.goto(tomchat_server.url + "/")
    page.get_by_test_id("room-name-input").fill("Secret garden")
    page.get_by_test_id("room-private").check()
    page.get_by_role("button", name="Create room").click()
    eve.expect_live()
    expect(page).to_have_url(re.compile(r"/room/Secret-garden-[0-9a-f]+\?token=."))
    expect(page.get_by_test_id("room-private")).to_be_visible()
    invite = page.url
    room_id = invite.split("/room/", 1)[1].split("?", 1)[0]

    # Without the token the room cannot be joined, nor is it listed.
    stranger = people("stranger")
    stranger.page.goto(f"{tomchat_server.url}/room/{room_id}")
    # Told as any room one may not join: whether an id is private cannot be probed.
    expect(stranger.page.get_by_test_id("room-error")).to_contain_text("no room")
    stranger.page.goto(tomchat_server.url + "/")
    expect(
        stranger.page.get_by_test_id("room-list").or_(stranger.page.get_by_text("No rooms yet"))
    ).to_be_visible()
    expect(stranger.page.locator(f"[data-room-id='{room_id}']")).to_have_count(0)

    # With the invite link a friend joins and talks.
    fay = people("fay")
    fay.page.goto(tomchat_server.url + "/")
    fay.page.get_by_test_id("room-link-input").fill(invite)
    fay.page.get_by_role("button", name="Join").click()
    fay.expect_live()
    fay.send("Is anybody here?")
    expect(eve.messages.filter(has_text="Is anybody here?")).to_have_count(1)
    reply_id = eve.wait_reply_started()
    assert fay.wait_reply_finished(reply_id) == eve.wait_reply_finished(reply_id)


def test_messages_past_the_rate_limit_wait_and_go_through(people: PeopleFactory) -> None:
    room = new_room_id()
    ann = people("ann")
    ann.open_room(room)
    box = ann.page.get_by_test_id("message-input")
    texts = [f"quick note {i}" for i in range(11)]  # the server lets 8 through at once
    for text in texts:
        box.fill(text)
        box.press("Enter")
    for text in texts:
        expect(ann.messages.filter(has_text=text)).to_have_count(1, timeout=20_000)
    expect(ann.page.get_by_test_id("outgoing")).to_have_count(0)


def test_reading_older_messages_is_not_interrupted(
    people: PeopleFactory, tomchat_server: ServerProcess
) -> None:
    room = new_room_id()
    texts = [f"earlier line {i:02d}" for i in range(16)]
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _post_messages(tomchat_server.url, room, texts)).result()
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)
    expect(ann.streaming).to_have_count(0, timeout=30_000)

    transcript = ann.page.get_by_test_id("transcript")
    at_bottom = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 80"
    assert transcript.evaluate("el => el.scrollHeight > el.clientHeight + 200")
    transcript.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")

    # Something new arrives: Ann stays where she reads, and is told.
    bob.send("Fresh news from Bob")
    expect(ann.page.get_by_test_id("jump-to-new")).to_be_visible()
    assert not transcript.evaluate(at_bottom)
    ann.page.get_by_test_id("jump-to-new").click()
    ann.page.wait_for_function(
        "() => { const el = document.querySelector('[data-testid=transcript]');"
        " return el.scrollHeight - el.scrollTop - el.clientHeight < 80; }"
    )
    expect(ann.page.get_by_test_id("jump-to-new")).to_have_count(0)

    # Sending takes her back down to the conversation.
    transcript.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    ann.send("I am back")
    expect(ann.messages.filter(has_text="I am back")).to_be_in_viewport()
