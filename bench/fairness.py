"""Fairness: one location's message behind another location's backlog on a slow account.

Location A queues a burst on a Cast account limited to 5 messages/s; location B's single
message arrives right after it. B's webhook -> final status should take what it takes with
nobody else queued (measured first, on the same castbridge), not the 30 s A's backlog needs to
drain; and A's first final status should reach HighLevel long before A's sends finish. Run
twice: B on the same (operator's default) account as A, and B on its own account; then once
more with the 10,000-message backlog the performance issue names, where A is not drained (at
5/s that would take over half an hour): B's latency and A's first final status are what count.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import (
    cast_config,
    cast_pacing,
    castbridge,
    castbridge_settings,
    ghl_config,
    install,
    location_ids,
    run_cli,
    sandboxes,
    workdir,
)
from bench.load import Generator, prepare
from castbridge.sandbox.cast import SandboxAccount

RATE = 5.0  # messages/s on A's Cast account (and castbridge's CAST_RATE_LIMIT)
B_KEY = "cast_" + "b0" * 32


async def _final_time(sbx: Any, message_id: str, within: float) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        finals = await sbx.finals()
        if message_id in finals:
            return float(finals[message_id][1])
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{message_id} had no final status within {within} s")


async def fairness_run(backlog: int, *, own_account: bool, drain: bool = True) -> dict[str, Any]:
    loc_a, loc_b = location_ids(2)
    with workdir("fairness") as wd:
        cast = cast_config(rate_limit=RATE)
        if own_account:
            cast.accounts.append(
                SandboxAccount(api_key=B_KEY, id=2, credits=1_000_000, rate_limit=RATE)
            )
        async with sandboxes(wd, ghl_config([loc_a, loc_b]), cast) as sbx:
            settings = castbridge_settings(sbx, wd / "cb", ghl_rate_limit=10.0, **cast_pacing(RATE))
            async with castbridge(settings) as cb:
                await install(cb, [loc_a, loc_b])
                if own_account:
                    await run_cli(
                        settings,
                        "locations",
                        "configure",
                        loc_b,
                        "--gateway",
                        "cast",
                        "--api-key-stdin",
                        stdin=B_KEY + "\n",
                    )
                alone, behind = prepare(sbx.ghl, 2, [loc_b])
                burst = prepare(sbx.ghl, backlog, [loc_a])
                await sbx.register([h.payload for h in [alone, behind, *burst]])
                async with Generator(16) as gen:
                    await gen.warm(cb.url)
                    await sbx.emit()
                    # B with nobody else queued: the reference latency.
                    posted = await gen.fire(cb.delivery_url, [alone])
                    alone_s = (
                        await _final_time(sbx, alone.message_id, 30)
                        - posted.posted_at[alone.message_id]
                    )
                    fired = await gen.fire(cb.delivery_url, burst)
                    after = await gen.fire(cb.delivery_url, [behind])
                    behind_s = (
                        await _final_time(sbx, behind.message_id, 120)
                        - after.posted_at[behind.message_id]
                    )
                    if drain:
                        last_a = burst[-1].message_id
                        await _final_time(sbx, last_a, 60 + backlog / RATE * 2)
                finals = await sbx.finals()
                stats = await sbx.stats(send_times=True)
    first_post = min(fired.posted_at.values())
    a_ids = {h.message_id for h in burst}
    a_finals = sorted(t for mid, (_, t) in finals.items() if mid in a_ids)
    a_sends = sorted(t for key, t in stats["cast"]["sent_at"].items() if key.split(":")[1] in a_ids)
    b_sent = next(
        t for key, t in stats["cast"]["sent_at"].items() if key.split(":")[1] == behind.message_id
    )
    sent_before_b = sum(1 for t in a_sends if t < b_sent)
    figures = {
        "backlog": backlog,
        "drained": drain,
        "account_rate_per_s": RATE,
        "b_account": "own" if own_account else "shared with A",
        "a_acknowledged": fired.acknowledged,
        "a_burst_seconds": round(fired.seconds, 2),
        "b_alone_final_s": round(alone_s, 2),
        "b_behind_backlog_final_s": round(behind_s, 2),
        "b_extra_s": round(behind_s - alone_s, 2),
        "a_sent_before_b": sent_before_b,
        "a_first_final_s": round(a_finals[0] - first_post, 2),
        "a_last_send_s": round(a_sends[-1] - first_post, 2),
        "a_last_final_s": round(a_finals[-1] - first_post, 2),
        "a_send_rate_per_s": round((len(a_sends) - 1) / (a_sends[-1] - a_sends[0]), 2)
        if len(a_sends) > 1
        else 0.0,
        "a_final_statuses": len(a_finals),
        "rate_limited_429": stats["cast"]["rate_limited_429"],
        "billed_twice": stats["cast"]["billed_twice"],
    }
    if not drain:
        # A was cut off mid-backlog: its "last" figures are only where it had got to.
        for key in ("a_last_send_s", "a_last_final_s"):
            figures.pop(key)
        figures["a_sent_when_stopped"] = len(a_sends)
    return figures


async def run(quick: bool) -> dict[str, Any]:
    backlog = 40 if quick else 150
    return {
        "shared": await fairness_run(backlog, own_account=False),
        "own": await fairness_run(backlog, own_account=True),
        "shared_large": await fairness_run(
            1_000 if quick else 10_000, own_account=False, drain=False
        ),
    }


def summary(result: dict[str, Any]) -> list[str]:
    lines = []
    for fig in result.values():
        lines.append(
            f"B ({fig['b_account']}) behind A's {fig['backlog']} at {fig['account_rate_per_s']:.0f}"
            f"/s: final after {fig['b_behind_backlog_final_s']} s vs {fig['b_alone_final_s']} s "
            f"alone (+{fig['b_extra_s']} s; {fig['a_sent_before_b']} of A's sent before it)"
        )
        if "a_last_send_s" in fig:
            progress = f"last send {fig['a_last_send_s']} s, last final {fig['a_last_final_s']} s"
        else:
            progress = f"{fig['a_sent_when_stopped']} sent when stopped (not drained)"
        lines.append(
            f"   A: first final status after {fig['a_first_final_s']} s, {progress}; sends at "
            f"{fig['a_send_rate_per_s']}/s; Cast 429s {fig['rate_limited_429']}, billed twice "
            f"{fig['billed_twice']}"
        )
    return lines
