"""The one place events are turned into stored/wire JSON and back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from tomchat.domain.character import slug
from tomchat.domain.events import Event, event_type

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _reply_completed_without_ending(data: dict[str, Any]) -> dict[str, Any]:
    """``reply.completed`` before finish reasons and usage were kept: neither is known."""
    return {"finish_reason": None, "usage": None, **data}


def _room_created_with_one_character(data: dict[str, Any]) -> dict[str, Any]:
    """``room.created {name, character}`` before casts: a cast of that one character, at the
    first revision, answering one at a time."""
    name = data.get("character")
    cast = [{"id": slug(name), "name": name, "revision": 1}] if isinstance(name, str) else []
    return {**data, "cast": cast, "reply_mode": data.get("reply_mode", "single")}


# Old data shapes, by event type: a marker every current ``data`` of that type contains (so
# the check costs a byte search, not a parse), and what turns the older shape into the current.
_UPCASTERS: dict[str, tuple[bytes, Upcaster]] = {
    "reply.completed": (b'"finish_reason"', _reply_completed_without_ending),
    "room.created": (b'"cast"', _room_created_with_one_character),
}


def upcast(type_: str, body: bytes) -> bytes:
    """The stored ``data`` of an event in the current shape of its type."""
    found = _UPCASTERS.get(type_)
    if found is None or found[0] in body:
        return body
    data = msgspec.json.decode(body)
    if not isinstance(data, dict):
        return body  # not an event's data at all: let decoding say so
    return _encoder.encode(found[1](data))


_prefix_lengths: dict[type, int] = {}


def encode_data(event: Event) -> bytes:
    """The ``data`` JSON of an event (its fields, without the type tag)."""
    encoded = _encoder.encode(event)
    # msgspec always writes the tag first: drop `"type":"…",` to keep data and type apart.
    prefix_len = _prefix_lengths.get(type(event))
    if prefix_len is None:
        prefix_len = 8 + len(_encoder.encode(event_type(event)))  # `{"type":` and the tag
        _prefix_lengths[type(event)] = prefix_len
    if len(encoded) == prefix_len + 1:
        return b"{}"
    return b"{" + encoded[prefix_len + 1 :]


def decode_event(type_: str, data: bytes | str) -> Event:
    """Rebuild an event from its stored type and data."""
    raw = data.encode() if isinstance(data, str) else data
    # The tag lives in its own column; splice it in rather than re-parsing into a dict.
    body = upcast(type_, raw.strip())
    if body == b"{}":
        spliced = b'{"type":' + _encoder.encode(type_) + b"}"
    else:
        spliced = b'{"type":' + _encoder.encode(type_) + b"," + body[1:]
    return _decoder.decode(spliced)


def data_dict(event: Event) -> dict[str, Any]:
    """The event's ``data`` as plain Python values (for wire payloads)."""
    out = msgspec.to_builtins(event)
    assert isinstance(out, dict)
    out.pop("type", None)
    return out


__all__ = ["data_dict", "decode_event", "encode_data", "event_type", "upcast"]
