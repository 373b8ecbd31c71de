"""Two-way end to end, over real HTTP: a handset's reply through each two-way gateway lands in
the right HighLevel conversation exactly once (however often and by whichever path it
arrives, whatever HighLevel answers), STOP and START are honoured on both sides, and a reply
nobody can route is parked, then replayed to a chosen location."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx2

from castbridge.sandbox.cast import DEFAULT_API_KEY as CAST_KEY
from castbridge.sandbox.cast import DEFAULT_SENDER_ID as CAST_SENDER
from castbridge.sandbox.cast import UnsubscribedEntry
from castbridge.sandbox.castbrick import DEFAULT_API_KEY as CASTBRICK_KEY
from castbridge.sandbox.castbrick import CastBrickSandboxConfig
from castbridge.sandbox.cellcast import DEFAULT_API_KEY as CELLCAST_KEY
from castbridge.sandbox.cellcast import CellcastSandboxConfig
from castbridge.sandbox.ghl.state import SandboxMessage
from castbridge.sandbox.stack import Stack, run_stack, wait_for
from tests.e2e.support import FAST, LOCATIONS, cast_config, cli, ghl_config, terminal

AO = "+24492300{:04d}"
AU = "+6141234{:04d}"

TWO_WAY: dict[str, Any] = {**FAST, "inbound_poll_seconds": 600.0}


def _castbrick() -> CastBrickSandboxConfig:
    return CastBrickSandboxConfig(sent_after_seconds=0.2, final_after_seconds=0.5, seed=7)


def _cellcast(**values: Any) -> CellcastSandboxConfig:
    defaults: dict[str, Any] = {"sent_after_seconds": 0.2, "final_after_seconds": 0.5, "seed": 7}
    defaults.update(values)
    return CellcastSandboxConfig(**defaults)


def two_way_stack(path: Path, **overrides: Any) -> Any:
    """Every sandbox with fast two-way timings (CastBrick and Cellcast report within a
    second) and castbridge with TWO_WAY's settings plus `overrides`."""
    return run_stack(
        path,
        castbrick_config=_castbrick(),
        cellcast_config=_cellcast(),
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        **{**TWO_WAY, **overrides},
    )


def inbound(s: Stack, location: str, text: str | None = None) -> list[SandboxMessage]:
    """The inbound messages HighLevel holds for a location."""
    return [
        m
        for m in s.ghl.messages.values()
        if m.direction == "inbound"
        and m.location_id == location
        and (text is None or m.body == text)
    ]


async def _send(s: Stack, location: str, phone: str, text: str) -> str:
    result = await s.ghl.send_delivery_webhook(
        s.delivery_url, phone=phone, message=text, location_id=location
    )
    assert result.status_code == 200, result.status_code
    return result.message_id


async def test_a_castbrick_reply_posted_four_times_lands_once_in_its_conversation(
    tmp_path: Path,
) -> None:
    """CastBrick pushes an InboundMessage and the same body arrives three more times at once
    (a gateway retrying): one inbound message in HighLevel, in the conversation of the contact
    with that number, sent as SMS with our provider id and the gateway's id as altId."""
    async with two_way_stack(tmp_path) as s:
        assert s.castbrick is not None
        location = LOCATIONS[0]
        await s.install(location)
        await s.use_gateway(location, "castbrick")
        outbound = await _send(s, location, AO.format(1), "A sua consulta é amanhã às 15h")
        assert await wait_for(lambda: terminal(s.ghl, outbound), within=20)
        event = s.castbrick.emit_inbound(
            s.castbrick.account(CASTBRICK_KEY), AO.format(1), "Sim, às 15h está bem"
        )
        body = json.dumps(event.body).encode()
        url = await s.webhook_url(await _account_of(s, location))
        async with httpx2.AsyncClient(timeout=10) as http:
            answers = await asyncio.gather(
                *(
                    http.post(url, content=body, headers={"Content-Type": "application/json"})
                    for _ in range(3)
                )
            )
        assert {a.status_code for a in answers} == {200}
        assert await wait_for(lambda: len(inbound(s, location)) >= 1, within=20)
        await asyncio.sleep(1.5)  # any duplicate would have landed by now
        (landed,) = inbound(s, location)
        assert landed.body == "Sim, às 15h está bem"
        assert landed.message_type == "TYPE_SMS"
        assert landed.conversation_provider_id == s.ghl.config.conversation_provider_id
        assert landed.alt_id
        contact = s.ghl.find_contact(location, AO.format(1))
        assert contact is not None
        assert landed.contact_id == contact.id
        assert landed.conversation_id == s.ghl.messages[outbound].conversation_id


