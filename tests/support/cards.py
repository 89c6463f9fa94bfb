"""Character cards as people upload them: Character Card V2 data and real PNG files (made by
Pillow) carrying a card in a text chunk."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from PIL import Image, PngImagePlugin


def png(color: tuple[int, int, int] = (200, 40, 90), size: int = 8, **text: str) -> bytes:
    """A real PNG made by Pillow, with ``text`` as tEXt chunks (a card's ``chara``/``ccv3``)."""
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def b64(card: dict[str, Any]) -> str:
    """A card as a PNG text chunk holds it: its JSON, base64."""
    return base64.b64encode(json.dumps(card).encode()).decode()


def v2(name: str, **data: Any) -> dict[str, Any]:
    """A Character Card V2 for ``name``; ``data`` replaces or adds fields of its ``data``."""
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": name,
            "description": "{{char}} is a lighthouse keeper.",
            "personality": "patient",
            "scenario": "",
            "first_mes": f"Ahoy, I'm {name}.",
            "mes_example": "<START>\n{{user}}: hi\n{{char}}: ahoy",
            **data,
        },
    }
