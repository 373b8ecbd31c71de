"""`castbridge demo`: a realistic mix through the real path, with every expectation checked."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from rich.console import Console
from rich.table import Table

from castbridge.sandbox.cast import UNDELIVERABLE_NUMBER, CastSandboxConfig
from castbridge.sandbox.castbrick import DEFAULT_API_KEY as CASTBRICK_KEY
from castbridge.sandbox.castbrick import UNDELIVERABLE_NUMBER as AO_UNDELIVERABLE
from castbridge.sandbox.castbrick import CastBrickSandboxConfig
from castbridge.sandbox.cellcast import DEFAULT_API_KEY as CELLCAST_KEY
from castbridge.sandbox.cellcast import UNDELIVERABLE_NUMBER as AU_UNDELIVERABLE
from castbridge.sandbox.cellcast import CellcastSandboxConfig
from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.stack import Stack, run_stack
from castbridge.store import messages as message_store

# One sandbox sub-account per gateway (HighLevel-shaped ids) and the gateway it sends on.
LOCATIONS = {
    "cast": "sbxLocationCastPH001",
    "castbrick": "sbxLocationCastBrAO1",
    "cellcast": "sbxLocationCellcAU01",
    "ugsms": "sbxLocationUgsmsUG01",
}

LONG_TEXT = (
    "Hi Maria! Your appointment at Makati Dental Clinic is confirmed for Monday 10:00 AM. "
    "Please arrive 15 minutes early and bring a valid ID and your HMO card. If you need to "
    "reschedule, reply to this message or call us at (02) 8123 4567 during office hours. "
    "Parking is available at the basement of the building. See you soon, and thank you for "
    "choosing us!"
)


@dataclass(slots=True)
class Case:
    label: str
    phone: str
    text: str
    expect: str  # the final HighLevel status we must see ("pending": none, on purpose)
    expect_error: str | None = None  # a fragment the failure message must contain
    message_id: str = ""
    posted_at: float = 0.0
    finished_at: float | None = None
    http_status: int = 0
    duplicate_of: Case | None = None
    gateway: str = "cast"
    notes: list[str] = field(default_factory=list)

    @property
    def location(self) -> str:
        return LOCATIONS[self.gateway]


def build_cases() -> list[Case]:
    burst = [
        Case(f"429 burst #{n}", f"+63918555{1000 + n}", f"Flash sale reminder {n}", "delivered")
        for n in range(1, 6)
    ]
    return [
        Case("E.164", "+639171234567", "Hello from HighLevel via castbridge!", "delivered"),
        Case("local with dashes", "0917-123-4568", "Your order has shipped.", "delivered"),
        Case("local with brackets", "(0918) 123 4567", "See you at 3 PM.", "delivered"),
        Case("country code, no +", "639191234567", "Payment received, salamat!", "delivered"),
        Case("unicode (UCS-2)", "+639271234567", "Salamat po! 😀 Maligayang araw", "delivered"),
        Case("long multipart", "+639351234567", LONG_TEXT, "delivered"),
        Case("invalid number", "12345", "This cannot be sent", "failed", "not a valid"),
        Case(
            "undeliverable number",
            UNDELIVERABLE_NUMBER,
            "Carrier will reject this one",
            "failed",
            "Carrier",
        ),
        *burst,
        Case(
            "CastBrick, Angola",
            "+244923000101",
            "Olá! A sua encomenda chegou.",
            "delivered",
            gateway="castbrick",
        ),
        Case(
            "CastBrick, undeliverable",
            AO_UNDELIVERABLE,
            "Bounces",
            "failed",
            "unreachable",
            gateway="castbrick",
        ),
        Case(
            "Cellcast, Australia",
            "0412 345 678",
            "G'day! Your booking is confirmed.",
            "delivered",
            gateway="cellcast",
        ),
        Case(
            "Cellcast, undeliverable",
            AU_UNDELIVERABLE,
            "Bounces",
            "failed",
            "Carrier",
            gateway="cellcast",
        ),
        Case(
            "UGSMS, Uganda (no DLR)",
            "0702 913 454",
            "Oli otya! Payment received.",
            "pending",
            gateway="ugsms",
        ),
    ]


@dataclass(slots=True)
class Conversation:
    """A handset on a two-way gateway answers, then texts STOP; castbridge must show both in
    HighLevel, set the contact's SMS DND, and refuse the next campaign to that number."""

    gateway: str
    phone: str  # E.164, as the gateway reports the sender
    reply: str
    stop_word: str
    refused: Case | None = None
    results: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def location(self) -> str:
        return LOCATIONS[self.gateway]


