"""`castbridge doctor` against the sandboxes: healthy when all is well, and each broken thing
(configuration, database, migrations, HighLevel grant, gateway key, balance, clock) reported
with a non-zero exit."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from castbridge.cli import app as cli_app
from castbridge.config import Settings, settings_env
from castbridge.doctor import diagnose, healthy
from castbridge.sandbox.cast import DEFAULT_API_KEY
from castbridge.sandbox.stack import run_stack
from castbridge.secrets import load_secret_box
from castbridge.store import migrate
from castbridge.store.db import create_engine
from tests.e2e.support import LOCATIONS, cast_config, cli, ghl_config, restored_logging
from tests.support import postgres


async def _doctor(settings: Settings, **env: str) -> tuple[int, dict[str, Any]]:
    environment = {
        **settings_env(settings),
        "CASTBRIDGE_ENV_FILE": "/dev/null",
        "CASTBRIDGE_LOG_LEVEL": "WARNING",
        **env,
    }
    with restored_logging():
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["doctor", "--json"], env=environment
        )
    return result.exit_code, json.loads(result.stdout)


def _problems(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["check"], c["detail"]) for c in report["checks"] if c["status"] == "problem"]


async def _installed(tmp_path: Path) -> Any:
    return run_stack(tmp_path / "stack", cast_config=cast_config(), ghl_config=ghl_config())


async def test_doctor_is_healthy_against_the_sandboxes(tmp_path: Path) -> None:
    """Installed location, every sandbox account reachable: exit 0, every check ok, and the
    table form names each check."""
    async with await _installed(tmp_path) as s:
        await s.install(LOCATIONS[0])
        code, report = await _doctor(s.settings)
        assert (code, report["healthy"]) == (0, True), report
        statuses = {(c["check"], c["status"]) for c in report["checks"]}
        assert statuses == {
            ("config", "ok"),
            ("database", "ok"),
            ("migrations", "ok"),
            ("clock", "ok"),
            ("highlevel", "ok"),
            ("gateway", "ok"),
        }, report
        gateways = [c["detail"] for c in report["checks"] if c["check"] == "gateway"]
        assert len(gateways) == 4  # one default account per sandbox gateway
        table = await cli(s.settings, "doctor")
        assert table.exit_code == 0
        assert "healthy" in table.stdout


async def test_doctor_reports_gateway_key_and_balance(tmp_path: Path) -> None:
    """A revoked key and an account without credits are each a problem with a fix."""
    async with await _installed(tmp_path) as s:
        await s.install(LOCATIONS[0])
        s.cast.accounts[DEFAULT_API_KEY].revoked = True
        code, report = await _doctor(s.settings)
        assert code == 1
        (problem,) = _problems(report)
        assert problem[0] == "gateway"
        assert "cast" in problem[1]
        s.cast.accounts[DEFAULT_API_KEY].revoked = False
        s.cast.accounts[DEFAULT_API_KEY].credits = 0
        code, report = await _doctor(s.settings)
        assert code == 1
        (problem,) = _problems(report)
        assert "balance 0" in problem[1], problem


async def test_doctor_reports_a_revoked_highlevel_grant(tmp_path: Path) -> None:
    """HighLevel refuses the location's token and its refresh: a highlevel problem."""
    async with await _installed(tmp_path) as s:
        await s.install(LOCATIONS[0])
        s.ghl.revoke_access_tokens(LOCATIONS[0])
        s.ghl.revoke_refresh_tokens(LOCATIONS[0])
        code, report = await _doctor(s.settings)
        assert code == 1
        (problem,) = _problems(report)
        assert problem[0] == "highlevel"
        assert LOCATIONS[0] in problem[1]


async def test_doctor_reports_no_installation_as_a_warning(tmp_path: Path) -> None:
    """Nothing installed yet is not an outage: a warning, exit 0."""
    async with await _installed(tmp_path) as s:
        code, report = await _doctor(s.settings)
        assert code == 0
        assert ("highlevel", "warning") in {(c["check"], c["status"]) for c in report["checks"]}


async def test_doctor_reports_bad_configuration(settings: Settings) -> None:
    """A setting that does not validate is reported (as JSON too), exit 1."""
    code, report = await _doctor(settings, CASTBRIDGE_WORKER_CONCURRENCY="0")
    assert code == 1
    assert [check for check, _ in _problems(report)] == ["config"]
    assert "CASTBRIDGE_WORKER_CONCURRENCY" in _problems(report)[0][1]


async def test_doctor_reports_missing_highlevel_settings_and_unreachable_database(
    settings: Settings,
) -> None:
    """No HighLevel app settings and a database nobody listens on: both reported."""
    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://castbridge@127.0.0.1:1/castbridge"}
    )
    code, report = await _doctor(broken)
    assert code == 1
    problems = _problems(report)
    assert {check for check, _ in problems} == {"config", "database"}
    assert any("GHL_CLIENT_ID" in detail for _, detail in problems)


async def test_doctor_reports_a_schema_behind_this_release(settings: Settings) -> None:
    """A database migrated only to 0002: the migrations check says to upgrade."""
    engine = create_engine(settings.effective_database_url)
    try:
        await migrate.upgrade(engine, "0002", secret_box=load_secret_box(settings))
    finally:
        await engine.dispose()
    checks = await diagnose(settings)
    problems = [(c.check, c.detail, c.fix) for c in checks if c.status == "problem"]
    assert ("migrations", f"schema at 0002, this release needs {migrate.head_revision()}") in [
        p[:2] for p in problems
    ]
    assert any("castbridge db upgrade" in p[2] for p in problems)


async def test_doctor_reports_clock_skew_against_postgres(settings: Settings) -> None:
    """This host 60 s ahead of PostgreSQL's clock is a problem; in step, it is not."""
    postgres.skip_without_postgres()
    async with postgres.fresh_database() as url:
        on_pg = settings.model_copy(update={"database_url": url})
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine, secret_box=load_secret_box(on_pg))
        finally:
            await engine.dispose()
        ahead = await diagnose(on_pg, clock=lambda: datetime.now(UTC) + timedelta(seconds=60))
        clock = [c for c in ahead if c.check == "clock"]
        assert [c.status for c in clock] == ["problem"]
        assert "is -60." in clock[0].detail or "is -59." in clock[0].detail, clock[0].detail
        in_step = await diagnose(on_pg)
        assert [c.status for c in in_step if c.check == "clock"] == ["ok"]
        assert not healthy(ahead)
