"""The running parts of one tomchat process, built from settings and shared by every edge."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tomchat.ai.demo import DEMO_GREETING_SUFFIX
from tomchat.ai.protocols import ChatModel
from tomchat.ai.providers import build_chat_model
from tomchat.conversation import Conversation
from tomchat.domain.character import TOM, Character
from tomchat.settings import Settings
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.rooms import RoomReader

if TYPE_CHECKING:
    from tomchat.live.server import LiveServer


@dataclass
class Services:
    settings: Settings
    db: Database
    store: EventStore
    reader: RoomReader
    model: ChatModel
    character: Character
    conversation: Conversation
    live: LiveServer | None = None  # set by the app that mounts Socket.IO

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(settings.database_url)
        store = EventStore(db)
        reader = RoomReader(db)
        model = build_chat_model(settings)
        character: Character = TOM
        if settings.llm == "demo":
            # People must be able to tell the canned demo from a real model at a glance.
            character = replace(character, greeting=character.greeting + DEMO_GREETING_SUFFIX)
        conversation = Conversation(store, reader, model, character)
        return cls(settings, db, store, reader, model, character, conversation)
