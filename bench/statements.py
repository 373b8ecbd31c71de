"""SQL statements per message: what one message costs the database, webhook to final status.

castbridge runs in this process (the stack of `castbridge.sandbox.stack`) with a listener on
every SQLAlchemy engine that counts statements by verb and commits. The count covers the
window from the first webhook to HighLevel holding every final status; the worker's idle
polling over that window (measured before the burst, per second) is reported apart, so the
figure per message is the work each message causes. It needs only the stack's public surface,
so the same file measures an older commit: `git worktree add /tmp/old <commit>`, then
`cd /tmp/old && uv run python /path/to/bench/statements.py` prints that commit's figures
(docs/performance.md quotes the commit before the outbound rebuild this way).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from castbridge.config import Settings
from castbridge.sandbox.cast import DEFAULT_API_KEY, CastSandboxConfig, SandboxAccount
from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.stack import run_stack, wait_for

FINAL = {"delivered", "failed"}
# The same measurement (200 messages over 10 locations) at commit 1c8a9af, the last one before
# the outbound rebuild, run as the module docstring says; kept here because that commit can no
# longer run inside this suite.
BEFORE_REBUILD: dict[str, Any] = {
    "commit": "1c8a9af",
    "messages": 200,
    "statements_per_message_without_begin": 21.2,
    "commits_per_message": 4.3,
    "idle_statements_per_s": 9.3,
    "by_verb_per_message": {"insert": 6.92, "select": 8.02, "update": 6.27},
}
IDLE_SECONDS = 3.0


class StatementCounter:
    """Counts statements (by first word) and commits on every engine in this process."""

    def __init__(self) -> None:
        self.verbs: Counter[str] = Counter()
        self.commits = 0
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)

    def _statement(self, *args: Any) -> None:
        statement: str = args[2]
        self.verbs[statement.lstrip().split(None, 1)[0].lower() if statement.strip() else ""] += 1

    def _commit(self, *_args: Any) -> None:
        self.commits += 1

    def snapshot(self) -> tuple[Counter[str], int]:
        return Counter(self.verbs), self.commits


def _overrides() -> dict[str, Any]:
    """Lifted pacing and fast polls, spelled for whichever version of castbridge is imported."""
    fast: dict[str, Any] = {
        "status_poll_schedule": "0.5,0.5,1",
        "report_initial_delay_seconds": 0.5,
        "worker_poll_interval": 0.2,
        "ghl_rate_limit": 10.0,
        "log_level": "WARNING",
    }
    if "oauth_rate_limit_per_minute" in Settings.model_fields:
        fast["oauth_rate_limit_per_minute"] = 100_000
    if "cast_rate_limit" in Settings.model_fields:  # before the gateway-neutral settings
        return {**fast, "cast_rate_limit": 1000.0, "cast_ip_rate_limit": 1000.0}
    return {**fast, "gateway_settings": {"cast": {"rate_limit": 1000.0, "ip_rate_limit": 1000.0}}}


async def measure(messages: int = 200, locations: int = 10) -> dict[str, Any]:
    counter = StatementCounter()
    locs = [f"benchLoc{n:012d}" for n in range(1, locations + 1)]
    cast = CastSandboxConfig(
        accounts=[SandboxAccount(api_key=DEFAULT_API_KEY, credits=10_000_000, rate_limit=1e6)],
        ip_rate=1e6,
        ip_burst=1e6,
        pending_after_seconds=0.2,
        final_after_seconds=0.5,
        seed=7,
    )
    ghl = GHLSandboxConfig(
        location_ids=locs, not_downstreamed_seconds=0.5, rate_limit_requests=1_000_000, seed=7
    )
    with tempfile.TemporaryDirectory(prefix="bench-statements-") as tmp:
        async with run_stack(Path(tmp), cast_config=cast, ghl_config=ghl, **_overrides()) as s:
            for location in locs:
                await s.install(location)
            await asyncio.sleep(1.0)  # installs' own follow-up jobs settle
            idle_verbs, idle_commits = counter.snapshot()
            idle_started = time.monotonic()
            await asyncio.sleep(IDLE_SECONDS)
            idle_window = time.monotonic() - idle_started
            verbs_now, commits_now = counter.snapshot()
            idle_per_s = sum((verbs_now - idle_verbs).values()) / idle_window
            idle_commits_per_s = (commits_now - idle_commits) / idle_window

            started = time.monotonic()
            semaphore = asyncio.Semaphore(4)  # counts, not speed: no 429s from a busy loop

            async def one(n: int) -> str:
                async with semaphore:
                    result = await s.ghl.send_delivery_webhook(
                        s.delivery_url,
                        phone=f"+63917{n:07d}",
                        message=f"statement count {n}",
                        location_id=locs[n % len(locs)],
                    )
                    assert result.status_code == 200, result.status_code
                    return result.message_id

            ids = await asyncio.gather(*(one(n) for n in range(messages)))

            def finished() -> bool:
                return all((statuses := s.ghl.statuses(m)) and statuses[-1] in FINAL for m in ids)

            if not await wait_for(finished, within=120, interval=0.05):
                raise RuntimeError("not every message reached a final status within 120 s")
            window = time.monotonic() - started
            verbs_end, commits_end = counter.snapshot()
    burst = verbs_end - verbs_now
    total = sum(burst.values())
    idle_share = idle_per_s * window
    # pysqlite begins its transactions itself (no statement through SQLAlchemy); castbridge now
    # issues BEGIN IMMEDIATE by hand, so comparisons across that change leave BEGIN out.
    without_begin = total - burst.get("begin", 0)
    return {
        "messages": messages,
        "locations": locations,
        "window_seconds": round(window, 2),
        "statements": total,
        "statements_per_message": round(total / messages, 1),
        "statements_per_message_net_of_idle": round(max(0.0, total - idle_share) / messages, 1),
        "statements_per_message_without_begin": round(without_begin / messages, 1),
        "commits_per_message": round((commits_end - commits_now) / messages, 1),
        "commits_per_message_net_of_idle": round(
            max(0.0, commits_end - commits_now - idle_commits_per_s * window) / messages, 1
        ),
        "idle_statements_per_s": round(idle_per_s, 1),
        "by_verb_per_message": {
            verb: round(count / messages, 2) for verb, count in sorted(burst.items())
        },
    }


async def run(quick: bool) -> dict[str, Any]:
    result = await measure(messages=60 if quick else 200)
    result["before_rebuild"] = BEFORE_REBUILD
    return result


def summary(result: dict[str, Any]) -> list[str]:
    verbs = ", ".join(f"{verb} {count}" for verb, count in result["by_verb_per_message"].items())
    return [
        f"{result['messages']} messages over {result['locations']} locations: "
        f"{result['statements_per_message']} SQL statements "
        f"({result['statements_per_message_without_begin']} without BEGIN) and "
        f"{result['commits_per_message']} commits per message, webhook to final status "
        f"({result['statements_per_message_net_of_idle']} net of idle polling at "
        f"{result['idle_statements_per_s']}/s)",
        f"by verb per message: {verbs}",
        f"before the rebuild ({BEFORE_REBUILD['commit']}): "
        f"{BEFORE_REBUILD['statements_per_message_without_begin']} statements without BEGIN, "
        f"{BEFORE_REBUILD['commits_per_message']} commits per message",
    ]


if __name__ == "__main__":
    figures = asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
    print(json.dumps(figures, indent=2))
