"""castbridge as a real process killed mid-burst: nothing acknowledged is lost or sent twice.

The sandboxes run in this process; castbridge runs as `python -m castbridge serve` configured
by environment variables, on a fixed port and SQLite file that survive its restarts.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from castbridge.sandbox.stack import Stack, run_stack, wait_for
from castbridge.store.models import Message
from tests.e2e.support import (
    FAST,
    LOCATIONS,
    PH_MOBILE,
    Castbridge,
    Posted,
    all_terminal,
    cast_config,
    ghl_config,
    interleave,
    job_states,
    messages_by_ghl_id,
    payloads,
    post_all,
    restart_window,
    terminal,
)

log = logging.getLogger(__name__)

LEASE_SECONDS = 2.0
GRACE_SECONDS = 2.0
# Bursts go to five locations (HighLevel allows each 100 requests / 10 s).
BURST_LOCATIONS = (*LOCATIONS, "sbxLocationDDDDDDDDD4", "sbxLocationEEEEEEEEE5")


@dataclass
class Burst:
    posted: list[Posted]
    signalled_at: float  # time.monotonic()
    sends_at_signal: int
    reported_at_signal: int


async def _burst_then_signal(
    s: Stack, castbridge: Castbridge, sig: signal.Signals, *, per_location: int
) -> Burst:
    """Post the burst and signal castbridge once three quarters of it were acknowledged: some
    messages are sent by then, the pipeline is far from done and webhooks are still coming."""
    for location in BURST_LOCATIONS:
        await s.install(location)
    bodies = interleave(
        *(
            payloads(s.ghl, [PH_MOBILE.format(n) for n in range(per_location)], location_id=loc)
            for loc in BURST_LOCATIONS
        )
    )
    ids = [b["messageId"] for b in bodies]
    restart_window(s.ghl, ids)
    posted: list[Posted] = []
    burst = asyncio.create_task(
        post_all(
            s.ghl, castbridge.url + "/webhooks/ghl/delivery", bodies, concurrency=8, into=posted
        )
    )

    def far_enough() -> bool:
        acknowledged = sum(1 for p in posted if p.status_code == 200)
        return acknowledged >= len(bodies) * 3 // 4 and s.cast.stats.sends > 0

    assert await wait_for(far_enough, within=30, interval=0.01), castbridge.logs()[-3000:]
    castbridge.kill(sig)
    signalled_at = time.monotonic()
    sends = s.cast.stats.sends
    reported = sum(1 for message_id in ids if s.ghl.statuses(message_id))
    await burst
    assert len(posted) == len(bodies)
    return Burst(posted, signalled_at, sends, reported)


async def _finish_after_restart(s: Stack, castbridge: Castbridge, posted: list[Posted]) -> None:
    """Restart on the same database, re-post what was never acknowledged (HighLevel retries
    those), and wait until HighLevel has a final status for every message."""
    await castbridge.start()
    unanswered = [p.payload for p in posted if p.status_code != 200]
    restart_window(s.ghl, [p["messageId"] for p in unanswered])
    retried = await post_all(s.ghl, castbridge.url + "/webhooks/ghl/delivery", unanswered)
    assert [p.status_code for p in retried] == [200] * len(unanswered)
    ids = [p.message_id for p in posted]
    if not await wait_for(lambda: all_terminal(s.ghl, ids), within=60, interval=0.25):
        rows = await messages_by_ghl_id(s.settings)
        open_ = {m: (rows[m].status, rows[m].held) for m in ids if not terminal(s.ghl, m)}
        raise AssertionError(f"not terminal: {open_} jobs={await job_states(s.settings)}")


def _check_outcome(s: Stack, burst: Burst, rows: dict[str, Message]) -> Counter[str]:
    """Every message once at Cast, delivered in HighLevel, and stored; returns figures."""
    posted = burst.posted
    ids = [p.message_id for p in posted]
    billed = {key.split(":")[1]: n for key, n in s.cast.snapshot()["billed"].items()}
    twice = {key: n for key, n in billed.items() if n > 1}
    assert twice == {}, f"billed more than once: {twice}"
    assert set(billed) == set(ids)  # every message sent, none lost
    figures: Counter[str] = Counter()
    for message_id in ids:
        statuses = s.ghl.statuses(message_id)
        assert set(statuses) == {"delivered"}, (message_id, statuses)
        figures["repeated_reports"] += len(statuses) - 1
    assert set(rows) == set(ids)
    figures["acknowledged_before_signal"] = sum(1 for p in posted if p.status_code == 200)
    figures["unanswered"] = sum(1 for p in posted if p.status_code is None)
    figures["replays"] = s.cast.stats.replays
    figures["sends_at_signal"] = burst.sends_at_signal
    figures["reported_at_signal"] = burst.reported_at_signal
    return figures


async def test_sigkill_mid_burst_loses_nothing(tmp_path: Path, database: dict[str, Any]) -> None:
    """SIGKILL mid-burst, restart: every acknowledged message terminal, none billed twice
    (on SQLite and on PostgreSQL)."""
    async with run_stack(
        tmp_path / "stack",
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        with_castbridge=False,
        worker_lease_seconds=LEASE_SECONDS,
        **FAST,
        **database,
    ) as s:
        castbridge = Castbridge(s.settings, tmp_path)
        try:
            await castbridge.start()
            burst = await _burst_then_signal(s, castbridge, signal.SIGKILL, per_location=40)
            assert await castbridge.wait(within=5) == -signal.SIGKILL
            assert burst.sends_at_signal > 0  # some were sent...
            assert burst.reported_at_signal < len(burst.posted)  # ...far from all done
            acknowledged = [p.message_id for p in burst.posted if p.status_code == 200]
            stored = await messages_by_ghl_id(s.settings)
            assert set(acknowledged) <= set(stored)  # acknowledged means committed
            await _finish_after_restart(s, castbridge, burst.posted)
        finally:
            castbridge.stop()
        rows = await messages_by_ghl_id(s.settings)
        figures = _check_outcome(s, burst, rows)
        assert {row.status for row in rows.values()} == {"delivered"}
        log.info("SIGKILL figures: %s", dict(figures))


async def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    """SIGTERM mid-burst: exit code 0 within the grace period; after restart all completes."""
    async with run_stack(
        tmp_path / "stack",
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        with_castbridge=False,
        worker_lease_seconds=60.0,  # nothing may depend on a lease running out
        shutdown_grace_seconds=GRACE_SECONDS,
        **FAST,
    ) as s:
        castbridge = Castbridge(s.settings, tmp_path)
        try:
            await castbridge.start()
            burst = await _burst_then_signal(s, castbridge, signal.SIGTERM, per_location=20)
            code = await castbridge.wait(within=GRACE_SECONDS + 3)
            took = time.monotonic() - burst.signalled_at
            assert code == 0, castbridge.log()[-3000:]
            assert took <= GRACE_SECONDS + 1.0, took
            assert "running" not in "".join(await job_states(s.settings))  # all handed back
            await _finish_after_restart(s, castbridge, burst.posted)
        finally:
            castbridge.stop()
        rows = await messages_by_ghl_id(s.settings)
        figures = _check_outcome(s, burst, rows)
        assert {row.status for row in rows.values()} == {"delivered"}
        log.info("SIGTERM figures: %s, exited after %.2f s", dict(figures), took)


async def test_sigkill_mid_burst_on_a_gateway_without_idempotency(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    """CastBrick has no idempotency key. SIGKILL castbridge mid-burst and restart: every
    message in flight at the kill is reconciled (found, or proven absent and sent then), so
    every acknowledged message reaches HighLevel once and no recipient gets two SMS."""
    from castbridge.sandbox.castbrick import DEFAULT_API_KEY as CB_KEY
    from castbridge.sandbox.castbrick import CastBrickSandboxConfig
    from castbridge.sandbox.castbrick import SandboxAccount as CBAccount
    from tests.e2e.support import cli

    locations = BURST_LOCATIONS[:2]
    castbrick = CastBrickSandboxConfig(
        accounts=[CBAccount(api_key=CB_KEY, balance=1_000_000, rate_limit=200.0)],
        sent_after_seconds=0.2,
        final_after_seconds=0.5,
        seed=7,
    )
    async with run_stack(
        tmp_path / "stack",
        cast_config=cast_config(),
        castbrick_config=castbrick,
        ghl_config=ghl_config(),
        with_castbridge=False,
        worker_lease_seconds=LEASE_SECONDS,
        reconcile_settle_seconds=2.0,
        push_report_window_seconds=2.0,  # pushes sent while castbridge was dead are lost
        **{
            **FAST,
            "gateway_settings": {"castbrick": {"rate_limit": 100.0, "timeout_seconds": 2.0}},
        },
        **database,
    ) as s:
        assert s.castbrick is not None
        castbridge = Castbridge(s.settings, tmp_path)
        try:
            await castbridge.start()
            for location in locations:
                await s.install(location)
                configured = await cli(
                    s.settings,
                    "locations",
                    "configure",
                    location,
                    "--gateway",
                    "castbrick",
                    "--api-key-stdin",
                    "--setting",
                    "reconcile_settle_seconds=1",
                    stdin=CB_KEY + "\n",
                )
                assert configured.exit_code == 0, configured.output
            bodies = interleave(
                *(
                    payloads(
                        s.ghl,
                        [f"+24492{n:07d}" for n in range(40)],
                        location_id=location,
                        text=f"burst to {location}",
                    )
                    for location in locations
                )
            )
            ids = [b["messageId"] for b in bodies]
            restart_window(s.ghl, ids)
            posted: list[Posted] = []
            burst = asyncio.create_task(
                post_all(
                    s.ghl,
                    castbridge.url + "/webhooks/ghl/delivery",
                    bodies,
                    concurrency=8,
                    into=posted,
                )
            )

            def far_enough() -> bool:
                acknowledged = sum(1 for p in posted if p.status_code == 200)
                return (
                    acknowledged >= len(bodies) // 2
                    and sum(
                        s.castbrick.stats.billed.values()  # type: ignore[union-attr]
                    )
                    > 5
                )

            assert await wait_for(far_enough, within=30, interval=0.01), castbridge.logs()[-2000:]
            castbridge.kill(signal.SIGKILL)
            await burst
            assert await castbridge.wait(within=5) == -signal.SIGKILL
            await _finish_after_restart(s, castbridge, posted)
        finally:
            castbridge.stop()
        twice = {key: n for key, n in s.castbrick.stats.billed.items() if n > 1}
        assert twice == {}, f"sent more than once: {twice}"
        for body in bodies:
            assert s.castbrick.billed(body["phone"], body["message"]) == 1, body["messageId"]
            # A report in flight at the kill may reach HighLevel twice; the same status.
            assert set(s.ghl.statuses(body["messageId"])) == {"delivered"}
