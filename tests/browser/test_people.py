"""People in the web client: a name is one person's, nothing sent is lost or reordered (not
even by a reload), a mistyped link creates nothing, and "My rooms" brings a creator back."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PeopleFactory
from tests.browser.people import new_room_id, rest_json

BURST = 16


def user_messages(base_url: str, room_id: str) -> list[str]:
    page = rest_json(base_url, f"/api/rooms/{room_id}/messages?limit=200")
    assert isinstance(page, dict)
    return [m["content"] for m in page["messages"] if not m["isAI"]]


def test_the_second_person_choosing_a_taken_name_is_told(people: PeopleFactory) -> None:
    room = new_room_id("names")
    first, second = people("Alice"), people("Alice")
    first.open_room(room)
    second.page.goto(f"{second.base_url}/room/{room}")
    taken = second.page.get_by_test_id("name-taken")
    expect(taken).to_contain_text("is taken in this room", timeout=15_000)
    # Offered another name, the second person gets in under it.
    second.page.get_by_test_id("other-name-input").fill("Alicia")
    second.page.get_by_test_id("other-name-submit").click()
    second.expect_live()
    members = first.page.get_by_test_id("member")
    # Alice made the room: she hosts it, and may remove Alicia.
    expect(members).to_have_text(["Alice (you)host", "AliciaRemove"], timeout=15_000)
    mine = second.page.locator("[data-testid=member].me")
    expect(mine).to_have_text("Alicia (you)")


def test_a_burst_of_sixteen_arrives_whole_once_in_order_across_a_reload(
    people: PeopleFactory,
) -> None:
    room = new_room_id("burst")
    ann = people("ann")
    ann.open_room(room)
    sent = [f"burst message {i:02d}" for i in range(1, BURST + 1)]
    box = ann.page.get_by_test_id("message-input")
    for text in sent:
        box.fill(text)
        box.press("Enter")
    # More than the server takes at once: the rest wait for its retryAfter, in order.
    expect(ann.page.get_by_test_id("outbox-hold")).to_be_visible(timeout=15_000)
    deadline = time.monotonic() + 60
    while len(user_messages(ann.base_url, room)) < 10:
        assert time.monotonic() < deadline, "the first ten never arrived"
        time.sleep(0.1)
    ann.page.reload()
    ann.expect_live()
    while len(user_messages(ann.base_url, room)) < BURST:
        assert time.monotonic() < deadline, user_messages(ann.base_url, room)
        time.sleep(0.2)
    time.sleep(1.0)  # anything doubled would have arrived by now
    assert user_messages(ann.base_url, room) == sent
    # The page shows them in that order too, and its outbox is empty.
    shown = ann.page.locator("[data-testid=message].mine [data-testid=message-content]")
    expect(shown).to_have_text(sent, timeout=15_000)
    expect(ann.page.get_by_test_id("outgoing")).to_have_count(0)


def test_join_by_link_with_an_unknown_id_creates_nothing(people: PeopleFactory) -> None:
    ann = people("ann")
    ann.page.goto(ann.base_url)
    missing = new_room_id("typo")
    ann.page.get_by_test_id("room-link-input").fill(missing)
    ann.page.get_by_test_id("join-link-submit").click()
    expect(ann.page.get_by_test_id("join-link-error")).to_contain_text(f'no room "{missing}"')
    assert ann.page.url.rstrip("/") == ann.base_url
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{ann.base_url}/api/rooms/{missing}", timeout=10)
    assert refused.value.code == 404
    listed = rest_json(ann.base_url, "/api/rooms")["rooms"]
    assert isinstance(listed, list) and missing not in {r["id"] for r in listed}


def test_my_rooms_brings_the_creator_back_into_a_private_room(people: PeopleFactory) -> None:
    ann = people("ann")
    ann.page.goto(ann.base_url)
    name = f"Den {new_room_id()}"
    ann.page.get_by_test_id("room-name-input").fill(name)
    ann.page.get_by_test_id("room-private").check()
    ann.page.get_by_test_id("create-room").locator("button[type=submit]").click()
    ann.expect_live()
    assert "token=" in ann.page.url
    room_id = ann.page.get_by_test_id("room").get_attribute("data-room-id")
    # Back in the lobby with no link at hand: "My rooms" has the room, token and all.
    ann.page.goto(ann.base_url)
    entry = ann.page.locator(f"[data-testid=my-room][data-room-id='{room_id}']")
    expect(entry).to_contain_text(name)
    entry.get_by_role("link").click()
    ann.expect_live()
    expect(ann.page.get_by_test_id("room-name")).to_have_text(name)
    expect(ann.page.get_by_test_id("room-private")).to_be_visible()
    # The creator hosts it.
    expect(ann.page.get_by_test_id("host-controls")).to_be_visible()
