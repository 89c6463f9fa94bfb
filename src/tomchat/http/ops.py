"""Operations endpoints: readiness for load balancers, Prometheus metrics."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from tomchat import metrics
from tomchat.cluster.bus import Cluster
from tomchat.lifecycle import Lifecycle
from tomchat.store.database import Database
from tomchat.store.migrate import is_current


class Readiness(msgspec.Struct):
    ready: bool
    status: str  # "ready", "starting" or "draining"
    database: str  # "ok" or "unavailable"
    migrations: str  # "current", "behind" or "unknown"
    redis: str  # "ok", "unavailable" or "disabled"


async def _migrations(db: Database) -> tuple[str, str]:
    try:
        async with db.snapshot() as conn:
            current = await is_current(conn)
    except Exception:
        return "unavailable", "unknown"
    return "ok", "current" if current else "behind"


@get("/api/ready", tags=["health"])
async def ready(
    db: NamedDependency[Database],
    cluster: NamedDependency[Cluster],
    lifecycle: NamedDependency[Lifecycle],
) -> Response[Readiness]:
    """200 when this process should get traffic: started, not draining, its database reachable
    at the newest schema and its Redis (if any) answering; 503 otherwise."""
    database, migrations = await _migrations(db)
    reachable = await cluster.ping()
    redis = "disabled" if reachable is None else "ok" if reachable else "unavailable"
    status = "draining" if lifecycle.draining else "ready" if lifecycle.started else "starting"
    ok = (
        status == "ready"
        and database == "ok"
        and migrations == "current"
        and redis != "unavailable"
    )
    body = Readiness(ok, status, database, migrations, redis)
    return Response(body, status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE)


@get("/metrics", tags=["health"], include_in_schema=False)
async def prometheus_metrics() -> Response[bytes]:
    body, content_type = metrics.exposition()
    # Litestar adds the charset of text/* itself: once, not twice.
    return Response(body, media_type=content_type.split("; charset=")[0])
