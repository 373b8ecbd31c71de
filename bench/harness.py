"""Processes under test: the sandbox host, castbridge and the bare baseline, with /proc readings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from castbridge.config import Settings, settings_env
from castbridge.sandbox.cast import (
    DEFAULT_API_KEY,
    CastSandboxConfig,
    SandboxAccount,
)
from castbridge.sandbox.ghl import GHLSandbox, GHLSandboxConfig
from castbridge.sandbox.stack import free_port, stack_settings

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
LIFTED = 1_000_000.0  # "no limit" for a sandbox's or castbridge's rate knobs

# Fast status timings for every pipeline run (docs/performance.md states them): Cast reports
# pending after 0.2 s and the final status after 0.5 s, castbridge polls 0.5 s, 0.5 s, then
# every 1 s, HighLevel refuses status updates for 0.5 s after the webhook, and castbridge waits
# 0.5 s before its first report.
CAST_PENDING_AFTER = 0.2
CAST_FINAL_AFTER = 0.5
POLL_SCHEDULE = "0.5,0.5,1"
GHL_NOT_DOWNSTREAMED = 0.5
REPORT_DELAY = 0.5
FAST_OVERRIDES: dict[str, Any] = {
    "status_poll_schedule": POLL_SCHEDULE,
    "report_initial_delay_seconds": REPORT_DELAY,
    # Stopping castbridge between runs should not wait for the production 20 s grace.
    "shutdown_grace_seconds": 2.0,
    # The suite installs up to 100 locations from one address within a minute.
    "oauth_rate_limit_per_minute": 100_000,
}


def cast_pacing(account_rate: float, ip_rate: float = LIFTED) -> dict[str, Any]:
    """castbridge's Cast pacing (CAST_RATE_LIMIT, CAST_IP_RATE_LIMIT) as settings overrides."""
    return {"gateway_settings": {"cast": {"rate_limit": account_rate, "ip_rate_limit": ip_rate}}}


def location_ids(count: int) -> list[str]:
    """HighLevel-shaped (20 characters) location ids."""
    return [f"benchLoc{n:012d}" for n in range(1, count + 1)]


# --- /proc -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    # The command name (field 2) may hold spaces; everything after its ")" is space-separated.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def self_cpu_seconds() -> float:
    """CPU used by this (load generator) process, via the resource module."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class LoadWatch:
    """Machine-wide CPU use over a benchmark, split into ours and everyone else's.

    The suite's own processes are this one and its children (all waited for, so
    RUSAGE_CHILDREN counts them); whatever else the machine did meanwhile is background load
    that makes the figures pessimistic, so it is reported beside them.
    """

    busy0: float = 0.0
    steal0: float = 0.0
    ours0: float = 0.0
    started: float = 0.0

    @staticmethod
    def _machine() -> tuple[float, float]:
        with open("/proc/stat") as fh:
            fields = [int(value) for value in fh.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK

    @staticmethod
    def _ours() -> float:
        import resource

        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    def start(self) -> LoadWatch:
        self.busy0, self.steal0 = self._machine()
        self.ours0 = self._ours()
        self.started = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.started, 1e-9)
        busy, steal = self._machine()
        ours = self._ours() - self.ours0
        return {
            "machine_cores_busy": round((busy - self.busy0) / wall, 2),
            "suite_cores_busy": round(ours / wall, 2),
            "background_cores_busy": round(max(0.0, busy - self.busy0 - ours) / wall, 2),
            "steal_cores": round((steal - self.steal0) / wall, 2),
        }


# --- processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process with the CPU it has used since `mark()`."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str = ""
    log_path: Path | None = None
    _mark: float = 0.0
    _mark_at: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def mark(self) -> None:
        self._mark = cpu_seconds(self.pid)
        self._mark_at = time.monotonic()

    def cpu_since_mark(self) -> float:
        return cpu_seconds(self.pid) - self._mark

    def utilisation_since_mark(self) -> float:
        """Share of one core used since mark() (1.0 = one core flat out)."""
        wall = time.monotonic() - self._mark_at
        return self.cpu_since_mark() / wall if wall > 0 else 0.0

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.pid)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def _spawn(
    name: str, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path, log: Path
) -> Proc:
    log_file = log.open("ab")
    popen = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if name == "sandboxes" else log_file,
        stderr=log_file,
    )
    log_file.close()
    return Proc(name, popen, log_path=log)


async def _wait_http(proc: Proc, url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx2.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                code = proc.popen.returncode
                raise RuntimeError(f"{proc.name} exited with {code}: {_tail(proc)}")
            with contextlib.suppress(httpx2.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not answer {url} within {within} s: {_tail(proc)}")


def _tail(proc: Proc) -> str:
    if proc.log_path is None or not proc.log_path.exists():
        return ""
    return proc.log_path.read_text(errors="replace")[-2000:]


def _keys() -> tuple[str, str]:
    """The HighLevel sandbox's signing keys, made here so this process can sign its webhooks."""
    ed = ed25519.Ed25519PrivateKey.generate()
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    return (
        ed.private_bytes(pem, pkcs8, none).decode(),
        rs.private_bytes(pem, pkcs8, none).decode(),
    )


