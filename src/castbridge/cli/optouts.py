"""`castbridge optouts ...`: the numbers each location must not text: list, export (CSV or
JSON), import an agency's existing suppression list, and lift one by hand."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from castbridge.cli._common import JsonOption, emit, err_console, fail, run, settings_or_exit

app = typer.Typer(help="Opt-outs (STOP) per location.", no_args_is_help=True)

EXPORT_FIELDS = ("location_id", "phone", "opted_out_at", "source", "detail")


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


@app.command("list")
def list_optouts(
    location: str | None = typer.Option(None, "--location", help="Only this location."),
    include_opted_in: bool = typer.Option(False, "--all", help="Also numbers that opted back in."),
    as_json: bool = JsonOption,
) -> None:
    """Opted-out numbers (masked), since when, how, and what HighLevel's DND was set to."""
    settings = settings_or_exit()

    async def _go() -> list[dict[str, Any]]:
        from castbridge.resources import open_store
        from castbridge.store import optouts as optout_store

        async with open_store(settings) as opened, opened.store.read() as session:
            rows = await optout_store.listing(
                session, location_id=location, include_opted_in=include_opted_in
            )
            return [
                {
                    "location": row.location_id,
                    "phone": row.phone_masked,
                    "opted_out": row.opted_out,
                    "since": _stamp(row.at),
                    "source": row.source,
                    "detail": row.detail,
                    "highlevel_dnd": row.ghl_dnd or "not yet",
                }
                for row in rows
            ]

    emit(run(_go()), as_json=as_json, title="opt-outs")


@app.command("export")
def export(
    location: str | None = typer.Option(None, "--location", help="Only this location."),
    fmt: str = typer.Option("csv", "--format", help="csv or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
) -> None:
    """Every opted-out number in full E.164, for the agency's records or another system. The
    file holds personal data: keep it like the database."""
    if fmt not in ("csv", "json"):
        fail("--format is csv or json")
    settings = settings_or_exit()

    async def _go() -> list[dict[str, str]]:
        from castbridge.resources import open_store
        from castbridge.store import optouts as optout_store

        async with open_store(settings) as opened, opened.store.read() as session:
            rows = await optout_store.listing(session, location_id=location)
            return [
                {
                    "location_id": row.location_id,
                    "phone": opened.vault.open(row.phone_enc),
                    "opted_out_at": _stamp(row.at),
                    "source": row.source,
                    "detail": row.detail,
                }
                for row in rows
            ]

    rows = run(_go())
    if fmt == "json":
        text = json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        output.chmod(0o600)
        err_console.print(f"wrote {len(rows)} opt-outs to {output}")


def _read_rows(path: Path) -> list[dict[str, str]]:
    """CSV with a `phone` column (and optionally `location_id`, `opted_out_at`), or a JSON
    list of such objects, or a plain list of numbers one per line."""
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        data = json.loads(text)
        if not isinstance(data, list):
            raise ValueError("a JSON import must be a list")
        return [
            {str(k): str(v) for k, v in item.items()}
            if isinstance(item, dict)
            else {"phone": str(item)}
            for item in data
        ]
    first = stripped.splitlines()[0] if stripped else ""
    if "phone" in first.lower().split(",")[0:5] or "," in first:
        reader = csv.DictReader(io.StringIO(text))
        return [
            {(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader
        ]
    return [{"phone": line.strip()} for line in text.splitlines() if line.strip()]


@app.command("import")
def import_optouts(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    location: str | None = typer.Option(
        None, "--location", help="Location for rows without a location_id column."
    ),
    region: str = typer.Option(
        "", "--region", help="Country for numbers written without +, e.g. AO, AU, PH, UG."
    ),
) -> None:
    """Bring an agency's existing suppression list: every number is refused from then on and
    its HighLevel contact is set to SMS DND by the worker. Bad rows are listed, not guessed."""
    settings = settings_or_exit()
    try:
        rows = _read_rows(path)
    except (ValueError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")

    async def _go() -> tuple[int, list[str]]:
        from castbridge.inbound import optouts
        from castbridge.resources import open_store
        from castbridge.sms.phone import InvalidNumber, normalize
        from castbridge.store.optouts import OptOutChange

        problems: list[str] = []
        recorded = 0
        now = datetime.now(UTC)
        async with open_store(settings) as opened, opened.store.write() as session:
            for number, row in enumerate(rows, start=2):
                target = row.get("location_id") or location
                raw = row.get("phone", "")
                if not target:
                    problems.append(f"row {number}: no location (add --location)")
                    continue
                try:
                    e164 = normalize(raw, region or settings.default_region or "")
                except InvalidNumber as exc:
                    problems.append(f"row {number}: {exc.reason}")
                    continue
                at = now
                if row.get("opted_out_at"):
                    try:
                        at = datetime.fromisoformat(row["opted_out_at"].replace("Z", "+00:00"))
                        at = at if at.tzinfo else at.replace(tzinfo=UTC)
                    except ValueError:
                        problems.append(f"row {number}: opted_out_at is not an ISO date")
                        continue
                change = OptOutChange(
                    location_id=target,
                    phone=opened.vault.seal(e164, e164=True),
                    opted_out=True,
                    source="import",
                    detail=path.name,
                    at=at,
                )
                if await optouts.record(session, change) is not None:
                    recorded += 1
        return recorded, problems

    recorded, problems = run(_go())
    for problem in problems:
        err_console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
    typer.echo(f"imported {recorded} opt-outs ({len(problems)} rows skipped)")
    if problems and not recorded:
        raise typer.Exit(1)


@app.command("remove")
def remove(
    location: str = typer.Argument(..., help="The location the number opted out of."),
    region: str = typer.Option("", "--region", help="Country for a number without +."),
    phone_stdin: bool = typer.Option(
        True, "--phone-stdin/--no-phone-stdin", help="Read the number from standard input."
    ),
) -> None:
    """Lift an opt-out by hand (the person asked to be texted again by other means). The
    number is read from standard input so it stays out of shell history."""
    settings = settings_or_exit()
    raw = sys.stdin.readline().strip() if phone_stdin else ""
    if not raw:
        fail("give the phone number on standard input")

    async def _go() -> bool:
        from castbridge.inbound import optouts
        from castbridge.resources import open_store
        from castbridge.sms.phone import InvalidNumber, normalize
        from castbridge.store import events
        from castbridge.store.optouts import OptOutChange

        try:
            e164 = normalize(raw, region or settings.default_region or "")
        except InvalidNumber as exc:
            fail(exc.reason)
        async with open_store(settings) as opened, opened.store.write() as session:
            change = OptOutChange(
                location_id=location,
                phone=opened.vault.seal(e164, e164=True),
                opted_out=False,
                source="operator",
                detail="lifted by an operator",
                at=datetime.now(UTC),
            )
            done = await optouts.record(session, change) is not None
            if done:
                await events.add_audit(session, "optout_lifted", location_id=location)
            return done

    if not run(_go()):
        fail("a newer opt-out signal is recorded for that number; nothing changed")
    typer.echo("opt-out lifted; HighLevel's DND is cleared by the worker")
