"""`castbridge sandbox` (both sandboxes + castbridge, for trying things by hand) and `demo`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from pathlib import Path

import typer
from rich.console import Console

from castbridge.logging import configure_logging
from castbridge.sandbox.cast import DEFAULT_API_KEY, DEFAULT_SENDER_ID, DEFAULT_TEST_KEY
from castbridge.sandbox.stack import run_stack


def demo() -> None:
    """Run a realistic mix through both sandboxes and castbridge; exit 0 only if all held."""
    from castbridge.demo import run_demo

    # Retries are part of the show (the table says what happened); only errors go to the log.
    configure_logging("ERROR", "console")
    console = Console()
    if console.width < 130:
        console = Console(width=130)
    passed = asyncio.run(run_demo(console))
    raise typer.Exit(0 if passed else 1)


def sandbox(
    data_dir: Path | None = typer.Option(
        None, help="Keep castbridge's database here (default: a temporary folder)."
    ),
) -> None:
    """Start the Cast.ph and HighLevel sandboxes and castbridge wired to them, until Ctrl-C."""
    configure_logging("INFO", "console")

    async def _go(folder: Path) -> None:
        async with run_stack(folder) as stack:
            deliver = json.dumps(
                {
                    "url": stack.delivery_url,
                    "phone": "+639171234567",
                    "message": "Hello from the sandbox",
                }
            )
            typer.echo(
                f"""
castbridge          {stack.url}
Cast.ph sandbox     {stack.cast_url}   (key {DEFAULT_API_KEY[:13]}…, sender {DEFAULT_SENDER_ID})
HighLevel sandbox   {stack.ghl_url}

1. Install castbridge into a sandbox sub-account (real OAuth flow) - open in a browser:
     {stack.url}/oauth/install

2. Send an SMS as HighLevel would (a signed Delivery-URL webhook):
     curl -s -X POST {stack.ghl_url}/_sandbox/deliver -H 'Content-Type: application/json' \\
       -d '{deliver}'
   then see what castbridge reported back to HighLevel:
     curl -s {stack.ghl_url}/_sandbox/messages/<messageId>

3. Talk to the Cast sandbox directly with the CLI (another terminal):
     export CAST_API_URL={stack.cast_url} CAST_API_KEY={DEFAULT_API_KEY}
     export CAST_SENDER_ID={DEFAULT_SENDER_ID}
     uv run castbridge cast send --to 09171234567 --message "hi"
     uv run castbridge cast balance
   (keys starting cast_test_, e.g. {DEFAULT_TEST_KEY[:18]}…, get instant mock answers)

Press Ctrl-C to stop.
"""
            )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()

    try:
        if data_dir is not None:
            asyncio.run(_go(data_dir))
        else:
            with tempfile.TemporaryDirectory(prefix="castbridge-sandbox-") as tmp:
                asyncio.run(_go(Path(tmp)))
    except KeyboardInterrupt:
        typer.echo("stopped")
