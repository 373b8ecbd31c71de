"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from castbridge.store import migrate
from castbridge.web.deps import resources_of
from castbridge.web.security import admin_allowed

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready to take traffic: database reachable and migrated, HighLevel configured",
    responses={503: {"description": "Not ready; `problems` says what is missing"}},
)
async def readyz(request: Request) -> JSONResponse:
    resources = resources_of(request)
    detailed = admin_allowed(request, resources.settings)
    problems: list[str] = []
    checks: dict[str, Any] = {}
    try:
        async with resources.store.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current = await migrate.current_revision(resources.store.engine)
        head = migrate.head_revision()
        checks["schema"] = {"current": current, "head": head}
        if current != head:
            problems.append(
                f"database schema at {current}, expected {head}: run castbridge db upgrade"
            )
    except Exception as exc:
        checks["database"] = "unreachable"
        problems.append(f"database unreachable: {type(exc).__name__}")
    missing = resources.settings.missing_for_highlevel()
    if missing:
        problems.append("HighLevel settings missing: " + ", ".join(missing))
    if resources.webhook_keys.empty:
        problems.append("no webhook public keys configured (GHL_WEBHOOK_KEYS)")
    if resources.worker is not None:
        checks["worker"] = {"running": True, "in_flight": resources.worker.in_flight}
    status = "ready" if not problems else "not ready"
    if not detailed:
        # CASTBRIDGE_ADMIN_TOKEN is set and was not given: the verdict only.
        return JSONResponse({"status": status}, status_code=200 if not problems else 503)
    body = {"status": status, "problems": problems, **checks}
    return JSONResponse(body, status_code=200 if not problems else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics(request: Request) -> Response:
    """Counters of this process, and queue gauges read from the database at scrape time."""
    import contextlib
    from datetime import UTC, datetime

    from castbridge import metrics as m
    from castbridge.store import accounts as account_store
    from castbridge.store import jobs as job_store

    resources = resources_of(request)
    with contextlib.suppress(Exception):
        async with resources.store.read() as session:
            depths = await job_store.lane_depths(session)
            paused = await account_store.paused(session)
        now = datetime.now(UTC)
        seen = set()
        for lane, count, oldest in depths:
            seen.add(lane)
            m.QUEUE_DEPTH.labels(lane).set(count)
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            m.OLDEST_DUE_SECONDS.labels(lane).set(max(0.0, age))
        for lane in job_store.LANES:
            if lane not in seen:
                m.QUEUE_DEPTH.labels(lane).set(0)
                m.OLDEST_DUE_SECONDS.labels(lane).set(0)
        m.ACCOUNTS_PAUSED.set(len(paused))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
