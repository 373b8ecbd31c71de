"""The Dockerfile's install, start and health commands (`.ci/image-commands.sh`) run here,
outside Docker: no image can be built on this machine, so the script is what is proven, and
the Dockerfile and compose.yaml are checked to use nothing else."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from castbridge.config import Settings, _env_name
from castbridge.gateways.registry import SPECS
from castbridge.sandbox.stack import free_port

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / ".ci" / "image-commands.sh"


def _script(*args: str, env: dict[str, str], **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", str(SCRIPT), *args], env=env, **kwargs)  # type: ignore[call-overload, no-any-return]


def _healthy(env: dict[str, str]) -> bool:
    return subprocess.run(["sh", str(SCRIPT), "healthcheck"], env=env, check=False).returncode == 0


def _lines_until(path: Path, needle: str, within: float) -> list[str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if needle in text:
            return text.splitlines()
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never logged: {path.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`image-commands.sh install` into a fresh virtual environment (from uv's cache)."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    env = {
        **os.environ,
        "CASTBRIDGE_VENV": str(venv),
        "UV_OFFLINE": "1",
        "UV_PYTHON": sys.executable,
    }
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        ["sh", str(SCRIPT), "install"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return venv


def test_install_is_the_runtime_only_and_not_editable(installed: Path) -> None:
    """The install has castbridge as a package (no source tree needed at run time), the
    PostgreSQL driver, and none of the development tools."""
    site = next(installed.glob("lib/python*/site-packages"))
    assert (site / "castbridge" / "__init__.py").exists()
    assert (site / "asyncpg").is_dir()
    for tool in ("pytest", "ruff", "mypy", "hypothesis"):
        assert not (site / tool).exists(), tool
    assert not list(site.glob("*castbridge*.pth")), "installed editable"


def test_web_and_worker_start_log_json_and_pass_the_healthcheck(
    installed: Path, tmp_path: Path
) -> None:
    """`web` answers the HEALTHCHECK command (which fails before it starts), `worker` runs
    beside it on the same database, both write JSON log lines on stdout and exit 0 on
    SIGTERM. Configuration comes only from the environment."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CASTBRIDGE_VENV": str(installed),
        "CASTBRIDGE_ENV_FILE": "/dev/null",
        "CASTBRIDGE_LOG_FORMAT": "json",
        "CASTBRIDGE_LOG_LEVEL": "INFO",
        "CASTBRIDGE_HOST": "127.0.0.1",
        "CASTBRIDGE_PORT": str(port),
        "CASTBRIDGE_DATA_DIR": str(tmp_path / "data"),
        "CASTBRIDGE_SECRET_KEYS": Fernet.generate_key().decode(),
        "CASTBRIDGE_SHUTDOWN_GRACE_SECONDS": "1",
    }
    assert not _healthy(env)
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker")}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with logs["web"].open("wb") as out:
            processes["web"] = _script("web", env=env, cwd=tmp_path, stdout=out)
        deadline = time.monotonic() + 60
        while not _healthy(env):
            assert processes["web"].poll() is None, logs["web"].read_text()[-2000:]
            assert time.monotonic() < deadline, "never healthy"
            time.sleep(0.2)
        with logs["worker"].open("wb") as out:
            processes["worker"] = _script("worker", env=env, cwd=tmp_path, stdout=out)
        _lines_until(logs["worker"], "worker_started", within=60)
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(30) for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    assert codes == {"web": 0, "worker": 0}, {n: p.read_text()[-1500:] for n, p in logs.items()}
    for name, path in logs.items():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines, name
        for line in lines:
            assert isinstance(json.loads(line), dict), (name, line)


def test_dockerfile_runs_the_script_as_a_non_root_user() -> None:
    """Multi-stage; the install, the start command and the HEALTHCHECK are the script's; the
    final stage runs as a non-root user and copies no .env."""
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM .+ AS \w+$", text, flags=re.M)) >= 2
    assert re.search(r"^RUN .*sh /app/image-commands.sh install$", text, flags=re.M)
    assert 'CMD ["sh", "/app/image-commands.sh", "healthcheck"]' in text
    assert 'ENTRYPOINT ["sh", "/app/image-commands.sh"]' in text
    runtime = text.split("AS runtime", 1)[1]
    user = re.search(r"^USER (\S+)$", runtime, flags=re.M)
    assert user is not None
    assert user.group(1) not in {"root", "0"}
    assert ".env " not in text.replace("CASTBRIDGE_ENV_FILE", "")
    assert "uv.lock" in text


def test_compose_file_and_its_env_example() -> None:
    """PostgreSQL 15 with a volume, web gated on a healthy database, a worker gated on a
    healthy web service and without a port (so it scales), secrets from .env; every name in
    compose.env.example is one castbridge (or compose itself) reads."""
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:15"
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    assert services["web"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert "ports" not in services["worker"]
    assert services["web"]["command"] == ["web"]
    assert services["worker"]["command"] == ["worker"]
    for name in ("web", "worker"):
        assert services[name]["env_file"] == ".env"
    known = {_env_name(name) for name in Settings.model_fields if name != "gateway_settings"}
    for gateway, spec in SPECS.items():
        known |= {f"{gateway.upper()}_{field.upper()}" for field in spec.defaults.model_fields}
    known |= {"POSTGRES_PASSWORD", "CASTBRIDGE_PUBLISHED_PORT"}
    names = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / "compose.env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert names - known == set()


def test_alert_rules_use_only_metrics_castbridge_exports() -> None:
    """Every castbridge metric named in the Prometheus rules exists (a renamed metric would
    silently turn an alert off), and every alert has a runbook entry in docs/operations.md."""
    from prometheus_client import Counter, Histogram
    from prometheus_client.metrics import MetricWrapperBase

    from castbridge import metrics

    exported: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name = value._name
        if isinstance(value, Counter):
            exported.add(f"{name}_total")
        elif isinstance(value, Histogram):
            exported |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        else:
            exported.add(name)
    rules = (ROOT / "deploy" / "prometheus" / "castbridge-rules.yml").read_text()
    used = set(re.findall(r"\bcastbridge_[a-z_]+", rules))
    assert used, "no metric found in the rules"
    assert used - exported == set()
    operations = (ROOT / "docs" / "operations.md").read_text().lower()
    for anchor in re.findall(r"runbook: docs/operations\.md#([a-z-]+)", rules):
        assert f"### {anchor.replace('-', ' ')}" in operations, anchor
