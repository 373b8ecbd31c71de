"""`castbridge sms ...` commands: count a message's SMS parts, normalise a phone number."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from castbridge.cli._common import JsonOption, emit, fail
from castbridge.sms.phone import InvalidNumber, describe, format_for_gateway, normalize
from castbridge.sms.text import non_gsm7_characters, segments

app = typer.Typer(help="Inspect SMS text and phone numbers offline.", no_args_is_help=True)

# Cast Rev A's hard limit (sms-text.md §4.5); the same default as Settings.cast_max_chars. These
# commands work offline without settings, so they do not load them.
CAST_DEFAULT_MAX_CHARS = 450
CAST_COUNTRY = "PH"


@app.command()
def count(
    text: str = typer.Argument(..., help="The message text (quote it)."),
    max_chars: int = typer.Option(
        CAST_DEFAULT_MAX_CHARS, "--max-chars", min=1, help="Character limit to check against."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show a message's encoding, character count and SMS parts, and whether it fits the limit.

    Usage: castbridge sms count "Hello {name}, your order is ready" --max-chars 450
    """
    result = segments(text)
    forcing = non_gsm7_characters(text)
    row: dict[str, Any] = {
        "encoding": result.encoding,
        "characters": len(text),
        "units": result.units,
        "parts": result.count,
        "units_per_part": list(result.parts),
        "max_chars": max_chars,
        "fits": len(text) <= max_chars,
        "ucs2_because_of": list(forcing),
    }
    if not as_json:
        row["units_per_part"] = ", ".join(str(units) for units in result.parts)
        # repr() makes invisible offenders such as a non-breaking space or ESC readable.
        row["ucs2_because_of"] = " ".join(repr(ch) for ch in forcing) or None
        row["fits"] = "yes" if row["fits"] else f"no: over by {len(text) - max_chars}"
    emit([row], as_json=as_json, title="SMS segments", single=True)


@app.command("normalize")
def normalize_command(
    number: str = typer.Argument(..., help="A phone number, national or international."),
    region: str = typer.Option(
        CAST_COUNTRY, "--region", help="ISO region for numbers written without + (e.g. PH)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Normalise a number to E.164 and show how Cast would receive it; exit 1 if it is invalid.

    Usage: castbridge sms normalize "0917 123 4567" --region PH
    """
    try:
        e164 = normalize(number, region)
    except InvalidNumber as exc:
        # The reason quotes the user's input, which may contain rich markup brackets.
        fail(escape(exc.reason))
    info = describe(e164)
    cast: str | None = None
    cast_rejected: str | None = None
    try:
        cast = format_for_gateway(e164, CAST_COUNTRY, "national")
    except InvalidNumber as exc:
        cast_rejected = exc.reason
    row: dict[str, Any] = {
        "e164": info.e164,
        "national": info.national,
        "international": info.international,
        "type": info.type,
        "region": info.region,
        "cast": cast,
        "cast_rejected": cast_rejected,
    }
    if not as_json:
        row["cast"] = cast if cast is not None else f"rejected: {cast_rejected}"
        del row["cast_rejected"]
    emit([row], as_json=as_json, title="Phone number", single=True)
