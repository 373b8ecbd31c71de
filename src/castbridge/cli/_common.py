"""Shared CLI plumbing: settings with friendly errors, tables or JSON, running coroutines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from castbridge.config import ConfigError, Settings, load_settings
from castbridge.logging import configure_logging

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def settings_or_exit() -> Settings:
    """Load settings; on a bad value print one line per problem and exit 2."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        for line in str(exc).splitlines():
            err_console.print(f"[red]config error[/red] {line}", highlight=False)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _cell(value: Any) -> str:
    # Cell text comes from outside (a contact phone like "[/x]", a gateway's error text):
    # rich would read it as markup and crash or restyle the table.
    return "" if value is None else escape(str(value))


def emit(
    rows: Sequence[dict[str, Any]], *, as_json: bool, title: str | None = None, single: bool = False
) -> None:
    """Print rows as a rich table, or as JSON (a list, or one object when `single`)."""
    if as_json:
        payload: Any = rows[0] if single and rows else list(rows)
        typer.echo(json.dumps(payload, indent=2, default=str, ensure_ascii=False))
        return
    if single and rows:
        table = Table(title=title, show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key, value in rows[0].items():
            table.add_row(escape(key), _cell(value))
    else:
        table = Table(title=title)
        columns = list(rows[0].keys()) if rows else []
        for column in columns:
            table.add_column(escape(column))
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)
