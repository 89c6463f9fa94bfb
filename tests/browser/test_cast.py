"""The cast in the browser: upload a PNG character card, create a room with two
characters, and see both answer, each with its picture."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import PeopleFactory, ServerProcess
from tests.browser.people import REPLY_TIMEOUT_MS, new_room_id
from tests.support.cards import b64, png, v2


def card_png(path: Path, name: str) -> Path:
    """A Character Card V2 as a PNG file, with a 32x32 picture."""
    path.write_bytes(png((20, 120, 200), size=32, chara=b64(v2(name))))
    return path


def test_upload_a_card_and_hear_two_characters(
    people: PeopleFactory, tomchat_server: ServerProcess, tmp_path: Path, output_dir: Path
) -> None:
    name = "Pim" + new_room_id("")[-4:].capitalize().replace("-", "")
    character_id = name.lower()
    ann = people("")
    page = ann.page
    page.goto(tomchat_server.url + "/")
    page.get_by_test_id("username-input").fill("ann")
    page.get_by_test_id("characters-link").click()
    expect(page.get_by_test_id("characters-page")).to_be_visible()
    page.get_by_test_id("card-file").set_input_files(str(card_png(tmp_path / "pim.png", name)))
    page.get_by_test_id("upload-submit").click()
    item = page.locator(f"[data-testid=character-item][data-character-id='{character_id}']")
    expect(item).to_contain_text(name)
    # The card's own picture is the avatar, loaded.
    expect(item.locator("img")).to_have_js_property("naturalWidth", 32)

    page.go_back()
    page.get_by_test_id("room-name-input").fill("Harbour")
    page.locator(f"[data-testid=cast-option][data-character-id='{character_id}']").check()
    page.locator("[data-testid=cast-option][data-character-id='tom']").check()
    page.get_by_test_id("reply-mode").select_option("all")
    page.get_by_role("button", name="Create room").click()
    expect(page).to_have_url(re.compile(r"/room/Harbour-[0-9a-f]+$"))
    ann.expect_live()
    expect(page.get_by_test_id("cast-member")).to_have_text([name, "Tom"])

    # @ in the composer offers the cast's names.
    page.get_by_test_id("message-input").fill("@p")
    expect(page.get_by_test_id("mentions")).to_have_text(f"@{name}")
    page.get_by_test_id("message-input").fill("Good evening, everyone")
    page.get_by_test_id("send-button").click()

    ai = page.locator("[data-testid=message][data-ai=true][data-status=complete]")
    # The greeting (by the first of the cast), then both answer in cast order.
    expect(ai.nth(2)).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    authors = ai.locator(".author").all_inner_texts()
    assert authors[:3] == [name, name, "Tom"], authors
    for i in range(3):
        avatar = ai.nth(i).get_by_test_id("message-avatar")
        expect(avatar).to_be_visible()
        assert avatar.evaluate("img => img.complete && img.naturalWidth > 0")
    src = ai.nth(2).get_by_test_id("message-avatar").get_attribute("src")
    assert src == "/api/characters/tom/avatar?revision=1"
    page.screenshot(path=str(output_dir / "cast-room.png"))
