"""The replay page's controls and the room page's export menu, in headless Chromium.

The server speaks through the fake Fish Audio, so replies have voices to replay.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PeopleFactory, ServerProcess
from tests.browser.people import Person, new_room_id, rest_json

pytestmark = pytest.mark.browser


@pytest.fixture
def room_server(voice_server: ServerProcess) -> ServerProcess:
    return voice_server


def settled_version(base_url: str, room: str) -> int:
    """The room's version once nothing has been logged for a while: a voice is logged a
    second time, with its final size, after its text is done."""
    last, since = -1, time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        version = int(rest_json(base_url, f"/api/rooms/{room}")["version"])  # type: ignore[index]
        if version != last:
            last, since = version, time.monotonic()
        elif time.monotonic() - since > 2:
            return version
        time.sleep(0.25)
    raise AssertionError(f"room {room} never settled")


def record_session(ann: Person, room: str) -> tuple[list[str], list[str | None], int]:
    """Two questions and Tom's spoken answers; what Ann's screen shows, and the version."""
    ann.open_room(room)
    for question in ("Tell me about lighthouses", "And about old ships?"):
        ann.send(question)
        ann.wait_reply_finished(ann.wait_reply_started())
    head = settled_version(ann.base_url, room)
    contents = ann.page.get_by_test_id("message-content").all_text_contents()
    statuses = ann.messages.evaluate_all("els => els.map(e => e.dataset.status)")
    return contents, statuses, head


def scrub_to(page: Page, where: str) -> None:
    """Drop the scrubber's thumb at its start or end, as a person letting go of it does."""
    page.get_by_test_id("replay-scrubber").evaluate(
        """(input, where) => {
            input.value = where === "start" ? input.min : input.max;
            input.dispatchEvent(new Event("input", { bubbles: true }));
            input.dispatchEvent(new Event("change", { bubbles: true }));
        }""",
        where,
    )


def test_replay_controls(people: PeopleFactory, output_dir: Path) -> None:
    room = new_room_id("replay")
    ann = people("ann")
    contents, statuses, head = record_session(ann, room)

    viewer = people("viewer")
    page = viewer.page
    page.goto(f"{viewer.base_url}/room/{room}/replay")
    replay = page.get_by_test_id("replay")
    expect(replay).to_have_attribute("data-state", "playing", timeout=15_000)

    # Pause: nothing moves on. (The click is also what lets the browser play sound later.)
    page.get_by_test_id("replay-play").click()
    expect(replay).to_have_attribute("data-state", "paused")
    held = replay.get_attribute("data-version")
    page.wait_for_timeout(1_500)
    assert replay.get_attribute("data-version") == held

    # The end of the scrubber: the whole conversation, as Ann saw it.
    scrub_to(page, "end")
    expect(replay).to_have_attribute("data-version", str(head))
    assert page.get_by_test_id("message-content").all_text_contents() == contents
    assert viewer.messages.evaluate_all("els => els.map(e => e.dataset.status)") == statuses
    # The start: only what was there at the first instant (Tom's greeting).
    scrub_to(page, "start")
    expect(viewer.messages).to_have_count(1)
    assert page.get_by_test_id("replay-time").text_content().startswith("0:00 /")

    # Play at 2x: the first reply's voice sounds in step with its text, at the replay's pace.
    page.get_by_test_id("replay-speed").select_option("2")
    page.get_by_test_id("replay-play").click()
    reply_id = viewer.messages.nth(2).get_attribute("data-message-id")
    assert reply_id
    expect(replay).to_have_attribute("data-voice-playing", reply_id, timeout=20_000)
    assert replay.get_attribute("data-voice-rate") == "2"
    page.screenshot(path=output_dir / "replay-playing.png")
    # Pausing holds the voice too.
    page.get_by_test_id("replay-play").click()
    expect(replay).to_have_attribute("data-voice-playing", "")
    # Faster than voices can follow: text only, and the page says so.
    page.get_by_test_id("replay-speed").select_option("8")
    expect(page.get_by_test_id("voice-too-fast")).to_be_visible()
    page.get_by_test_id("replay-play").click()
    expect(replay).to_have_attribute("data-state", "finished", timeout=30_000)
    assert replay.get_attribute("data-voice-playing") == ""
    assert page.get_by_test_id("message-content").all_text_contents() == contents
    page.screenshot(path=output_dir / "replay-finished.png")

    # Play again after the end starts over from the top (slowly: time to look).
    page.get_by_test_id("replay-speed").select_option("0.5")
    page.get_by_test_id("replay-play").click()
    expect(replay).to_have_attribute("data-state", "playing")
    assert viewer.messages.count() < len(contents)
    assert not viewer.errors, viewer.errors


def fetch(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), response.headers["Content-Disposition"]


def test_export_menu_downloads_every_format(people: PeopleFactory) -> None:
    room = new_room_id("export")
    ann = people("ann")
    ann.open_room(room)
    ann.send("Something worth keeping")
    ann.wait_reply_finished(ann.wait_reply_started())
    settled_version(ann.base_url, room)  # the files must not change between two downloads

    page = ann.page
    for fmt, ext in (("markdown", "md"), ("text", "txt"), ("json", "json"), ("jsonl", "jsonl")):
        # The menu closes after each download: it is opened again for the next.
        page.get_by_test_id("export-menu").locator("summary").click()
        link = page.get_by_test_id(f"export-{fmt}")
        expect(link).to_be_visible()
        href = link.get_attribute("href")
        assert href == f"/api/rooms/{room}/transcript?format={fmt}"
        with page.expect_download() as caught:
            link.click()
        download = caught.value
        assert download.suggested_filename == f"tomchat-{room}.{ext}"
        body, disposition = fetch(f"{ann.base_url}{href}")
        assert Path(download.path()).read_bytes() == body
        assert disposition == f'attachment; filename="tomchat-{room}.{ext}"'
        expect(link).to_be_hidden()
        if fmt == "markdown":
            assert "Something worth keeping" in body.decode()
