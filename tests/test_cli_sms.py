"""Tests for `castbridge sms count` and `castbridge sms normalize`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from castbridge.cli.sms import app

runner = CliRunner()


def test_count_table() -> None:
    """The default output is a table with encoding, characters, units, parts and the fit."""
    result = runner.invoke(app, ["count", "Hello {name}"])
    assert result.exit_code == 0, result.output
    for fragment in ("GSM-7", "characters", "12", "units", "14", "parts", "450", "yes"):
        assert fragment in result.stdout


def test_count_json() -> None:
    """--json prints one object with per-part units and whether the text fits 450 characters."""
    result = runner.invoke(app, ["count", "a" * 152 + "€" + "a" * 152, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "encoding": "GSM-7",
        "characters": 305,
        "units": 306,
        "parts": 3,
        "units_per_part": [152, 153, 1],
        "max_chars": 450,
        "fits": True,
        "ucs2_because_of": [],
    }


def test_count_names_the_characters_forcing_ucs2() -> None:
    """A typographic apostrophe is reported as the reason for UCS-2."""
    result = runner.invoke(app, ["count", "It\N{RIGHT SINGLE QUOTATION MARK}s here", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["encoding"] == "UCS-2"
    assert payload["ucs2_because_of"] == ["\N{RIGHT SINGLE QUOTATION MARK}"]


def test_count_max_chars() -> None:
    """--max-chars replaces Cast's 450 and the table says by how much the text is over."""
    result = runner.invoke(app, ["count", "a" * 12, "--max-chars", "10"])
    assert result.exit_code == 0, result.output
    assert "no: over by 2" in result.stdout
    data = runner.invoke(app, ["count", "a" * 12, "--max-chars", "10", "--json"])
    assert json.loads(data.stdout)["fits"] is False


def test_count_default_limit_is_450() -> None:
    """Without --max-chars the limit is Cast's 450 characters."""
    fits = json.loads(runner.invoke(app, ["count", "a" * 450, "--json"]).stdout)
    over = json.loads(runner.invoke(app, ["count", "a" * 451, "--json"]).stdout)
    assert (fits["max_chars"], fits["fits"], over["fits"]) == (450, True, False)


def test_count_rejects_non_positive_limit() -> None:
    """A limit below 1 is a usage error."""
    result = runner.invoke(app, ["count", "hi", "--max-chars", "0"])
    assert result.exit_code == 2


def test_normalize_table() -> None:
    """A PH mobile shows E.164, national form, type, region and Cast's 11 digits."""
    result = runner.invoke(app, ["normalize", "0917 123 4567"])
    assert result.exit_code == 0, result.output
    for fragment in ("+639171234567", "0917 123 4567", "MOBILE", "PH", "09171234567"):
        assert fragment in result.stdout


def test_normalize_json_other_region() -> None:
    """--region reads a national number for that country; Cast's column says it is rejected."""
    result = runner.invoke(app, ["normalize", "0412 345 678", "--region", "AU", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "e164": "+61412345678",
        "national": "0412 345 678",
        "international": "+61 412 345 678",
        "type": "MOBILE",
        "region": "AU",
        "cast": None,
        "cast_rejected": (
            "+61412345678 is not a Philippine (PH) number; this gateway only sends to PH"
        ),
    }


def test_normalize_invalid_exits_1_with_reason() -> None:
    """An invalid number exits 1 and prints the reason on stderr."""
    result = runner.invoke(app, ["normalize", "09401234567"])
    assert result.exit_code == 1
    assert "09401234567 is not a valid PH number" in result.stderr
    assert result.stdout == ""


def test_normalize_landline_exits_1() -> None:
    """A landline is refused for SMS with exit code 1."""
    result = runner.invoke(app, ["normalize", "(02) 8123 4567", "--json"])
    assert result.exit_code == 1
    assert "is a landline; SMS needs a mobile number" in result.stderr


def test_normalize_reason_with_brackets_is_printed_verbatim() -> None:
    """Input that looks like rich markup is printed as typed, not interpreted."""
    result = runner.invoke(app, ["normalize", "[/bold]abc"])
    assert result.exit_code == 1
    assert "[/bold]abc" in result.stderr
