"""The outbound pipeline end to end: HighLevel webhook -> castbridge -> Cast -> status back.

Everything is real HTTP on loopback (run_stack) over a real SQLite file; only the two
services castbridge talks to are sandboxes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2

from castbridge.sandbox.cast import (
    DEFAULT_API_KEY,
    FAILING_NUMBER,
    UNDELIVERABLE_NUMBER,
    Faults,
)
from castbridge.sandbox.ghl.state import now_iso
from castbridge.sandbox.stack import run_stack, wait_for
from tests.e2e.support import (
    FAST,
    LOCATIONS,
    PH_MOBILE,
    all_terminal,
    attempts_of,
    cast_config,
    ghl_config,
    interleave,
    messages_by_ghl_id,
    payloads,
    post_all,
    post_signed,
    restart_window,
    terminal,
)


async def test_duplicate_webhooks_send_once(tmp_path: Path) -> None:
    """The same signed webhook posted 3 times at once: one billed send, one final status."""
    async with run_stack(tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), **FAST) as s:
        await s.install()
        # Without and with HighLevel's webhookId/timestamp (both shapes occur, ghl.md §2).
        plain, with_id = payloads(s.ghl, ["+639171234567", "+639171234568"])
        with_id = {**with_id, "timestamp": now_iso(), "webhookId": "wh-dup-1"}
        ids = [plain["messageId"], with_id["messageId"]]
        restart_window(s.ghl, ids)
        async with httpx2.AsyncClient(timeout=10.0) as http:
            codes = await asyncio.gather(
                *(
                    post_signed(s.ghl, s.delivery_url, payload, http)
                    for payload in (plain, with_id)
                    for _ in range(3)
                )
            )
        assert codes == [200] * 6
        assert await wait_for(lambda: all_terminal(s.ghl, ids), within=15)
        await asyncio.sleep(1.0)  # room for a second (wrong) send or report to show up
        assert [s.cast.billed(message_id) for message_id in ids] == [1, 1]
        assert s.cast.stats.sends == 2
        assert [s.ghl.statuses(message_id) for message_id in ids] == [["delivered"]] * 2
        rows = await messages_by_ghl_id(s.settings)
        assert sorted(rows) == sorted(ids)
        assert {row.status for row in rows.values()} == {"delivered"}


async def test_three_locations_300_messages(tmp_path: Path) -> None:
    """300 messages over 3 locations, bad ones included: all terminal, clear errors, no 429."""
    bad_phones = {
        "12345": "not a valid PH number",
        "+63 2 8123 4567": "landline",
        "+61412345678": "not a Philippine (PH) number",
    }
    async with run_stack(tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), **FAST) as s:
        for location in LOCATIONS:
            await s.install(location)
        bodies = []
        expect_failed: dict[str, str] = {}  # messageId -> words its error must contain

        def add(phone: str, location: str, text: str = "hi", reason: str | None = None) -> None:
            (body,) = payloads(s.ghl, [phone], location_id=location, text=text)
            bodies.append(body)
            if reason is not None:
                expect_failed[body["messageId"]] = reason

        for index, location in enumerate(LOCATIONS):
            for phone, reason in bad_phones.items():
                add(phone, location, reason=reason)
            add(PH_MOBILE.format(index), location, text="x" * 451, reason="too long")
            add(UNDELIVERABLE_NUMBER, location, reason="UNDELIV")
            if index == 0:
                add(FAILING_NUMBER, location, reason="SMPP submit_sm failed")
            while len(bodies) < 100 * (index + 1):
                add(PH_MOBILE.format(index * 1000 + len(bodies)), location, text=f"hello {index}")
        # The locations' messages arrive interleaved, as real traffic does. (Sent one location
        # after another, the first one's reports hold every worker slot while they wait on its
        # HighLevel rate limit, and the others wait behind: about 28 s instead of 17 s.)
        bodies = interleave(bodies[:100], bodies[100:200], bodies[200:])
        ids = [b["messageId"] for b in bodies]
        assert len(set(ids)) == 300

        restart_window(s.ghl, ids)
        posted = await post_all(s.ghl, s.delivery_url, bodies, concurrency=12)
        assert [p.status_code for p in posted] == [200] * 300

        assert await wait_for(lambda: all_terminal(s.ghl, ids), within=60, interval=0.5)
        for message_id in ids:
            sandbox_message = s.ghl.messages[message_id]
            assert len(sandbox_message.statuses) == 1, (message_id, sandbox_message.statuses)
            status = sandbox_message.statuses[0]
            error = sandbox_message.status_errors[0]
            if message_id in expect_failed:
                assert status == "failed", message_id
                assert error is not None
                assert expect_failed[message_id] in error["message"], error
                assert error["type"] == "saas"
                assert error["code"]
            else:
                assert status == "delivered", (message_id, error)
                assert error is None
        assert sum(s.ghl.rate_limited.values()) == 0
        assert s.cast.snapshot()["rate_limited_429"] == 0
        refused_at_intake = {m for m, reason in expect_failed.items() if reason in _INTAKE}
        billed = {key.split(":")[1]: n for key, n in s.cast.snapshot()["billed"].items()}
        assert billed == dict.fromkeys(set(ids) - refused_at_intake, 1)
        rows = await messages_by_ghl_id(s.settings)
        assert {rows[m].status for m in ids if m not in expect_failed} == {"delivered"}
        assert {rows[m].status for m in expect_failed} == {"failed"}
        assert all(rows[m].error_message for m in expect_failed)


# Refusal reasons castbridge finds itself, before any call to Cast.
_INTAKE = frozenset(
    {"not a valid PH number", "landline", "not a Philippine (PH) number", "too long"}
)


async def test_cast_faults_still_bill_once(tmp_path: Path) -> None:
    """~20% Cast faults (429, 5xx, timeouts, cut answers): all delivered, each billed once."""
    faults = {
        "error_rate": 0.1,
        "error_statuses": [429, 500, 502, 503],
        "timeout_rate": 0.07,
        "drop_rate": 0.03,
        "timeout_seconds": 3.0,
    }
    cfg = cast_config()
    cfg.faults = cfg.faults.model_copy(update=faults)
    async with run_stack(
        tmp_path, cast_config=cfg, ghl_config=ghl_config(), cast_timeout_seconds=1, **FAST
    ) as s:
        for location in LOCATIONS:
            await s.install(location)
        bodies = interleave(
            *(
                payloads(s.ghl, [PH_MOBILE.format(n) for n in range(20)], location_id=location)
                for location in LOCATIONS
            )
        )
        ids = [b["messageId"] for b in bodies]
        restart_window(s.ghl, ids)
        posted = await post_all(s.ghl, s.delivery_url, bodies)
        assert all(p.status_code == 200 for p in posted)
        assert await wait_for(lambda: all_terminal(s.ghl, ids), within=60, interval=0.5)
        snapshot = s.cast.snapshot()
        assert sum(snapshot["injected"].values()) > 0  # the faults did happen
        assert snapshot["timeouts"] + snapshot["drops"] > 0
        assert {message_id: s.cast.billed(message_id) for message_id in ids} == dict.fromkeys(
            ids, 1
        )
        assert snapshot["replays"] > 0  # timed-out sends were resolved by replays
        assert all(s.ghl.statuses(m) == ["delivered"] for m in ids)
        retried = [
            m for m in ids if any(a.outcome == "retry" for a in await attempts_of(s.settings, m))
        ]
        assert retried


async def test_slow_send_outlasting_its_lease_runs_once(tmp_path: Path) -> None:
    """A send slower than the job lease is not claimed and run a second time meanwhile."""
    config = cast_config()
    config.faults = Faults(latency_seconds=1.5)
    async with run_stack(
        tmp_path,
        cast_config=config,
        ghl_config=ghl_config(),
        **{**FAST, "worker_lease_seconds": 0.5},
    ) as s:
        await s.install()
        result = await s.ghl.send_delivery_webhook(
            s.delivery_url, phone=PH_MOBILE.format(1), message="hi"
        )
        assert result.status_code == 200
        assert await wait_for(lambda: terminal(s.ghl, result.message_id), within=15)
        assert s.ghl.statuses(result.message_id) == ["delivered"]
        assert s.cast.stats.replays == 0  # one send request, not a second one replayed
        # Nothing but the happy path: no retry, no crash, no second claim on the timeline.
        assert await attempts_of(s.settings, result.message_id) == []


async def test_not_downstreamed_window_ridden_out(tmp_path: Path) -> None:
    """HighLevel's 403 window outlasts the first report: retried, then the status lands."""
    overrides = {**FAST, "report_initial_delay_seconds": 0.2}
    async with run_stack(
        tmp_path,
        cast_config=cast_config(),
        ghl_config=ghl_config(not_downstreamed_seconds=3.0),
        **overrides,
    ) as s:
        await s.install()
        result = await s.ghl.send_delivery_webhook(s.delivery_url, phone="12345", message="hi")
        assert result.status_code == 200
        assert await wait_for(lambda: terminal(s.ghl, result.message_id), within=20)
        assert s.ghl.statuses(result.message_id) == ["failed"]
        assert s.ghl.messages[result.message_id].status_calls >= 2
        reports = [
            a for a in await attempts_of(s.settings, result.message_id) if a.kind == "report"
        ]
        rows = await messages_by_ghl_id(s.settings)
        assert rows[result.message_id].ghl_status == "failed"
        retries = [a for a in reports if a.outcome == "retry"]
        assert retries
        assert all(a.http_status == 403 for a in retries)