CONVERSATIONS = (
    ("castbrick", "+244923000101", "Sim, obrigado! Chego às 15h.", "PARAR"),
    ("cellcast", "+61412345678", "Yes, 3pm works", "STOP"),
)


async def _post(stack: Stack, case: Case, http: httpx2.AsyncClient) -> None:
    case.posted_at = time.monotonic()
    result = await stack.ghl.send_delivery_webhook(
        stack.delivery_url,
        phone=case.phone,
        message=case.text,
        location_id=case.location,
        http=http,
    )
    case.message_id = result.message_id
    case.http_status = result.status_code


async def _repost(stack: Stack, original: Case, http: httpx2.AsyncClient) -> Case:
    """HighLevel retrying a delivery: the same signed body again."""
    payload = stack.ghl.delivery_payload(
        phone=original.phone,
        message=original.text,
        message_id=original.message_id,
        location_id=original.location,
    )
    payload["contactId"] = stack.ghl.messages[original.message_id].contact_id
    response = await stack.ghl.send_event(stack.delivery_url, payload, http=http)
    duplicate = Case(
        "duplicate webhook", original.phone, original.text, original.expect, duplicate_of=original
    )
    duplicate.message_id = original.message_id
    duplicate.http_status = response.status_code
    duplicate.posted_at = time.monotonic()
    return duplicate


async def run_demo(console: Console, *, within: float = 90.0) -> bool:
    """Run the scenario; print the table; True when every expectation held."""
    started = time.monotonic()
    cast_config = CastSandboxConfig(pending_after_seconds=0.5, final_after_seconds=1.5, seed=7)
    castbrick_config = CastBrickSandboxConfig(
        sent_after_seconds=0.3, final_after_seconds=1.0, seed=7
    )
    cellcast_config = CellcastSandboxConfig(sent_after_seconds=0.3, final_after_seconds=1.0, seed=7)
    ghl_config = GHLSandboxConfig(
        not_downstreamed_seconds=2.0, seed=7, location_ids=list(LOCATIONS.values())
    )
    with tempfile.TemporaryDirectory(prefix="castbridge-demo-") as tmp:
        async with run_stack(
            Path(tmp),
            cast_config=cast_config,
            castbrick_config=castbrick_config,
            cellcast_config=cellcast_config,
            ghl_config=ghl_config,
            log_level="WARNING",
            status_poll_schedule="1,1,2,3",
            report_initial_delay_seconds=1.0,
            send_max_attempts=6,
        ) as stack:
            console.print(
                f"[bold]castbridge demo[/bold]  castbridge {stack.url}  "
                f"Cast sandbox {stack.cast_url}  HighLevel sandbox {stack.ghl_url}"
            )
            for gateway, location in LOCATIONS.items():
                await stack.install(location)
                if gateway != "cast":  # cast: the operator's default account
                    await stack.use_gateway(location, gateway)
            console.print(
                "installed one sandbox sub-account per gateway through the real OAuth flow; "
                "each but the Cast one configured with its own gateway key"
            )
            cases = build_cases()
            async with httpx2.AsyncClient(timeout=15.0) as http:
                regular = [case for case in cases if not case.label.startswith("429")]
                burst = [case for case in cases if case.label.startswith("429")]
                for case in regular:
                    await _post(stack, case, http)
                duplicate = await _repost(stack, cases[0], http)
                # The next sends meet Cast answering 429 with Retry-After: castbridge must wait
                # and resend with the same idempotency key, and still bill each message once.
                stack.cast.faults.fail_next = [429] * 4
                await asyncio.gather(*(_post(stack, case, http) for case in burst))
            cases.append(duplicate)
            ok = await _wait(stack, cases, within)
            checks = await _check(stack, cases)
            _render(console, stack, cases, await _details(stack, cases))
            conversations = [Conversation(*values) for values in CONVERSATIONS]
            async with httpx2.AsyncClient(timeout=15.0) as http:
                await asyncio.gather(*(_converse(stack, c, http) for c in conversations))
            _render_two_way(console, conversations)
            checks += [problem for c in conversations for problem in c.problems]
            elapsed = time.monotonic() - started
            for line in checks:
                console.print(f"[red]✗[/red] {line}")
            passed = ok and not checks
            verdict = "[green]all expectations held[/green]" if passed else "[red]FAILED[/red]"
            console.print(f"{verdict} in {elapsed:.1f} s")
            return passed


