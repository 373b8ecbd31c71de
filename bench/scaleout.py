"""Scale-out: end-to-end messages/s with 1, 2 and 4 worker processes on PostgreSQL (one
`serve --no-worker` in front), beside one SQLite process, limits lifted; and what a message
costs on PostgreSQL (CPU of every castbridge process, SQL statements).

    uv run python -m bench.scaleout [--messages N] [--workers 1,2,4]

PostgreSQL comes from CASTBRIDGE_BENCH_POSTGRES_URL or CASTBRIDGE_TEST_POSTGRES_URL (an admin
URL; a database is created per run and dropped after). Figures go to
bench/results/scaleout.json and into their own section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx2

from bench import harness
from bench.harness import (
    LIFTED,
    Proc,
    cast_config,
    cast_pacing,
    castbridge_settings,
    ghl_config,
    install,
    location_ids,
    sandboxes,
    workdir,
)
from bench.load import Generator, prepare
from castbridge.config import Settings, async_database_url, settings_env
from castbridge.sandbox.stack import free_port

RESULT = harness.ROOT / "bench" / "results" / "scaleout.json"
DOC = harness.ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- scale-out:begin -->", "<!-- scale-out:end -->"
LOCATIONS = 20


@contextlib.asynccontextmanager
async def _postgres_database() -> AsyncIterator[str]:
    import asyncpg

    admin = os.environ.get("CASTBRIDGE_BENCH_POSTGRES_URL") or os.environ.get(
        "CASTBRIDGE_TEST_POSTGRES_URL", ""
    )
    if not admin:
        raise SystemExit("set CASTBRIDGE_BENCH_POSTGRES_URL (an admin URL of a PostgreSQL 15)")
    plain = async_database_url(admin).replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"cb_bench_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(plain)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    base = async_database_url(admin).rpartition("/")[0]
    try:
        yield f"{base}/{name}"
    finally:
        connection = await asyncpg.connect(plain)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


def _spawn(settings: Settings, command: list[str], name: str, **env: str) -> Proc:
    environment = {
        **harness._clean_environ(),
        **settings_env(settings, only_set=True),
        "CASTBRIDGE_LOG_LEVEL": "WARNING",
        **env,
    }
    data_dir = settings.data_dir
    return harness._spawn(
        name,
        [sys.executable, "-m", "castbridge", *command],
        env=environment,
        cwd=data_dir,
        log=data_dir / f"{name}.log",
    )


async def _statements(http: httpx2.AsyncClient, urls: list[str]) -> float:
    """castbridge_db_statements_total summed over the processes' /metrics."""
    total = 0.0
    for url in urls:
        text = (await http.get(url)).text
        total += sum(
            float(match.group(1))
            for match in re.finditer(r"^castbridge_db_statements_total\{[^}]*\} (\S+)$", text, re.M)
        )
    return total


async def one_run(messages: int, *, workers: int, database_url: str | None) -> dict[str, Any]:
    """`workers` worker processes behind one web process on `database_url` (PostgreSQL), or
    with None one `castbridge serve` on SQLite; returns the run's figures."""
    locs = location_ids(LOCATIONS)
    with workdir("scaleout") as wd:
        async with sandboxes(
            wd, ghl_config(locs, rate_limit_requests=int(LIFTED)), cast_config()
        ) as sbx:
            overrides: dict[str, Any] = {**cast_pacing(LIFTED), "ghl_rate_limit": 10.0}
            if database_url is not None:
                overrides["database_url"] = database_url
            settings = castbridge_settings(sbx, wd / "cb", **overrides)
            web_command = ["serve", "--no-worker"] if database_url else ["serve"]
            procs = [_spawn(settings, web_command, "web")]
            metric_urls = [f"http://127.0.0.1:{settings.port}/metrics"]
            try:
                await harness._wait_http(procs[0], f"http://127.0.0.1:{settings.port}/healthz")
                for n in range(workers if database_url else 0):
                    port = free_port()
                    procs.append(
                        _spawn(
                            settings,
                            ["worker"],
                            f"worker-{n}",
                            CASTBRIDGE_WORKER_METRICS_PORT=str(port),
                        )
                    )
                    metric_urls.append(f"http://127.0.0.1:{port}/metrics")
                for proc, url in zip(procs[1:], metric_urls[1:], strict=True):
                    await harness._wait_http(proc, url)
                cb = harness.Castbridge(procs[0], f"http://127.0.0.1:{settings.port}", settings, wd)
                await install(cb, locs)
                hooks = prepare(sbx.ghl, messages, locs)
                await sbx.register([hook.payload for hook in hooks])
                async with httpx2.AsyncClient(timeout=10.0) as http, Generator(64) as gen:
                    await gen.warm(cb.url)
                    await asyncio.sleep(1.0)  # the standing jobs of the start are done
                    statements_before = await _statements(http, metric_urls)
                    for proc in procs:
                        proc.mark()
                    await sbx.emit()
                    fire = asyncio.create_task(gen.fire(cb.delivery_url, hooks))
                    started = time.monotonic()
                    while time.monotonic() - started < 600:
                        # A webhook refused (429) is not retried here: wait for the rest.
                        if fire.done() and await sbx.final_count() >= fire.result().acknowledged:
                            break
                        await asyncio.sleep(0.1)
                    fired = await fire
                    cpu = sum(proc.cpu_since_mark() for proc in procs)
                    statements = await _statements(http, metric_urls) - statements_before
                finals = await sbx.finals()
                stats = await sbx.stats()
            finally:
                for proc in reversed(procs):
                    proc.stop()
    first_post = min(fired.posted_at.values())
    last_final = max((t for _, t in finals.values()), default=first_post)
    seconds = last_final - first_post
    return {
        "database": "postgresql" if database_url else "sqlite",
        "worker_processes": workers if database_url else 1,
        "messages": messages,
        "acknowledged": fired.acknowledged,
        "completed": len(finals),
        "seconds": round(seconds, 2),
        "messages_per_s": round(len(finals) / seconds, 1) if seconds > 0 else 0.0,
        "castbridge_cpu_ms_per_message": round(1000 * cpu / max(1, len(finals)), 2),
        "sql_statements_per_message": round(statements / max(1, len(finals)), 1),
        "rate_limited_429": stats["cast"]["rate_limited_429"] + stats["ghl"]["rate_limited_429"],
    }


