"""Each character of a cast gets its own system prompt, a transcript with every speaker
labelled by name (the fake OpenAI-compatible server sees it) and its own voice (the fake
Fish server gets its ``reference_id``)."""

from __future__ import annotations

import httpx
import pytest

from tests.ai.test_voice_room import Listener, fish, llm, server  # noqa: F401 (fixtures)
from tests.cast.test_cast_rooms import settled
from tests.conftest import RunningServer
from tests.fakes.fish import FakeFish
from tests.fakes.llm import FakeLLM, openai_chunk, openai_stream

pytestmark = pytest.mark.timeout(90)


async def test_each_character_its_prompt_transcript_and_voice(
    server: RunningServer,  # noqa: F811
    llm: FakeLLM,  # noqa: F811
    fish: FakeFish,  # noqa: F811
) -> None:
    mia_card = {
        "name": "Mia",
        "system_prompt": "You are Mia, a precise librarian.",
        "greeting": "Mia here.",
        "voice": "mia-voice",
    }
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/api/characters", json=mia_card)).status_code == 201
        made = await http.post(
            "/api/rooms",
            json={"name": "duo", "id": "duo", "cast": ["tom", "mia"], "replyMode": "all"},
        )
        assert made.status_code == 201, made.text
    llm.script(
        openai_stream([openai_chunk("Morning, ann. Coffee is on.")]),
        openai_stream([openai_chunk("Tea, actually.")]),
    )
    ann = Listener(server.url, "duo", "ann")
    await ann.join()
    await ann.call("sendMessage", {"roomId": "duo", "content": "good morning all"})
    await settled(server, "duo")
    done = ann.of("aiComplete")
    assert [(d["characterId"], d["content"]) for d in done] == [
        ("tom", "Morning, ann. Coffee is on."),
        ("mia", "Tea, actually."),
    ]
    tom_request, mia_request = (r.json()["messages"] for r in llm.requests[-2:])
    tom_prompt = server.services.character.system_prompt
    assert tom_request[0] == {"role": "system", "content": tom_prompt}
    assert tom_request[1:] == [
        {
            "role": "assistant",
            "content": "Hey everyone, I'm Tom. Pull up a chair and tell me what's on your mind.",
        },
        {"role": "user", "content": "ann: good morning all"},
    ]
    assert mia_request[0] == {"role": "system", "content": "You are Mia, a precise librarian."}
    # Mia hears Tom as a speaker of the room, not as herself.
    assert mia_request[1:] == [
        {
            "role": "user",
            "content": "Tom: Hey everyone, I'm Tom. Pull up a chair and tell me what's on your mind.",
        },
        {"role": "user", "content": "ann: good morning all"},
        {"role": "user", "content": "Tom: Morning, ann. Coffee is on."},
    ]
    fish.wait_for(lambda: len(fish.sessions) >= 2)
    voices = [s.request.get("reference_id") for s in fish.sessions[-2:]]
    assert voices == ["tom-voice", "mia-voice"]  # Tom has none of his own: the server's
    await ann.sio.disconnect()