async def _wait(stack: Stack, cases: list[Case], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pending = False
        details = await _details(stack, cases)
        for case in cases:
            if case.finished_at is None and _settled(stack, case, details):
                case.finished_at = time.monotonic()
            pending = pending or case.finished_at is None
        if not pending:
            return True
        await asyncio.sleep(0.1)
    return False


def _settled(stack: Stack, case: Case, details: dict[str, Any]) -> bool:
    if case.expect == "pending":
        # No delivery report will ever come: settled once castbridge closed its record.
        message = details.get(case.message_id)
        return message is not None and message.status == "sent"
    return bool(stack.ghl.statuses(case.message_id))


def _billed(stack: Stack, case: Case) -> int:
    if case.gateway == "castbrick" and stack.castbrick is not None:
        from castbridge.sms.phone import normalize

        return stack.castbrick.billed(normalize(case.phone, "AO"), case.text)
    if case.gateway == "cellcast" and stack.cellcast is not None:
        from castbridge.sms.phone import normalize

        return stack.cellcast.billed_to(normalize(case.phone, "AU"), case.text)
    if case.gateway == "ugsms" and stack.ugsms is not None:
        return stack.ugsms.billed(case.phone.replace(" ", ""), case.text)
    return stack.cast.billed(case.message_id)


async def _details(stack: Stack, cases: list[Case]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async with stack.resources.sessions() as session:
        for case in cases:
            rows = await message_store.by_ghl_id(session, case.message_id)
            if rows:
                found[case.message_id] = rows[0]
    return found


async def _check(stack: Stack, cases: list[Case]) -> list[str]:
    problems: list[str] = []
    for case in cases:
        statuses = stack.ghl.statuses(case.message_id)
        if case.http_status != 200:
            problems.append(f"{case.label}: webhook answered {case.http_status}, expected 200")
        wanted = [] if case.expect == "pending" else [case.expect]
        if statuses[-1:] != wanted:
            problems.append(f"{case.label}: HighLevel shows {statuses or 'nothing'}")
        if case.duplicate_of is None and len(statuses) > 1:
            problems.append(f"{case.label}: HighLevel got several statuses {statuses}")
        record = stack.ghl.messages.get(case.message_id)
        if case.expect_error and record is not None:
            errors = [err for err in record.status_errors if err]
            text = " ".join(str(err.get("message", "")) for err in errors)
            if case.expect_error.lower() not in text.lower():
                problems.append(f"{case.label}: error message {text!r} lacks {case.expect_error!r}")
        billed = _billed(stack, case)
        sendable = case.expect in {"delivered", "pending"} or "undeliverable" in case.label
        should_bill = 1 if sendable else 0
        if billed != should_bill:
            problems.append(f"{case.label}: billed {billed} times at Cast, expected {should_bill}")
    if sum(stack.ghl.rate_limited.values()):
        problems.append(f"HighLevel answered 429 {sum(stack.ghl.rate_limited.values())} times")
    return problems


def _render(console: Console, stack: Stack, cases: list[Case], details: dict[str, Any]) -> None:
    table = Table(title="messages")
    for column in (
        "gateway",
        "case",
        "to",
        "enc",
        "parts",
        "gateway id",
        "HighLevel",
        "latency",
        "note",
    ):
        table.add_column(column)
    counts: dict[str, int] = {}
    for case in cases:
        message = details.get(case.message_id)
        statuses = stack.ghl.statuses(case.message_id)
        final = statuses[-1] if statuses else "pending"
        counts[final] = counts.get(final, 0) + (0 if case.duplicate_of else 1)
        latency = (
            f"{case.finished_at - case.posted_at:.1f} s"
            if case.finished_at is not None and case.duplicate_of is None
            else "-"
        )
        colour = "green" if final == case.expect else "red"
        note = ""
        if case.duplicate_of is not None:
            note = f"same messageId: billed {_billed(stack, case)}x"
        elif message is not None and message.error_message:
            note = message.error_message[:60]
        table.add_row(
            case.gateway,
            case.label,
            message.phone_masked if message else case.phone,
            message.encoding if message else "",
            str(message.gateway_parts or message.parts_estimate) if message else "",
            (message.gateway_message_id or "-") if message else "-",
            f"[{colour}]{final}[/{colour}]",
            latency,
            note,
        )
    console.print(table)
    snapshot = stack.cast.snapshot()
    console.print(
        f"totals: {sum(counts.values())} messages, "
        + ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        + f"; Cast answered 429 {snapshot['injected'].get('429', 0)} times (injected) and "
        f"{snapshot['rate_limited_429']} times (rate limit); "
        f"HighLevel 429s {sum(stack.ghl.rate_limited.values())}"
    )


def _inbound(stack: Stack, conversation: Conversation, text: str) -> list[Any]:
    return [
        m
        for m in stack.ghl.messages.values()
        if m.direction == "inbound" and m.location_id == conversation.location and m.body == text
    ]


def _dnd(stack: Stack, conversation: Conversation) -> str | None:
    contact = stack.ghl.find_contact(conversation.location, conversation.phone)
    return contact.sms_dnd if contact is not None else None


def _emit(stack: Stack, conversation: Conversation, text: str) -> None:
    """The handset texts the business: the sandbox gateway pushes it to castbridge."""
    if conversation.gateway == "castbrick" and stack.castbrick is not None:
        account = stack.castbrick.account(CASTBRICK_KEY)
        stack.castbrick.emit_inbound(account, conversation.phone, text)
    elif conversation.gateway == "cellcast" and stack.cellcast is not None:
        stack.cellcast.emit_reply(CELLCAST_KEY, conversation.phone, text)


async def _converse(stack: Stack, c: Conversation, http: httpx2.AsyncClient) -> None:
    from castbridge.sandbox.stack import wait_for

    started = time.monotonic()
    _emit(stack, c, c.reply)
    if await wait_for(lambda: bool(_inbound(stack, c, c.reply)), within=20):
        c.results["reply"] = f"in the conversation ({time.monotonic() - started:.1f} s)"
    else:
        c.problems.append(f"{c.gateway}: the reply never reached HighLevel")
    started = time.monotonic()
    _emit(stack, c, c.stop_word)
    if await wait_for(
        lambda: _dnd(stack, c) == "active" and bool(_inbound(stack, c, c.stop_word)), within=20
    ):
        c.results["stop"] = f"shown, contact SMS DND active ({time.monotonic() - started:.1f} s)"
    else:
        c.problems.append(f"{c.gateway}: {c.stop_word} did not set the contact's SMS DND")
    refused = Case(
        f"after {c.stop_word}",
        c.phone,
        "Last chance: 20% off today!",
        "failed",
        "opted out",
        gateway=c.gateway,
    )
    await _post(stack, refused, http)
    c.refused = refused
    await wait_for(lambda: bool(stack.ghl.statuses(refused.message_id)), within=20)
    statuses = stack.ghl.statuses(refused.message_id)
    record = stack.ghl.messages.get(refused.message_id)
    errors = [err for err in (record.status_errors if record else []) if err]
    reason = str(errors[0].get("message", "")) if errors else ""
    billed = _billed(stack, refused)
    if statuses != ["failed"] or "opted out" not in reason or billed:
        c.problems.append(
            f"{c.gateway}: after {c.stop_word}: {statuses}, {reason!r}, billed {billed}"
        )
    first_sentence = reason.split(". ")[0]
    c.results["refused"] = (
        f"{statuses[-1] if statuses else 'pending'}, billed {billed}: {first_sentence}"
    )


def _render_two_way(console: Console, conversations: list[Conversation]) -> None:
    table = Table(title="two-way (replies and STOP)")
    for column in ("gateway", "handset", "reply", "STOP", "next campaign to that number"):
        table.add_column(column, overflow="fold")
    for c in conversations:
        table.add_row(
            c.gateway,
            c.phone[:4] + "…" + c.phone[-2:],
            f"{c.reply!r}: " + c.results.get("reply", "[red]missing[/red]"),
            f"{c.stop_word!r}: " + c.results.get("stop", "[red]not honoured[/red]"),
            c.results.get("refused", "[red]?[/red]"),
        )
    console.print(table)
    console.print(
        "Cast.ph and UGSMS are one-way: they cannot deliver replies, so they have no row here."
    )
