"""`castbridge cast ...`: the `castbridge gateway ... --gateway cast` commands, kept as a shortcut.

Uses CAST_API_URL, CAST_API_KEY, CAST_SENDER_ID and CAST_CHANNEL, so pointing CAST_API_URL at
`castbridge sandbox` tries everything without spending credits.
"""

from __future__ import annotations

import typer

from castbridge.cli import gateway
from castbridge.cli._common import JsonOption

app = typer.Typer(
    help="Send, check status, balance and sender IDs on Cast.ph (CAST_* settings).",
    no_args_is_help=True,
)


@app.command()
def send(
    to: str = typer.Option(..., "--to", help="Recipient, e.g. 09171234567 or +639171234567."),
    message: str = typer.Option(..., "--message", "-m", help="The text to send."),
    sender_id: str | None = typer.Option(
        None, "--sender-id", help="Approved sender ID (default CAST_SENDER_ID)."
    ),
    channel: str | None = typer.Option(None, "--channel", help="sms, otp or sim."),
    as_json: bool = JsonOption,
) -> None:
    """Send one message and print Cast's message id.

    Usage: castbridge cast send --to 09171234567 --message "Hello from castbridge"
    """
    gateway.send(to, message, "cast", None, sender_id, channel, as_json)


@app.command()
def status(
    message_id: str = typer.Argument(..., help="Cast's message id (CAST…)."),
    channel: str = typer.Option("sms", "--channel", help="sms (also OTP) or sim."),
    as_json: bool = JsonOption,
) -> None:
    """Show a message's delivery status, and what castbridge reports to HighLevel for it.

    Usage: castbridge cast status CASTabc123def456
    """
    gateway.status(message_id, "cast", None, channel, as_json)


@app.command()
def balance(as_json: bool = JsonOption) -> None:
    """Show the account's credits (SMS parts; negative on postpaid accounts).

    Usage: castbridge cast balance
    """
    gateway.balance("cast", None, as_json)


@app.command("sender-ids")
def sender_ids(as_json: bool = JsonOption) -> None:
    """List the account's approved sender IDs and the channel each one sends on.

    Usage: castbridge cast sender-ids
    """
    gateway.sender_ids("cast", None, as_json)
