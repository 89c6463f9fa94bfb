"""The tree in headless Chromium: swipe between alternatives, edit, delete, fork from the
replay page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PeopleFactory
from tests.browser.people import new_room_id, rest_json

pytestmark = pytest.mark.browser


def test_alternatives_edit_delete_and_fork(people: PeopleFactory, output_dir: Path) -> None:
    room = new_room_id("tree")
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)
    ann.send("Tell me about lighthouses")
    first = ann.wait_reply_started()
    ann.wait_reply_finished(first)

    # Regenerate: a second alternative streams to both, and is shown as 2/2.
    ann.message(first).get_by_test_id("regenerate").click()
    second = ann.wait_reply_started()
    assert second != first
    ann.wait_reply_finished(second)
    for person in (ann, bob):
        slot = person.message(second).get_by_test_id("alternative-position")
        expect(slot).to_have_text("2/2", timeout=15_000)
        expect(person.message(first)).to_have_count(0)  # one alternative shown per slot
    # Swipe back to the first: everyone sees it.
    ann.message(second).get_by_test_id("alternative-prev").click()
    for person in (ann, bob):
        expect(person.message(first).get_by_test_id("alternative-position")).to_have_text("1/2")
        expect(person.message(second)).to_have_count(0)
    ann.page.screenshot(path=output_dir / "tree-alternatives.png")

    # Edit in place: own messages only.
    [mine] = [i for i in ann.message_ids() if ann.message(i).get_attribute("data-ai") == "false"]
    expect(bob.message(mine).get_by_test_id("edit-message")).to_have_count(0)
    expect(bob.message(mine).get_by_test_id("delete-message")).to_have_count(0)
    ann.message(mine).get_by_test_id("edit-message").click()
    ann.message(mine).get_by_test_id("edit-input").fill("Tell me about old lighthouses")
    ann.message(mine).get_by_test_id("edit-save").click()
    for person in (ann, bob):
        expect(person.content_of(mine)).to_have_text("Tell me about old lighthouses")
        expect(person.message(mine).get_by_test_id("edited-mark")).to_be_visible()

    # Delete asks first: dismissed, nothing happens; confirmed, the words are gone.
    ann.message(mine).get_by_test_id("delete-message").click()
    assert ann.dialogs and "Delete this message" in ann.dialogs[-1]
    expect(ann.message(mine)).to_have_attribute("data-deleted", "false")
    ann.page.evaluate("window.confirm = () => true")
    ann.message(mine).get_by_test_id("delete-message").click()
    for person in (ann, bob):
        expect(person.message(mine)).to_have_attribute("data-deleted", "true")
        expect(person.message(mine).get_by_test_id("deleted-mark")).to_be_visible()
        assert "lighthouses" not in (person.content_of(mine).text_content() or "")

    # Fork from the replay page, at its end: the new room holds the visible transcript.
    page = bob.page
    page.goto(f"{bob.base_url}/room/{room}/replay")
    replay = page.get_by_test_id("replay")
    expect(replay).to_have_attribute("data-state", "playing", timeout=15_000)
    page.get_by_test_id("replay-speed").select_option("8")
    expect(replay).to_have_attribute("data-state", "finished", timeout=60_000)
    page.get_by_test_id("fork-here").click()
    expect(page).to_have_url(re.compile(r"/room/[^/]*-fork-[0-9a-f]+$"), timeout=15_000)
    bob.expect_live()
    forked = page.url.rsplit("/room/", 1)[1].split("?")[0]
    log = rest_json(bob.base_url, f"/api/rooms/{forked}/events")
    assert isinstance(log, dict)
    kinds = [e["type"] for e in log["events"]]
    assert kinds[0] == "room.forked" and set(kinds[1:]) == {"message.imported"}
    # Greeting and the chosen first alternative; the deleted message is not copied.
    expect(bob.messages).to_have_count(2)
    source = rest_json(bob.base_url, f"/api/rooms/{room}/messages")
    assert isinstance(source, dict)
    chosen = [m["content"] for m in source["messages"] if m["chosen"] and not m["deleted"]]
    assert page.get_by_test_id("message-content").all_text_contents() == chosen
    page.screenshot(path=output_dir / "tree-forked.png")
    assert not ann.errors and not bob.errors, (ann.errors, bob.errors)
