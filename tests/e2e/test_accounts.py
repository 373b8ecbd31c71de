"""Gateway accounts end to end: who may use the operator's default account, pinning, pausing an
account the gateway refuses (held, probed, resumed, failed after the grace), and an UNINSTALL
in the middle of a burst."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from castbridge.sandbox.cast import DEFAULT_API_KEY, Faults
from castbridge.sandbox.stack import Stack, run_stack, wait_for
from tests.e2e.support import (
    FAST,
    LOCATIONS,
    PH_MOBILE,
    attempts_of,
    cast_config,
    cli,
    ghl_config,
    messages_by_ghl_id,
    payloads,
    post_all,
    second_account,
    terminal,
)

SECOND_KEY = "cast_" + "0123456789abcdef" * 4


def _fast(**extra: Any) -> dict[str, Any]:
    return {**FAST, **extra}


async def _cast_account(s: Stack) -> dict[str, Any]:
    """The Cast default account's row; the stack also configures every other gateway's."""
    listed = json.loads((await cli(s.settings, "accounts", "list", "--json")).stdout)
    (account,) = [row for row in listed if row["gateway"] == "cast"]
    return account


async def _send(s: Stack, location: str, n: int = 0) -> str:
    result = await s.ghl.send_delivery_webhook(
        s.delivery_url, phone=PH_MOBILE.format(n), message=f"hello {n}", location_id=location
    )
    assert result.status_code == 200
    return result.message_id


async def test_location_not_allowed_on_the_default_account_is_told_how_to_configure(
    tmp_path: Path,
) -> None:
    """CASTBRIDGE_DEFAULT_ACCOUNT_LOCATIONS lists who may use the operator's key: another
    location without its own account gets `failed` with a sentence saying how to set up SMS,
    and nothing is sent on the operator's account (it used to be, for every location)."""
    allowed, other = LOCATIONS[0], LOCATIONS[1]
    async with run_stack(
        tmp_path,
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **_fast(default_account_locations=allowed),
    ) as s:
        await s.install(allowed)
        await s.install(other)
        ok, refused = await _send(s, allowed, 1), await _send(s, other, 2)
        assert await wait_for(lambda: terminal(s.ghl, ok) and terminal(s.ghl, refused), within=15)
        assert s.ghl.statuses(ok) == ["delivered"]
        assert s.ghl.statuses(refused) == ["failed"]
        error = s.ghl.messages[refused].status_errors[0]
        assert error is not None
        assert error["code"] == "SMS_NOT_CONFIGURED"
        assert "settings page" in error["message"]
        assert s.cast.billed(refused) == 0


async def test_a_location_that_had_its_own_account_never_falls_back(tmp_path: Path) -> None:
    """Once a location had its own key, losing it (UNINSTALL shreds it; a reinstall follows)
    never moves it to the operator's default account (gateways.md §6)."""
    own = LOCATIONS[0]
    async with run_stack(
        tmp_path,
        cast_config=cast_config(second_account(SECOND_KEY, "SECONDBRAND")),
        ghl_config=ghl_config(),
        **FAST,
    ) as s:
        await s.install(own)
        configured = await cli(
            s.settings,
            "locations",
            "configure",
            own,
            "--gateway",
            "cast",
            "--api-key-stdin",
            stdin=SECOND_KEY + "\n",
        )
        assert configured.exit_code == 0, configured.output
        event = s.ghl.uninstall_payload(location_id=own)
        assert (await s.ghl.send_event(s.events_url, event)).status_code == 200
        await s.install(own)
        message_id = await _send(s, own)
        assert await wait_for(lambda: terminal(s.ghl, message_id), within=15)
        assert s.ghl.statuses(message_id) == ["failed"]
        assert s.cast.billed(message_id) == 0  # on neither key


