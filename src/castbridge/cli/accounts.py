"""`castbridge accounts ...`: gateway accounts, why one is paused, and resuming it by hand."""

from __future__ import annotations

from typing import Any

import typer

from castbridge.cli._common import JsonOption, emit, fail, run, settings_or_exit

app = typer.Typer(help="Gateway accounts (keys never shown).", no_args_is_help=True)


@app.command("list")
def list_accounts(
    all_: bool = typer.Option(False, "--all", help="Include retired accounts."),
    as_json: bool = JsonOption,
) -> None:
    """Every gateway account: gateway, owner, state (active / paused and why / retired)."""
    settings = settings_or_exit()

    async def _go() -> list[dict[str, Any]]:
        from castbridge.accounts import summary
        from castbridge.resources import open_store
        from castbridge.store import accounts as account_store

        async with open_store(settings) as opened, opened.store.read() as session:
            rows = await account_store.list_accounts(session, include_retired=all_)
            return [summary(row) for row in rows]

    emit(run(_go()), as_json=as_json, title="gateway accounts")


@app.command("show")
def show(account_id: int, as_json: bool = JsonOption) -> None:
    """One account, with its webhook URL (to paste where the gateway needs one) and the
    webhooks castbridge registered."""
    settings = settings_or_exit()

    async def _go() -> dict[str, Any] | None:
        from castbridge.accounts import summary, webhook_url
        from castbridge.gateways.registry import spec
        from castbridge.resources import open_store
        from castbridge.store import accounts as account_store

        async with open_store(settings) as opened, opened.store.read() as session:
            row = await account_store.get(session, account_id)
            if row is None:
                return None
            caps = spec(row.gateway).capabilities
            detail = summary(row)
            if caps.webhook_setup != "none":
                base = settings.public_url or "https://<CASTBRIDGE_PUBLIC_URL>"
                detail["webhook_url"] = webhook_url(base, row.gateway, row.webhook_token)
                detail["webhook_setup"] = (
                    "registered by castbridge"
                    if caps.webhook_setup == "registered"
                    else f"paste this URL into the {caps.label} dashboard"
                )
                registered = (row.webhooks or {}).get("registered") or []
                detail["webhooks_registered"] = ", ".join(
                    str(w.get("event_type")) for w in registered
                ) or (row.webhooks or {}).get("error", "")
            detail["two_way"] = caps.two_way
            return detail

    detail = run(_go())
    if detail is None:
        fail(f"no gateway account {account_id}")
    emit([detail], as_json=as_json, single=True, title=f"account {account_id}")


@app.command("resume")
def resume(account_id: int) -> None:
    """Resume a paused account now (its held messages are sent); it pauses again if the
    gateway still refuses."""
    settings = settings_or_exit()

    async def _go() -> bool:
        from castbridge import accounts
        from castbridge.resources import open_store
        from castbridge.store import events

        async with open_store(settings) as opened, opened.store.write() as session:
            done = await accounts.resume(session, account_id, by="operator")
            if done:
                await events.add_audit(session, "account_resumed", detail={"account": account_id})
            return done

    if not run(_go()):
        fail(f"account {account_id} is not paused")
    typer.echo(f"account {account_id} resumed; its held messages go out now")
