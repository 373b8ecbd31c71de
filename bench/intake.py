"""Intake: signed Delivery-URL webhooks acknowledged per second, castbridge beside a bare app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import postgres
from bench.harness import (
    LIFTED,
    Castbridge,
    Sandboxes,
    cast_config,
    cast_pacing,
    castbridge,
    castbridge_settings,
    ghl_config,
    install,
    location_ids,
    sandboxes,
    spawn_bare,
    wait_ready,
    workdir,
)
from bench.load import Generator, prepare

WARMUP = 200  # requests before each timed run: imports, compiled SQL and connection pools settle


def _warmup(requests: int) -> int:
    return min(WARMUP, max(10, requests // 5))


async def _timed(
    cb_or_url: Castbridge | str,
    base_url: str,
    hooks: list[Any],
    concurrency: int,
    proc: Any,
    warmup: int,
    database_cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    url = cb_or_url if isinstance(cb_or_url, str) else cb_or_url.delivery_url
    async with Generator(concurrency) as gen:
        await gen.warm(base_url)
        warm, timed = hooks[:warmup], hooks[warmup:]
        if warm:
            await gen.fire(url, warm)
        proc.mark()
        database0 = database_cpu() if database_cpu is not None else 0.0
        result = await gen.fire(url, timed)
        figures = result.figures()
        figures["server_cpu_seconds"] = round(proc.cpu_since_mark(), 3)
        if database_cpu is not None:
            # A database server's CPU is in its own processes, not castbridge's: beside it.
            figures["postgres_server_cpu_ms_per_request"] = round(
                1000 * (database_cpu() - database0) / max(1, result.acknowledged), 3
            )
        figures["server_cpu_share"] = round(figures["server_cpu_seconds"] / result.seconds, 2)
        figures["server_cpu_ms_per_request"] = round(
            1000 * figures["server_cpu_seconds"] / max(1, result.acknowledged), 3
        )
        figures["server_peak_rss_mib"] = round(proc.peak_rss_mib(), 1)
        return figures


async def _measure(
    cb: Castbridge,
    sbx: Sandboxes,
    locations: list[str],
    requests: int,
    concurrency: int,
    worker: bool,
    database_cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    await install(cb, locations)
    warmup = _warmup(requests)
    hooks = prepare(sbx.ghl, requests + warmup, locations)
    if worker:
        await sbx.register([hook.payload for hook in hooks])
        await sbx.emit()
        before = (await sbx.stats())["cast"]["sends"]
    figures = await _timed(cb, cb.url, hooks, concurrency, cb.proc, warmup, database_cpu)
    if worker:
        # Proof the worker was busy during the timed run: Cast sends it made meanwhile.
        figures["cast_sends_during_run"] = (await sbx.stats())["cast"]["sends"] - before
    figures["locations"] = len(locations)
    return figures


def _settings(sbx: Sandboxes, data_dir: Path, worker: bool, overrides: dict[str, Any]) -> Any:
    if worker:
        # The worker sends as fast as the lifted sandboxes allow, and reports within
        # HighLevel's per-location cap (GHL_RATE_LIMIT is at most 10/s).
        overrides = {**cast_pacing(LIFTED), "ghl_rate_limit": 10.0, **overrides}
    return castbridge_settings(sbx, data_dir, run_worker=worker, **overrides)


async def castbridge_intake(
    sbx: Sandboxes,
    data_dir: Path,
    locations: list[str],
    requests: int,
    concurrency: int,
    *,
    worker: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """One castbridge process on a fresh database: install, then time `requests` webhooks."""
    async with castbridge(_settings(sbx, data_dir, worker, overrides)) as cb:
        return await _measure(cb, sbx, locations, requests, concurrency, worker)


async def postgres_intake(
    sbx: Sandboxes, data_dir: Path, locations: list[str], requests: int, concurrency: int
) -> dict[str, Any]:
    """`castbridge_intake` with CASTBRIDGE_DATABASE_URL on a fresh database of a throwaway
    PostgreSQL, or {"skipped": why} when there is none (the rest of the suite still runs)."""
    async with postgres.server() as pg:
        if isinstance(pg, str):
            return {"skipped": pg}
        async with pg.database() as url:
            settings = _settings(sbx, data_dir, False, {"database_url": url})
            async with castbridge(settings, log_name="castbridge-postgres") as cb:
                figures = await _measure(
                    cb, sbx, locations, requests, concurrency, False, pg.cpu_seconds
                )
            # Proof the webhooks went to PostgreSQL: the rows are there, and no SQLite file is.
            figures["postgres_messages_stored"] = await pg.count(
                url, "SELECT count(*) FROM messages"
            )
            figures["postgres_send_jobs_stored"] = await pg.count(
                url, "SELECT count(*) FROM jobs WHERE kind = 'send'"
            )
            figures["sqlite_file_created"] = (data_dir / "castbridge.db").exists()
            figures["postgres_settings"] = pg.settings
            return figures


async def run_intake(
    requests: int = 5000,
    concurrency: int = 256,
    locations: int = 20,
    *,
    bare: bool = True,
    worker_busy: bool = True,
    variants: bool = False,
    with_postgres: bool = True,
) -> dict[str, Any]:
    """The intake benchmark; every run gets a fresh castbridge process and database."""
    locs = location_ids(locations)
    result: dict[str, Any] = {
        "requests": requests,
        "concurrency": concurrency,
        "locations": locations,
        "warmup_requests": _warmup(requests),
    }
    with workdir("intake") as wd:
        # Started first so it boots beside the sandboxes; timed only once castbridge is idle.
        server = spawn_bare(wd) if bare else None
        try:
            async with sandboxes(wd, ghl_config(locs), cast_config()) as sbx:
                async with castbridge(_settings(sbx, wd / "cb", False, {})) as cb:
                    if server is not None:
                        await wait_ready(server)
                        warmup = _warmup(requests)
                        hooks = prepare(sbx.ghl, requests + warmup, locs)
                        result["bare"] = await _timed(
                            f"{server.url}/webhooks/ghl/delivery",
                            server.url,
                            hooks,
                            concurrency,
                            server,
                            warmup,
                        )
                        server.stop()
                    result["castbridge"] = await _measure(
                        cb, sbx, locs, requests, concurrency, False
                    )
                if "bare" in result:
                    result["castbridge_over_bare"] = round(
                        result["castbridge"]["ack_per_s"] / result["bare"]["ack_per_s"], 3
                    )
                if with_postgres:
                    pg = await postgres_intake(sbx, wd / "cb-pg", locs, requests, concurrency)
                    result["castbridge_postgres"] = pg
                    if "bare" in result and "ack_per_s" in pg:
                        result["castbridge_postgres_over_bare"] = round(
                            pg["ack_per_s"] / result["bare"]["ack_per_s"], 3
                        )
                if variants:
                    # Latency when castbridge is not saturated: 16 webhooks in flight.
                    result["castbridge_16"] = await castbridge_intake(
                        sbx, wd / "cb-16", locs, requests // 2, 16
                    )
                    # What the two obvious operator knobs buy: per-request INFO logs off, and
                    # SQLite fsync only at checkpoints (survives kill -9, not power loss).
                    result["castbridge_log_warning"] = await castbridge_intake(
                        sbx, wd / "cb-warn", locs, requests, concurrency, log_level="WARNING"
                    )
                    result["castbridge_sync_normal"] = await castbridge_intake(
                        sbx,
                        wd / "cb-normal",
                        locs,
                        requests,
                        concurrency,
                        sqlite_synchronous="NORMAL",
                    )
                if worker_busy:
                    result["castbridge_worker_busy"] = await castbridge_intake(
                        sbx, wd / "cb-worker", locs, requests, concurrency, worker=True
                    )
        finally:
            if server is not None:
                server.stop()
    return result


async def run(quick: bool) -> dict[str, Any]:
    if quick:
        return await run_intake(requests=300, concurrency=128)
    return await run_intake(requests=3000, concurrency=256, variants=True)


def summary(result: dict[str, Any]) -> list[str]:
    lines = []
    for key, label in (
        ("bare", "bare endpoint"),
        ("castbridge", "castbridge (worker off)"),
        ("castbridge_postgres", "castbridge on PostgreSQL (worker off)"),
        ("castbridge_16", "castbridge, 16 in flight"),
        ("castbridge_log_warning", "castbridge, LOG_LEVEL=WARNING"),
        ("castbridge_sync_normal", "castbridge, SQLITE_SYNCHRONOUS=NORMAL"),
        ("castbridge_worker_busy", "castbridge (worker sending)"),
    ):
        fig = result.get(key)
        if fig and "skipped" in fig:
            lines.append(f"{label:40s} skipped: {fig['skipped']}")
        elif fig:
            lines.append(
                f"{label:40s} {fig['ack_per_s']:8.1f} ack/s  p50 {fig['p50_ms']:7.1f} ms  "
                f"p99 {fig['p99_ms']:7.1f} ms  server CPU {fig['server_cpu_share']:.2f} core  "
                f"generator CPU {fig['generator_cpu_share']:.2f} core"
            )
    if "castbridge_over_bare" in result:
        lines.append(f"castbridge/bare ratio: {result['castbridge_over_bare']:.3f}")
    if "castbridge_postgres_over_bare" in result:
        pg = result["castbridge_postgres"]
        lines.append(
            f"castbridge on PostgreSQL/bare ratio: {result['castbridge_postgres_over_bare']:.3f}; "
            f"PostgreSQL's own CPU {pg['postgres_server_cpu_ms_per_request']:.2f} ms/request; "
            f"{pg['postgres_messages_stored']} messages stored there"
        )
    return lines
