"""Every gateway end to end: HighLevel sandbox -> castbridge -> the gateway's sandbox -> the
real status back in HighLevel, for a sub-account that picked that gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2

from castbridge.sandbox.castbrick import UNDELIVERABLE_NUMBER as AO_UNDELIVERABLE
from castbridge.sandbox.castbrick import CastBrickSandboxConfig
from castbridge.sandbox.kit import Faults
from castbridge.sandbox.stack import Stack, run_stack, wait_for
from tests.e2e.support import (
    FAST,
    LOCATIONS,
    attempts_of,
    cast_config,
    cli,
    ghl_config,
    messages_by_ghl_id,
    terminal,
)
from tests.support.db import job_states

AO = "+24492300{:04d}"
UG = "+2567029{:05d}"


def _castbrick(**values: Any) -> CastBrickSandboxConfig:
    defaults: dict[str, Any] = {"sent_after_seconds": 0.2, "final_after_seconds": 0.5, "seed": 7}
    defaults.update(values)
    return CastBrickSandboxConfig(**defaults)


async def _send(s: Stack, location: str, phone: str, text: str) -> str:
    result = await s.ghl.send_delivery_webhook(
        s.delivery_url, phone=phone, message=text, location_id=location
    )
    assert result.status_code == 200, result.status_code
    return result.message_id


async def test_castbrick_sub_account_gets_pushed_reports(tmp_path: Path) -> None:
    """A CastBrick account configured for a location: its base path probed, its webhooks
    registered; delivered and failed come back as pushed reports (no poll needed), the
    failure with CastBrick's reason, each message sent once."""
    async with run_stack(
        tmp_path,
        castbrick_config=_castbrick(),
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **FAST,
    ) as s:
        assert s.castbrick is not None
        location = LOCATIONS[0]
        await s.install(location)
        account_id = await s.use_gateway(location, "castbrick")
        shown = json.loads(
            (await cli(s.settings, "accounts", "show", str(account_id), "--json")).stdout
        )
        assert shown["gateway"] == "castbrick"
        assert "SmsDelivered" in shown["webhooks_registered"]
        ok = await _send(s, location, AO.format(1), "Olá de castbridge")
        bad = await _send(s, location, AO_UNDELIVERABLE, "this one bounces")
        assert await wait_for(lambda: terminal(s.ghl, ok) and terminal(s.ghl, bad), within=20)
        assert s.ghl.statuses(ok) == ["delivered"]
        assert s.ghl.statuses(bad) == ["failed"]
        error = s.ghl.messages[bad].status_errors[0]
        assert error is not None
        assert "unreachable" in error["message"]
        assert s.castbrick.billed(AO.format(1), "Olá de castbridge") == 1
        assert s.cast.stats.sends == 0  # nothing went through the default Cast account
        # Settled by the push: the fallback poll (due after 2 minutes) was closed unrun.
        states = await job_states(s.settings)
        assert not any(key.startswith("poll:") and not key.endswith(":done") for key in states)


async def test_castbrick_answer_lost_after_billing_is_reconciled_not_resent(
    tmp_path: Path,
) -> None:
    """CastBrick took the message but its answer never came (a timeout after billing): no
    idempotency key, so castbridge does not resend blind; it finds the send in CastBrick's
    list, tracks it, and the recipient gets exactly one SMS."""
    config = _castbrick(faults=Faults(timeout_next=1, timeout_seconds=5.0))
    async with run_stack(
        tmp_path,
        castbrick_config=config,
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **{
            **FAST,
            "reconcile_settle_seconds": 3.0,
            "gateway_settings": {"castbrick": {"timeout_seconds": 1.0}},
        },
    ) as s:
        assert s.castbrick is not None
        await s.install(LOCATIONS[0])
        await s.use_gateway(LOCATIONS[0], "castbrick")
        message_id = await _send(s, LOCATIONS[0], AO.format(2), "answer lost")
        assert await wait_for(lambda: terminal(s.ghl, message_id), within=30)
        assert s.ghl.statuses(message_id) == ["delivered"]
        assert s.castbrick.billed(AO.format(2), "answer lost") == 1
        outcomes = [(a.kind, a.outcome) for a in await attempts_of(s.settings, message_id)]
        assert ("send", "outcome unknown") in outcomes
        assert ("reconcile", "found") in outcomes


