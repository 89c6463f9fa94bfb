"""The running parts of one tomchat process, built from settings and shared by every edge."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import socketio

from tomchat.ai.characters import load_character
from tomchat.ai.demo import DEMO_GREETING_SUFFIX
from tomchat.ai.protocols import ChatModel, Transcriber
from tomchat.chat.access import RoomAccess
from tomchat.chat.conversation import Conversation
from tomchat.chat.identity import People, TrustedProxy
from tomchat.chat.memory import RoomMemory
from tomchat.chat.tree import Tree
from tomchat.chat.voice import Voice
from tomchat.cluster.bus import Cluster
from tomchat.cluster.presence import Presence, SharedPresence
from tomchat.cluster.ratelimit import RateLimitStores
from tomchat.domain.character import MIA, Character
from tomchat.live.publisher import Publisher
from tomchat.live.server import LiveServer
from tomchat.live.voice_messages import VoiceMessages
from tomchat.media.files import MediaStore
from tomchat.providers import build_chat_model, build_speech, build_transcriber
from tomchat.settings import Settings
from tomchat.store.characters import CharacterLibrary
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.leases import ReplyLeases
from tomchat.store.migrate import upgrade_async
from tomchat.store.rooms import RoomReader

log = logging.getLogger("tomchat")


@dataclass
class Services:
    """Every part, built at once (a bad setting fails here, before a port is opened), then
    started and closed together by :meth:`running`."""

    settings: Settings
    db: Database
    store: EventStore
    reader: RoomReader
    model: ChatModel
    character: Character
    conversation: Conversation
    library: CharacterLibrary  # the characters, each its own stream in the store
    media: MediaStore
    voice: Voice | None  # speaks replies; None without TOMCHAT_TTS
    transcriber: Transcriber | None  # hears voice messages; None without TOMCHAT_ASR
    cluster: Cluster  # this process among the others (Redis when scaled out)
    presence: Presence  # who is in which room, of every process
    access: RoomAccess  # private rooms' tokens
    people: People  # names bound to people, hosts
    trusted: TrustedProxy | None  # the single sign-on proxy, when configured
    live: LiveServer  # the Socket.IO handlers
    publisher: Publisher  # committed events out to the rooms' sockets
    tree: Tree  # regenerate, choose, edit, delete, fork

    @classmethod
    def build(cls, settings: Settings, sio: socketio.AsyncServer) -> Services:
        db = Database(settings.database_url, settings.session_settings)
        store = EventStore(db)
        reader = RoomReader(db)
        character: Character = load_character(settings.character)
        model = build_chat_model(settings)
        media = MediaStore(settings.media_dir)
        speech = build_speech(settings)
        voice = Voice(speech, media, store.append, character.voice) if speech else None
        transcriber = build_transcriber(settings)
        # People must be able to tell the canned demo from a real model at a glance.
        greeting_note = DEMO_GREETING_SUFFIX if settings.llm == "demo" else ""
        library = CharacterLibrary(store)
        cluster = Cluster.build(settings.redis_url, settings.redis_prefix)
        leases = ReplyLeases(db, cluster.identity, settings.reply_lease_seconds)
        memory = RoomMemory(
            store,
            reader,
            model,
            context_tokens=settings.llm_context_tokens,
            max_tokens=settings.llm_max_tokens,
        )
        conversation = Conversation(
            store,
            reader,
            model,
            character,
            voice,
            leases=leases,
            bus=cluster.bus,
            memory=memory,
            library=library,
            greeting_note=greeting_note,
        )
        presence = (
            SharedPresence(cluster.redis, cluster.prefix, cluster.identity)
            if cluster.redis is not None
            else Presence()
        )
        access = RoomAccess(db)

        async def reserved_names(room_id: str) -> set[str]:
            # The names of the room's cast (the default cast for a room not made yet) and of
            # the server's default character: a person can take none of them.
            info = await reader.room(room_id)
            cast = info.cast if info is not None and info.cast else ()
            names = {m.name for m in cast} or {c.name for c in conversation.default_cast}
            return names | {character.name}

        people = People(db, store, reader, reserved_names)
        trusted = (
            TrustedProxy(settings.trusted_user_header, settings.trusted_proxies)
            if settings.trusted_user_header
            else None
        )
        tree = Tree(store, reader, conversation, media, access)
        live = LiveServer(
            sio,
            conversation,
            reader,
            VoiceMessages(conversation, media, transcriber),
            access=access,
            live_limits=settings.live_limits,
            presence=presence,
            people=people,
            trusted=trusted,
            rate_limits=RateLimitStores(settings.redis_url, settings.redis_prefix),
            tree=tree,
        )
        publisher = Publisher(sio, reader)
        store.subscribe(publisher.on_commit)
        return cls(
            settings=settings,
            db=db,
            store=store,
            reader=reader,
            model=model,
            character=character,
            conversation=conversation,
            library=library,
            media=media,
            voice=voice,
            transcriber=transcriber,
            cluster=cluster,
            presence=presence,
            access=access,
            people=people,
            trusted=trusted,
            live=live,
            publisher=publisher,
            tree=tree,
        )

    async def _configured_characters(self) -> None:
        """Put the configured character (``TOMCHAT_CHARACTER`` or Tom) in the library as the
        default; the offline demo adds Mia, so a new room is a group scene."""
        configured = [self.character]
        if self.settings.llm == "demo" and self.character.key != MIA.key:
            configured.append(MIA)
        cast = [await self.library.ensure(c) for c in configured]
        self.conversation.set_default_cast(cast)
        self.character = cast[0]

    @asynccontextmanager
    async def running(self, *, migrate: bool = True) -> AsyncIterator[Services]:
        """Start everything; on leaving (or on a failed start) close it, in one exit stack.

        Closing runs in the reverse order of the pushes below: replies stop first; voice
        and transcriber close before the store (the voice records the audio); the publisher
        after the store, so the store's last commits still go out; the database last. Each
        close is harmless on a part that never started, so the pushes can come in this
        order, ahead of the starts, whose order is the one the parts need."""
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.db.dispose)
            stack.push_async_callback(self.cluster.close)
            stack.push_async_callback(self.presence.close)
            stack.push_async_callback(self.model.aclose)
            stack.push_async_callback(self.publisher.close)
            stack.push_async_callback(self.store.close)
            if self.transcriber is not None:
                stack.push_async_callback(self.transcriber.aclose)
            if self.voice is not None:
                stack.push_async_callback(self.voice.aclose)
            if migrate:
                await upgrade_async(self.settings.database_url)
            self.settings.media_dir.mkdir(parents=True, exist_ok=True)
            self.store.start()
            await self._configured_characters()
            self.publisher.start()
            await self.cluster.start()
            await self.presence.start(self.live.announce)
            recovered = await self.conversation.recover()
            if recovered:
                log.warning("taking over %d rooms left mid-reply by stopped processes", recovered)
            stack.push_async_callback(self.conversation.close)
            self.conversation.start()
            yield self