async def test_attachments_appended(tmp_path: Path) -> None:
    """Attachment URLs are appended to the text by default; Cast bills the parts they make."""
    urls = ["https://example.com/a.png", "https://example.com/b.pdf"]
    async with run_stack(tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), **FAST) as s:
        await s.install()
        result = await s.ghl.send_delivery_webhook(
            s.delivery_url, phone="+639171234567", message="see these", attachments=urls
        )
        assert result.status_code == 200
        assert await wait_for(lambda: terminal(s.ghl, result.message_id), within=15)
        assert s.ghl.statuses(result.message_id) == ["delivered"]
        (sent,) = s.cast.messages.values()
        assert sent.text == "see these\n" + "\n".join(urls)
        row = (await messages_by_ghl_id(s.settings))[result.message_id]
        assert row.gateway_parts == sent.parts == row.parts_estimate
        assert s.cast.billed(result.message_id, api_key=DEFAULT_API_KEY) == 1


async def test_attachments_rejected(tmp_path: Path) -> None:
    """With CASTBRIDGE_ATTACHMENTS=reject the message fails, HighLevel told why, nothing sent."""
    async with run_stack(
        tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), attachments="reject", **FAST
    ) as s:
        await s.install()
        result = await s.ghl.send_delivery_webhook(
            s.delivery_url,
            phone="+639171234567",
            message="see this",
            attachments=["https://example.com/a.png"],
        )
        assert result.status_code == 200
        assert await wait_for(lambda: terminal(s.ghl, result.message_id), within=15)
        assert s.ghl.statuses(result.message_id) == ["failed"]
        error = s.ghl.messages[result.message_id].status_errors[0]
        assert error is not None
        assert error["code"] == "ATTACHMENTS_UNSUPPORTED"
        assert "attachments" in error["message"]
        assert s.cast.stats.sends == 0


