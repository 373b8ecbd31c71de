"""Secrets at rest and in logs: after a full run, no secret appears anywhere in plaintext.

castbridge runs as `python -m castbridge serve` with DEBUG JSON logs captured to a file. The run:
a location install and an agency install through the real OAuth flow, a per-location Cast key
set with the CLI, messages through both Cast accounts, access tokens that live 1 s (so every
HighLevel call refreshes first, with single-use refresh tokens), and a set of requests that
castbridge refuses. Then the SQLite database and its -wal/-shm files (while castbridge runs and
after it stopped), every log line and CLI output, and every answer body are searched for every
token the HighLevel sandbox issued, both Cast API keys, the client secret and the Fernet key.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx2

from castbridge.sandbox.cast import DEFAULT_API_KEY, SandboxAccount
from castbridge.sandbox.stack import run_stack, wait_for
from tests.reliability.support import (
    FAST,
    PH_MOBILE,
    Castbridge,
    all_terminal,
    cast_config,
    deliver_until_acknowledged,
    ghl_config,
    location_ids,
    report,
    restart_window,
)

OWN_CAST_KEY = "cast_" + "0dd5ec12" * 8  # a second Cast account, configured for one location


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (the database and its -wal/-shm), read now."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


async def cli(castbridge: Castbridge, workdir: Path, *args: str) -> bytes:
    """Run `castbridge ARGS` as an operator would, with castbridge's environment; its output."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "castbridge", *args],
        env=castbridge.env,
        cwd=workdir,
        capture_output=True,
        check=True,
    )
    return done.stdout + done.stderr


def leaks(secrets: dict[str, str], places: dict[str, bytes]) -> list[str]:
    """'secret name in place' for every secret found in plaintext."""
    found = []
    for name, secret in secrets.items():
        needle = secret.encode()
        found += [f"{name} in {place}" for place, data in places.items() if needle in data]
    return found