async def test_refused_credits_pause_the_account_then_it_resumes_by_itself(tmp_path: Path) -> None:
    """No credits: the account is paused on the first refusal and the rest of its queue is
    held, not failed one by one; the operator sees why; when credits are back the slow probe
    resumes it and the held messages go out (each billed once). Before, every message was
    refused by the gateway and reported failed for the user to resend."""
    async with run_stack(
        tmp_path,
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **_fast(account_probe_seconds=1.0),
    ) as s:
        await s.install(LOCATIONS[0])
        s.cast.account(DEFAULT_API_KEY).credits = 0
        ids = [await _send(s, LOCATIONS[0], n) for n in range(5)]

        async def paused() -> bool:
            return (await _cast_account(s))["state"] == "paused"

        for _ in range(100):
            if await paused():
                break
            await wait_for(lambda: False, within=0.1)
        account = await _cast_account(s)
        assert account["state"] == "paused"
        assert "credits" in account["reason"].lower()
        await wait_for(lambda: False, within=2.5)  # a probe or two while still empty
        assert not any(s.ghl.statuses(m) for m in ids)  # held, nobody told "failed"
        rows = await messages_by_ghl_id(s.settings)
        assert {rows[m].status for m in ids} == {"queued"}
        s.cast.account(DEFAULT_API_KEY).credits = 1_000
        assert await wait_for(lambda: all(terminal(s.ghl, m) for m in ids), within=30)
        assert [s.ghl.statuses(m) for m in ids] == [["delivered"]] * 5
        assert [s.cast.billed(m) for m in ids] == [1] * 5
        assert (await _cast_account(s))["state"] == "active"


async def test_held_messages_fail_after_the_grace_with_the_reason(tmp_path: Path) -> None:
    """A revoked key that stays revoked: held messages are reported failed once they waited
    longer than CASTBRIDGE_ACCOUNT_HOLD_GRACE_SECONDS, with the gateway's reason."""
    async with run_stack(
        tmp_path,
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **_fast(account_probe_seconds=0.5, account_hold_grace_seconds=2.0),
    ) as s:
        await s.install(LOCATIONS[0])
        s.cast.account(DEFAULT_API_KEY).revoked = True
        ids = [await _send(s, LOCATIONS[0], n) for n in range(3)]
        assert await wait_for(lambda: all(terminal(s.ghl, m) for m in ids), within=30)
        for message_id in ids:
            assert s.ghl.statuses(message_id) == ["failed"]
            error = s.ghl.messages[message_id].status_errors[0]
            assert error is not None
            assert error["code"] == "ACCOUNT_PAUSED"
            assert "revoked" in error["message"]


async def test_operator_resumes_a_paused_account(tmp_path: Path) -> None:
    """`castbridge accounts resume ID` releases the held messages at once."""
    async with run_stack(
        tmp_path,
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **_fast(account_probe_seconds=600.0),
    ) as s:
        await s.install(LOCATIONS[0])
        s.cast.account(DEFAULT_API_KEY).revoked = True
        first = await _send(s, LOCATIONS[0], 1)

        async def is_paused() -> bool:
            return (await _cast_account(s))["state"] == "paused"

        for _ in range(100):
            if await is_paused():
                break
            await wait_for(lambda: False, within=0.1)
        assert await is_paused()
        s.cast.account(DEFAULT_API_KEY).revoked = False
        cast_id = str((await _cast_account(s))["id"])
        resumed = await cli(s.settings, "accounts", "resume", cast_id)
        assert resumed.exit_code == 0, resumed.output
        assert await wait_for(lambda: terminal(s.ghl, first), within=15)
        assert s.ghl.statuses(first) == ["delivered"]
        shown = json.loads((await cli(s.settings, "accounts", "show", cast_id, "--json")).stdout)
        assert shown["state"] == "active"


