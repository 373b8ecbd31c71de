"""What an operator does with the outbound pipeline: replay dead messages, give a location its
own Cast account, and read a message's timeline, all through the real `castbridge` CLI."""

from __future__ import annotations

import json
from pathlib import Path

from castbridge.cli.locations import mask_key
from castbridge.sandbox.cast import DEFAULT_API_KEY, DEFAULT_SENDER_ID, Faults
from castbridge.sandbox.stack import run_stack, wait_for
from castbridge.store import messages as message_store
from tests.e2e.support import (
    FAST,
    LOCATIONS,
    attempts_of,
    cast_config,
    cli,
    ghl_config,
    messages_by_ghl_id,
    open_jobs,
    second_account,
    terminal,
)

SECOND_KEY = "cast_" + "0123456789abcdef" * 4
SECOND_SENDER = "SECONDBRAND"


async def test_dead_message_replayed(tmp_path: Path) -> None:
    """Cast down: the message goes dead, HighLevel gets failed; `messages retry` sends it once."""
    config = cast_config()
    # 408: Cast refused before processing (a 5xx would be an unknown outcome, retried under
    # the same key until the horizon and never reported failed).
    config.faults = Faults(error_rate=1.0, error_statuses=[408])
    async with run_stack(
        tmp_path, cast_config=config, ghl_config=ghl_config(), send_max_attempts=2, **FAST
    ) as s:
        await s.install()
        result = await s.ghl.send_delivery_webhook(
            s.delivery_url, phone="+639171234567", message="hello"
        )
        message_id = result.message_id
        assert result.status_code == 200
        assert await wait_for(lambda: terminal(s.ghl, message_id), within=15)
        assert s.ghl.statuses(message_id) == ["failed"]
        error = s.ghl.messages[message_id].status_errors[0]
        assert error is not None
        assert "could not be reached" in error["message"]
        async with s.resources.store.read() as session:
            dead = await message_store.list_messages(session, status="dead")
        assert [m.ghl_message_id for m in dead] == [message_id]
        assert s.cast.billed(message_id) == 0
        assert s.cast.stats.injected[408] == 2  # send_max_attempts

        s.cast.config.faults = Faults()  # Cast is back
        # HighLevel shows it failed, so the user may have resent it: refused without --force
        # (it used to be replayed silently, risking a second copy).
        refused = await cli(s.settings, "messages", "retry", message_id)
        assert refused.exit_code == 1
        assert "--force" in refused.output
        replay = await cli(s.settings, "messages", "retry", message_id, "--force")
        assert replay.exit_code == 0, replay.output
        assert "requeued" in replay.output
        assert "may get it twice" in replay.output  # the operator is warned

        async def status() -> str:
            return (await messages_by_ghl_id(s.settings))[message_id].status

        for _ in range(100):
            if await status() == "delivered" and not await open_jobs(s.settings, message_id):
                break
            await wait_for(lambda: False, within=0.1)
        assert await status() == "delivered"
        assert s.cast.billed(message_id) == 1
        # After a forced replay castbridge tries `delivered` anyway and records HighLevel's
        # answer (ghl.md §8: whether failed -> delivered is accepted is the open question).
        assert s.ghl.statuses(message_id)[0] == "failed"
        timeline = [(a.kind, a.outcome) for a in await attempts_of(s.settings, message_id)]
        assert timeline[:2] == [("send", "retry"), ("send", "dead")]
        assert timeline[-1][0] == "report"
        assert timeline[-1][1].startswith("forced: HighLevel")
        again = await cli(s.settings, "messages", "retry", message_id)
        assert again.exit_code == 1
        assert "only cancelled, dead, failed, unknown" in again.output


