"""Scaling: intake and pipeline at 1, 10 and 100 locations, and backlogs of up to 100,000 jobs."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from dataclasses import dataclass
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
CURVE_SIZES = (100, 1_000, 10_000, 100_000)
QUICK_CURVE_SIZES = (100, 1_000, 10_000)
CLONE_PREFIX = "benchclone"  # ghl_message_id of a prefilled copy: f"{CLONE_PREFIX}{serial:012d}"
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


@dataclass
class Templates:
    """Rows that real webhooks stored (a queued message and its send job), copied by `prefill`."""

    message_columns: list[str]
    messages: list[tuple[Any, ...]]
    job_columns: list[str]
    jobs: dict[int, tuple[Any, ...]]  # message id -> its send job's row
    cloned: int = 0


def _templates(database: Path) -> Templates:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        jobs = conn.execute("SELECT * FROM jobs WHERE kind = 'send' AND state = 'queued'")
        job_columns = [column[0] for column in jobs.description]
        by_message = {row[job_columns.index("message_id")]: row for row in jobs.fetchall()}
        ids = ",".join(str(int(key)) for key in by_message)
        messages = conn.execute(f"SELECT * FROM messages WHERE id IN ({ids}) ORDER BY id")
        message_columns = [column[0] for column in messages.description]
        rows = messages.fetchall()
    return Templates(message_columns, rows, job_columns, by_message)


def _queued_sends(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        row = conn.execute("SELECT count(*) FROM jobs WHERE kind = 'send' AND state = 'queued'")
        return int(row.fetchone()[0])


def prefill(database: Path, templates: Templates, size: int) -> list[dict[str, str]]:
    """Top the queue up to `size` queued sends by copying the real rows, in one transaction.

    Every column is copied as stored (same account, location, sealed phone, text, run_at
    spacing, timestamps), so the worker handles a copy exactly as the webhook's own row; only
    the message's id and messageId are new, and its job points at it. Posting 100,000 webhooks
    would take minutes; this takes seconds. Returns the copies for the HighLevel sandbox.
    """
    need = size - _queued_sends(database)
    if need <= 0:
        return []
    m_cols, j_cols = templates.message_columns, templates.job_columns
    m_id, m_ghl = m_cols.index("id"), m_cols.index("ghl_message_id")
    m_location, m_contact = m_cols.index("location_id"), m_cols.index("contact_id")
    j_id, j_message = j_cols.index("id"), j_cols.index("message_id")
    job_insert = [c for n, c in enumerate(j_cols) if n != j_id]
    messages: list[tuple[Any, ...]] = []
    jobs: list[tuple[Any, ...]] = []
    registered: list[dict[str, str]] = []
    with contextlib.closing(sqlite3.connect(database)) as conn, conn:
        next_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]) + 1
        for n in range(need):
            template = templates.messages[n % len(templates.messages)]
            row = list(template)
            row[m_id] = next_id + n
            row[m_ghl] = f"{CLONE_PREFIX}{templates.cloned + n:012d}"
            messages.append(tuple(row))
            job = list(templates.jobs[template[m_id]])
            job[j_message] = next_id + n
            jobs.append(tuple(value for k, value in enumerate(job) if k != j_id))
            ids = {"messageId": row[m_ghl], "locationId": row[m_location]}
            registered.append({**ids, "contactId": row[m_contact]})
        marks = ",".join("?" for _ in m_cols)
        conn.executemany(f"INSERT INTO messages ({','.join(m_cols)}) VALUES ({marks})", messages)
        marks = ",".join("?" for _ in job_insert)
        conn.executemany(f"INSERT INTO jobs ({','.join(job_insert)}) VALUES ({marks})", jobs)
    templates.cloned += need
    return registered


def _copies_handled(database: Path) -> int:
    """Prefilled copies the worker has taken past `queued` (proof it can send them)."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM messages WHERE ghl_message_id LIKE ? AND status != 'queued'",
            (f"{CLONE_PREFIX}%",),
        )
        return int(row.fetchone()[0])


