"""castbridge as a child process (`python -m castbridge serve|worker`), for the crash tests,
the reliability runs and the benchmarks: the one place that starts, kills and watches it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from castbridge.config import Settings, settings_env

# Environment prefixes a child must not inherit from the developer's shell.
_FOREIGN = ("CAST", "GHL_", "CELLCAST", "UGSMS")


class Castbridge:
    """One castbridge process configured by environment variables, logging to files."""

    def __init__(
        self, settings: Settings, workdir: Path, *, command: str = "serve", **env: str
    ) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)},
            **settings_env(settings),
            "CASTBRIDGE_LOG_LEVEL": "WARNING",
            "CASTBRIDGE_LOG_FORMAT": "json",
            "CASTBRIDGE_ENV_FILE": "/dev/null",
            **env,
        }
        self.url = f"http://127.0.0.1:{settings.port}"
        self.command = command
        self.workdir = workdir  # the working directory: no stray .env is read from here
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.name = f"castbridge-{command}"

    def log_path(self, run: int) -> Path:
        return self.workdir / f"{self.name}-{id(self):x}-{run}.log"

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        with open(self.log_path(self.runs), "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "castbridge", *self.command.split()],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self, *, within: float = 30.0, wait_healthy: bool | None = None) -> None:
        """Start the process; for `serve`, wait until /healthz answers."""
        self.process = self._spawn()
        if wait_healthy is False or (wait_healthy is None and self.command.split()[0] != "serve"):
            await asyncio.sleep(0.5)
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early: {self.logs()[-2000:]}")
            return
        deadline = time.monotonic() + within
        async with httpx2.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early: {self.logs()[-2000:]}")
                with contextlib.suppress(httpx2.TransportError):
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start: {self.logs()[-2000:]}")

    def logs(self) -> str:
        """Everything every run of the process wrote (stdout and stderr)."""
        return "".join(
            self.log_path(run).read_text(errors="replace") for run in range(1, self.runs + 1)
        )

    def log(self) -> str:
        """What the latest run wrote."""
        return self.log_path(self.runs).read_text(errors="replace") if self.runs else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """SIGKILL by default: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, *, within: float) -> int | None:
        """The exit code, or None if the process still runs after `within` seconds."""
        assert self.process is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.02)
        return self.process.poll()

    async def terminate(self, within: float = 30.0) -> int | None:
        """SIGTERM and wait for the graceful exit."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait(within=within)

    def stop(self) -> None:
        """Cleanup: make sure the process this object started is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
