"""What one message costs the database, webhook to final status, counted statement by statement.

The worker is the part that can waste statements without any test noticing: a claim that
finds nothing, a second transaction to read what the claim just took, the queue's next due time
read again after every job, the HighLevel token read for every report. With the poll interval
set far beyond the test, every statement in the window is caused by the one message.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event

from castbridge.sandbox.stack import run_stack, wait_for
from castbridge.store import jobs as job_store
from castbridge.store import messages as message_store
from tests.e2e.support import FAST, PH_MOBILE, cast_config, ghl_config, terminal

FINAL = {"delivered", "failed"}
# The heartbeat (a lease renewal and a reap, every third of the lease) is kept out of the
# counted window: on a slow machine the default's 20 s fell inside it and its renewal counted as
# an outcome.
QUIET = {
    **FAST,
    "worker_poll_interval": 60.0,
    "status_poll_schedule": "0.5,0.5,1",
    "worker_lease_seconds": 900.0,
}


def _kind(statement: str) -> str:
    words = " ".join(statement.split()).lower()
    if words.startswith("update jobs set state=?, attempts=(jobs.attempts + ?)"):
        return "claim"
    if words.startswith("update jobs") and "jobs.worker_id = ?" in words:
        return "outcome"
    if words.startswith("select (select min(jobs.run_at)"):
        return "next_due"
    if words.startswith("select installations."):
        return "token"
    if words == "begin":
        return "read_transaction"
    return words.split(None, 1)[0] if words else ""


class Statements:
    def __init__(self, engine: Any) -> None:
        self.kinds: Counter[str] = Counter()
        self.counting = False
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        if self.counting:
            self.kinds[_kind(args[2])] += 1


async def _one_message(s: Any, statements: Statements, n: int) -> str:
    statements.counting = True
    result = await s.ghl.send_delivery_webhook(
        s.delivery_url, phone=PH_MOBILE.format(n), message=f"budget {n}"
    )
    assert result.status_code == 200
    assert await wait_for(lambda: terminal(s.ghl, result.message_id), within=20, interval=0.02)
    await asyncio.sleep(0.3)  # the report's own outcome is written after HighLevel answered
    statements.counting = False
    return result.message_id


async def test_one_message_costs_no_wasted_statements(tmp_path: Path) -> None:
    """Each job is claimed once and none comes back empty; the claim carries what the job needs
    (no separate read transaction); the idle worker does not reread the queue after every job
    when it already knows what falls due next; a report reuses the location's token."""
    async with run_stack(
        tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), **QUIET
    ) as s:
        await s.install()
        statements = Statements(s.resources.store.engine.sync_engine)
        await _one_message(s, statements, 1)  # warms the set-up cache and the token
        await asyncio.sleep(0.5)
        statements.kinds.clear()
        await _one_message(s, statements, 2)
        kinds = statements.kinds
        # Jobs run: send, one or two polls, a report unless the last poll made it (an outcome
        # each).
        assert 2 <= kinds["outcome"] <= 4, kinds
        assert kinds["claim"] == kinds["outcome"], kinds
        assert kinds["next_due"] == 0, kinds
        assert kinds["token"] == 0, kinds
        # A read transaction per claim would show as a plain BEGIN per job.
        assert kinds["read_transaction"] == 0, kinds
        # Intake: one transaction, a lookup of the messageId and two INSERTs (the same three
        # for a group commit of 64 webhooks). Each job: a transaction for the claim and its
        # context read, one for the outcome (the job's row and the message's).
        assert kinds["begin"] == 1 + 2 * kinds["outcome"], kinds
        statements = sum(count for kind, count in kinds.items() if kind != "begin")
        assert statements <= 3 + 4 * kinds["outcome"], kinds


async def test_a_final_status_found_by_a_poll_is_reported_in_the_polls_run(tmp_path: Path) -> None:
    """The poll that finds the final status, once the report is due, tells HighLevel itself:
    no report job is claimed and read again for it (a claim, a read and an outcome saved)."""
    # The report is due (and HighLevel ready for it) before the gateway's status is final.
    due_early = {**QUIET, "report_initial_delay_seconds": 0.2}
    async with run_stack(
        tmp_path,
        cast_config=cast_config(),
        ghl_config=ghl_config(not_downstreamed_seconds=0.1),
        **due_early,
    ) as s:
        await s.install()
        statements = Statements(s.resources.store.engine.sync_engine)
        await _one_message(s, statements, 1)
        await asyncio.sleep(0.5)
        statements.kinds.clear()
        ghl_message_id = await _one_message(s, statements, 2)
        kinds = statements.kinds
        # The send, then the poll that finds the final status and reports it.
        assert kinds["outcome"] == 2, kinds
        async with s.resources.store.read() as session:
            (message,) = await message_store.by_ghl_id(session, ghl_message_id)
            jobs = await job_store.for_message(session, message.id)
        assert [(job.kind, job.state) for job in jobs] == [("poll", "done")]


async def test_a_spaced_burst_is_sent_on_time_without_polling(tmp_path: Path) -> None:
    """Intake queues a burst on a rate-limited account spread into the future; the worker
    knows each send's due time from the wake, so with polling as good as off (60 s) every
    message still goes out at the account's rate, not at the next poll."""
    rate = 4.0
    limited = {**QUIET, "gateway_settings": {"cast": {"rate_limit": rate}}}
    async with run_stack(
        tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), **limited
    ) as s:
        await s.install()
        posted = await asyncio.gather(
            *(
                s.ghl.send_delivery_webhook(
                    s.delivery_url, phone=PH_MOBILE.format(n), message=f"spaced {n}"
                )
                for n in range(12)
            )
        )
        assert {result.status_code for result in posted} == {200}
        # 12 at 4/s is about 3 s of spacing (less the account's burst); the next poll is 60 s.
        assert await wait_for(lambda: len(s.cast.messages) == 12, within=15, interval=0.05), len(
            s.cast.messages
        )