_KEYS: tuple[str, str] | None = None


def ghl_config(locations: Iterable[str], **values: Any) -> GHLSandboxConfig:
    global _KEYS
    if _KEYS is None:
        _KEYS = _keys()
    defaults: dict[str, Any] = {
        "location_ids": list(locations),
        "not_downstreamed_seconds": GHL_NOT_DOWNSTREAMED,
        "rate_limit_requests": int(LIFTED),
        "seed": 7,
        "ed25519_private_pem": _KEYS[0],
        "rsa_private_pem": _KEYS[1],
    }
    defaults.update(values)
    return GHLSandboxConfig(**defaults)


def cast_config(*, rate_limit: float = LIFTED, **values: Any) -> CastSandboxConfig:
    defaults: dict[str, Any] = {
        "accounts": [
            SandboxAccount(api_key=DEFAULT_API_KEY, credits=100_000_000, rate_limit=rate_limit)
        ],
        "ip_rate": LIFTED,
        "ip_burst": LIFTED,
        "pending_after_seconds": CAST_PENDING_AFTER,
        "final_after_seconds": CAST_FINAL_AFTER,
        "seed": 7,
    }
    defaults.update(values)
    return CastSandboxConfig(**defaults)


@dataclass
class Sandboxes:
    """The sandbox host process, plus a local HighLevel sandbox with the same keys for signing."""

    proc: Proc
    cast_url: str
    ghl_url: str
    ghl: GHLSandbox
    http: httpx2.AsyncClient = field(default_factory=lambda: httpx2.AsyncClient(timeout=60.0))

    async def register(self, payloads: list[dict[str, Any]]) -> None:
        for start in range(0, len(payloads), 2000):
            chunk = [
                {"id": p["messageId"], "locationId": p["locationId"], "contactId": p["contactId"]}
                for p in payloads[start : start + 2000]
            ]
            response = await self.http.post(
                f"{self.ghl_url}/_bench/register", json={"messages": chunk}
            )
            response.raise_for_status()

    async def emit(self) -> None:
        (await self.http.post(f"{self.ghl_url}/_bench/emit")).raise_for_status()

    async def final_count(self) -> int:
        return int((await self.http.get(f"{self.ghl_url}/_bench/finals")).json()["count"])

    async def finals(self) -> dict[str, tuple[str, float]]:
        body = (await self.http.get(f"{self.ghl_url}/_bench/finals?full=true")).json()
        return {key: (value[0], float(value[1])) for key, value in body["finals"].items()}

    async def stats(self, *, send_times: bool = False) -> dict[str, Any]:
        query = "?send_times=true" if send_times else ""
        return dict((await self.http.get(f"{self.ghl_url}/_bench/stats{query}")).json())


@contextlib.asynccontextmanager
async def sandboxes(
    workdir: Path, ghl: GHLSandboxConfig, cast: CastSandboxConfig
) -> AsyncIterator[Sandboxes]:
    config_path = workdir / "sandboxes.json"
    config_path.write_text(
        json.dumps({"ghl": ghl.model_dump(mode="json"), "cast": cast.model_dump(mode="json")})
    )
    proc = _spawn(
        "sandboxes",
        [sys.executable, "-m", "bench.sandboxhost", str(config_path)],
        cwd=ROOT,
        log=workdir / "sandboxes.log",
    )
    try:
        assert proc.popen.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.popen.stdout.readline), 60)
        if not line:
            raise RuntimeError(f"sandbox host did not start: {_tail(proc)}")
        urls = json.loads(line)
        # Built after the host so both hold the same keys (the config carries them).
        local = GHLSandbox(ghl)
        handle = Sandboxes(proc, urls["cast_url"], urls["ghl_url"], local)
        try:
            yield handle
        finally:
            await handle.http.aclose()
    finally:
        proc.stop()