async def test_castbrick_cut_before_billing_is_sent_once_after_proof(tmp_path: Path) -> None:
    """The connection was cut before CastBrick processed anything (the client cannot tell):
    castbridge reconciles, finds no trace once CastBrick's list has settled, and only then
    sends again. One SMS, never two."""
    config = _castbrick(faults=Faults(cut_before_next=1))
    async with run_stack(
        tmp_path,
        castbrick_config=config,
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **{
            **FAST,
            "reconcile_settle_seconds": 2.0,
            "gateway_settings": {"castbrick": {"timeout_seconds": 2.0}},
        },
    ) as s:
        assert s.castbrick is not None
        await s.install(LOCATIONS[0])
        await s.use_gateway(LOCATIONS[0], "castbrick", options={"reconcile_settle_seconds": 1.0})
        message_id = await _send(s, LOCATIONS[0], AO.format(3), "cut before billing")
        assert await wait_for(lambda: terminal(s.ghl, message_id), within=40)
        assert s.ghl.statuses(message_id) == ["delivered"]
        assert s.castbrick.billed(AO.format(3), "cut before billing") == 1
        outcomes = [(a.kind, a.outcome) for a in await attempts_of(s.settings, message_id)]
        assert ("reconcile", "not sent: sending again") in outcomes


async def test_gateway_webhook_with_an_unknown_token_is_404(tmp_path: Path) -> None:
    """The unguessable token in the path is the authentication: a wrong one is 404 and
    stores nothing; a real one stores each event once (a repeat is a duplicate)."""
    async with run_stack(
        tmp_path,
        castbrick_config=_castbrick(),
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **FAST,
    ) as s:
        await s.install(LOCATIONS[0])
        account_id = await s.use_gateway(LOCATIONS[0], "castbrick")
        shown = json.loads(
            (await cli(s.settings, "accounts", "show", str(account_id), "--json")).stdout
        )
        body = {"eventType": "SmsDelivered", "data": {"messageId": "nope", "status": "Delivered"}}
        async with httpx2.AsyncClient(timeout=10) as http:
            wrong = await http.post(f"{s.url}/webhooks/gateways/castbrick/not-a-token", json=body)
            assert wrong.status_code == 404
            first = await http.post(shown["webhook_url"], json=body)
            again = await http.post(shown["webhook_url"], json=body)
        assert first.status_code == again.status_code == 200
        assert (first.json()["stored"], again.json()["duplicates"]) == (1, 1)


async def test_ugsms_sub_account_is_sent_but_never_claimed_delivered(tmp_path: Path) -> None:
    """UGSMS has no delivery status: the message is sent once, HighLevel stays at pending
    (it has no "sent"), and castbridge's timeline says UGSMS gives no delivery reports."""
    async with run_stack(tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), **FAST) as s:
        assert s.ugsms is not None
        await s.install(LOCATIONS[1])
        await s.use_gateway(LOCATIONS[1], "ugsms")
        message_id = await _send(s, LOCATIONS[1], UG.format(1), "Oli otya")

        async def sent() -> bool:
            rows = await messages_by_ghl_id(s.settings)
            return message_id in rows and rows[message_id].status == "sent"

        for _ in range(100):
            if await sent():
                break
            await wait_for(lambda: False, within=0.1)
        assert await sent()
        await wait_for(lambda: False, within=1.5)
        assert s.ghl.statuses(message_id) == []  # never "delivered"
        assert s.ugsms.billed("0702900001", "Oli otya") == 1
        timeline = [a.detail or "" for a in await attempts_of(s.settings, message_id)]
        assert any("UGSMS gives no delivery reports" in detail for detail in timeline)


async def test_cellcast_sub_account_with_the_dashboard_webhook(tmp_path: Path) -> None:
    """A Cellcast account: the webhook URL `accounts show` prints pasted into Cellcast's
    dashboard; delivered and failed arrive as pushed Status reports; each message carries our
    reference in customString and is sent once."""
    from castbridge.sandbox.cellcast import CellcastSandboxConfig

    cellcast = CellcastSandboxConfig(sent_after_seconds=0.2, final_after_seconds=0.5, seed=7)
    async with run_stack(
        tmp_path,
        cellcast_config=cellcast,
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **FAST,
    ) as s:
        assert s.cellcast is not None
        location = LOCATIONS[2]
        await s.install(location)
        account_id = await s.use_gateway(location, "cellcast")
        shown = json.loads(
            (await cli(s.settings, "accounts", "show", str(account_id), "--json")).stdout
        )
        assert "paste this URL into the Cellcast dashboard" in shown["webhook_setup"]
        ok = await _send(s, location, "+61412345678", "G'day from castbridge")
        assert await wait_for(lambda: terminal(s.ghl, ok), within=20)
        assert s.ghl.statuses(ok) == ["delivered"]
        assert s.cellcast.billed_to("+61412345678", "G'day from castbridge") == 1
        assert s.cellcast.billed(f"{location}-{ok}") == 1