async def _account_of(s: Stack, location: str) -> int:
    listed = json.loads((await cli(s.settings, "accounts", "list", "--json")).stdout)
    (row,) = [r for r in listed if r["owner_location"] == location]
    return int(row["id"])


async def test_a_cellcast_reply_with_its_webhook_down_is_found_by_polling_once(
    tmp_path: Path,
) -> None:
    """Cellcast's Receive webhook is down: the standing poll of getResponses finds the reply
    and it reaches HighLevel. With the webhook back, the next reply comes by push and the poll
    finds it too: still one message each."""
    async with two_way_stack(tmp_path, inbound_poll_seconds=1.0) as s:
        assert s.cellcast is not None
        location = LOCATIONS[0]
        await s.install(location)
        await s.use_gateway(location, "cellcast")
        outbound = await _send(s, location, AU.format(1), "Your booking is tomorrow at 3pm")
        assert await wait_for(lambda: terminal(s.ghl, outbound), within=20)
        s.cellcast.pusher.enabled = False
        s.cellcast.emit_reply(CELLCAST_KEY, AU.format(1), "Can we make it 4pm?")
        assert await wait_for(lambda: bool(inbound(s, location, "Can we make it 4pm?")), within=20)
        s.cellcast.pusher.enabled = True
        s.cellcast.emit_reply(CELLCAST_KEY, AU.format(1), "Thanks!")
        assert await wait_for(lambda: bool(inbound(s, location, "Thanks!")), within=20)
        await asyncio.sleep(3.0)  # two more polls walk over both replies
        assert len(inbound(s, location, "Can we make it 4pm?")) == 1
        assert len(inbound(s, location, "Thanks!")) == 1


async def test_highlevel_dropping_or_losing_the_answer_to_an_add_never_duplicates(
    tmp_path: Path,
) -> None:
    """HighLevel answers the first add 201 with an empty body and drops it (issue #70), and
    stores the next one but answers 500: castbridge retries the first, finds the second by
    its altId instead of adding it again. One message each."""
    async with two_way_stack(tmp_path) as s:
        assert s.castbrick is not None
        location = LOCATIONS[0]
        await s.install(location)
        await s.use_gateway(location, "castbrick")
        account = s.castbrick.account(CASTBRICK_KEY)
        s.ghl.drop_inbound_next = 1
        s.castbrick.emit_inbound(account, AO.format(2), "dropped first")
        assert await wait_for(lambda: bool(inbound(s, location, "dropped first")), within=20)
        s.ghl.fail_after_inbound_next = 1
        s.castbrick.emit_inbound(account, AO.format(2), "answer lost")
        assert await wait_for(lambda: bool(inbound(s, location, "answer lost")), within=20)
        await asyncio.sleep(2.0)
        assert len(inbound(s, location, "dropped first")) == 1
        assert len(inbound(s, location, "answer lost")) == 1
        listed = json.loads((await cli(s.settings, "inbound", "list", "--json")).stdout)
        assert {row["status"] for row in listed} == {"delivered"}


async def test_stop_sets_dnd_and_refuses_the_next_send_until_start(tmp_path: Path) -> None:
    """STOP from a handset: the reply is still in the conversation, the contact is on SMS
    DND in HighLevel, and the next outbound to that number is reported failed with the reason
    without reaching CastBrick. START lifts both and sending works again."""
    async with two_way_stack(tmp_path) as s:
        assert s.castbrick is not None
        location, phone = LOCATIONS[0], AO.format(3)
        await s.install(location)
        await s.use_gateway(location, "castbrick")
        account = s.castbrick.account(CASTBRICK_KEY)
        first = await _send(s, location, phone, "Promoção de Natal!")
        assert await wait_for(lambda: terminal(s.ghl, first), within=20)
        s.castbrick.emit_inbound(account, phone, "Stop.")

        def dnd() -> str | None:
            contact = s.ghl.find_contact(location, phone)
            return contact.sms_dnd if contact else None

        assert await wait_for(lambda: dnd() == "active", within=20)
        assert inbound(s, location, "Stop.")
        refused = await _send(s, location, phone, "Última chamada!")
        assert await wait_for(lambda: terminal(s.ghl, refused), within=20)
        assert s.ghl.statuses(refused) == ["failed"]
        error = s.ghl.messages[refused].status_errors[0]
        assert error is not None
        assert error["code"] == "OPTED_OUT"
        assert "opted out" in error["message"]
        assert "STOP" in error["message"]
        assert s.castbrick.billed(phone, "Última chamada!") == 0
        listed = json.loads((await cli(s.settings, "optouts", "list", "--json")).stdout)
        assert [(r["location"], r["source"], r["highlevel_dnd"]) for r in listed] == [
            (location, "keyword", "active")
        ]
        s.castbrick.emit_inbound(account, phone, "START")
        assert await wait_for(lambda: dnd() == "inactive", within=20)
        again = await _send(s, location, phone, "Bem-vindo de volta")
        assert await wait_for(lambda: terminal(s.ghl, again), within=20)
        assert s.ghl.statuses(again) == ["delivered"]
        assert s.castbrick.billed(phone, "Bem-vindo de volta") == 1


