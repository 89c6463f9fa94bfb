"""The JSON Schema of every payload the server sends; ``python -m tomchat.wire.schema``
prints it. ``scripts/gen-wire-types`` turns it into the web client's TypeScript types.

The root, ``ServerEvents``, names each Socket.IO event the server emits with its payload;
``Acks`` names each client request with what its ack may be; the other definitions are the
payload types.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any

import msgspec
from msgspec import UNSET

from tomchat.wire.payloads import (
    AiAudio,
    AiStart,
    AiTextChunk,
    AlternativeChosen,
    CastAck,
    CastItem,
    CatchUpAck,
    ErrorAck,
    ErrorBody,
    EventPage,
    Kicked,
    Message,
    MessageDeleted,
    MessageEdited,
    MessagePage,
    OkAck,
    Presence,
    RawEvent,
    RoomChanged,
    SendAck,
    SnapshotAck,
    Streaming,
    Typing,
    VoiceAck,
    You,
)

#: The Socket.IO events the server emits, and their payloads.
SERVER_EVENTS: dict[str, type[msgspec.Struct]] = {
    "message": Message,
    "aiStart": AiStart,
    "aiTextChunk": AiTextChunk,
    "aiAudio": AiAudio,
    "aiComplete": Message,
    "presence": Presence,
    "typing": Typing,
    "roomChanged": RoomChanged,
    "kicked": Kicked,
    "messageEdited": MessageEdited,
    "messageDeleted": MessageDeleted,
    "alternativeChosen": AlternativeChosen,
}

#: What each client request's ack is when it succeeds; any of them may be an ``ErrorAck``.
ACKS: dict[str, tuple[type[msgspec.Struct], ...]] = {
    "joinRoom": (SnapshotAck, CatchUpAck),
    "resync": (SnapshotAck, CatchUpAck),
    "sendMessage": (SendAck,),
    "sendVoiceMessage": (VoiceAck,),
    "stopGeneration": (OkAck,),
    "leaveRoom": (OkAck,),
    "typing": (OkAck,),
    "kickMember": (OkAck,),
    "lockRoom": (OkAck,),
    "renameRoom": (OkAck,),
    "setCast": (CastAck,),
    "regenerate": (SendAck,),
    "chooseAlternative": (SendAck,),
    "editMessage": (SendAck,),
    "deleteMessage": (SendAck,),
}

#: REST responses built from the same items.
PAGES: tuple[type[msgspec.Struct], ...] = (MessagePage, EventPage)

_REF = "#/$defs/{name}"


def _types() -> list[type[msgspec.Struct]]:
    acks = [kind for kinds in ACKS.values() for kind in kinds]
    # With the items inside them, so that every definition of the schema has its type here.
    listed: list[type[msgspec.Struct]] = [
        *SERVER_EVENTS.values(),
        *acks,
        ErrorAck,
        Streaming,
        RawEvent,
        ErrorBody,
        You,
        CastItem,
        *PAGES,
    ]
    return list(dict.fromkeys(listed))


def _ref(kind: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _always_present(kind: type[msgspec.Struct]) -> list[str]:
    # The server encodes every field but those left UNSET: a field with a default is on the
    # wire all the same, so for a reader it is required (msgspec's schema describes input).
    return [f.encode_name for f in msgspec.structs.fields(kind) if f.default is not UNSET]


def schema() -> dict[str, Any]:
    kinds = _types()
    by_name = {k.__name__: k for k in kinds}
    _, defs = msgspec.json.schema_components(kinds, ref_template=_REF)
    for name, definition in defs.items():
        kind = by_name[name]
        definition["required"] = _always_present(kind)
        if "description" in definition:  # a docstring
            definition["description"] = inspect.cleandoc(definition["description"]).replace(
                "``", "`"
            )
        definition["additionalProperties"] = False
    defs["Acks"] = {
        "title": "Acks",
        "description": "What each client request is answered with, by event name.",
        "type": "object",
        "properties": {
            name: {"anyOf": [*(_ref(k) for k in kinds_), _ref(ErrorAck)]}
            for name, kinds_ in ACKS.items()
        },
        "required": list(ACKS),
        "additionalProperties": False,
    }
    # The root is ServerEvents: a generator gives the root a type of its own.
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ServerEvents",
        "description": "The Socket.IO events the server emits, by name, with their payloads.",
        "type": "object",
        "properties": {name: _ref(kind) for name, kind in SERVER_EVENTS.items()},
        "required": list(SERVER_EVENTS),
        "additionalProperties": False,
        "$defs": dict(sorted(defs.items())),
    }


def main() -> None:
    sys.stdout.write(json.dumps(schema(), indent=2) + "\n")


if __name__ == "__main__":
    main()
