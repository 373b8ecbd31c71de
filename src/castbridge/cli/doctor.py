"""`castbridge doctor`: check configuration, database, HighLevel, gateways and the clock."""

from __future__ import annotations

import json

import typer

from castbridge.cli._common import console, run
from castbridge.doctor import Check, diagnose, healthy, load_or_report
from castbridge.logging import configure_logging


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Check everything castbridge depends on and print the problems with their fixes.

    Usage: castbridge doctor [--json]; exits 1 when something is wrong.
    """
    settings, checks = load_or_report()
    if settings is not None:
        configure_logging("ERROR", settings.log_format)
        checks = run(diagnose(settings))
    verdict = healthy(checks)
    if as_json:
        body = {"healthy": verdict, "checks": [c.as_dict() for c in checks]}
        typer.echo(json.dumps(body, indent=2))
    else:
        _table(checks, verdict)
    if not verdict:
        raise typer.Exit(1)


def _table(checks: list[Check], verdict: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    colours = {"ok": "green", "warning": "yellow", "problem": "red", "skipped": "dim"}
    table = Table(title="castbridge doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column)
    for check in checks:
        colour = colours[check.status]
        table.add_row(
            check.check,
            f"[{colour}]{check.status}[/{colour}]",
            escape(check.detail),
            escape(check.fix),
        )
    console.print(table)
    console.print("[green]healthy[/green]" if verdict else "[red]problems found[/red]")
