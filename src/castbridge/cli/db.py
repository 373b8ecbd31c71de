"""Operator commands for the store: `db upgrade`, `db status`, `secrets generate|rotate`."""

from __future__ import annotations

import typer

from castbridge.cli._common import emit, run, settings_or_exit
from castbridge.secrets import generate_key, load_secret_box
from castbridge.store import migrate
from castbridge.store.db import create_engine

app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
secrets_app = typer.Typer(help="Encryption keys for tokens and gateway keys.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Apply pending migrations (also done automatically on start)."""
    settings = settings_or_exit()

    async def _go() -> tuple[str | None, str | None]:
        engine = create_engine(settings.effective_database_url)
        try:
            before = await migrate.current_revision(engine)
            await migrate.upgrade(engine, secret_box=load_secret_box(settings))
            return before, await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    before, after = run(_go())
    typer.echo(f"database at revision {after} (was {before or 'empty'})")


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the schema revision and whether migrations are pending."""
    settings = settings_or_exit()

    async def _go() -> str | None:
        engine = create_engine(settings.effective_database_url)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    current = run(_go())
    head = migrate.head_revision()
    emit(
        [{"current": current, "head": head, "up_to_date": current == head}],
        as_json=as_json,
        single=True,
    )


@secrets_app.command("generate")
def generate() -> None:
    """Print a new Fernet key for CASTBRIDGE_SECRET_KEYS (prepend it to rotate)."""
    typer.echo(generate_key())


@secrets_app.command("rotate")
def rotate(
    execute: bool = typer.Option(False, "--execute", help="Write the changes (default: dry run)."),
) -> None:
    """Re-encrypt every stored secret under the first key in CASTBRIDGE_SECRET_KEYS."""
    from castbridge.resources import open_store
    from castbridge.store.rotation import rotate_all

    settings = settings_or_exit()

    async def _go() -> int:
        async with open_store(settings) as opened:
            async with opened.store.sessions() as session:
                count = await rotate_all(session, opened.box)
                if execute:
                    await session.commit()
                else:
                    await session.rollback()
            return count

    count = run(_go())
    verb = "re-encrypted" if execute else "would re-encrypt (dry run; add --execute)"
    typer.echo(f"{verb} {count} stored secrets under the first key")


def register(root: typer.Typer) -> None:
    root.add_typer(secrets_app, name="secrets")
