"""Tom's voice and voice messages, against a server speaking through a fake Fish Audio."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PeopleFactory, ServerProcess
from tests.browser.people import new_room_id, rest_message

if TYPE_CHECKING:
    from tests.fakes.fish import FakeFish

pytestmark = pytest.mark.browser


@pytest.fixture
def room_server(voice_server: ServerProcess) -> ServerProcess:
    return voice_server


def test_voice_plays_while_the_text_streams(people: PeopleFactory, output_dir: Path) -> None:
    room = new_room_id("voice")
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)

    # Clicking Send is the interaction that lets Ann's browser play sound by itself.
    ann.send("Sing me something about the northern lights")
    reply_id = ann.wait_reply_started()
    ann_room = ann.page.get_by_test_id("room")
    expect(ann_room).to_have_attribute("data-voice-playing", reply_id, timeout=20_000)
    # Heard while Tom is still writing: the voice did not wait for the text to finish.
    assert ann.message(reply_id).get_attribute("data-streaming") == "true"
    expect(ann.message(reply_id).get_by_test_id("play-audio")).to_be_visible()

    # Bob never touched his page, so his browser refuses to play sound: one click fixes it.
    expect(bob.page.get_by_test_id("audio-blocked")).to_be_visible(timeout=20_000)
    bob.page.screenshot(path=output_dir / "voice-blocked.png")
    bob.page.get_by_test_id("unblock-audio").click()
    expect(bob.page.get_by_test_id("audio-notice")).to_contain_text("Sound is on")
    expect(bob.page.get_by_test_id("room")).to_have_attribute("data-voice-playing", reply_id)
    expect(bob.page.get_by_test_id("audio-blocked")).to_have_count(0)

    ann.wait_reply_finished(reply_id)
    stored = rest_message(ann.base_url, room, reply_id)
    assert stored["audioUrl"], "the reply's audio is not in the transcript"

    # Every past reply with audio has a play button; Ann can stop and replay it.
    play = ann.message(reply_id).get_by_test_id("play-audio")
    if ann_room.get_attribute("data-voice-playing") == reply_id:
        play.click()  # stop it first
    expect(ann_room).to_have_attribute("data-voice-playing", "")
    play.click()
    expect(ann_room).to_have_attribute("data-voice-playing", reply_id)
    expect(play).to_contain_text("Stop")


def test_a_voice_fish_refuses_shows_as_unavailable(
    people: PeopleFactory, fake_fish: FakeFish
) -> None:
    room = new_room_id("voice")
    ann = people("ann")
    ann.open_room(room)
    fake_fish.refusal = (402, {"message": "Insufficient balance", "status": 402})
    try:
        ann.send("Say something, even if nobody can hear it")
        reply_id = ann.wait_reply_started()
        note = ann.message(reply_id).get_by_test_id("voice-unavailable")
        expect(note).to_have_text("voice unavailable", timeout=20_000)
        expect(note).to_have_attribute(
            "title",
            "Fish Audio says the account has no credit left: top up the API balance"
            " (HTTP 402): Insufficient balance",
        )
        ann.wait_reply_finished(reply_id)
    finally:
        fake_fish.refusal = None
    expect(ann.message(reply_id).get_by_test_id("play-audio")).to_have_count(0)
    assert rest_message(ann.base_url, room, reply_id)["audioUrl"] is None


def test_mute_keeps_tom_quiet(people: PeopleFactory) -> None:
    room = new_room_id("voice")
    ann = people("ann")
    ann.open_room(room)
    toggle = ann.page.get_by_test_id("mute-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")

    ann.send("Tell me a story about quiet libraries")
    reply_id = ann.wait_reply_started()
    expect(ann.message(reply_id).get_by_test_id("play-audio")).to_be_visible(timeout=20_000)
    ann.wait_reply_finished(reply_id)
    expect(ann.page.get_by_test_id("room")).to_have_attribute("data-voice-playing", "")
    # Muting is remembered.
    ann.page.reload()
    expect(ann.page.get_by_test_id("mute-toggle")).to_have_attribute("aria-pressed", "true")


def test_hold_to_record_sends_a_voice_message(
    people: PeopleFactory, fake_fish: FakeFish, output_dir: Path
) -> None:
    room = new_room_id("voice")
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)
    asr_calls = len(fake_fish.asr_calls)

    # Chromium's fake microphone plays a beep; hold the button for a second and a half.
    record = ann.page.get_by_test_id("record-button")
    record.hover()
    ann.page.mouse.down()
    expect(record).to_have_attribute("data-recording", "true")
    ann.page.wait_for_timeout(1500)
    ann.page.mouse.up()
    expect(record).to_have_attribute("data-recording", "false")

    heard = fake_fish.asr_answer["text"]
    for person in (ann, bob):
        voice = person.messages.filter(has_text=heard)
        expect(voice).to_have_count(1, timeout=20_000)
        expect(voice).to_have_attribute("data-ai", "false")
        expect(voice.get_by_test_id("message-content")).to_have_text(heard)
        expect(voice.get_by_test_id("play-audio")).to_be_visible()
    expect(ann.page.get_by_test_id("outgoing")).to_have_count(0)
    assert len(fake_fish.asr_calls) == asr_calls + 1

    # The recording plays back from the transcript. (Bob mutes Tom first, whose voice would
    # otherwise take over the moment his reply's audio arrives.)
    bob.page.get_by_test_id("mute-toggle").click()
    voice = bob.messages.filter(has_text=heard)
    message_id = voice.get_attribute("data-message-id")
    assert message_id
    stored = rest_message(bob.base_url, room, message_id)
    assert stored["source"] == "voice" and stored["audioUrl"]
    voice.get_by_test_id("play-audio").click()
    expect(bob.page.get_by_test_id("room")).to_have_attribute("data-voice-playing", message_id)
    ann.page.screenshot(path=output_dir / "voice-message.png")

    # Tom answers the transcript like any other message.
    reply_id = ann.wait_reply_started()
    ann.wait_reply_finished(reply_id)
