"""The built web client at ``/``, with the single-page app's routes falling back to it."""

from __future__ import annotations

from pathlib import Path

from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import File

BUILT_CLIENT = Path(__file__).resolve().parent.parent / "static"

# Vite puts a content hash in every name under assets/: those never change.
_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
# index.html names the current assets, so it must be checked on every load.
_REVALIDATE = {"Cache-Control": "no-cache"}


def web_router(static_dir: Path | None) -> Router:
    root = (static_dir or BUILT_CLIENT).resolve()

    def serve(path: str) -> File:
        if not (root / "index.html").is_file():
            raise NotFoundException(
                "the web client is not built: run `npm ci && npm run build` in web/"
            )
        wanted = (root / path.lstrip("/")).resolve()
        # Only files inside the build folder; anything else is a client-side route.
        if path.strip("/") and wanted.is_file() and wanted.is_relative_to(root):
            # The filename gives the media type; inline so the browser uses, not saves, it.
            immutable = wanted.parent == root / "assets"
            return File(
                wanted,
                filename=wanted.name,
                content_disposition_type="inline",
                headers=_IMMUTABLE if immutable else _REVALIDATE,
            )
        return File(
            root / "index.html",
            filename="index.html",
            content_disposition_type="inline",
            headers=_REVALIDATE,
        )

    @get("/", include_in_schema=False, sync_to_thread=False)
    def client_root() -> File:
        return serve("")

    @get("/{path:path}", include_in_schema=False, sync_to_thread=False)
    def client(path: FromPath[str]) -> File:
        return serve(path)

    return Router(path="/", route_handlers=[client_root, client])
