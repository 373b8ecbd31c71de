"""The `castbridge` command: a thin shell over the same services the web app and worker use."""

from __future__ import annotations

import typer

from castbridge.cli import (
    accounts,
    cast,
    db,
    doctor,
    gateway,
    inbound,
    installations,
    locations,
    messages,
    optouts,
    sandbox,
    service,
    sms,
)

app = typer.Typer(
    name="castbridge",
    help="HighLevel SMS Conversation Provider bridging to regional SMS gateways.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("serve")(service.serve)
app.command("worker")(service.worker)
app.command("doctor")(doctor.doctor)
app.command("sandbox")(sandbox.sandbox)
app.command("demo")(sandbox.demo)
app.add_typer(messages.app, name="messages")
app.add_typer(locations.app, name="locations")
app.add_typer(installations.app, name="installations")
app.add_typer(accounts.app, name="accounts")
app.add_typer(inbound.app, name="inbound")
app.add_typer(optouts.app, name="optouts")
app.add_typer(gateway.app, name="gateway")
app.add_typer(cast.app, name="cast")
app.add_typer(sms.app, name="sms")
app.add_typer(db.app, name="db")
db.register(app)


def main() -> None:
    app()
