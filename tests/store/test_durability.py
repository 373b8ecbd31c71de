"""SQLite settings survive kill -9: every committed row is there after the process dies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path


def test_committed_rows_survive_sigkill(tmp_path: Path) -> None:
    """A writer killed with SIGKILL mid-stream loses none of the rows it reported committed."""
    db = tmp_path / "crash.db"
    progress = tmp_path / "progress"
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from datetime import UTC, datetime
        from castbridge.secrets import PhoneVault, SecretBox
        from castbridge.store.db import Store, create_engine
        from castbridge.store import jobs, messages, migrate
        from cryptography.fernet import Fernet

        async def main():
            engine = create_engine("sqlite+aiosqlite:///{db}")
            await migrate.upgrade(engine)
            store = Store(engine)
            vault = PhoneVault(SecretBox([Fernet.generate_key().decode()]), b"k" * 32)
            n = 0
            while True:
                async with store.write() as session:
                    await messages.insert_with_job(
                        session,
                        messages.NewMessage(
                            ghl_message_id=f"m-{{n}}", location_id="l", contact_id=None,
                            phone=vault.seal("+639171234567", e164=True), text="t",
                            attachments=[], encoding="GSM-7", parts_estimate=1, status="queued",
                        ),
                        jobs.NewJob("send", "send", datetime.now(UTC)),
                    )
                n += 1
                # Written aside and renamed: a reader (or the kill) never sees it half written.
                with open("{progress}.tmp", "w") as fh:
                    fh.write(str(n))
                os.replace("{progress}.tmp", "{progress}")

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # Read once: between two reads the writer could replace it.
            if progress.exists() and int(progress.read_text()) > 50:
                break
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    acknowledged = int(progress.read_text())
    assert acknowledged > 50
    with sqlite3.connect(db) as conn:
        stored = conn.execute("select count(*) from messages").fetchone()[0]
        jobs = conn.execute("select count(*) from jobs").fetchone()[0]
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert stored >= acknowledged
    assert jobs == stored
