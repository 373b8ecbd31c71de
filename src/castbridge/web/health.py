"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from castbridge.store import migrate
from castbridge.web.deps import resources_of

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
    problems: list[str] = []
    checks: dict[str, Any] = {}
    try:
        async with resources.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current = await migrate.current_revision(resources.engine)
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
    if resources.settings.cast_api_key is None:
        checks["cast_default_key"] = "not set (locations need their own key)"
    if resources.worker is not None:
        checks["worker"] = {"running": True, "in_flight": resources.worker.in_flight}
    body = {"status": "ready" if not problems else "not ready", "problems": problems, **checks}
    return JSONResponse(body, status_code=200 if not problems else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
