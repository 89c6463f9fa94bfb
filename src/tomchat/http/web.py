"""The built web client at ``/``, with the single-page app's routes falling back to it."""

from __future__ import annotations

from pathlib import Path

from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.response import File

BUILT_CLIENT = Path(__file__).resolve().parent.parent / "static"


def web_router(static_dir: Path | None) -> Router:
    root = (static_dir or BUILT_CLIENT).resolve()

    @get(["/", "/{path:path}"], include_in_schema=False, sync_to_thread=False)
    def client(path: str = "") -> File:
        if not (root / "index.html").is_file():
            raise NotFoundException(
                "the web client is not built: run `npm ci && npm run build` in web/"
            )
        wanted = (root / path.lstrip("/")).resolve()
        # Only files inside the build folder; anything else is a client-side route.
        if path and wanted.is_file() and wanted.is_relative_to(root):
            return File(wanted)
        return File(root / "index.html", content_disposition_type="inline")

    return Router(path="/", route_handlers=[client])
