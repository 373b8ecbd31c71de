"""`castbridge gateway ...`: talk to any registered gateway directly.

With `--gateway NAME` alone it uses the operator's defaults (`<NAME>_API_URL`, `<NAME>_API_KEY`,
`<NAME>_SENDER_ID`, …); with `--location L` the account that location sends on. Pointing the
URL at `castbridge sandbox` tries everything without spending credits.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import typer
from rich.markup import escape

from castbridge.cli._common import JsonOption, emit, err_console, fail, run, settings_or_exit
from castbridge.config import ConfigError, Settings
from castbridge.gateways.base import Gateway, GatewayError, NotFoundError, UnsupportedError
from castbridge.gateways.directory import AccountUnusable, GatewayDirectory
from castbridge.gateways.registry import UnknownGateway, default_key, load_defaults, names, spec
from castbridge.limits import BlockingPacer, LocalPacer
from castbridge.sms.phone import InvalidNumber, normalize

app = typer.Typer(
    help="Send, check status, balance and sender IDs on a gateway (defaults or a location's).",
    no_args_is_help=True,
)

GatewayOption = typer.Option("cast", "--gateway", "-g", help=f"One of: {', '.join(names())}.")
LocationOption = typer.Option(
    None, "--location", help="Use the account this HighLevel location sends on."
)
# The CLI is interactive: a couple of quick in-call retries, waiting for rate limits.
CLI_ATTEMPTS = 3


def describe(exc: GatewayError, gateway: str) -> str:
    details = [
        f"[{exc.code}]" if exc.code else "",
        f"(HTTP {exc.http_status})" if exc.http_status else "",
    ]
    text = " ".join(part for part in (exc.message, *details) if part)
    if exc.pauses_account:
        text += (
            f" - check {gateway.upper()}_API_KEY and the account's credits (and, for an IP "
            "allow-list, this machine's address)"
        )
    return escape(text)


@contextlib.asynccontextmanager
async def open_gateway(
    settings: Settings, name: str, location: str | None
) -> AsyncIterator[tuple[Gateway, str | None]]:
    """The gateway to talk to and the sender ID it uses."""
    try:
        gateway_spec = spec(name)
        defaults = load_defaults(settings)
    except (UnknownGateway, ConfigError) as exc:
        fail(escape(str(exc)))
    async with httpx2.AsyncClient(timeout=defaults[name].timeout_seconds) as http:
        if location is not None:
            from castbridge.accounts import load_setup
            from castbridge.resources import open_store
            from castbridge.store import accounts as account_store

            async with open_store(settings) as opened:
                directory = GatewayDirectory(
                    defaults,
                    http,
                    BlockingPacer(LocalPacer()),
                    opened.box,
                    egress_id=settings.egress_id,
                    attempts=CLI_ATTEMPTS,
                )
                async with opened.store.read() as session:
                    setup = await load_setup(session, settings, location)
                    row = (
                        await account_store.get(session, setup.account.id)
                        if setup.account is not None
                        else None
                    )
                if row is None:
                    fail(f"location {escape(location)} has no gateway account to use")
                if row.gateway != name:
                    err_console.print(
                        f"location {location} sends on {row.gateway}", highlight=False
                    )
                try:
                    yield directory.gateway(row), setup.sender_id
                except AccountUnusable as exc:
                    fail(escape(exc.message))
                return
        key = default_key(defaults[name])
        if not key:
            fail(
                f"{name.upper()}_API_KEY is not set. Export the {gateway_spec.capabilities.label} "
                "API key, use --location, or run `castbridge sandbox` and use its key."
            )
        directory = GatewayDirectory(
            defaults,
            http,
            BlockingPacer(LocalPacer()),
            None,
            egress_id=settings.egress_id,
            attempts=CLI_ATTEMPTS,
        )
        yield (
            directory.build_for_key(
                name,
                key,
                account_id=0,
                sender_id=defaults[name].sender_id,
                channel=str(getattr(defaults[name], "channel", gateway_spec.default_channel)),
                settings=gateway_spec.settings_from_defaults(defaults[name]),
            ),
            defaults[name].sender_id,
        )


def _region(settings: Settings, name: str) -> str:
    return settings.default_region or spec(name).capabilities.country


@app.command()
def send(
    to: str = typer.Option(..., "--to", help="Recipient, in E.164 or the gateway's local form."),
    message: str = typer.Option(..., "--message", "-m", help="The text to send."),
    gateway: str = GatewayOption,
    location: str | None = LocationOption,
    sender_id: str | None = typer.Option(None, "--sender-id", help="Sender ID for this send."),
    channel: str | None = typer.Option(None, "--channel", help="A channel the gateway has."),
    as_json: bool = JsonOption,
) -> None:
    """Send one message and print the gateway's message id.

    Usage: castbridge gateway send --gateway cast --to 09171234567 --message "Hello"
    """
    settings = settings_or_exit()
    caps = _caps(gateway)
    chosen = channel or caps.channels[0]
    if chosen not in caps.channels:
        fail(f"--channel must be one of {', '.join(caps.channels)} (got {escape(chosen)!r})")
    try:
        e164 = normalize(to, _region(settings, gateway))
    except InvalidNumber as exc:
        fail(escape(exc.reason))
    # A fresh reference per invocation: running the command again is a new message, while the
    # client's own retries of this one reuse it and cannot double-send where keys exist.
    reference = f"cli:{uuid.uuid4().hex}"
    if not as_json:
        label = "idempotency key" if caps.idempotency_keys else "reference"
        err_console.print(f"{label}: {reference}", highlight=False)

    async def go() -> dict[str, Any]:
        from castbridge.gateways.base import SendRequest

        async with open_gateway(settings, gateway, location) as (found, default_sender):
            sender = sender_id or default_sender
            result = await found.send(
                SendRequest(
                    to_e164=e164,
                    text=message,
                    reference=reference,
                    sender_id=sender,
                    channel=chosen,
                )
            )
            return {
                "message_id": result.gateway_message_id,
                "parts": result.parts,
                "channel": chosen,
                "to": found.format_number(e164),
                "sender_id": sender,
                "idempotency_key": reference if caps.idempotency_keys else None,
                "reference": reference,
                "replayed": result.replayed,
                "sandbox": result.sandbox,
            }

    try:
        row = run(go())
    except GatewayError as exc:
        fail(describe(exc, gateway))
    emit([row], as_json=as_json, title="Sent", single=True)


@app.command()
def status(
    message_id: str = typer.Argument(..., help="The gateway's message id."),
    gateway: str = GatewayOption,
    location: str | None = LocationOption,
    channel: str = typer.Option("sms", "--channel", help="The channel it was sent on."),
    as_json: bool = JsonOption,
) -> None:
    """Show a message's delivery status, and what castbridge reports to HighLevel for it.

    Usage: castbridge gateway status --gateway cast CASTabc123def456
    """
    settings = settings_or_exit()
    caps = _caps(gateway)
    if channel not in caps.channels:
        fail(f"--channel must be one of {', '.join(caps.channels)} (got {escape(channel)!r})")

    async def go() -> dict[str, Any]:
        async with open_gateway(settings, gateway, location) as (found, _):
            mapped = await found.status(message_id, channel)
        return {
            "message_id": mapped.gateway_message_id,
            "status": mapped.raw_status,
            "highlevel_status": mapped.state,
            "terminal": mapped.terminal,
            "error_code": mapped.error_code,
            "delivered_at": mapped.delivered_at,
            "error_message": mapped.error_message,
        }

    try:
        row = run(go())
    except UnsupportedError:
        fail(f"{caps.label} has no delivery status to look up")
    except GatewayError as exc:
        hint = ""
        if isinstance(exc, NotFoundError) and message_id.startswith("SANDBOX_"):
            hint = " - ids from sandbox (test) keys are mocks and may not be pollable"
        fail(describe(exc, gateway) + hint)
    emit([row], as_json=as_json, title="Status", single=True)


@app.command()
def balance(
    gateway: str = GatewayOption, location: str | None = LocationOption, as_json: bool = JsonOption
) -> None:
    """Show the account's balance or credits.

    Usage: castbridge gateway balance --gateway cast
    """
    settings = settings_or_exit()
    _caps(gateway)

    async def go() -> dict[str, Any]:
        async with open_gateway(settings, gateway, location) as (found, _):
            result = await found.balance()
        return {"balance": result.amount, "currency": result.currency, "unit": result.unit}

    try:
        row = run(go())
    except GatewayError as exc:
        fail(describe(exc, gateway))
    emit([row], as_json=as_json, title="Balance", single=True)


@app.command("sender-ids")
def sender_ids(
    gateway: str = GatewayOption, location: str | None = LocationOption, as_json: bool = JsonOption
) -> None:
    """List the account's approved sender IDs and the channel each one sends on.

    Usage: castbridge gateway sender-ids --gateway cast
    """
    settings = settings_or_exit()
    caps = _caps(gateway)
    if not caps.sender_ids_api:
        fail(f"{caps.label} has no list of sender IDs; set the sender with --sender-id")

    async def go() -> list[dict[str, Any]]:
        async with open_gateway(settings, gateway, location) as (found, _):
            listed = await found.sender_ids()
        return [{"sender_id": s.sender_id, "label": s.label, "channel": s.channel} for s in listed]

    try:
        rows = run(go())
    except GatewayError as exc:
        fail(describe(exc, gateway))
    emit(rows, as_json=as_json, title="Sender IDs")


def _caps(name: str) -> Any:
    try:
        return spec(name).capabilities
    except UnknownGateway as exc:
        fail(escape(str(exc)))
