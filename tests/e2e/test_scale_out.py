"""Scale-out on one PostgreSQL: 1 `serve --no-worker` + 3 `worker` processes, 1,000 messages
across 10 locations and 3 gateway accounts with limits, one worker SIGKILLed mid-burst.

What must hold across the processes together: nothing acknowledged is lost, nothing is billed
twice, castbridge never draws a 429 from the gateway (its per-account and per-IP buckets are
shared through the database) and HighLevel's per-location limit is never hit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter
from pathlib import Path

from castbridge.sandbox.cast import DEFAULT_API_KEY, SandboxAccount
from castbridge.sandbox.stack import run_stack, wait_for
from tests.e2e.support import (
    FAST,
    PH_MOBILE,
    Castbridge,
    Posted,
    all_terminal,
    cast_config,
    cli,
    ghl_config,
    interleave,
    job_states,
    messages_by_ghl_id,
    payloads,
    post_all,
    restart_window,
    terminal,
)
from tests.support import postgres

log = logging.getLogger(__name__)

MESSAGES = 1000
LOCATIONS = tuple(f"sbxLocation{letter * 9}{n}" for n, letter in enumerate("FGHIJKLMNP"))
# The Cast sandbox lets each account send 40 messages/s (burst 40); castbridge paces each at
# 30/s, so a 429 from the sandbox can only mean processes overran a shared bucket.
SANDBOX_RATE = 40.0
CASTBRIDGE_RATE = 30.0
OWN_KEYS = ("cast_" + "a1" * 32, "cast_" + "b2" * 32)
WORKERS = 3
LEASE_SECONDS = 2.0


def _accounts() -> list[SandboxAccount]:
    return [
        SandboxAccount(api_key=DEFAULT_API_KEY, credits=100_000, rate_limit=SANDBOX_RATE),
        *(
            SandboxAccount(api_key=key, id=10 + n, credits=100_000, rate_limit=SANDBOX_RATE)
            for n, key in enumerate(OWN_KEYS)
        ),
    ]


async def test_four_processes_one_postgres_sigkill_a_worker(tmp_path: Path) -> None:
    """1 web + 3 workers on PostgreSQL, 1,000 messages over 10 locations and 3 accounts, one
    worker SIGKILLed mid-burst: every message billed exactly once and delivered in HighLevel,
    no 429 from the gateway, none from HighLevel."""
    postgres.skip_without_postgres()
    async with (
        postgres.fresh_database() as url,
        run_stack(
            tmp_path / "stack",
            cast_config=cast_config(accounts=_accounts(), ip_rate=1000.0, ip_burst=1000.0),
            ghl_config=ghl_config(),
            with_castbridge=False,
            worker_lease_seconds=LEASE_SECONDS,
            database_url=url,
            shared_limits="database",
            oauth_rate_limit_per_minute=600,
            **{
                **FAST,
                "gateway_settings": {
                    "cast": {"rate_limit": CASTBRIDGE_RATE, "ip_rate_limit": 300.0}
                },
            },
        ) as s,
    ):
        web = Castbridge(s.settings, tmp_path, command="serve --no-worker")
        workers = [Castbridge(s.settings, tmp_path, command="worker") for _ in range(WORKERS)]
        try:
            started = time.monotonic()
            await web.start()
            for worker in workers:
                await worker.start()
            for n, location in enumerate(LOCATIONS):
                await s.install(location)
                # Locations 0, 3, 6, 9 stay on the operator's account; the rest get their own.
                if n % 3:
                    configured = await cli(
                        s.settings,
                        "locations",
                        "configure",
                        location,
                        "--gateway",
                        "cast",
                        "--api-key-stdin",
                        stdin=OWN_KEYS[n % 3 - 1] + "\n",
                    )
                    assert configured.exit_code == 0, configured.output
            per_location = MESSAGES // len(LOCATIONS)
            bodies = interleave(
                *(
                    payloads(
                        s.ghl,
                        [PH_MOBILE.format(n * 1000 + i) for i in range(per_location)],
                        location_id=location,
                    )
                    for n, location in enumerate(LOCATIONS)
                )
            )
            ids = [b["messageId"] for b in bodies]
            restart_window(s.ghl, ids)
            posted: list[Posted] = []
            burst = asyncio.create_task(
                post_all(s.ghl, web.url + "/webhooks/ghl/delivery", bodies, into=posted)
            )
            assert await wait_for(
                lambda: s.cast.stats.sends >= MESSAGES // 3, within=150, interval=0.02
            ), workers[0].logs()[-3000:]
            workers[0].kill(signal.SIGKILL)
            killed_at_sends = s.cast.stats.sends
            assert await workers[0].wait(within=5) == -signal.SIGKILL
            await burst
            posted_in = time.monotonic() - started
            assert [p.status_code for p in posted] == [200] * MESSAGES
            if not await wait_for(lambda: all_terminal(s.ghl, ids), within=150, interval=0.5):
                rows = await messages_by_ghl_id(s.settings)
                open_ = Counter(
                    (rows[m].status, rows[m].held) for m in ids if not terminal(s.ghl, m)
                )
                raise AssertionError(f"not terminal: {open_} jobs={await job_states(s.settings)}")
        finally:
            for process in [web, *workers]:
                process.stop()
        took = time.monotonic() - started

        billed_per_message: Counter[str] = Counter()
        accounts_used: Counter[str] = Counter()
        for (api_key, idempotency_key), n in s.cast.stats.billed.items():
            billed_per_message[idempotency_key.split(":")[1]] += n
            accounts_used[api_key] += n
        twice = {m: n for m, n in billed_per_message.items() if n > 1}
        assert twice == {}, f"billed more than once: {twice}"
        assert set(billed_per_message) == set(ids), "lost"
        assert set(accounts_used) == {DEFAULT_API_KEY, *OWN_KEYS}
        assert s.cast.stats.rate_limited == 0, "castbridge overran a gateway limit"
        assert sum(s.ghl.rate_limited.values()) == 0, dict(s.ghl.rate_limited)
        for message_id in ids:
            assert set(s.ghl.statuses(message_id)) == {"delivered"}, message_id
        rows = await messages_by_ghl_id(s.settings)
        assert {row.status for row in rows.values()} == {"delivered"}
        assert len(rows) == MESSAGES
        log.info(
            "scale-out: %d messages in %.1f s (all posted after %.1f s), worker killed at %d "
            "sends, %d replays",
            MESSAGES,
            took,
            posted_in,
            killed_at_sends,
            s.cast.stats.replays,
        )
