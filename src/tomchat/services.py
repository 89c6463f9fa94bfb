"""The running parts of one tomchat process, built from settings and shared by every edge."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tomchat.ai.characters import load_character
from tomchat.ai.demo import DEMO_GREETING_SUFFIX
from tomchat.ai.protocols import ChatModel, Transcriber
from tomchat.chat.access import RoomAccess
from tomchat.chat.conversation import Conversation
from tomchat.chat.memory import RoomMemory
from tomchat.chat.voice import Voice
from tomchat.cluster.bus import Cluster
from tomchat.domain.character import Character
from tomchat.media.files import MediaStore
from tomchat.providers import build_chat_model, build_speech, build_transcriber
from tomchat.settings import Settings
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.leases import ReplyLeases
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
    media: MediaStore | None = None
    voice: Voice | None = None  # speaks replies; None without TOMCHAT_TTS
    transcriber: Transcriber | None = None  # hears voice messages; None without TOMCHAT_ASR
    cluster: Cluster | None = None  # this process among the others (Redis when scaled out)
    access: RoomAccess = field(init=False)  # private rooms' tokens

    def __post_init__(self) -> None:
        self.access = RoomAccess(self.db)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(settings.database_url)
        store = EventStore(db)
        reader = RoomReader(db)
        character: Character = load_character(settings.character)
        model = build_chat_model(settings)
        media = MediaStore(settings.media_dir)
        speech = build_speech(settings)
        voice = Voice(speech, media, store.append, character.voice) if speech else None
        transcriber = build_transcriber(settings)
        if settings.llm == "demo":
            # People must be able to tell the canned demo from a real model at a glance.
            character = replace(character, greeting=character.greeting + DEMO_GREETING_SUFFIX)
        cluster = Cluster.build(settings)
        leases = ReplyLeases(db, cluster.identity, settings.reply_lease_seconds)
        memory = RoomMemory(
            store,
            reader,
            model,
            context_tokens=settings.llm_context_tokens,
            max_tokens=settings.llm_max_tokens,
        )
        conversation = Conversation(
            store, reader, model, character, voice, leases=leases, bus=cluster.bus, memory=memory
        )
        return cls(
            settings,
            db,
            store,
            reader,
            model,
            character,
            conversation,
            media=media,
            voice=voice,
            transcriber=transcriber,
            cluster=cluster,
        )