async def test_a_gateway_opt_out_signal_is_honoured_without_a_reply(tmp_path: Path) -> None:
    """CastBrick's own OptOut event (no reply text): recorded, DND set, later sends refused by
    castbridge itself; nothing is added to the conversation."""
    async with two_way_stack(tmp_path) as s:
        assert s.castbrick is not None
        location, phone = LOCATIONS[0], AO.format(4)
        await s.install(location)
        await s.use_gateway(location, "castbrick")
        first = await _send(s, location, phone, "Olá")
        assert await wait_for(lambda: terminal(s.ghl, first), within=20)
        s.castbrick.emit_optout(s.castbrick.account(CASTBRICK_KEY), phone)

        def dnd() -> str | None:
            contact = s.ghl.find_contact(location, phone)
            return contact.sms_dnd if contact else None

        assert await wait_for(lambda: dnd() == "active", within=20)
        assert not inbound(s, location)
        refused = await _send(s, location, phone, "Mais uma")
        assert await wait_for(lambda: terminal(s.ghl, refused), within=20)
        assert s.ghl.messages[refused].status_errors[0]["code"] == "OPTED_OUT"  # type: ignore[index]
        assert s.castbrick.billed(phone, "Mais uma") == 0


async def test_opt_outs_kept_by_the_gateway_are_synced_into_castbridge(tmp_path: Path) -> None:
    """Cast's unsubscribe list and Cellcast's getOptout: a number that opted out at the gateway
    (an unsubscribe link) goes on SMS DND in HighLevel and is refused by castbridge itself;
    on the operator's shared Cast account only numbers a location texted are taken (a number
    nobody texted is not parked as an unroutable signal), and another sender's entry is not."""
    texted, never, other_sender = "+639171110001", "+639171110002", "+639171110003"
    async with two_way_stack(tmp_path, optout_sync_seconds=0.5) as s:
        assert s.cellcast is not None
        cast_location, cellcast_location = LOCATIONS[0], LOCATIONS[1]
        await s.install(cast_location)
        await s.install(cellcast_location)
        await s.use_gateway(cellcast_location, "cellcast")
        first = await _send(s, cast_location, texted, "Sale starts today")
        also = await _send(s, cast_location, other_sender, "Sale starts today")
        second = await _send(s, cellcast_location, AU.format(7), "Sale starts today")
        for message_id in (first, also, second):
            assert await wait_for(lambda m=message_id: terminal(s.ghl, m), within=20)
        s.cast.account(CAST_KEY).unsubscribed = [
            UnsubscribedEntry(phone=texted[1:], sender_id=CAST_SENDER),
            UnsubscribedEntry(phone=never[1:], sender_id=CAST_SENDER),
            UnsubscribedEntry(phone=other_sender[1:], sender_id="OTHERBRAND"),
        ]
        s.cellcast.accounts[CELLCAST_KEY].optouts.append(AU.format(7)[1:])

        def dnd(location: str, phone: str) -> str | None:
            contact = s.ghl.find_contact(location, phone)
            return contact.sms_dnd if contact else None

        assert await wait_for(lambda: dnd(cast_location, texted) == "active", within=20)
        assert await wait_for(lambda: dnd(cellcast_location, AU.format(7)) == "active", within=20)
        await asyncio.sleep(1.5)  # more syncs list the same entries again
        listed = json.loads((await cli(s.settings, "optouts", "list", "--json")).stdout)
        assert sorted((r["location"], r["source"]) for r in listed) == [
            (cast_location, "gateway"),
            (cellcast_location, "gateway"),
        ]
        assert "opt-out list" in str(listed[0]["detail"])
        parked = json.loads(
            (await cli(s.settings, "inbound", "list", "--status", "unroutable", "--json")).stdout
        )
        assert parked == []
        refused = await _send(s, cast_location, texted, "Last day of the sale")
        assert await wait_for(lambda: terminal(s.ghl, refused), within=20)
        assert s.ghl.messages[refused].status_errors[0]["code"] == "OPTED_OUT"  # type: ignore[index]
        assert s.cast.billed(refused) == 0
        sent = await _send(s, cast_location, other_sender, "Last day of the sale")
        assert await wait_for(lambda: terminal(s.ghl, sent), within=20)
        assert s.ghl.statuses(sent) == ["delivered"]


