"""The scale-out benchmark runs at a tiny size on real processes, and its page section is
replaced in place, never duplicated."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scaleout
from tests.support import postgres


async def test_scaleout_run_at_tiny_size() -> None:
    """One web + one worker process on PostgreSQL complete every message, with CPU and SQL
    statements counted across the processes."""
    postgres.skip_without_postgres()
    async with postgres.fresh_database() as url:
        run = await scaleout.one_run(20, workers=1, database_url=url)
    assert run["completed"] == 20
    assert run["messages_per_s"] > 0
    assert run["sql_statements_per_message"] > 1
    assert run["castbridge_cpu_ms_per_message"] > 0


def test_section_is_replaced_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nbefore\n")
    monkeypatch.setattr(scaleout, "DOC", doc)
    run = {
        "database": "postgresql",
        "worker_processes": 2,
        "messages": 10,
        "completed": 10,
        "seconds": 1.0,
        "messages_per_s": 10.0,
        "castbridge_cpu_ms_per_message": 5.0,
        "sql_statements_per_message": 20.0,
        "rate_limited_429": 0,
    }
    result = {
        "command": "x",
        "started_at": "now",
        "machine": {"cpu_model": "cpu", "cores": 2, "load_average_at_start": [0.1]},
        "locations": 20,
        "runs": [run],
    }
    scaleout.write_section(result)
    scaleout.write_section({**result, "command": "y"})
    text = doc.read_text()
    assert text.count(scaleout.BEGIN) == 1
    assert "`y`" in text
    assert "before" in text
    assert "| postgresql | 1 web + 2 `worker` | 10/10/10 |" in text
