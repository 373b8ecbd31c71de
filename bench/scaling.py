"""Scaling: intake and pipeline at 1, 10 and 100 locations, and the cost of a 10,000-job backlog."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.harness import (
    LIFTED,
    cast_config,
    cast_pacing,
    castbridge,
    castbridge_settings,
    ghl_config,
    install,
    location_ids,
    percentile,
    sandboxes,
    workdir,
)
from bench.intake import castbridge_intake
from bench.load import Generator, prepare
from bench.pipeline import pipeline_run
from castbridge.store import jobs as job_store
from castbridge.store.db import create_engine, create_sessionmaker

LOCATION_STEPS = (1, 10, 100)
# Raised castbridge pacing for runs whose sandboxes have their limits lifted.
RAISED: dict[str, Any] = {**cast_pacing(LIFTED), "ghl_rate_limit": 10.0}


async def intake_by_locations(requests: int, concurrency: int) -> dict[str, Any]:
    locs = location_ids(max(LOCATION_STEPS))
    out: dict[str, Any] = {}
    with workdir("scaling-intake") as wd:
        async with sandboxes(wd, ghl_config(locs), cast_config()) as sbx:
            for count in LOCATION_STEPS:
                out[str(count)] = await castbridge_intake(
                    sbx, wd / f"cb-{count}", locs[:count], requests, concurrency
                )
    return out


async def claim_timings(database: Path, rounds: int = 20, limit: int = 32) -> dict[str, Any]:
    """Time the worker's claim statement on `database` (rolled back, so nothing changes)."""
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    sessions = create_sessionmaker(engine)
    captured: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE JOBS") and not captured:
            captured.append((statement, params))

    timings = []
    try:
        for _ in range(rounds):
            async with sessions() as session:
                started = time.perf_counter()
                claimed = await job_store.claim(
                    session, lane="send", worker_id="bench", limit=limit, lease_seconds=60
                )
                timings.append((time.perf_counter() - started) * 1000)
                await session.rollback()
        async with sessions() as session:
            queued = await job_store.counts(session)
    finally:
        await engine.dispose()
    plan: list[str] = []
    if captured:
        with sqlite3.connect(database) as conn:
            rows = conn.execute("EXPLAIN QUERY PLAN " + captured[0][0], captured[0][1]).fetchall()
            plan = [str(row[-1]) for row in rows]
    return {
        "jobs": queued,
        "claimed_per_call": len(claimed),
        "claim_p50_ms": round(percentile(timings, 50), 2),
        "claim_p99_ms": round(percentile(timings, 99), 2),
        "query_plan": plan,
    }


def _copy_with_small_queue(source: Path, target: Path, keep: int) -> None:
    """Same table sizes, but only `keep` jobs still queued (the rest look done)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    with sqlite3.connect(target) as conn:
        conn.execute(
            "UPDATE jobs SET state = 'done' WHERE state = 'queued' AND id NOT IN "
            "(SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT ?)",
            (keep,),
        )


async def backlog(prefill: int, batch: int, window: float, concurrency: int) -> dict[str, Any]:
    """Intake and claim cost with `prefill` messages already queued, then the worker's drain."""
    locs = location_ids(100)  # enough locations that HighLevel's per-location cap never binds
    result: dict[str, Any] = {"prefill": prefill, "batch": batch, "locations": len(locs)}
    with workdir("backlog") as wd:
        async with sandboxes(wd, ghl_config(locs), cast_config()) as sbx:
            settings = castbridge_settings(sbx, wd / "cb", run_worker=False, **RAISED)
            fill = prepare(sbx.ghl, prefill, locs)
            more = prepare(sbx.ghl, batch, locs)
            await sbx.register([hook.payload for hook in fill + more])
            await sbx.emit()
            async with castbridge(settings) as cb, Generator(concurrency) as gen:
                await install(cb, locs)
                await gen.warm(cb.url)
                result["prefill_intake"] = (await gen.fire(cb.delivery_url, fill)).figures()
                cb.proc.mark()
                batch_result = (await gen.fire(cb.delivery_url, more)).figures()
                batch_result["server_cpu_ms_per_request"] = round(
                    1000 * cb.proc.cpu_since_mark() / max(1, batch_result["acknowledged"]), 3
                )
                result["intake_with_backlog"] = batch_result
            database = Path(str(settings.effective_database_url).split(":///", 1)[1])
            result["claim_with_backlog"] = await claim_timings(database)
            small = wd / "small-queue.db"
            _copy_with_small_queue(database, small, keep=100)
            result["claim_with_100_queued"] = await claim_timings(small)
            # The same database and settings, now with the worker on: how fast the queue drains.
            worker_settings = settings.model_copy(update={"run_worker": True})
            async with castbridge(worker_settings, log_name="castbridge-worker") as cb:
                before = await sbx.stats()
                cb.proc.mark()
                started = time.monotonic()
                await asyncio.sleep(window)
                elapsed = time.monotonic() - started
                cpu = cb.proc.cpu_since_mark()
                after = await sbx.stats()
                finals = await sbx.final_count()
                sent = after["cast"]["sends"] - before["cast"]["sends"]
                result["drain"] = {
                    "window_seconds": round(elapsed, 1),
                    "sent": sent,
                    "sent_per_s": round(sent / elapsed, 1),
                    "final_at_highlevel": finals,
                    "final_per_s": round(finals / elapsed, 1),
                    "castbridge_cpu_share": round(cpu / elapsed, 2),
                    "castbridge_peak_rss_mib": round(cb.proc.peak_rss_mib(), 1),
                    "rate_limited_429": after["cast"]["rate_limited_429"]
                    + after["ghl"]["rate_limited_429"],
                }
    return result


async def run(quick: bool) -> dict[str, Any]:
    if quick:
        intake = await intake_by_locations(120, 64)
        pipeline = {
            "1": await pipeline_run(1, 20, **RAISED),
            "10": await pipeline_run(10, 60, **RAISED),
            "100": await pipeline_run(100, 60, **RAISED),
        }
        queued = await backlog(400, 100, 4.0, 128)
    else:
        intake = await intake_by_locations(2000, 256)
        pipeline = {
            "1": await pipeline_run(1, 200, **RAISED),
            "10": await pipeline_run(10, 1000, **RAISED),
            "100": await pipeline_run(100, 1000, **RAISED),
        }
        queued = await backlog(10_000, 2000, 45.0, 256)
    return {"intake": intake, "pipeline": pipeline, "backlog": queued}


def summary(result: dict[str, Any]) -> list[str]:
    lines = []
    for count, fig in result["intake"].items():
        lines.append(
            f"intake, {count:>3} location(s): {fig['ack_per_s']:7.1f} ack/s, "
            f"p99 {fig['p99_ms']:.0f} ms"
        )
    for count, fig in result["pipeline"].items():
        lines.append(
            f"pipeline, {count:>3} location(s): {fig['messages']} messages, "
            f"{fig['messages_per_s']} msg/s, p50 {fig['latency_p50_ms']:.0f} ms, "
            f"p99 {fig['latency_p99_ms']:.0f} ms"
        )
    queued = result["backlog"]
    lines.append(
        f"with {queued['prefill']} queued: intake {queued['intake_with_backlog']['ack_per_s']} "
        f"ack/s; claim p50 {queued['claim_with_backlog']['claim_p50_ms']} ms "
        f"(vs {queued['claim_with_100_queued']['claim_p50_ms']} ms with 100 queued); "
        f"worker drains {queued['drain']['sent_per_s']} sends/s"
    )
    return lines
