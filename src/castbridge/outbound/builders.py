"""The jobs and bodies outbound code queues in several places: a HighLevel report, its error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from castbridge.config import Settings
from castbridge.store.jobs import NewJob


def report_job(
    settings: Settings,
    *,
    location_id: str,
    created_at: datetime,
    status: str,
    code: str | None = None,
    text: str | None = None,
    force: bool = False,
) -> NewJob:
    """A HighLevel status report, no sooner than the not-downstreamed window allows."""
    earliest = created_at + timedelta(seconds=settings.report_initial_delay_seconds)
    payload: dict[str, Any] = {"status": status}
    if text is not None:
        payload["error"] = error_body(code, text)
    if force:
        payload["force"] = True
    return NewJob(
        kind="report",
        lane="report",
        run_at=max(datetime.now(UTC), earliest),
        payload=payload,
        location_id=location_id,
    )


def error_body(code: str | None, message: str) -> dict[str, str]:
    """HighLevel's ErrorDto: all three strings (ghl.md §8); `type` is "saas" (uncertain)."""
    return {"code": (code or "ERROR")[:64], "type": "saas", "message": message[:500]}