async def test_no_secret_in_database_logs_or_answers(tmp_path: Path) -> None:
    """Tokens, refresh tokens, Cast keys, client and Fernet secrets, phone numbers: none found in
    plaintext in the database, the logs, the CLI's output or castbridge's answers; message text
    none in the logs."""
    own, agency_only = location_ids(2)
    accounts = [
        SandboxAccount(api_key=DEFAULT_API_KEY, credits=10_000, rate_limit=100.0),
        SandboxAccount(api_key=OWN_CAST_KEY, id=3, credits=10_000, rate_limit=100.0),
    ]
    data_dir = tmp_path / "data"
    async with run_stack(
        data_dir,
        cast_config=cast_config(accounts=accounts),
        ghl_config=ghl_config(location_ids=[own, agency_only], access_token_ttl=1.0),
        with_castbridge=False,
        **FAST,
    ) as s:
        castbridge = Castbridge(
            s.settings, tmp_path, CASTBRIDGE_LOG_LEVEL="DEBUG", CASTBRIDGE_LOG_FORMAT="json"
        )
        bodies: dict[str, bytes] = {}  # every answer castbridge gave, by request
        cli_output: dict[str, bytes] = {}
        try:
            await castbridge.start()
            await s.install(own)
            await s.install(agency=True)  # Company token, then minted location tokens
            cli_output["locations configure"] = await cli(
                castbridge, tmp_path, "locations", "configure", own, "--cast-api-key", OWN_CAST_KEY
            )
            payloads = [
                s.ghl.delivery_payload(
                    phone=PH_MOBILE.format(n), message=f"secret test {n}", location_id=location
                )
                for n, location in enumerate([own, agency_only] * 3)
            ]
            ids = [payload["messageId"] for payload in payloads]
            restart_window(s.ghl, ids)
            delivery = await deliver_until_acknowledged(s.ghl, s.delivery_url, payloads)
            assert len(delivery.acknowledged) == len(ids)
            assert await wait_for(lambda: all_terminal(s.ghl, ids), within=60, interval=0.3)

            async with httpx2.AsyncClient(timeout=15.0, follow_redirects=False) as http:
                refused = {
                    "unsigned webhook": http.post(s.delivery_url, json=payloads[0]),
                    "bad JSON": http.post(s.delivery_url, content=b"{", headers=s.ghl.sign(b"{")),
                    "events unsigned": http.post(s.events_url, json={"type": "INSTALL"}),
                    "callback bad code": http.get(
                        f"{s.url}/oauth/callback", params={"code": "nope", "state": "nope"}
                    ),
                    "callback no state, bad code": http.get(
                        f"{s.url}/oauth/callback", params={"code": "x" * 40}
                    ),
                    "callback error": http.get(
                        f"{s.url}/oauth/callback", params={"error": "access_denied"}
                    ),
                    "install": http.get(f"{s.url}/oauth/install"),
                    "readyz": http.get(f"{s.url}/readyz"),
                    "metrics": http.get(f"{s.url}/metrics"),
                    "openapi": http.get(f"{s.url}/openapi.json"),
                }
                for name, call in refused.items():
                    response = await call
                    bodies[f"{name} ({response.status_code})"] = (
                        response.content + str(response.headers).encode()
                    )
            running = files_of(data_dir)  # the WAL still holds recent pages now
            for args in (
                ["installations", "list", "--json"],
                ["locations", "list", "--json"],
                ["messages", "list", "--json"],
                ["messages", "show", ids[0], "--json"],
            ):
                cli_output[" ".join(args)] = await cli(castbridge, tmp_path, *args)
            await castbridge.terminate()
        finally:
            castbridge.stop()
        stopped = files_of(data_dir)
        ghl = s.ghl
        assert s.settings.secret_keys is not None
        fernet_key = s.settings.secret_keys.get_secret_value()
        secrets = {
            **{f"access token {n}": t for n, t in enumerate(ghl.access_tokens)},
            **{f"refresh token {n}": t for n, t in enumerate(ghl.refresh_tokens)},
            **{f"used refresh token {n}": t for n, t in enumerate(ghl.used_refresh_tokens)},
            "Cast API key (default)": DEFAULT_API_KEY,
            "Cast API key (location's own)": OWN_CAST_KEY,
            "client secret": ghl.config.client_secret,
            "Fernet key": fernet_key,
        }
        places = {
            **{f"{name} (running)": data for name, data in running.items()},
            **{f"{name} (stopped)": data for name, data in stopped.items()},
            "castbridge logs": castbridge.logs().encode(),
            **{f"CLI {name}": data for name, data in cli_output.items()},
            **{f"answer {name}": data for name, data in bodies.items()},
        }
        found = leaks(secrets, places)
        # Phone numbers are personal data: encrypted in the database, masked everywhere else,
        # in every spelling a log line or a column could hold them.
        phones = {
            f"phone {n} as {form}": spelled
            for n, payload in enumerate(payloads)
            for form, spelled in (
                ("E.164", payload["phone"]),
                ("digits", payload["phone"].lstrip("+")),
                ("local", "0" + payload["phone"][3:]),
            )
        }
        found += leaks(phones, places)
        # Message text is kept for sending, but never written to the logs.
        texts = {f"text {n}": payload["message"] for n, payload in enumerate(payloads)}
        found += leaks(texts, {"castbridge logs": castbridge.logs().encode()})
        sent_with_own_key = sum(
            1 for message in s.cast.messages.values() if message.api_key == OWN_CAST_KEY
        )
        report(
            "secrets",
            {
                "secrets": len(secrets),
                "access_tokens": len(ghl.access_tokens),
                "refreshes": ghl.refresh_count(),
                "places": len(places),
                "files": ",".join(sorted(running)),
                "log_lines": castbridge.logs().count("\n"),
                "sent_with_own_key": sent_with_own_key,
                "plaintext_found": len(found),
            },
        )
        assert found == [], found
        # The run did what it claims: refreshes happened, both keys were used, the WAL existed.
        assert ghl.refresh_count() >= 2
        assert ghl.used_refresh_tokens
        assert sent_with_own_key >= 1
        assert len(s.cast.messages) > sent_with_own_key
        assert any(name.endswith("-wal") for name in running), sorted(running)
        assert castbridge.logs().count("\n") > 20
