"""``in_reply_to`` names exactly the messages a reply's context held: under a burst of
concurrent messages (many landing while a reply is being started) every user message is
answered by exactly one reply, that reply is the first started after it, and its text is
the demo model's answer to the last message it names — the newest one it was shown."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.conftest import ServerFactory
from tests.support.polling import eventually
from tests.support.room_client import RoomClient
from tests.support.room_log import room_log
from tomchat.ai.demo import compose_reply
from tomchat.ai.protocols import ChatTurn
from tomchat.domain.events import MessagePosted, ReplyCompleted, ReplyStarted

pytestmark = pytest.mark.timeout(90)


async def test_in_reply_to_is_exact_under_a_burst(server_factory: ServerFactory) -> None:
    server = await server_factory(demo_delay_ms=1)
    url = server.settings.database_url
    people = [RoomClient(server.url, "burst", f"user{i}") for i in range(8)]
    for p in people:
        await p.connect()
        await p.join()
    rng = random.Random(13)

    refused = 0

    async def chatter(p: RoomClient) -> None:
        nonlocal refused
        for n in range(6):
            await asyncio.sleep(rng.random() * 0.05)
            text = f"{p.username} says thing {n} about topic{rng.randrange(99)}"
            ack = await p.send(text)
            # 48 messages may outrun the replies on a loaded machine: past the room's
            # queue of waiting messages the server refuses with a delay, and a client
            # sends again after it (a refused message is not in the log).
            while not ack["ok"]:
                assert ack["error"]["code"] == "rate_limited", ack
                refused += 1
                await asyncio.sleep(ack["error"]["retryAfter"])
                ack = await p.send(text)

    await asyncio.gather(*(chatter(p) for p in people))

    async def all_answered() -> bool:
        log = await room_log(url, "burst")
        asked = {e.event.message_id for e in log if isinstance(e.event, MessagePosted)}
        named = {m for e in log if isinstance(e.event, ReplyStarted) for m in e.event.in_reply_to}
        done = {e.event.message_id for e in log if isinstance(e.event, ReplyCompleted)}
        started = {e.event.message_id for e in log if isinstance(e.event, ReplyStarted)}
        return asked <= named and started <= done

    await eventually(all_answered, timeout=60, what="every message answered")
    for p in people:
        await p.disconnect()

    log = await room_log(url, "burst")
    waiting: list[MessagePosted] = []
    said: dict[str, MessagePosted] = {}
    replies = 0
    for e in log:
        if isinstance(e.event, MessagePosted):
            waiting.append(e.event)
            said[e.event.message_id] = e.event
        elif isinstance(e.event, ReplyStarted) and e.event.in_reply_to:
            # Exactly the messages since the previous reply started, in log order.
            assert e.event.in_reply_to == tuple(m.message_id for m in waiting), e.version
            waiting = []
            replies += 1
    assert waiting == []
    texts = {e.event.message_id: e.event for e in log if isinstance(e.event, ReplyCompleted)}
    for e in log:
        if isinstance(e.event, ReplyStarted) and e.event.in_reply_to:
            last = said[e.event.in_reply_to[-1]]
            expected = compose_reply([ChatTurn("user", f"{last.username}: {last.content}")])
            assert texts[e.event.message_id].content == expected, "its context ended there"
    assert len(said) == 48
    print(f"\n{len(said)} messages answered by {replies} replies ({refused} refused at first)")
