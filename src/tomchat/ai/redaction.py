"""Keep secrets out of anything that is logged or shown to a room."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Upstream error bodies echo credentials back, sometimes partly masked
# ("Incorrect API key provided: sk-proj-****abcd"); even a fragment stays out.
_KEYISH = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}|\bBearer\s+\S+", re.IGNORECASE)
_MAX = 300


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
            bare = secret.removeprefix("Bearer ").strip()
            if bare:
                text = text.replace(bare, "***")
    text = _KEYISH.sub("***", text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX else text[: _MAX - 1] + "…"
