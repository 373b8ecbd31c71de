"""`castbridge optouts`: an agency's suppression list comes in, is listed masked, goes out in
full (CSV and JSON) and round-trips; bad rows are named, not guessed; an opt-out is lifted by
hand only from standard input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from castbridge.config import Settings
from tests.support.cli import cli

LOCATION = "sbxLocation000000001"


async def _listed(settings: Settings, *extra: str) -> list[dict[str, object]]:
    result = await cli(settings, "optouts", "list", "--json", *extra)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


async def test_import_list_export_round_trip(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "suppression.csv"
    source.write_text(
        "phone,location_id,opted_out_at\n"
        "+61412345678,,2026-11-30T10:00:00Z\n"
        "0412 345 679,,\n"
        "not a number,,\n"
        "+61412345680,otherLocation0000001,\n"
        "+61412345681,,yesterday\n"
    )
    result = await cli(
        settings, "optouts", "import", str(source), "--location", LOCATION, "--region", "AU"
    )
    assert result.exit_code == 0, result.output
    assert "imported 3 opt-outs (2 rows skipped)" in result.stdout
    assert "row 4" in result.output  # the bad number, named by its line
    assert "row 6" in result.output  # the bad date

    listed = await _listed(settings)
    assert {row["location"] for row in listed} == {LOCATION, "otherLocation0000001"}
    assert all("412345" not in str(row["phone"]) for row in listed)  # masked
    assert len(await _listed(settings, "--location", LOCATION)) == 2

    exported = await cli(settings, "optouts", "export", "--location", LOCATION)
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert sorted(row["phone"] for row in rows) == ["+61412345678", "+61412345679"]
    kept = next(row for row in rows if row["phone"] == "+61412345678")
    assert kept["opted_out_at"] == "2026-11-30T10:00:00+00:00"
    assert kept["source"] == "import"

    as_json = tmp_path / "out.json"
    done = await cli(settings, "optouts", "export", "--format", "json", "-o", str(as_json))
    assert done.exit_code == 0, done.output
    assert as_json.stat().st_mode & 0o077 == 0  # personal data: owner only
    everything = json.loads(as_json.read_text())
    assert len(everything) == 3

    # Another castbridge (or this one after a wipe) takes the export back as it is.
    other = settings.model_copy(
        update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'second.db'}"}
    )
    again = await cli(other, "optouts", "import", str(as_json))
    assert again.exit_code == 0, again.output
    assert "imported 3 opt-outs (0 rows skipped)" in again.stdout


async def test_import_with_nothing_usable_fails(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("+61412345678\n")
    result = await cli(settings, "optouts", "import", str(source))
    assert result.exit_code == 1
    assert "no location" in result.output
    unreadable = tmp_path / "broken.json"
    unreadable.write_text("[{")
    assert (await cli(settings, "optouts", "import", str(unreadable))).exit_code != 0


async def test_lifting_by_hand_reads_the_number_from_stdin(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("+61412345678\n+61412345679\n")
    imported = await cli(settings, "optouts", "import", str(source), "--location", LOCATION)
    assert "imported 2" in imported.stdout

    missing = await cli(settings, "optouts", "remove", LOCATION, stdin="")
    assert missing.exit_code != 0
    lifted = await cli(settings, "optouts", "remove", LOCATION, stdin="+61412345678\n")
    assert lifted.exit_code == 0, lifted.output
    active = await _listed(settings)
    assert len(active) == 1
    assert len(await _listed(settings, "--all")) == 2