async def test_a_new_key_moves_only_messages_no_attempt_can_have_sent(tmp_path: Path) -> None:
    """A location's messages held on its refused account move to the new key it is given; a
    message whose earlier attempt may have gone out stays pinned to its account (idempotency
    is scoped per key), and HighLevel's statuses say delivered for the moved ones."""
    own = LOCATIONS[0]
    async with run_stack(
        tmp_path,
        cast_config=cast_config(second_account(SECOND_KEY, "SECONDBRAND")),
        ghl_config=ghl_config(),
        **_fast(account_probe_seconds=600.0),
    ) as s:
        await s.install(own)
        s.cast.account(DEFAULT_API_KEY).revoked = True
        ids = [await _send(s, own, n) for n in range(3)]
        assert await wait_for(
            lambda: s.cast.stats.requests > 0, within=10
        )  # the first refusal paused the account
        await wait_for(lambda: False, within=1.0)
        configured = await cli(
            s.settings,
            "locations",
            "configure",
            own,
            "--gateway",
            "cast",
            "--api-key-stdin",
            stdin=SECOND_KEY + "\n",
        )
        assert configured.exit_code == 0, configured.output
        assert "3 queued message(s) moved" in configured.output
        assert await wait_for(lambda: all(terminal(s.ghl, m) for m in ids), within=20)
        assert [s.ghl.statuses(m) for m in ids] == [["delivered"]] * 3
        assert [s.cast.billed(m, api_key=SECOND_KEY) for m in ids] == [1, 1, 1]


async def test_uninstall_mid_burst_cancels_the_queued_sends(tmp_path: Path) -> None:
    """An UNINSTALL in the middle of a burst: nothing more is sent for that location, its queued
    sends are cancelled and say so on their timeline; nothing is sent on another account."""
    location = LOCATIONS[0]
    config = cast_config()
    config.accounts[0].rate_limit = 5.0
    async with run_stack(
        tmp_path,
        cast_config=config,
        ghl_config=ghl_config(),
        **_fast(gateway_settings={"cast": {"rate_limit": 4.0}}),
    ) as s:
        await s.install(location)
        bodies = payloads(s.ghl, [PH_MOBILE.format(n) for n in range(30)], location_id=location)
        posted = await post_all(s.ghl, s.delivery_url, bodies)
        assert [p.status_code for p in posted] == [200] * 30
        assert await wait_for(lambda: s.cast.stats.sends >= 3, within=10)
        event = s.ghl.uninstall_payload(location_id=location)
        assert (await s.ghl.send_event(s.events_url, event)).status_code == 200
        sent_at_uninstall = s.cast.stats.sends
        await wait_for(lambda: False, within=2.0)
        assert s.cast.stats.sends <= sent_at_uninstall + 1  # at most one already in flight
        rows = await messages_by_ghl_id(s.settings)
        cancelled = [m for m, row in rows.items() if row.status == "cancelled"]
        assert len(cancelled) >= 20
        timeline = [(a.kind, a.outcome) for a in await attempts_of(s.settings, cancelled[0])]
        assert ("send", "cancelled") in timeline
        assert all(not s.ghl.statuses(m) for m in cancelled)


async def test_unreadable_answers_and_5xx_to_a_send_are_never_reported_failed(
    tmp_path: Path,
) -> None:
    """Cast processed and billed the send but answered 502, or 200 with an HTML page: the
    outcome is unknown, so it is retried under the same key (Cast replays its cached answer)
    and delivered, billed once. Both used to be reported failed, inviting a paid resend."""
    config = cast_config()
    config.faults = Faults(garble_next=1)
    async with run_stack(tmp_path, cast_config=config, ghl_config=ghl_config(), **FAST) as s:
        await s.install(LOCATIONS[0])
        garbled = await _send(s, LOCATIONS[0], 1)
        assert await wait_for(lambda: terminal(s.ghl, garbled), within=20)
        s.cast.config.faults = Faults(fail_next=[502, 500])
        errored = await _send(s, LOCATIONS[0], 2)
        assert await wait_for(lambda: terminal(s.ghl, errored), within=20)
        for message_id in (garbled, errored):
            assert s.ghl.statuses(message_id) == ["delivered"]
            assert s.cast.billed(message_id) == 1
        assert s.cast.stats.garbled == 1
