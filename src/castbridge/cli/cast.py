"""`castbridge cast ...`: talk to Cast.ph directly with the configured account.

Uses CAST_API_URL, CAST_API_KEY, CAST_SENDER_ID and CAST_CHANNEL, so pointing CAST_API_URL at
`castbridge sandbox` tries everything without spending credits.
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
from castbridge.config import Settings
from castbridge.gateways.base import GatewayError, NotFoundError, SendRequest
from castbridge.gateways.cast import (
    CastClient,
    CastGateway,
    RetryPolicy,
    request_limiter,
    send_limiter,
    to_delivery_status,
)
from castbridge.gateways.cast.adapter import SANDBOX_ID_PREFIX
from castbridge.gateways.cast.models import SendChannel, StatusChannel
from castbridge.sms.phone import InvalidNumber, normalize

app = typer.Typer(
    help="Send, check status, balance and sender IDs on Cast.ph (CAST_* settings).",
    no_args_is_help=True,
)

SEND_CHANNELS: tuple[SendChannel, ...] = ("sms", "otp", "sim")
STATUS_CHANNELS: tuple[StatusChannel, ...] = ("sms", "sim")
# The CLI is interactive: a couple of quick retries, never a long wait.
CLI_RETRY = RetryPolicy(attempts=3, max_total_seconds=20.0)


def _describe(exc: GatewayError) -> str:
    details = [
        f"[{exc.code}]" if exc.code else "",
        f"(HTTP {exc.http_status})" if exc.http_status else "",
    ]
    text = " ".join(part for part in (exc.message, *details) if part)
    if exc.credentials_problem:
        text += " - check CAST_API_KEY (and, for an IP allow-list, this machine's address)"
    return escape(text)


def _require_key(settings: Settings) -> str:
    if settings.cast_api_key is None or not settings.cast_api_key.get_secret_value():
        fail(
            "CAST_API_KEY is not set. Export your Cast.ph key (cast_ followed by 64 hex "
            "characters), or run `castbridge sandbox` and use its test key."
        )
    return settings.cast_api_key.get_secret_value()


@contextlib.asynccontextmanager
async def _gateway(settings: Settings, api_key: str) -> AsyncIterator[CastGateway]:
    async with httpx2.AsyncClient(timeout=settings.cast_timeout_seconds) as http:
        client = CastClient(
            http,
            api_key=api_key,
            base_url=settings.cast_api_url,
            send_limiter=send_limiter(settings.cast_rate_limit),
            request_limiter=request_limiter(settings.cast_ip_rate_limit),
            retry=CLI_RETRY,
        )
        yield CastGateway(
            client, sender_id=settings.cast_sender_id, max_chars=settings.cast_max_chars
        )


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        fail(f"{option} must be one of {', '.join(allowed)} (got {escape(value)!r})")
    return value


@app.command()
def send(
    to: str = typer.Option(..., "--to", help="Recipient, e.g. 09171234567 or +639171234567."),
    message: str = typer.Option(..., "--message", "-m", help="The text to send."),
    sender_id: str | None = typer.Option(
        None, "--sender-id", help="Approved sender ID (default CAST_SENDER_ID)."
    ),
    channel: str | None = typer.Option(
        None, "--channel", help="sms, otp or sim (default CAST_CHANNEL)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Send one message and print Cast's message id.

    Usage: castbridge cast send --to 09171234567 --message "Hello from castbridge"
    """
    settings = settings_or_exit()
    api_key = _require_key(settings)
    chosen = _choice(channel or settings.cast_channel, SEND_CHANNELS, "--channel")
    try:
        e164 = normalize(to, settings.default_region)
    except InvalidNumber as exc:
        fail(escape(exc.reason))
    # A fresh key per invocation: running the command again is a new message, while the
    # client's own retries of this one reuse it and cannot double-send.
    idempotency_key = f"cli:{uuid.uuid4().hex}"
    if not as_json:
        err_console.print(f"idempotency key: {idempotency_key}", highlight=False)
    request = SendRequest(
        to_e164=e164,
        text=message,
        idempotency_key=idempotency_key,
        sender_id=sender_id,
        channel=chosen,
    )

    async def go() -> dict[str, Any]:
        async with _gateway(settings, api_key) as gateway:
            result = await gateway.send(request)
            return {
                "message_id": result.gateway_message_id,
                "parts": result.parts,
                "channel": chosen,
                "to": gateway.format_number(e164),
                "sender_id": sender_id or settings.cast_sender_id,
                "idempotency_key": idempotency_key,
                "replayed": result.replayed,
                "sandbox": result.sandbox,
            }

    try:
        row = run(go())
    except GatewayError as exc:
        fail(_describe(exc))
    emit([row], as_json=as_json, title="Sent", single=True)


@app.command()
def status(
    message_id: str = typer.Argument(..., help="Cast's message id (CAST…)."),
    channel: str = typer.Option("sms", "--channel", help="sms (also OTP) or sim."),
    as_json: bool = JsonOption,
) -> None:
    """Show a message's delivery status, and what castbridge reports to HighLevel for it.

    Usage: castbridge cast status CASTabc123def456
    """
    settings = settings_or_exit()
    api_key = _require_key(settings)
    chosen: Any = _choice(channel, STATUS_CHANNELS, "--channel")

    async def go() -> dict[str, Any]:
        async with _gateway(settings, api_key) as gateway:
            response = await gateway.client.status(message_id, chosen)
        mapped = to_delivery_status(response)
        return {
            "message_id": response.message_id,
            "status": response.status,
            "highlevel_status": mapped.state,
            "terminal": mapped.terminal,
            "sent_at": response.sent_at,
            "dlr_status": response.dlr_status,
            "delivered_at": response.delivered_at,
            "error_message": response.error_message,
        }

    try:
        row = run(go())
    except GatewayError as exc:
        hint = ""
        if isinstance(exc, NotFoundError) and message_id.startswith(SANDBOX_ID_PREFIX):
            hint = " - ids from cast_test_ keys are mocks and may not be pollable"
        fail(_describe(exc) + hint)
    emit([row], as_json=as_json, title="Status", single=True)


@app.command()
def balance(as_json: bool = JsonOption) -> None:
    """Show the account's credits (SMS parts; negative on postpaid accounts).

    Usage: castbridge cast balance
    """
    settings = settings_or_exit()
    api_key = _require_key(settings)

    async def go() -> dict[str, Any]:
        async with _gateway(settings, api_key) as gateway:
            response = await gateway.client.balance()
        return {"credits": response.credits, "currency": response.currency}

    try:
        row = run(go())
    except GatewayError as exc:
        fail(_describe(exc))
    emit([row], as_json=as_json, title="Balance", single=True)


@app.command("sender-ids")
def sender_ids(as_json: bool = JsonOption) -> None:
    """List the account's approved sender IDs and the channel each one sends on.

    Usage: castbridge cast sender-ids
    """
    settings = settings_or_exit()
    api_key = _require_key(settings)

    async def go() -> list[dict[str, Any]]:
        async with _gateway(settings, api_key) as gateway:
            found = await gateway.sender_ids()
        return [{"sender_id": s.sender_id, "label": s.label, "channel": s.channel} for s in found]

    try:
        rows = run(go())
    except GatewayError as exc:
        fail(_describe(exc))
    emit(rows, as_json=as_json, title="Sender IDs")
