"""Upstream faults: Cast.ph failing 30% of requests, HighLevel's 403 window plus 5% 503s.

castbridge runs in this process with the sandboxes (real HTTP on loopback, real SQLite). Cast's
faults hit every API request (sends and status polls): 429 with Retry-After, 500/502/503,
timeouts after the send was committed and billed, and connections dropped halfway through the
answer. HighLevel answers 403 for 5 s after each Delivery-URL post and 503 to 5% of calls.
One message in 10 has an invalid number (failed at intake, reported inside the 403 window) and
one in 20 an undeliverable one (sent and billed, then failed by the carrier).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from castbridge.sandbox.cast import UNDELIVERABLE_NUMBER, Faults
from castbridge.sandbox.stack import run_stack, wait_for
from tests.reliability.support import (
    FAST,
    PH_MOBILE,
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
)

MESSAGES = sized(100, 1_000)
LOCATIONS = sized(2, 5)
# HighLevel answers 403 for 5-10 s after a Delivery-URL post (ghl.md §8). Messages refused at
# intake are reported within that window, whatever Cast's faults do to the sends.
WINDOW_SECONDS = 5.0
FAULT_SHARE = 0.30
# Errors are drawn first and answered before anything is processed; timeouts and drops are
# drawn from the requests left, which are processed (and billed) in full.
ERROR_RATE = FAULT_SHARE / 2
AMBIGUOUS_RATE = (FAULT_SHARE - ERROR_RATE) / (1 - ERROR_RATE) / 2


def fate_of(n: int) -> tuple[str, str]:
    """(expected ending, phone) of the n-th message."""
    if n % 10 == 3:
        return "invalid", "12345"
    if n % 20 == 7:
        return "undelivered", UNDELIVERABLE_NUMBER
    return "delivered", PH_MOBILE.format(n)


async def test_upstream_faults_every_message_terminal(tmp_path: Path) -> None:
    """30% Cast faults, 403 window, 5% HighLevel 503s: all terminal, none stuck or billed twice."""
    faults = Faults(
        targets="all",
        error_rate=ERROR_RATE,
        error_statuses=[429, 500, 502, 503],
        timeout_rate=AMBIGUOUS_RATE,
        timeout_seconds=3.0,
        drop_rate=AMBIGUOUS_RATE,
    )
    locations = location_ids(LOCATIONS)
    started = time.monotonic()
    async with run_stack(
        tmp_path,
        cast_config=cast_config(),
        ghl_config=ghl_config(location_ids=locations, not_downstreamed_seconds=WINDOW_SECONDS),
        **{
            **FAST,
            "report_initial_delay_seconds": 0.5,
            "gateway_settings": {
                "cast": {**FAST["gateway_settings"]["cast"], "timeout_seconds": 1.0}
            },
        },
    ) as s:
        for location in locations:
            await s.install(location)
        s.cast.config.faults = faults
        s.ghl.fault_rate = 0.05
        # Every message's right ending: 1 in 10 refused at intake (invalid number), 1 in 20
        # sent but undelivered by the carrier, the rest delivered.
        fates: dict[str, str] = {}
        bodies = []
        for n in range(MESSAGES):
            fate, phone = fate_of(n)
            body = s.ghl.delivery_payload(
                phone=phone, message=f"faulty upstream {n}", location_id=locations[n % LOCATIONS]
            )
            bodies.append(body)
            fates[body["messageId"]] = fate
        ids = [body["messageId"] for body in bodies]
        sendable = [m for m in ids if fates[m] != "invalid"]
        # A few refused messages go first, alone: their reports are due while the 403 window
        # is still open, before Cast's faults back the sends up (sends are claimed first and
        # hold every worker slot while Cast's 429s pause them, so later reports come late).
        first = [body for body in bodies if fates[body["messageId"]] == "invalid"][:5]
        rest = [body for body in bodies if body not in first]
        restart_window(s.ghl, [body["messageId"] for body in first])
        delivery = await deliver_until_acknowledged(s.ghl, s.delivery_url, first)
        assert await wait_for(
            lambda: any(s.ghl.messages[b["messageId"]].status_calls for b in first), within=10
        )
        restart_window(s.ghl, [body["messageId"] for body in rest])
        await deliver_until_acknowledged(s.ghl, s.delivery_url, rest, seen=delivery)
        settled = await wait_for(
            lambda: all_terminal(s.ghl, ids), within=sized(120, 600), interval=0.5
        )
        await asyncio.sleep(1.0)  # a late duplicate report or a leftover job would show now
        rows = await messages_by_ghl_id(s.settings)
        states = await job_states(s.settings)
        crashed = await crashed_jobs(s.settings)
        snapshot = s.cast.snapshot()
        billing = billing_counts(snapshot)
        seen = highlevel_counts(s.ghl, ids)
        status_calls = sum(s.ghl.messages[m].status_calls for m in ids)
        reported = sum(len(s.ghl.statuses(m)) for m in ids)
        dead = sorted(m for m in ids if rows[m].status == "dead")
        figures = {
            "messages": MESSAGES,
            "cast_requests": snapshot["requests"],
            "cast_injected": sum(snapshot["injected"].values()),
            "cast_injected_by_status": snapshot["injected"],
            "cast_timeouts": snapshot["timeouts"],
            "cast_drops": snapshot["drops"],
            "cast_replays": snapshot["replays"],
            "ghl_503": sum(s.ghl.faults.values()),
            "ghl_403_window": status_calls - reported,
            "acknowledged": len(delivery.acknowledged),
            "billed": billing["billed"],
            "billed_twice": billing["billed_twice"],
            "delivered": seen["delivered"],
            "failed": seen["failed"],
            "expected_failed": sum(fate != "delivered" for fate in fates.values()),
            "dead_after_max_attempts": len(dead),
            "not_terminal": seen["not_terminal"],
            "dup_status_msgs": seen["dup_msgs"],
            "stuck_jobs": sum(stuck(states).values()),
            "crashed_jobs": len(crashed),
            "seconds": round(time.monotonic() - started, 1),
        }
        report("upstream-faults", figures)
        assert len(delivery.acknowledged) == MESSAGES, figures
        assert delivery.tries == MESSAGES, figures
        assert settled, figures
        assert billing["billed_twice"] == 0, figures
        assert billing["billed"] == len(sendable) - len(dead), figures
        assert stuck(states) == {}, states
        assert crashed == [], crashed
        # The faults did happen, of every kind.
        assert {429, 500, 502, 503} <= {int(k) for k in snapshot["injected"]}, figures
        assert snapshot["timeouts"], figures
        assert snapshot["drops"], figures
        assert sum(s.ghl.faults.values()), figures
        assert status_calls > reported, figures  # some reports did meet the 403 window
        wrong = {}
        for message_id in ids:
            row = rows[message_id]
            final = s.ghl.statuses(message_id)[-1]
            error = s.ghl.messages[message_id].status_errors[-1]
            code = (error or {}).get("code")
            if row.status == "dead":
                # Every send attempt failed (0.3^attempts): HighLevel is told it failed, and why.
                right = fates[message_id] != "invalid" and final == "failed" and bool(code)
            elif fates[message_id] == "invalid":
                right = final == "failed" and code == "INVALID_NUMBER"
                right = right and s.cast.billed(message_id) == 0
            elif fates[message_id] == "undelivered":
                right = final == "failed" and code == "UNDELIV" and row.status == "failed"
                right = right and s.cast.billed(message_id) == 1
            else:
                right = final == "delivered" and row.status == "delivered" and error is None
                right = right and s.cast.billed(message_id) == 1
            if not right:
                wrong[message_id] = (
                    fates[message_id],
                    row.status,
                    s.ghl.statuses(message_id),
                    error,
                )
        assert wrong == {}, wrong


async def test_unanswered_sends_are_never_reported_failed(tmp_path: Path) -> None:
    """Cast accepts sends, its answers are lost past the attempt limit: delivered, billed once."""
    attempts = 2
    async with run_stack(
        tmp_path,
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        send_max_attempts=attempts,
        **{
            **FAST,
            "gateway_settings": {
                "cast": {**FAST["gateway_settings"]["cast"], "timeout_seconds": 1.0}
            },
        },
    ) as s:
        await s.install()
        # Every try is processed and billed (then replayed), but its answer is cut off halfway
        # or never comes, one more time than castbridge's attempt limit.
        s.cast.faults.drop_next = attempts
        s.cast.faults.timeout_next = 1
        s.cast.faults.timeout_seconds = 3.0
        result = await s.ghl.send_delivery_webhook(
            s.delivery_url, phone=PH_MOBILE.format(1), message="answer lost"
        )
        assert result.status_code == 200
        assert await wait_for(lambda: all_terminal(s.ghl, [result.message_id]), within=30)
        snapshot = s.cast.snapshot()
        report(
            "unanswered sends",
            {
                "attempt_limit": attempts,
                "drops": snapshot["drops"],
                "timeouts": snapshot["timeouts"],
                "replays": snapshot["replays"],
                "billed": s.cast.billed(result.message_id),
                "highlevel": s.ghl.statuses(result.message_id),
            },
        )
        assert s.ghl.statuses(result.message_id) == ["delivered"]  # not "failed": it was sent
        assert s.cast.billed(result.message_id) == 1
        assert snapshot["drops"] + snapshot["timeouts"] == attempts + 1