async def test_replies_on_the_default_account_follow_the_last_sender_or_are_parked(
    tmp_path: Path,
) -> None:
    """The operator's CastBrick account serves two locations: a reply goes to the location
    that last texted that number; one from a number nobody texted is parked `unroutable`,
    shown to the operator, and delivered to the location they choose on replay."""
    sender, other = LOCATIONS[0], LOCATIONS[1]
    async with two_way_stack(tmp_path, default_gateway="castbrick") as s:
        assert s.castbrick is not None
        await s.install(sender)
        await s.install(other)
        listed = json.loads((await cli(s.settings, "accounts", "list", "--json")).stdout)
        (env,) = [r for r in listed if r["gateway"] == "castbrick" and r["origin"] == "env"]

        async def registered() -> bool:
            out = await cli(s.settings, "accounts", "show", str(env["id"]), "--json")
            return "InboundMessage" in json.loads(out.stdout).get("webhooks_registered", "")

        for _ in range(100):  # castbridge registers the default account's webhooks at start
            if await registered():
                break
            await asyncio.sleep(0.1)
        assert await registered()
        first = await _send(s, sender, AO.format(5), "Lembrete")
        assert await wait_for(lambda: terminal(s.ghl, first), within=20)
        account = s.castbrick.account(CASTBRICK_KEY)
        # The default account's webhooks were registered by castbridge at start: pushed.
        s.castbrick.emit_inbound(account, AO.format(5), "Obrigado")
        s.castbrick.emit_inbound(account, AO.format(6), "Quem é?")
        assert await wait_for(lambda: bool(inbound(s, sender, "Obrigado")), within=20)

        async def parked() -> list[dict[str, Any]]:
            out = await cli(s.settings, "inbound", "list", "--status", "unroutable", "--json")
            return list(json.loads(out.stdout))

        for _ in range(100):
            if await parked():
                break
            await asyncio.sleep(0.1)
        (row,) = await parked()
        assert row["location"] == ""
        assert not inbound(s, other)
        replayed = await cli(
            s.settings, "inbound", "retry", str(row["id"]), "--location", other, "--json"
        )
        assert replayed.exit_code == 0, replayed.output
        assert json.loads(replayed.stdout) == {"id": row["id"], "queued": True, "location": other}
        assert await wait_for(lambda: bool(inbound(s, other, "Quem é?")), within=20)
        shown = json.loads(
            (await cli(s.settings, "inbound", "show", str(row["id"]), "--json")).stdout
        )
        assert (shown["status"], shown["route"], shown["location"]) == (
            "delivered",
            "operator",
            other,
        )


async def test_replies_survive_a_sigkill_mid_burst(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    """castbridge is SIGKILLed while CastBrick pushes a burst of replies (the gateway retries
    what was not answered 2xx): after the restart every reply is in HighLevel exactly once,
    none lost, none doubled. The location uses the operator's own key, so each reply is also
    pushed to the default account's URL."""
    from castbridge.sandbox.process import Castbridge

    replies = [(AO.format(10 + n % 4), f"reply {n}") for n in range(16)]
    async with two_way_stack(
        tmp_path / "stack", with_castbridge=False, worker_lease_seconds=2.0, **database
    ) as s:
        assert s.castbrick is not None
        s.castbrick.pusher.attempts = 400
        s.castbrick.pusher.retry_delay = 0.05
        location = LOCATIONS[0]
        castbridge = Castbridge(s.settings, tmp_path)
        try:
            await castbridge.start()
            await s.install(location)
            configured = await cli(
                s.settings,
                "locations",
                "configure",
                location,
                "--gateway",
                "castbrick",
                "--api-key-stdin",
                stdin=CASTBRICK_KEY + "\n",
            )
            assert configured.exit_code == 0, configured.output
            account = s.castbrick.account(CASTBRICK_KEY)
            for n, (phone, text) in enumerate(replies):
                s.castbrick.emit_inbound(account, phone, text)
                await asyncio.sleep(0.05)
                if n == len(replies) // 2:
                    castbridge.kill(signal.SIGKILL)
                    await castbridge.wait(within=10)
            await asyncio.sleep(0.5)
            await castbridge.start()

            def arrived() -> bool:
                return all(inbound(s, location, text) for _, text in replies)

            assert await wait_for(arrived, within=60), castbridge.logs()[-3000:]
            await asyncio.sleep(2.0)  # a late duplicate would have landed by now
            counts = {text: len(inbound(s, location, text)) for _, text in replies}
            assert counts == {text: 1 for _, text in replies}
            assert all(d.delivered for d in s.castbrick.pusher.deliveries)
        finally:
            castbridge.stop()
