"""Crash safety: castbridge in its own process, SIGKILLed at random points of a burst.

The sandboxes run in this process (real HTTP on loopback); castbridge runs as
`python -m castbridge serve` on a SQLite file and is restarted on the same file after each kill.
HighLevel's side is played by a poster that re-posts every webhook until it is answered 200,
as HighLevel retries a Delivery URL that did not answer.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from castbridge.sandbox.stack import run_stack, wait_for
from tests.reliability.support import (
    FAST,
    PH_MOBILE,
    Castbridge,
    Delivery,
    all_terminal,
    billing_counts,
    cast_config,
    crashed_jobs,
    deliver_until_acknowledged,
    ghl_config,
    highlevel_counts,
    job_states,
    location_ids,
    messages_by_ghl_id,
    report,
    restart_window,
    sized,
    stuck,
    terminal,
)

MESSAGES = sized(150, 1_000)
KILLS = sized(2, 5)
LOCATIONS = sized(3, 5)
LEASE_SECONDS = 2.0


async def test_sigkill_at_random_points_loses_nothing(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    """SIGKILL castbridge at random points of a burst: nothing acknowledged lost or billed twice
    (SQLite and PostgreSQL)."""
    seed = int(os.environ.get("CASTBRIDGE_RELIABILITY_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    started = time.monotonic()
    async with run_stack(
        tmp_path / "stack",
        cast_config=cast_config(),
        ghl_config=ghl_config(location_ids=location_ids(LOCATIONS)),
        with_castbridge=False,
        worker_lease_seconds=LEASE_SECONDS,
        **FAST,
        **database,
    ) as s:
        castbridge = Castbridge(s.settings, tmp_path)
        try:
            await castbridge.start()
            for location in location_ids(LOCATIONS):
                await s.install(location)
            bodies = [
                s.ghl.delivery_payload(
                    phone=PH_MOBILE.format(n),
                    message=f"burst message {n}",
                    location_id=location_ids(LOCATIONS)[n % LOCATIONS],
                )
                for n in range(MESSAGES)
            ]
            ids = [body["messageId"] for body in bodies]
            # Kill points are drawn over the whole pipeline: the first while the burst is
            # being acknowledged, the others while statuses are reaching HighLevel (sends,
            # polls and reports all in flight), each after a random extra delay.
            marks = [("acknowledged", rng.uniform(0.1, 0.9))] + [
                ("terminal", fraction)
                for fraction in sorted(rng.uniform(0.05, 0.9) for _ in range(KILLS - 1))
            ]
            delivery = Delivery()
            restart_window(s.ghl, ids)
            burst = time.monotonic()
            poster = asyncio.create_task(
                deliver_until_acknowledged(
                    s.ghl, s.delivery_url, bodies, concurrency=16, seen=delivery
                )
            )

            def progress(kind: str) -> int:
                if kind == "acknowledged":
                    return len(delivery.acknowledged)
                return sum(terminal(s.ghl, m) for m in ids)

            def reached(kind: str, fraction: float) -> bool:
                return progress(kind) >= fraction * MESSAGES

            kill_points: list[str] = []  # when each kill came, and how far the run was
            for kind, fraction in marks:
                await wait_for(functools.partial(reached, kind, fraction), within=120)
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                castbridge.kill()
                assert await castbridge.wait(within=10) is not None
                kill_points.append(
                    f"{time.monotonic() - burst:.1f}s"
                    f"(acked={progress('acknowledged')},terminal={progress('terminal')})"
                )
                await asyncio.sleep(rng.uniform(0.0, 1.0))  # down for a moment
                await castbridge.start()
            await poster
            settled = await wait_for(
                lambda: all_terminal(s.ghl, delivery.acknowledged),
                within=sized(120, 420),
                interval=0.5,
            )
            # Leases of jobs the last kill orphaned run out; a late duplicate would show now.
            await asyncio.sleep(LEASE_SECONDS + 1.5)
            exit_code = await castbridge.terminate()
            rows = await messages_by_ghl_id(s.settings)
            states = await job_states(s.settings)
            crashed = await crashed_jobs(s.settings)
        finally:
            castbridge.stop()
        seen = highlevel_counts(s.ghl, ids)
        billing = billing_counts(s.cast.snapshot())
        lost = sorted(m for m in delivery.acknowledged if not terminal(s.ghl, m))
        figures = {
            "seed": seed,
            "messages": MESSAGES,
            "kills": KILLS,
            "kill_points": ",".join(kill_points),
            "posts": delivery.tries,
            "unanswered_posts": delivery.unanswered,
            "acknowledged": len(delivery.acknowledged),
            "billed": billing["billed"],
            "billed_twice": billing["billed_twice"],
            "delivered": seen["delivered"],
            "failed": seen["failed"],
            "dup_status_msgs": seen["dup_msgs"],
            "dup_status_reports": seen["dup_reports"],
            "lost": len(lost),
            "stuck_jobs": sum(stuck(states).values()),
            "crashed_jobs": len(crashed),
            "errors_logged": castbridge.logs().count('"level": "error"'),
            "seconds": round(time.monotonic() - started, 1),
        }
        report("crash", figures)
        assert len(delivery.acknowledged) == MESSAGES, figures  # HighLevel's retries got through
        assert settled, figures
        assert lost == [], figures
        assert billing["billed_twice"] == 0, figures
        assert billing["billed"] == MESSAGES, figures  # every message sent, each once
        assert set(rows) == set(ids), "an acknowledged webhook is missing from the database"
        wrong = {
            m: (rows[m].status, rows[m].error_code, rows[m].error_message, s.ghl.statuses(m))
            for m in ids
            if rows[m].status != "delivered"
        }
        assert wrong == {}, figures
        assert seen["delivered"] == MESSAGES, figures
        assert stuck(states) == {}, states
        assert crashed == [], crashed
        assert "Traceback" not in castbridge.logs(), castbridge.logs()[-3000:]
        assert castbridge.runs == KILLS + 1
        # uvicorn re-raises the SIGTERM it handled once shutdown is complete.
        assert exit_code in {0, -signal.SIGTERM}, castbridge.logs()[-2000:]
