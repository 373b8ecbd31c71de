"""The admin endpoints every sandbox has under `/_sandbox/`: stats, faults, reset, clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from castbridge.sandbox.kit.faults import Faults


class AdminTarget(Protocol):
    @property
    def faults(self) -> Faults: ...

    def set_faults(self, faults: Faults) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def reset_stats(self) -> None: ...

    def advance(self, seconds: float) -> None: ...


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _BadRequest("body must be a JSON object")
    return body


class _BadRequest(Exception):
    pass


def kit_admin_router(target_of: Callable[[Request], AdminTarget]) -> APIRouter:
    """Unauthenticated knobs for tests and demos in another process (a local tool only);
    include it under `/_sandbox`."""
    router = APIRouter()

    def bad(message: str) -> Response:
        return JSONResponse({"error": message}, status_code=400)

    @router.get("/stats")
    async def stats(request: Request) -> Response:
        return JSONResponse(target_of(request).snapshot())

    @router.get("/faults")
    async def get_faults(request: Request) -> Response:
        return JSONResponse(target_of(request).faults.model_dump())

    @router.post("/faults")
    async def set_faults(request: Request) -> Response:
        """Merge the posted fields into the current faults; `{}` changes nothing."""
        target = target_of(request)
        try:
            faults = Faults.model_validate(
                {**target.faults.model_dump(), **_json(await request.body())}
            )
        except (ValidationError, _BadRequest) as exc:
            return bad(str(exc).splitlines()[0])
        target.set_faults(faults)
        return JSONResponse(faults.model_dump())

    @router.post("/reset")
    async def reset(request: Request) -> Response:
        """Clear faults and statistics (accounts and messages stay)."""
        target = target_of(request)
        target.set_faults(Faults())
        target.reset_stats()
        return JSONResponse({"success": True})

    @router.post("/clock")
    async def clock(request: Request) -> Response:
        """`{"advance": seconds}` moves status timelines and TTLs forward."""
        try:
            seconds = _json(await request.body()).get("advance")
        except _BadRequest as exc:
            return bad(str(exc))
        if not isinstance(seconds, int | float) or seconds < 0:
            return bad("advance must be a non-negative number")
        target_of(request).advance(float(seconds))
        return JSONResponse({"success": True})

    return router