async def test_location_with_its_own_cast_account(tmp_path: Path) -> None:
    """`locations configure` gives a location its own Cast key and sender; the CLI shows it all."""
    own, shared = LOCATIONS[0], LOCATIONS[1]
    async with run_stack(
        tmp_path,
        cast_config=cast_config(second_account(SECOND_KEY, SECOND_SENDER)),
        ghl_config=ghl_config(),
        **FAST,
    ) as s:
        await s.install(own)
        await s.install(shared)
        configured = await cli(
            s.settings,
            "locations",
            "configure",
            own,
            "--gateway",
            "cast",
            "--api-key-stdin",
            "--sender-id",
            SECOND_SENDER,
            stdin=SECOND_KEY + "\n",
        )
        assert configured.exit_code == 0, configured.output
        assert SECOND_KEY not in configured.output

        sent = {}
        for location in (own, shared):
            result = await s.ghl.send_delivery_webhook(
                s.delivery_url, phone="+639171234567", message="hi", location_id=location
            )
            assert result.status_code == 200
            sent[location] = result.message_id
        assert await wait_for(lambda: all(terminal(s.ghl, m) for m in sent.values()), within=15)
        assert [s.ghl.statuses(m) for m in sent.values()] == [["delivered"]] * 2

        assert s.cast.billed(sent[own], api_key=SECOND_KEY) == 1
        assert s.cast.billed(sent[own], api_key=DEFAULT_API_KEY) == 0
        assert s.cast.billed(sent[shared], api_key=DEFAULT_API_KEY) == 1
        by_key = {(m.idempotency_key or "").rsplit(":", 1)[-1]: m for m in s.cast.messages.values()}
        assert by_key[sent[own]].api_key == SECOND_KEY
        assert by_key[sent[own]].sender_id == SECOND_SENDER
        assert by_key[sent[shared]].sender_id == DEFAULT_SENDER_ID
        assert s.cast.account(SECOND_KEY).credits == 999

        # locations list: the key masked, never in full.
        table = await cli(s.settings, "locations", "list")
        assert table.exit_code == 0, table.output
        assert mask_key(SECOND_KEY) in table.output
        assert SECOND_KEY not in table.output
        listed = json.loads((await cli(s.settings, "locations", "list", "--json")).stdout)
        assert listed == [
            {
                **listed[0],
                "location": own,
                "gateway": "cast",
                "api_key": mask_key(SECOND_KEY),
                "sender_id": SECOND_SENDER,
            }
        ]

        # messages list / show, as a table and as JSON.
        table = await cli(s.settings, "messages", "list")
        assert table.exit_code == 0, table.output
        assert sent[own] in table.output
        assert sent[shared] in table.output
        assert "+639171234567" not in table.output  # phone numbers are masked
        rows = json.loads((await cli(s.settings, "messages", "list", "--json")).stdout)
        assert {row["message_id"]: row["status"] for row in rows} == {
            sent[own]: "delivered",
            sent[shared]: "delivered",
        }
        assert {row["highlevel"] for row in rows} == {"delivered"}

        shown = await cli(s.settings, "messages", "show", sent[own])
        assert shown.exit_code == 0, shown.output
        for words in ("timeline", "send", "accepted", "delivered", "reported delivered", "jobs"):
            assert words in shown.output
        detail = json.loads((await cli(s.settings, "messages", "show", sent[own], "--json")).stdout)
        assert detail["status"] == "delivered"
        assert detail["highlevel"] == "delivered"
        assert detail["gateway_id"] == by_key[sent[own]].message_id
        assert [(t["kind"], t["outcome"]) for t in detail["timeline"]] == [
            ("intake", "received"),
            ("send", "accepted"),
            ("status", "delivered"),
            ("report", "reported delivered"),
        ]
        # One job row carried the message through send, poll and report.
        assert [(j["kind"], j["state"]) for j in detail["jobs"]] == [("report", "done")]
        missing = await cli(s.settings, "messages", "show", "nosuchmessage")
        assert missing.exit_code == 1


async def test_deprecated_cast_api_key_option_still_works_and_warns(tmp_path: Path) -> None:
    """`--cast-api-key K` keeps working (with a warning: a key on the command line leaks into
    shell history and the process list)."""
    async with run_stack(
        tmp_path,
        cast_config=cast_config(second_account(SECOND_KEY, SECOND_SENDER)),
        ghl_config=ghl_config(),
        **FAST,
    ) as s:
        configured = await cli(
            s.settings, "locations", "configure", LOCATIONS[0], "--cast-api-key", SECOND_KEY
        )
        assert configured.exit_code == 0, configured.output
        assert "deprecated" in configured.output
        accounts = json.loads((await cli(s.settings, "accounts", "list", "--json")).stdout)
        assert {a["owner_location"] for a in accounts if a["origin"] == "location"} == {
            LOCATIONS[0]
        }


async def test_a_refused_key_is_not_stored(tmp_path: Path) -> None:
    """A key is checked live with the gateway before it is stored; a refused one prints the
    gateway's own message and changes nothing."""
    async with run_stack(tmp_path, cast_config=cast_config(), ghl_config=ghl_config(), **FAST) as s:
        refused = await cli(
            s.settings,
            "locations",
            "configure",
            LOCATIONS[0],
            "--gateway",
            "cast",
            "--api-key-stdin",
            stdin="cast_" + "9" * 64 + "\n",
        )
        assert refused.exit_code == 1
        assert "refused the key" in refused.output
        accounts = json.loads((await cli(s.settings, "accounts", "list", "--json")).stdout)
        assert {a["origin"] for a in accounts} == {"env"}  # only the operator's defaults