async def backlog_curve(
    sizes: tuple[int, ...], batch: int, window: float, concurrency: int
) -> list[dict[str, Any]]:
    """Claim, intake and memory with 100 ... 100,000 sends queued, on one growing database.

    The first size is posted as real webhooks (worker off); every larger one is topped up with
    `prefill` while castbridge is stopped. At each size: the claim statement timed, a batch of
    real webhooks timed against a fresh process, then a fresh process with the worker on
    draining for `window` seconds (peak RSS is the process's high-water mark, so each phase
    gets its own process).
    """
    locs = location_ids(100)  # enough locations that HighLevel's per-location cap never binds
    curve: list[dict[str, Any]] = []
    with workdir("backlog-curve") as wd:
        async with sandboxes(wd, ghl_config(locs), cast_config()) as sbx:
            settings = castbridge_settings(sbx, wd / "cb", run_worker=False, **RAISED)
            worker_settings = settings.model_copy(update={"run_worker": True})
            database = Path(str(settings.effective_database_url).split(":///", 1)[1])
            seed = prepare(sbx.ghl, sizes[0], locs)
            batches = [prepare(sbx.ghl, batch, locs) for _ in sizes]
            await sbx.register([hook.payload for hooks in [seed, *batches] for hook in hooks])
            await sbx.emit()
            async with castbridge(settings, log_name="castbridge-seed") as cb:
                await install(cb, locs)
                async with Generator(concurrency) as gen:
                    await gen.warm(cb.url)
                    await gen.fire(cb.delivery_url, seed)
            templates = _templates(database)
            for size, hooks in zip(sizes, batches, strict=True):
                began = time.monotonic()
                copies = prefill(database, templates, size)
                prefill_s = time.monotonic() - began
                await sbx.register(copies)
                await sbx.emit()
                claim = await claim_timings(database)
                async with (
                    castbridge(settings, log_name=f"castbridge-{size}") as cb,
                    Generator(concurrency) as gen,
                ):
                    await gen.warm(cb.url)
                    cb.proc.mark()
                    fired = (await gen.fire(cb.delivery_url, hooks)).figures()
                    intake_cpu = cb.proc.cpu_since_mark()
                    intake_rss = cb.proc.peak_rss_mib()
                before = await sbx.stats()
                started = time.monotonic()
                async with castbridge(worker_settings, log_name=f"castbridge-drain-{size}") as cb:
                    ready_s = time.monotonic() - started
                    cb.proc.mark()
                    await asyncio.sleep(window)
                    drain_s = time.monotonic() - started - ready_s
                    drain_cpu = cb.proc.cpu_since_mark()
                    drain_rss = cb.proc.peak_rss_mib()
                    after = await sbx.stats()
                sent = after["cast"]["sends"] - before["cast"]["sends"]
                curve.append(
                    {
                        "queued": size,
                        "queued_sends_at_claim": claim["jobs"].get("send:queued", 0),
                        "prefilled_copies": len(copies),
                        "prefill_seconds": round(prefill_s, 2),
                        "claim_p50_ms": claim["claim_p50_ms"],
                        "claim_p99_ms": claim["claim_p99_ms"],
                        "claimed_per_call": claim["claimed_per_call"],
                        "intake_requests": fired["requests"],
                        "intake_acknowledged": fired["acknowledged"],
                        "intake_ack_per_s": fired["ack_per_s"],
                        "intake_p50_ms": fired["p50_ms"],
                        "intake_p99_ms": fired["p99_ms"],
                        "intake_server_cpu_ms_per_request": round(
                            1000 * intake_cpu / max(1, fired["acknowledged"]), 3
                        ),
                        "intake_peak_rss_mib": round(intake_rss, 1),
                        "worker_start_seconds": round(ready_s, 2),
                        "drain_window_seconds": round(drain_s, 1),
                        "drain_sent": sent,
                        "drain_sent_per_s": round(sent / drain_s, 1),
                        "drain_cpu_share": round(drain_cpu / drain_s, 2),
                        "drain_peak_rss_mib": round(drain_rss, 1),
                        "copies_handled_so_far": _copies_handled(database),
                    }
                )
                print(f"   backlog curve: {_curve_line(curve[-1])}", flush=True)
    return curve


def _curve_line(point: dict[str, Any]) -> str:
    return (
        f"{point['queued']:>7,} queued: claim p50 {point['claim_p50_ms']} ms / p99 "
        f"{point['claim_p99_ms']} ms; intake {point['intake_ack_per_s']} ack/s, "
        f"{point['intake_server_cpu_ms_per_request']} ms CPU/request; draining "
        f"{point['drain_sent_per_s']} sends/s, peak RSS {point['drain_peak_rss_mib']} MiB"
    )


async def run(quick: bool) -> dict[str, Any]:
    if quick:
        intake = await intake_by_locations(120, 64)
        pipeline = {
            "1": await pipeline_run(1, 20, **RAISED),
            "10": await pipeline_run(10, 60, **RAISED),
            "100": await pipeline_run(100, 60, **RAISED),
        }
        queued = await backlog(400, 100, 4.0, 128)
        curve = await backlog_curve(QUICK_CURVE_SIZES, 150, 3.0, 128)
    else:
        intake = await intake_by_locations(2000, 256)
        pipeline = {
            "1": await pipeline_run(1, 200, **RAISED),
            "10": await pipeline_run(10, 1000, **RAISED),
            "100": await pipeline_run(100, 1000, **RAISED),
        }
        queued = await backlog(10_000, 2000, 45.0, 256)
        curve = await backlog_curve(CURVE_SIZES, 1000, 5.0, 256)
    return {"intake": intake, "pipeline": pipeline, "backlog": queued, "backlog_curve": curve}


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
    lines += [_curve_line(point) for point in result.get("backlog_curve", [])]
    return lines
