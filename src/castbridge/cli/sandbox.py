"""`castbridge sandbox` (every sandbox + castbridge, for trying things by hand) and `demo`."""

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
from castbridge.sandbox.stack import Stack, run_stack


def demo() -> None:
    """Run a realistic mix through all four gateways' sandboxes and castbridge; exit 0 only if
    every expectation held."""
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
    print_json: bool = typer.Option(
        False, "--print-json", help="Print one JSON object with every URL and key, for scripts."
    ),
) -> None:
    """Start every sandbox (HighLevel, Cast.ph, CastBrick, Cellcast, UGSMS) and castbridge
    wired to them, until Ctrl-C."""
    configure_logging("WARNING" if print_json else "INFO", "json" if print_json else "console")

    async def _go(folder: Path) -> None:
        async with run_stack(folder) as stack:
            urls = stack.gateway_urls or {}
            keys = stack.gateway_keys or {}
            if print_json:
                typer.echo(
                    json.dumps(
                        {
                            "castbridge": stack.url,
                            "delivery_url": stack.delivery_url,
                            "events_url": stack.events_url,
                            "install_url": f"{stack.url}/oauth/install",
                            "highlevel": stack.ghl_url,
                            "settings_page_host": stack.custom_page_url,
                            "gateways": {
                                name: {"url": urls[name], "api_key": keys[name]} for name in urls
                            },
                            "database_url": stack.settings.effective_database_url,
                        }
                    ),
                )
            else:
                _explain(stack, urls, keys)
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


def _explain(stack: Stack, urls: dict[str, str], keys: dict[str, str]) -> None:
    deliver = json.dumps(
        {"url": stack.delivery_url, "phone": "+639171234567", "message": "Hello from the sandbox"}
    )
    gateways = "\n".join(f"{name:<19} {urls[name]}   (key {keys[name][:14]}…)" for name in urls)
    typer.echo(
        f"""
castbridge          {stack.url}
HighLevel sandbox   {stack.ghl_url}
{gateways}

Settings page inside HighLevel (the sandbox's Custom Page host; install first, step 1):
     {stack.custom_page_url}
   (CASTBRIDGE_SETTINGS_FRAME_ANCESTORS is set to that origin, GHL_SSO_KEY to its secret)

1. Install castbridge into a sandbox sub-account (real OAuth flow) - open in a browser:
     {stack.url}/oauth/install

2. Send an SMS as HighLevel would (a signed Delivery-URL webhook):
     curl -s -X POST {stack.ghl_url}/_sandbox/deliver -H 'Content-Type: application/json' \\
       -d '{deliver}'
   then see what castbridge reported back to HighLevel:
     curl -s {stack.ghl_url}/_sandbox/messages/<messageId>

3. Give a sub-account its own gateway (another terminal, same database):
     export CASTBRIDGE_DATABASE_URL={stack.settings.effective_database_url}
     echo {keys.get("castbrick", "")} | uv run castbridge locations configure LOCATION_ID \\
       --gateway castbrick --api-key-stdin

4. Talk to a gateway sandbox directly with the CLI:
     export CAST_API_URL={urls.get("cast", "")} CAST_API_KEY={DEFAULT_API_KEY}
     export CAST_SENDER_ID={DEFAULT_SENDER_ID}
     uv run castbridge gateway send --gateway cast --to 09171234567 --message "hi"
     uv run castbridge gateway balance --gateway cast
   (Cast keys starting cast_test_, e.g. {DEFAULT_TEST_KEY[:18]}…, get instant mock answers)

Press Ctrl-C to stop.
"""
    )
