"""Operations endpoints: readiness for load balancers, Prometheus metrics."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from tomchat import metrics
from tomchat.lifecycle import Lifecycle
from tomchat.services import Services
from tomchat.store.migrate import is_current


class Readiness(msgspec.Struct):
    ready: bool
    status: str  # "ready", "starting" or "draining"
    database: str  # "ok" or "unavailable"
    migrations: str  # "current", "behind" or "unknown"
    redis: str  # "ok", "unavailable" or "disabled"


async def _migrations(services: Services) -> tuple[str, str]:
    try:
        async with services.db.snapshot() as conn:
            current = await is_current(conn)
    except Exception:
        return "unavailable", "unknown"
    return "ok", "current" if current else "behind"


@get("/api/ready", tags=["health"])
async def ready(state: State) -> Response[Readiness]:
    """200 when this process should get traffic: started, not draining, its database reachable
    at the newest schema and its Redis (if any) answering; 503 otherwise."""
    lifecycle: Lifecycle = state["lifecycle"]
    services: Services = state["services"]
    database, migrations = await _migrations(services)
    reachable = await services.cluster.ping() if services.cluster is not None else None
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
