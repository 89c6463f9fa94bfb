"""What clients may send, checked at the edge before anything touches the log."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from tomchat.domain import limits
from tomchat.domain.errors import TomchatError

RoomId = Annotated[str, msgspec.Meta(pattern=limits.ROOM_ID_STRICT)]
Username = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_USERNAME_CHARS)]
Content = Annotated[str, msgspec.Meta(min_length=1)]
ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_CLIENT_ID_CHARS)]
MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Version = Annotated[int, msgspec.Meta(ge=0, le=limits.MAX_VERSION)]
# A negative ``since`` asks for the snapshot; the bounds keep it a number every database holds.
Since = Annotated[int, msgspec.Meta(ge=-limits.MAX_VERSION, le=limits.MAX_VERSION)]
Token = Annotated[str, msgspec.Meta(max_length=limits.MAX_TOKEN_CHARS)]
# A secret the client makes once and keeps (chat.identity binds names to its digest).
MemberKey = Annotated[str, msgspec.Meta(min_length=16, max_length=128)]
RoomName = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_ROOM_NAME_CHARS)]


class PayloadError(TomchatError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def storable(name: str, value: str | None) -> None:
    """Text that every database stores as given: no NUL (PostgreSQL refuses it) and no lone
    surrogate (not UTF-8 at all). Raising ValueError makes msgspec report a bad field."""
    if value is None:
        return
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode text") from None


def without_format_characters(text: str) -> str:
    """``text`` without Unicode format characters (category Cf: zero-width spaces and
    joiners, bidi controls), which change no letter of a name but make lookalikes."""
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


class _Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    pass


class JoinRoom(_Payload, frozen=True):
    roomId: RoomId
    username: Username
    since: Since | None = None
    token: Token | None = None
    memberKey: MemberKey | None = None
    hostToken: Token | None = None

    def __post_init__(self) -> None:
        # Format characters (zero-width spaces, bidi marks) are dropped from the name later,
        # as its canonical form drops them: here they are not what makes a name unprintable.
        shown = without_format_characters(self.username)
        if not shown.isprintable() or not shown.strip():
            raise ValueError("username must be 1-32 printable characters")
        storable("token", self.token)
        storable("hostToken", self.hostToken)
        if self.memberKey is not None and not self.memberKey.isprintable():
            raise ValueError("memberKey must be 16-128 printable characters")


class SendMessage(_Payload, frozen=True):
    roomId: RoomId
    content: Content
    clientId: ClientId | None = None

    def __post_init__(self) -> None:
        if not self.content.strip():
            raise ValueError("content must not be blank")
        storable("content", self.content)
        storable("clientId", self.clientId)


class SendVoiceMessage(_Payload, frozen=True):
    roomId: RoomId
    audio: Any  # bytes (a Socket.IO binary attachment) or base64 text; checked by the handler
    mimeType: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    clientId: ClientId | None = None

    def __post_init__(self) -> None:
        storable("mimeType", self.mimeType)
        storable("clientId", self.clientId)


class StopGeneration(_Payload, frozen=True):
    roomId: RoomId
    messageId: MessageId

    def __post_init__(self) -> None:
        storable("messageId", self.messageId)


class Regenerate(_Payload, frozen=True):
    roomId: RoomId
    messageId: MessageId

    def __post_init__(self) -> None:
        storable("messageId", self.messageId)


class ChooseAlternative(Regenerate, frozen=True):
    pass


class EditMessage(_Payload, frozen=True):
    roomId: RoomId
    messageId: MessageId
    content: Content

    def __post_init__(self) -> None:
        if not self.content.strip():
            raise ValueError("content must not be blank")
        storable("messageId", self.messageId)
        storable("content", self.content)


class DeleteMessage(_Payload, frozen=True):
    roomId: RoomId
    messageId: MessageId
    reason: Annotated[str, msgspec.Meta(max_length=limits.MAX_REASON_CHARS)] | None = None

    def __post_init__(self) -> None:
        storable("messageId", self.messageId)
        storable("reason", self.reason)


class Resync(_Payload, frozen=True):
    roomId: RoomId
    since: Version


class LeaveRoom(_Payload, frozen=True):
    roomId: RoomId


class Typing(_Payload, frozen=True):
    roomId: RoomId


class KickMember(_Payload, frozen=True):
    roomId: RoomId
    username: Username


class LockRoom(_Payload, frozen=True):
    roomId: RoomId
    locked: bool


class RenameRoom(_Payload, frozen=True):
    roomId: RoomId
    name: RoomName

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("name must not be blank")
        storable("name", self.name)


CharacterId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,63}\Z")]


class SetCast(_Payload, frozen=True):
    roomId: RoomId
    cast: Annotated[list[CharacterId], msgspec.Meta(min_length=1, max_length=8)]
    replyMode: Literal["single", "all"] | None = None


P = TypeVar("P", bound=_Payload)


def parse(kind: type[P], data: Any) -> P:
    """Validate a client payload; raise ``PayloadError`` with a message a person can act on."""
    if not isinstance(data, dict):
        raise PayloadError("bad_request", f"expected an object, got {type(data).__name__}")
    content = data.get("content")
    if isinstance(content, str) and len(content) > limits.MAX_CONTENT_CHARS:
        raise PayloadError(
            "too_large",
            f"content is {len(content)} characters; the limit is {limits.MAX_CONTENT_CHARS}",
        )
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise PayloadError("bad_request", _readable(str(exc))) from None


def _readable(message: str) -> str:
    # msgspec says `$.roomId`; clients know the field as `roomId`.
    return message.replace("`$.", "`").replace("- at `$`", "")
