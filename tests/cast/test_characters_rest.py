"""The character library over REST: JSON, Character Card V2 (JSON and PNG) and V3 round
trips, avatars, edits and archiving; every bad upload refused with nothing written."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.conftest import RunningServer
from tests.support.cards import b64, png, v2
from tomchat.store.schema import character_avatars, events

pytestmark = pytest.mark.timeout(60)


async def counts(server: RunningServer) -> tuple[int, int]:
    async with server.services.db.snapshot() as conn:
        n_events = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
        n_avatars = (
            await conn.execute(select(func.count()).select_from(character_avatars))
        ).scalar_one()
    return int(n_events), int(n_avatars)


async def test_json_card_round_trip_edit_and_archive(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = (await http.get("/api/characters")).json()
        # The offline demo's two characters are there from the start.
        assert [(c["id"], c["name"], c["revision"]) for c in listed] == [
            ("mia", "Mia", 1),
            ("tom", "Tom", 1),
        ]
        card = {
            "name": "Ada",
            "system_prompt": "You are Ada, a mathematician.",
            "greeting": "Hello, I'm Ada.",
            "voice": "ada-voice",
            "description": "Countess of numbers",
            "example_dialogue": "ann: hi\nAda: hello",
        }
        created = await http.post("/api/characters", json=card)
        assert created.status_code == 201, created.text
        ada = created.json()
        assert ada["id"] == "ada" and ada["revision"] == 1 and not ada["hasAvatar"]
        assert (ada["systemPrompt"], ada["greeting"], ada["voice"]) == (
            card["system_prompt"],
            card["greeting"],
            "ada-voice",
        )
        assert (await http.get("/api/characters/ada")).json() == ada
        again = await http.post("/api/characters", json=card)
        assert again.status_code == 409, again.text
        # The character's own stream holds the event; no room lists it.
        recorded = await server.services.store.read_stream("character:ada")
        assert [e.type for e in recorded] == ["character.created"]
        rooms = (await http.get("/api/rooms")).json()["rooms"]
        assert all(not r["id"].startswith("character") for r in rooms)
        # Avatar without a picture: the initial, as SVG.
        placeholder = await http.get("/api/characters/ada/avatar")
        assert placeholder.headers["content-type"].startswith("image/svg+xml")
        assert b">A</text>" in placeholder.content

        edited = await http.put(
            "/api/characters/ada", json={**card, "greeting": "Good evening.", "id": "ada"}
        )
        assert edited.status_code == 200, edited.text
        assert (edited.json()["revision"], edited.json()["greeting"]) == (2, "Good evening.")
        old = await server.services.library.at_revision("ada", 1)
        assert old is not None and old.greeting == "Hello, I'm Ada."

        assert (await http.delete("/api/characters/ada")).status_code == 204
        assert "ada" not in [c["id"] for c in (await http.get("/api/characters")).json()]
        archived = (await http.get("/api/characters?archived=true")).json()
        assert [c["archived"] for c in archived if c["id"] == "ada"] == [True]
        assert (await http.get("/api/characters/nobody")).status_code == 404


async def test_v2_json_v2_png_and_v3_png_cards(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = await http.post("/api/characters", json=v2("Keeper"))
        assert made.status_code == 201, made.text
        keeper = made.json()
        assert keeper["greeting"] == "Ahoy, I'm Keeper."
        assert keeper["description"] == "Keeper is a lighthouse keeper."
        assert "Keeper's personality: patient" in keeper["systemPrompt"]

        picture = png(chara=b64(v2("Pim", extensions={"tomchat": {"voice": "pim-voice"}})))
        up = await http.post("/api/characters", files={"file": ("pim.png", picture, "image/png")})
        assert up.status_code == 201, up.text
        pim = up.json()
        assert (pim["id"], pim["voice"], pim["hasAvatar"]) == ("pim", "pim-voice", True)
        avatar = await http.get(pim["avatarUrl"])
        assert avatar.status_code == 200
        assert avatar.headers["content-type"] == "image/png"
        assert avatar.content == picture  # the card's own picture, byte for byte
        assert "immutable" in avatar.headers["cache-control"]

        v3 = {"spec": "chara_card_v3", "spec_version": "3.0", "data": v2("Vee")["data"]}
        # A V3 PNG carries the V3 card in ``ccv3`` (and often a V2 copy in ``chara``).
        both = png((1, 2, 3), ccv3=b64(v3), chara=b64(v2("Old Vee")))
        up3 = await http.post(
            "/api/characters", content=both, headers={"content-type": "image/png"}
        )
        assert up3.status_code == 201, up3.text
        assert (up3.json()["id"], up3.json()["name"]) == ("vee", "Vee")

        # A separate avatar with a JSON card, as a form.
        face = png((9, 9, 9), size=16)
        form = await http.post(
            "/api/characters",
            files={
                "file": ("card.json", json.dumps(v2("Faced")).encode(), "application/json"),
                "avatar": ("face.png", face, "image/png"),
            },
        )
        assert form.status_code == 201, form.text
        assert (await http.get(form.json()["avatarUrl"])).content == face


def noise_png(size: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(out, "PNG")
    return out.getvalue()


async def test_every_bad_upload_is_refused_and_nothing_is_written(server: RunningServer) -> None:
    card_png = png(chara=b64(v2("Broken")))
    # Damage the picture's data (not the card): its checksum no longer matches.
    at = card_png.index(b"IDAT") + 6
    damaged = card_png[:at] + bytes([card_png[at] ^ 0xFF]) + card_png[at + 1 :]
    big = noise_png(900)
    assert len(big) > 2 * 1024 * 1024
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, "JPEG")
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {
                "files": {
                    "file": ("c.json", json.dumps(v2("Ok")).encode(), "application/json"),
                    "avatar": ("a.png", b"hello", "image/png"),
                }
            },
            "the avatar is not an image Pillow can read",
        ),
        ({"files": {"file": ("c.jpg", jpeg.getvalue(), "image/jpeg")}}, "not a character card"),
        ({"files": {"file": ("plain.png", png(), "image/png")}}, "no embedded character card"),
        ({"json": v2("")}, "data.name must be a non-empty string"),
        ({"json": {"spec": "chara_card_v2", "data": {"first_mes": "hi"}}}, "data.name"),
        (
            {
                "files": {
                    "file": ("c.json", json.dumps(v2("Big")).encode(), "application/json"),
                    "avatar": ("big.png", big, "image/png"),
                }
            },
            "larger than 2 MiB",
        ),
        ({"files": {"file": ("broken.png", damaged, "image/png")}}, "not an image Pillow can read"),
        (
            {"json": {"name": "Ada", "system_prompt": 5, "greeting": "hi"}},
            "system_prompt must be a string, not int",
        ),
        ({"json": v2("Ada", description=["a", "list"])}, "data.description must be a string"),
        (
            {"json": {"name": "Ada", "system_prompt": "x", "greeting": "y", "colour": "red"}},
            "unknown field(s) colour",
        ),
        (
            {"content": b"not json", "headers": {"content-type": "application/json"}},
            "not valid JSON",
        ),
    ]
    async with httpx.AsyncClient(base_url=server.url) as http:
        before_list = (await http.get("/api/characters?archived=true")).json()
        before = await counts(server)
        for request, said in cases:
            answer = await http.post("/api/characters", **request)
            assert answer.status_code == 400, (said, answer.text)
            problem = answer.json()
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert said in problem["detail"], (said, problem)
        # An edit with a bad card leaves the character as it was, too.
        bad_edit = await http.put("/api/characters/tom", json={"name": 7})
        assert bad_edit.status_code == 400
        assert await counts(server) == before
        assert (await http.get("/api/characters?archived=true")).json() == before_list
