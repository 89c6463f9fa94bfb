"""The character library over REST: list, create (JSON or an uploaded Character Card V2/V3,
``.json`` or ``.png``), read, replace, archive, and each character's picture.

Every check runs before anything is written: a bad card, a picture that is not one, or one
over 2 MiB is refused with a 400 problem that says what is wrong, and the library is left as
it was.
"""

from __future__ import annotations

import hashlib
from html import escape
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from tomchat.ai.characters import MAX_CARD_BYTES, CardError, Upload, check_avatar, parse_upload
from tomchat.domain.character import Character
from tomchat.store.characters import CharacterLibrary, CharacterRecord, Picture
from tomchat.wire import outgoing as wire
from tomchat.wire.incoming import PayloadError

CharacterIdParam = Annotated[
    str,
    PathParameter(
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
        description="Character id: a slug of a-z 0-9 -",
        max_length=64,
    ),
]


class CharacterOut(msgspec.Struct):
    id: str
    name: str
    description: str
    systemPrompt: str
    greeting: str
    voice: str | None
    exampleDialogue: str
    avatarUrl: str
    hasAvatar: bool
    revision: int
    archived: bool
    createdAt: str
    updatedAt: str


def _out(record: CharacterRecord) -> CharacterOut:
    c = record.character
    return CharacterOut(
        id=c.key,
        name=c.name,
        description=c.description,
        systemPrompt=c.system_prompt,
        greeting=c.greeting,
        voice=c.voice,
        exampleDialogue=c.example_dialogue,
        avatarUrl=wire.avatar_url(c.key, c.revision),
        hasAvatar=record.avatar is not None,
        revision=c.revision,
        archived=record.archived,
        createdAt=wire.iso(record.created_at),
        updatedAt=wire.iso(record.updated_at),
    )


def _bad(error: CardError) -> PayloadError:
    return PayloadError("bad_request", str(error))


async def _read_upload(request: Request[Any, Any, Any]) -> tuple[Character, Picture | None]:
    """The character and picture a request carries: a JSON card as the body, or a form with
    the card as ``file`` (JSON or PNG) and, optionally, a picture as ``avatar``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    picture: Picture | None = None
    try:
        if kind == "multipart/form-data":
            form = await request.form()
            card = form.get("file")
            if not isinstance(card, UploadFile):
                raise PayloadError("bad_request", "the form needs the card as a file field 'file'")
            upload = parse_upload(await _limited(card, "the card"))
            avatar = form.get("avatar")
            if isinstance(avatar, UploadFile):
                data = await _limited(avatar, "the avatar")
                picture = Picture(check_avatar(data), data)
            elif avatar not in (None, ""):
                raise PayloadError("bad_request", "'avatar' must be an uploaded image file")
        elif kind in ("application/json", "") or kind.endswith("+json"):
            body = await request.body()
            if len(body) > MAX_CARD_BYTES:
                raise CardError("the card is larger than 8 MB")
            if not body.strip():
                raise PayloadError("bad_request", "send a character card as JSON, or a form")
            upload = parse_upload(body)
        elif kind == "image/png":
            upload = parse_upload(await request.body())
        else:
            raise PayloadError(
                "bad_request",
                f"unsupported content type {kind!r}: send JSON, a PNG card or multipart/form-data",
            )
    except CardError as error:
        raise _bad(error) from None
    if picture is None and upload.avatar is not None:
        picture = _card_picture(upload)
    return upload.character, picture


def _card_picture(upload: Upload) -> Picture:
    assert upload.avatar is not None and upload.avatar_type is not None
    return Picture(upload.avatar_type, upload.avatar)


async def _limited(file: UploadFile, what: str) -> bytes:
    data = await file.read(MAX_CARD_BYTES + 1)
    if len(data) > MAX_CARD_BYTES:
        raise CardError(f"{what} is larger than 8 MB")
    return data


def _placeholder(name: str) -> bytes:
    """A character without a picture gets its initial on a colour of its own."""
    hue = int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 360
    initial = escape(name.strip()[:1].upper() or "?")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">'
        f'<rect width="64" height="64" rx="32" fill="hsl({hue},55%,45%)"/>'
        '<text x="32" y="42" font-family="sans-serif" font-size="30" text-anchor="middle" '
        f'fill="#fff">{initial}</text></svg>'
    ).encode()


class CharacterController(Controller):
    path = "/api/characters"
    tags = ["characters"]

    @get("/")
    async def list_characters(
        self,
        library: NamedDependency[CharacterLibrary],
        archived: Annotated[bool, QueryParameter(description="include archived ones")] = False,
    ) -> list[CharacterOut]:
        return [_out(r) for r in await library.list(archived=archived)]

    @post("/", status_code=HTTP_201_CREATED)
    async def create_character(
        self, request: Request[Any, Any, Any], library: NamedDependency[CharacterLibrary]
    ) -> CharacterOut:
        """Add a character: JSON (tomchat's card, or a Character Card V2/V3), a PNG card as
        the body, or a form with ``file`` (the card) and optionally ``avatar``."""
        character, picture = await _read_upload(request)
        return _out(await library.create(character, picture))

    @get("/{character_id:str}")
    async def get_character(
        self, character_id: CharacterIdParam, library: NamedDependency[CharacterLibrary]
    ) -> CharacterOut:
        record = await library.get(character_id)
        if record is None:
            raise NotFoundException(f"no character {character_id!r}")
        return _out(record)

    @put("/{character_id:str}")
    async def replace_character(
        self,
        character_id: CharacterIdParam,
        request: Request[Any, Any, Any],
        library: NamedDependency[CharacterLibrary],
    ) -> CharacterOut:
        """The character's new state (its picture is kept unless a new one comes)."""
        if await library.get(character_id) is None:
            raise NotFoundException(f"no character {character_id!r}")
        character, picture = await _read_upload(request)
        record = await library.update(character_id, character, picture)
        if record is None:
            raise NotFoundException(f"no character {character_id!r}")
        return _out(record)

    @delete("/{character_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def archive_character(
        self, character_id: CharacterIdParam, library: NamedDependency[CharacterLibrary]
    ) -> None:
        """Archive: gone from the listing and from new casts; rooms keep their revision."""
        if not await library.archive(character_id):
            raise NotFoundException(f"no character {character_id!r}")

    @get("/{character_id:str}/avatar", media_type="application/octet-stream")
    async def avatar(
        self,
        character_id: CharacterIdParam,
        library: NamedDependency[CharacterLibrary],
        revision: Annotated[
            int | None, QueryParameter(ge=1, le=2**31, description="the revision a room uses")
        ] = None,
    ) -> Response[bytes]:
        """The character's picture (at ``revision``, when given); its initial when it has none."""
        record = await library.get(character_id)
        if record is None:
            raise NotFoundException(f"no character {character_id!r}")
        # A revision never changes: its picture may be cached for good.
        cache = "public, max-age=31536000, immutable" if revision else "no-cache"
        avatar = await library.avatar_at(character_id, revision)
        picture = await library.picture(avatar.digest) if avatar is not None else None
        if picture is None:
            name = record.character.name
            if revision is not None:
                old = await library.at_revision(character_id, revision)
                name = old.name if old is not None else name
            return Response(
                _placeholder(name),
                media_type="image/svg+xml",
                headers={"Cache-Control": cache},
            )
        assert avatar is not None
        return Response(
            picture.data,
            media_type=picture.content_type,
            headers={"Cache-Control": cache, "ETag": f'"{avatar.digest}"'},
        )
