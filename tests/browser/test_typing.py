"""'Alice is typing…' (issue 17, DESIGN §3 ``typing``) in headless Chromium: one person writes,
the others see their name below the transcript until the message arrives or they stop."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import WebSocket, expect

from tests.browser.conftest import PeopleFactory
from tests.browser.people import new_room_id, rest_json

pytestmark = pytest.mark.browser


def typing_frames_sent(frames: list[str]) -> int:
    """Socket.IO event packets ("42", an ack id, then ``["typing", …]``) among ``frames``."""
    return sum(1 for f in frames if f.startswith("42") and '["typing",' in f)


def test_the_others_see_who_is_typing(people: PeopleFactory) -> None:
    room = new_room_id("typed")
    ann, bob, cat = people("ann"), people("bob"), people("cat")
    # What bob's page sends over its Socket.IO connection (Engine.IO text frames).
    bob_frames: list[str] = []

    def watch(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: bob_frames.append(str(payload)))

    bob.page.on("websocket", watch)
    for person in (ann, bob, cat):
        person.open_room(room)
    before = rest_json(ann.base_url, f"/api/rooms/{room}/events")
    indicator = ann.page.get_by_test_id("typing")
    expect(indicator).to_have_text("")
    # Seen, not read out at every start and stop.
    expect(indicator).to_have_attribute("aria-live", "off")

    cat.page.get_by_test_id("message-input").press_sequentially("Hm", delay=30)
    expect(indicator).to_have_text("cat is typing…")
    bob.page.get_by_test_id("message-input").press_sequentially("Hello there, all", delay=40)
    expect(indicator).to_have_text("cat and bob are typing…")
    seen_both = time.monotonic()
    # A whole sentence typed in well under two seconds: one notice, not one per key.
    assert typing_frames_sent(bob_frames) == 1, bob_frames
    # Nobody is shown their own name.
    expect(bob.page.get_by_test_id("typing")).to_have_text("cat is typing…")
    expect(cat.page.get_by_test_id("typing")).to_have_text("bob is typing…")

    # bob's message arrives: his name goes at once, while cat (still typing) stays.
    cat.page.get_by_test_id("message-input").press_sequentially("m", delay=30)
    bob.page.get_by_test_id("send-button").click()
    expect(ann.messages.filter(has_text="Hello there, all")).to_have_count(1)
    expect(indicator).to_have_text("cat is typing…")
    # Well before bob's name would have expired by itself (4 s after his notice).
    assert time.monotonic() - seen_both < 3.0

    # cat stopped typing: a few seconds later the line is empty again.
    expect(indicator).to_have_text("", timeout=8_000)
    expect(bob.page.get_by_test_id("typing")).to_have_text("", timeout=8_000)

    # Nothing of it was logged: the log grew by bob's message (and Tom's reply) only.
    after = rest_json(ann.base_url, f"/api/rooms/{room}/events")
    assert isinstance(before, dict) and isinstance(after, dict)
    added = [e["type"] for e in after["events"][len(before["events"]) :]]
    assert added and added[0] == "message.posted", added
    assert all(not t.startswith("typing") for t in added), added
