"""tomchat as ``tomchat serve`` runs it, with the stamped demo character.

``python -m bench.tomchat_server --port P --database-url URL --delay-ms 20 --chunks 250``:
the same ``create_app`` and uvicorn as ``tomchat serve``; only the chat model is swapped for
:class:`bench.stamped.StampedDemoModel`, whose chunks carry the moment they were produced.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import uvicorn

from bench.stamped import StampedDemoModel
from tomchat.app import create_app
from tomchat.settings import Settings
from tomchat.store.migrate import upgrade


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=250)
    args = parser.parse_args()

    media = Path(tempfile.mkdtemp(prefix="tomchat-bench-media-"))
    settings = Settings.from_env(
        {},
        database_url=args.database_url,
        host="127.0.0.1",
        port=args.port,
        media_dir=media,
        demo_delay_ms=args.delay_ms,
    )
    upgrade(settings.database_url)
    app = create_app(settings, migrate=False)
    model = StampedDemoModel(args.delay_ms, args.chunks)
    app.services.model = model
    app.services.conversation.model = model
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
