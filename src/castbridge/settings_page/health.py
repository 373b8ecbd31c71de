"""Delivery health from stored outcomes: per-day counts, rates, the median time to delivery,
and the 7-day chart drawn as inline SVG on the server (no chart library, works offline)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape

from castbridge.store.health import Outcome

DELIVERED = frozenset({"delivered"})
FAILED = frozenset({"failed", "dead"})
# Everything not finished either way: queued, accepted, sent (no reports), unknown.
CANCELLED = frozenset({"cancelled"})


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    delivered: int
    failed: int
    pending: int

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.pending


@dataclass(frozen=True, slots=True)
class Health:
    days: list[Day]
    delivered: int
    failed: int
    pending: int
    last_24h: int
    median_seconds: float | None
    recipients: int

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.pending

    @property
    def delivery_rate(self) -> float | None:
        finished = self.delivered + self.failed
        return self.delivered / finished if finished else None

    @property
    def error_rate(self) -> float | None:
        finished = self.delivered + self.failed
        return self.failed / finished if finished else None


def kind_of(status: str) -> str | None:
    if status in DELIVERED:
        return "delivered"
    if status in FAILED:
        return "failed"
    if status in CANCELLED:
        return None
    return "pending"


def summarise(outcomes: Sequence[Outcome], now: datetime, *, days: int = 7) -> Health:
    first = (now - timedelta(days=days - 1)).date()
    counts: dict[date, dict[str, int]] = {
        first + timedelta(days=i): {"delivered": 0, "failed": 0, "pending": 0} for i in range(days)
    }
    durations: list[float] = []
    recipients: set[str] = set()
    last_24h = 0
    for outcome in outcomes:
        kind = kind_of(outcome.status)
        if outcome.created_at >= now - timedelta(hours=24):
            last_24h += 1
        if kind is None:
            continue
        bucket = counts.get(outcome.created_at.date())
        if bucket is None:
            continue  # outside the window: neither charted nor in the rates
        bucket[kind] += 1
        if outcome.phone_hash:
            recipients.add(outcome.phone_hash)
        if kind == "delivered" and outcome.finished_at is not None:
            durations.append(max(0.0, (outcome.finished_at - outcome.created_at).total_seconds()))
    day_list = [Day(day, c["delivered"], c["failed"], c["pending"]) for day, c in counts.items()]
    return Health(
        days=day_list,
        delivered=sum(d.delivered for d in day_list),
        failed=sum(d.failed for d in day_list),
        pending=sum(d.pending for d in day_list),
        last_24h=last_24h,
        median_seconds=statistics.median(durations) if durations else None,
        recipients=len(recipients),
    )


COLOURS = {"delivered": "#1a7f37", "failed": "#cf222e", "pending": "#8c959f"}


def chart_svg(days: Sequence[Day], *, width: int = 560, height: int = 180) -> str:
    """Stacked bars per day (delivered, failed, pending), with a text alternative."""
    top = max([d.total for d in days] + [1])
    left, bottom, gap = 30, 24, 10
    bar = (width - left - gap * (len(days) + 1)) / max(len(days), 1)
    plot = height - bottom - 8
    summary = "; ".join(
        f"{d.day.isoformat()}: {d.delivered} delivered, {d.failed} failed, {d.pending} pending"
        for d in days
    )
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(summary)}">',
        f'<line x1="{left}" y1="{plot + 8}" x2="{width}" y2="{plot + 8}" stroke="#d0d7de"/>',
        f'<text x="2" y="16" font-size="11" fill="#57606a">{top}</text>',
    ]
    for index, day in enumerate(days):
        x = left + gap + index * (bar + gap)
        y = plot + 8.0
        for kind in ("delivered", "failed", "pending"):
            value = getattr(day, kind)
            if not value:
                continue
            h = plot * value / top
            y -= h
            parts.append(
                f'<rect data-kind="{kind}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[kind]}"><title>{day.day.isoformat()}: '
                f"{value} {kind}</title></rect>"
            )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{height - 6}" font-size="11" fill="#57606a" '
            f'text-anchor="middle">{day.day.strftime("%a %d")}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
