"""A throwaway PostgreSQL 15 for the suite (`.ci/postgres.sh`), its databases and its CPU."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.harness import CLK_TCK, ROOT
from castbridge.config import async_database_url

SCRIPT = ROOT / ".ci" / "postgres.sh"
# .ci/postgres.sh starts the server with fsync, synchronous_commit and full_page_writes off,
# which suits tests; the benchmark compares against SQLite with synchronous=FULL, so it restarts
# the server without those options (their defaults, a production server's: on). Command-line
# options outrank ALTER SYSTEM, hence a restart rather than a reload.
DURABLE = ("fsync", "synchronous_commit", "full_page_writes")


def _plain(url: str) -> str:
    """asyncpg's own DSN form of a SQLAlchemy URL."""
    return async_database_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


def _process_cpu(pid: int, *, children: bool) -> float:
    """utime + stime (fields 14, 15) and, with `children`, the reaped children's cutime + cstime
    (16, 17): PostgreSQL's backends exit when castbridge closes their connection."""
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


@dataclass
class Postgres:
    """One server: its admin URL, and the CPU its postmaster and backends have used."""

    admin_url: str
    data_dir: Path
    settings: dict[str, str]

    @property
    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def cpu_seconds(self) -> float:
        """Postmaster, every live backend and every backend that has exited so far."""
        root = self.postmaster_pid
        total = _process_cpu(root, children=True)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == root:
                    total += _process_cpu(int(entry.name), children=True)
        return total

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[str]:
        """A new empty database; yields its SQLAlchemy URL, dropped afterwards."""
        import asyncpg

        name = f"cb_bench_{uuid.uuid4().hex[:12]}"
        connection = await asyncpg.connect(_plain(self.admin_url))
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        base = async_database_url(self.admin_url).rpartition("/")[0]
        try:
            yield f"{base}/{name}"
        finally:
            connection = await asyncpg.connect(_plain(self.admin_url))
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await connection.close()

    async def count(self, url: str, sql: str) -> Any:
        """One value from `url` (proof that castbridge wrote to this server, not to SQLite)."""
        import asyncpg

        connection = await asyncpg.connect(_plain(url))
        try:
            return await connection.fetchval(sql)
        finally:
            await connection.close()


def _as_postgres(command: list[str]) -> list[str]:
    """`command` as the `postgres` system user when we are root (as .ci/postgres.sh runs it)."""
    if os.geteuid() != 0:
        return command
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]


def _pg_ctl() -> str:
    initdb = shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb"
    return str(Path(initdb).parent / "pg_ctl")


async def _durable(folder: Path, admin_url: str) -> dict[str, str]:
    import asyncpg

    port = urlparse(admin_url).port
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=300"
    restart = [_pg_ctl(), "-D", str(folder / "data"), "-l", str(folder / "server.log")]
    restart += ["-w", "-t", "60", "-o", options, "restart"]
    done = await asyncio.to_thread(
        subprocess.run, _as_postgres(restart), capture_output=True, text=True, timeout=90
    )
    if done.returncode != 0:
        raise RuntimeError((done.stderr or done.stdout).strip()[-300:])
    connection = await asyncpg.connect(_plain(admin_url))
    try:
        return {name: str(await connection.fetchval(f"SHOW {name}")) for name in DURABLE}
    finally:
        await connection.close()


def _initdb_found() -> bool:
    return shutil.which("initdb") is not None or Path("/usr/lib/postgresql/15/bin/initdb").exists()


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[Postgres | str]:
    """A started server, or the sentence saying why there is none (the suite keeps going)."""
    if not _initdb_found():
        yield "no PostgreSQL server binaries (initdb) on this machine"
        return
    folder = Path(tempfile.mkdtemp(prefix="castbridge-bench-pg-"))
    # As root the script runs the server as `postgres`, which must be able to reach the folder.
    os.chmod(folder, 0o755)
    try:
        started = await asyncio.to_thread(
            subprocess.run,
            ["bash", str(SCRIPT), "start", str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if started.returncode != 0:
            reason = (started.stderr or started.stdout).strip().splitlines()
            yield f"PostgreSQL did not start: {reason[-1] if reason else started.returncode}"
            return
        url = started.stdout.strip().splitlines()[-1]
        try:
            settings = await _durable(folder, url)
        except Exception as exc:  # a benchmark that cannot run is reported, never fatal
            yield f"PostgreSQL started but did not take its settings: {exc}"
            return
        yield Postgres(url, folder / "data", settings)
    finally:
        await asyncio.to_thread(
            subprocess.run,
            ["bash", str(SCRIPT), "stop", str(folder)],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)