async def test_a_job_that_keeps_crashing_ends_through_its_kind_terminal_path(
    tmp_path: Path,
) -> None:
    """A send whose handler keeps raising (here: a phone number that no longer decrypts) is
    retried a few times, then ends like a failed send: HighLevel is told `failed`, and the
    crashes are on the timeline. Before, the crash handler gave up only at twice the send
    attempts and could leave the message queued with HighLevel never told."""
    from sqlalchemy import update

    from castbridge.store.models import Message

    async with run_stack(tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), **FAST) as s:
        location = LOCATIONS[0]
        # Not installed yet: the delivery is held, so its row can be spoiled before the send.
        result = await s.ghl.send_delivery_webhook(
            s.delivery_url, phone=PH_MOBILE.format(7), message="hi", location_id=location
        )
        async with s.resources.store.write() as session:
            await session.execute(
                update(Message)
                .where(Message.ghl_message_id == result.message_id)
                .values(phone_enc="not-a-fernet-token")
            )
        await s.install(location)
        assert await wait_for(lambda: terminal(s.ghl, result.message_id), within=30)
        assert s.ghl.statuses(result.message_id) == ["failed"]
        outcomes = [a.outcome for a in await attempts_of(s.settings, result.message_id)]
        assert outcomes.count("crashed") == 5
        assert s.cast.stats.sends == 0