async def _watched(messages: int, workers: int, database_url: str | None) -> dict[str, Any]:
    """One run, with the CPU the rest of the machine used meanwhile (it lowers the figures)."""
    watch = harness.LoadWatch().start()
    figures = await one_run(messages, workers=workers, database_url=database_url)
    figures["background_cores_busy"] = watch.stop()["background_cores_busy"]
    print(_line(figures), flush=True)
    return figures


async def run(messages: int, workers: list[int]) -> dict[str, Any]:
    machine = harness.machine_info()
    runs = [await _watched(messages, 1, None)]
    for count in workers:
        async with _postgres_database() as url:
            runs.append(await _watched(messages, count, url))
    return {
        "command": f"uv run python -m bench.scaleout --messages {messages} "
        f"--workers {','.join(map(str, workers))}",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "locations": LOCATIONS,
        "runs": runs,
    }


def _line(run: dict[str, Any]) -> str:
    return (
        f"{run['database']:<10} {run['worker_processes']} worker(s): {run['completed']}/"
        f"{run['messages']} ({run['acknowledged']} acknowledged) in {run['seconds']} s = "
        f"{run['messages_per_s']} msg/s, "
        f"{run['castbridge_cpu_ms_per_message']} ms CPU and "
        f"{run['sql_statements_per_message']} SQL statements per message, "
        f"429s {run['rate_limited_429']}"
    )


def section(result: dict[str, Any]) -> str:
    """The markdown section docs/performance.md carries between its scale-out markers."""
    machine = result["machine"]
    rows = [
        f"| {r['database']} | {'1 `serve`' if r['database'] == 'sqlite' else '1 web + '}"
        f"{'' if r['database'] == 'sqlite' else str(r['worker_processes']) + ' `worker`'} | "
        f"{r['completed']}/{r.get('acknowledged', r['messages'])}/{r['messages']} | "
        f"{r['seconds']} s | {r['messages_per_s']} | "
        f"{r['castbridge_cpu_ms_per_message']} ms | {r['sql_statements_per_message']} | "
        f"{r['rate_limited_429']} | {r.get('background_cores_busy', '?')} |"
        for r in result["runs"]
    ]
    return "\n".join(
        [
            BEGIN,
            "## Scale-out: worker processes on PostgreSQL",
            "",
            f"`{result['command']}`, {result['started_at']}, on {machine['cpu_model']} "
            f"({machine['cores']} cores), load average at start "
            f"{' / '.join(str(v) for v in machine.get('load_average_at_start', []))}. "
            f"{result['runs'][0]['messages']} webhooks at once over {result['locations']} "
            "locations, Cast and HighLevel limits lifted (castbridge's HighLevel pace at its "
            "maximum of 10 requests/s per location), sandboxes in their own process. CPU is "
            "that of every castbridge process together; SQL statements are castbridge's own "
            "count (`castbridge_db_statements_total`) over all of them; PostgreSQL's own CPU "
            "is not in the CPU column. The last column is the CPU the rest of the machine "
            "(other work, not this benchmark) used meanwhile: the larger it is, the lower and "
            "noisier the row.",
            "",
            "| database | processes | final / acknowledged / posted | webhook to last final "
            "| msg/s | CPU / message | SQL / message | 429s | other processes' cores busy |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *_reading(result["runs"]),
            "On this 2-core machine the processes compete for the same two cores as the "
            "sandboxes and the load generator, so more worker processes cannot add cores: the "
            "figures show what PostgreSQL and the extra processes cost, not what a larger host "
            "would gain; scaling on more cores was not measured here.",
            END,
        ]
    )


def _reading(runs: list[dict[str, Any]]) -> list[str]:
    sqlite = next((r for r in runs if r["database"] == "sqlite"), None)
    pg = sorted(
        (r for r in runs if r["database"] == "postgresql"), key=lambda r: r["worker_processes"]
    )
    if sqlite is None or not pg or not sqlite["messages_per_s"]:
        return []
    first, last = pg[0], pg[-1]
    return [
        f"One worker on PostgreSQL moved {first['messages_per_s'] / sqlite['messages_per_s']:.0%} "
        f"of the SQLite process's rate. From {first['worker_processes']} to "
        f"{last['worker_processes']} worker processes, CPU per message went from "
        f"{first['castbridge_cpu_ms_per_message']} to {last['castbridge_cpu_ms_per_message']} ms "
        f"and SQL statements from {first['sql_statements_per_message']} to "
        f"{last['sql_statements_per_message']}: every process adds its own wake-ups, claims and "
        "heartbeats, and all of them take tokens from the same rate-limit rows in the database "
        "(not profiled further here).",
        "",
    ]


def write_section(result: dict[str, Any]) -> None:
    text = DOC.read_text() if DOC.exists() else ""
    block = section(result)
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args(argv)
    workers = [int(part) for part in args.workers.split(",") if part.strip()]
    result = asyncio.run(run(args.messages, workers))
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    write_section(result)
    print(f"wrote {RESULT.relative_to(harness.ROOT)} and {DOC.relative_to(harness.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
