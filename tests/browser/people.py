"""People in a room: one Chromium context each, with the page helpers the tests share."""

from __future__ import annotations

import json
import urllib.request
import uuid
from dataclasses import dataclass, field

from playwright.sync_api import BrowserContext, Locator, Page, expect

REPLY_TIMEOUT_MS = 30_000


def new_room_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Person:
    name: str
    base_url: str
    context: BrowserContext
    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    # --- navigation -------------------------------------------------------------------

    def open_room(self, room_id: str) -> None:
        self.page.goto(f"{self.base_url}/room/{room_id}")
        self.expect_live()

    def expect_live(self, timeout: float = 15_000) -> None:
        expect(self.connection).to_have_attribute("data-state", "live", timeout=timeout)

    # --- what is on screen ------------------------------------------------------------

    @property
    def connection(self) -> Locator:
        return self.page.get_by_test_id("connection")

    @property
    def messages(self) -> Locator:
        return self.page.locator("[data-testid=message]")

    @property
    def streaming(self) -> Locator:
        return self.page.locator("[data-testid=message][data-streaming=true]")

    def message(self, message_id: str) -> Locator:
        return self.page.locator(f"[data-testid=message][data-message-id='{message_id}']")

    def content_of(self, message_id: str) -> Locator:
        return self.message(message_id).get_by_test_id("message-content")

    def message_ids(self) -> list[str]:
        ids: list[str] = self.messages.evaluate_all("els => els.map(e => e.dataset.messageId)")
        return ids

    # --- doing things -----------------------------------------------------------------

    def send(self, text: str) -> None:
        self.page.get_by_test_id("message-input").fill(text)
        self.page.get_by_test_id("send-button").click()

    def wait_reply_started(self, min_chars: int = 1) -> str:
        """Wait until a reply is being written and shows some text; its message id."""
        expect(self.streaming).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
        reply = self.streaming.first
        message_id = reply.get_attribute("data-message-id")
        assert message_id
        self.page.wait_for_function(
            """([id, n]) => {
                const el = document.querySelector(`[data-message-id="${id}"] [data-testid=message-content]`);
                return el && el.textContent.length >= n;
            }""",
            arg=[message_id, min_chars],
            timeout=REPLY_TIMEOUT_MS,
        )
        return message_id

    def wait_reply_finished(self, message_id: str, status: str = "complete") -> str:
        reply = self.message(message_id)
        expect(reply).to_have_attribute("data-status", status, timeout=REPLY_TIMEOUT_MS)
        text = self.content_of(message_id).text_content()
        assert text is not None
        return text


def rest_json(base_url: str, path: str) -> object:
    with urllib.request.urlopen(f"{base_url}{path}", timeout=10) as response:
        return json.load(response)


def rest_message(base_url: str, room_id: str, message_id: str) -> dict[str, object]:
    """The message as the server's transcript holds it (the truth the screens must match)."""
    page = rest_json(base_url, f"/api/rooms/{room_id}/messages?limit=200")
    assert isinstance(page, dict)
    for message in page["messages"]:
        if message["id"] == message_id:
            assert isinstance(message, dict)
            return message
    raise AssertionError(f"message {message_id} is not in room {room_id}")
