"""`castbridge cast ...` commands (being written)."""

from __future__ import annotations

import typer

app = typer.Typer(help="cast commands.", no_args_is_help=True)