def _clean_environ() -> dict[str, str]:
    """This process's environment without any castbridge setting a developer may have exported."""
    prefixes = ("CASTBRIDGE_", "CAST_", "GHL_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@dataclass
class Castbridge:
    proc: Proc
    url: str
    settings: Settings
    data_dir: Path

    @property
    def delivery_url(self) -> str:
        return f"{self.url}/webhooks/ghl/delivery"


def castbridge_settings(sbx: Sandboxes, data_dir: Path, **overrides: Any) -> Settings:
    unknown = set(overrides) - set(Settings.model_fields)
    if unknown:
        # Settings ignores unknown names (for the environment); a renamed setting must not turn
        # a benchmark into a measurement of the defaults without anyone noticing.
        raise TypeError(f"not castbridge settings: {sorted(unknown)}")
    values = {**FAST_OVERRIDES, **overrides}
    return stack_settings(
        data_dir,
        cast_url=sbx.cast_url,
        ghl_url=sbx.ghl_url,
        ghl=sbx.ghl,
        port=free_port(),
        **values,
    )


@contextlib.asynccontextmanager
async def castbridge(
    settings: Settings, *, log_name: str = "castbridge"
) -> AsyncIterator[Castbridge]:
    """`python -m castbridge serve` in its own process, configured only through the environment."""
    data_dir = Path(settings.data_dir)
    env = {**_clean_environ(), **settings_env(settings, only_set=True)}
    # cwd = the data folder, so a developer's ./.env can never leak into a measurement.
    argv = [sys.executable, "-m", "castbridge", "serve"]
    profile_dir = os.environ.get("BENCH_PROFILE_DIR")
    if profile_dir:
        # Engineers chasing a regression: cProfile castbridge's main thread, one file per run.
        out = Path(profile_dir) / f"{log_name}-{settings.port}.prof"
        argv[1:1] = ["-m", "cProfile", "-o", str(out)]
    proc = _spawn(
        "castbridge",
        argv,
        env=env,
        cwd=data_dir,
        log=data_dir / f"{log_name}.log",
    )
    url = f"http://127.0.0.1:{settings.port}"
    proc.url = url
    try:
        await _wait_http(proc, f"{url}/healthz")
        yield Castbridge(proc, url, settings, data_dir)
    finally:
        proc.stop()


async def run_cli(settings: Settings, *args: str, stdin: str | None = None) -> str:
    """`python -m castbridge ARGS` against this castbridge's settings; its output, or raise."""
    env = {**_clean_environ(), **settings_env(settings, only_set=True)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "castbridge",
        *args,
        env=env,
        cwd=settings.data_dir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode != 0:
        raise RuntimeError(f"castbridge {' '.join(args)} exited {proc.returncode}: {out!r}")
    return out.decode()


def spawn_bare(workdir: Path) -> Proc:
    """Start the bare baseline now; `await wait_ready(proc)` before using it."""
    port = free_port()
    proc = _spawn(
        "bare",
        [sys.executable, "-m", "bench.bare", str(port)],
        cwd=ROOT,
        log=workdir / "bare.log",
    )
    proc.url = f"http://127.0.0.1:{port}"
    return proc


async def wait_ready(proc: Proc) -> None:
    await _wait_http(proc, f"{proc.url}/healthz")


async def install(cb: Castbridge, location_ids: list[str], *, concurrency: int = 16) -> float:
    """Install each location through the real OAuth flow; returns seconds per install."""

    async def one(http: httpx2.AsyncClient, location_id: str) -> None:
        start = await http.get(f"{cb.url}/oauth/install")
        if start.status_code != 302:
            raise RuntimeError(f"/oauth/install answered {start.status_code}")
        query = urlencode({"location_id": location_id})
        choose = await http.get(f"{start.headers['location']}&{query}")
        if choose.status_code != 302:
            raise RuntimeError(f"choose-location answered {choose.status_code}")
        callback = choose.headers["location"]
        assert parse_qs(urlparse(callback).query).get("code")
        done = await http.get(callback)
        if done.status_code != 200:
            raise RuntimeError(f"/oauth/callback answered {done.status_code}: {done.text[:200]}")

    started = time.monotonic()
    queue = list(location_ids)
    async with httpx2.AsyncClient(timeout=30.0) as http:

        async def runner() -> None:
            while queue:
                await one(http, queue.pop())

        await asyncio.gather(*(runner() for _ in range(min(concurrency, len(location_ids)))))
    return (time.monotonic() - started) / max(1, len(location_ids))


@contextlib.contextmanager
def workdir(prefix: str) -> Any:
    path = Path(tempfile.mkdtemp(prefix=f"castbridge-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- figures -----------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine_info(data_dir: Path | None = None) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                ram_gib = int(line.split()[1]) / 1024 / 1024
                break
    commit = "unknown"
    dirty = False
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    return {
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
        "fsync_ms": round(_fsync_ms(data_dir or Path(tempfile.gettempdir())), 3),
    }


def _fsync_ms(folder: Path, rounds: int = 200) -> float:
    """Median time of appending 4 KiB + fdatasync where the benchmark databases live: what a
    SQLite commit in WAL mode with synchronous=FULL waits for."""
    path = folder / f"fsync-probe-{os.getpid()}"
    timings = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(rounds):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fdatasync(fd)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return percentile(timings, 50)
