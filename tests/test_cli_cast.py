"""`castbridge cast ...` against a Cast sandbox running in a background thread."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import uvicorn
from typer.testing import CliRunner

from castbridge.cli import app
from castbridge.sandbox.cast import (
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    CastSandbox,
    create_cast_sandbox,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[tuple[str, CastSandbox]]:
    """The default sandbox served by uvicorn in a thread (CliRunner is synchronous)."""
    application = create_cast_sandbox()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        assert time.monotonic() < deadline, "sandbox did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", application.state.sandbox
    server.should_exit = True
    thread.join(5)
    sock.close()


@pytest.fixture
def sandbox(
    sandbox_url: tuple[str, CastSandbox], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[CastSandbox]:
    """Point the CAST_* settings at the sandbox; restore logging the CLI configured."""
    url, state = sandbox_url
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("CAST_API_URL", url)
    monkeypatch.setenv("CAST_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("CAST_SENDER_ID", DEFAULT_SENDER_ID)
    monkeypatch.setenv("CAST_CHANNEL", "sms")
    monkeypatch.setenv("CASTBRIDGE_DEFAULT_REGION", "PH")
    monkeypatch.setenv("CASTBRIDGE_LOG_LEVEL", "WARNING")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield state
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _json(output: str) -> dict[str, object]:
    return dict(json.loads(output))


def test_send_prints_the_message_id_and_idempotency_key(sandbox: CastSandbox) -> None:
    """`cast send` normalises the number, sends once and shows id, parts and key."""
    result = runner.invoke(
        app, ["cast", "send", "--to", "0917 123 4567", "--message", "hi", "--json"]
    )
    assert result.exit_code == 0, result.output
    row = _json(result.stdout)
    message = sandbox.messages[str(row["message_id"])]
    assert (message.to, message.sender_id, message.channel) == (
        "09171234567",
        DEFAULT_SENDER_ID,
        "sms",
    )
    assert str(row["idempotency_key"]).startswith("cli:")
    assert sandbox.billed(str(row["idempotency_key"])) == 1
    assert row["parts"] == 1


def test_send_table_output_and_options(sandbox: CastSandbox) -> None:
    """Without --json a table is printed; --channel otp routes to /otp/send."""
    result = runner.invoke(
        app, ["cast", "send", "--to", "+639181234567", "-m", "code 1234", "--channel", "otp"]
    )
    assert result.exit_code == 0, result.output
    assert "message_id" in result.stdout
    assert "idempotency key: cli:" in result.output
    assert any(m.channel == "otp" for m in sandbox.messages.values())


def test_send_refuses_an_invalid_number_before_calling_cast(sandbox: CastSandbox) -> None:
    """A number that does not normalise exits non-zero with the reason."""
    before = sandbox.stats.requests
    result = runner.invoke(app, ["cast", "send", "--to", "12", "--message", "hi"])
    assert result.exit_code != 0
    assert "12 is not a valid PH number" in result.output
    assert sandbox.stats.requests == before


def test_send_shows_casts_error_and_fails(sandbox: CastSandbox) -> None:
    """A refused send prints Cast's sentence and code and exits non-zero."""
    result = runner.invoke(
        app, ["cast", "send", "--to", "09171234567", "-m", "hi", "--sender-id", "NOPE"]
    )
    assert result.exit_code == 1
    assert "sender_id 'NOPE' is not allowed for this user" in result.output
    assert "SENDER_ID_NOT_ALLOWED" in result.output


def test_status_shows_raw_and_highlevel_status(sandbox: CastSandbox) -> None:
    """`cast status` shows Cast's status and the HighLevel mapping; delivered after time passes."""
    sent = _json(
        runner.invoke(app, ["cast", "send", "--to", "09171234567", "-m", "x", "--json"]).stdout
    )
    first = runner.invoke(app, ["cast", "status", str(sent["message_id"]), "--json"])
    assert first.exit_code == 0, first.output
    assert (_json(first.stdout)["status"], _json(first.stdout)["highlevel_status"]) == (
        "sent",
        "pending",
    )
    sandbox.advance(60)
    later = _json(runner.invoke(app, ["cast", "status", str(sent["message_id"]), "--json"]).stdout)
    assert (later["status"], later["highlevel_status"], later["terminal"]) == (
        "delivered",
        "delivered",
        True,
    )


def test_status_of_unknown_message_fails(sandbox: CastSandbox) -> None:
    """An unknown id prints Cast's not-found error."""
    result = runner.invoke(app, ["cast", "status", "CASTnope"])
    assert result.exit_code == 1
    assert "NOT_FOUND" in result.output


def test_balance_and_sender_ids(sandbox: CastSandbox) -> None:
    """`cast balance` and `cast sender-ids` print the account's data."""
    balance = runner.invoke(app, ["cast", "balance", "--json"])
    assert balance.exit_code == 0, balance.output
    assert _json(balance.stdout) == {
        "balance": sandbox.account(DEFAULT_API_KEY).credits,  # Cast's credits are SMS parts
        "currency": "credits",
        "unit": "credits",
    }
    table = runner.invoke(app, ["cast", "balance"])
    assert "credits" in table.stdout
    senders = runner.invoke(app, ["cast", "sender-ids", "--json"])
    assert json.loads(senders.stdout) == [
        {"sender_id": DEFAULT_SENDER_ID, "label": "Default", "channel": "sms"}
    ]


def test_missing_api_key_is_a_clear_error(
    sandbox: CastSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without CAST_API_KEY every command says so and exits non-zero."""
    monkeypatch.delenv("CAST_API_KEY")
    result = runner.invoke(app, ["cast", "balance"])
    assert result.exit_code == 1
    assert "CAST_API_KEY is not set" in result.output


def test_wrong_key_is_a_credentials_error(
    sandbox: CastSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown key prints Cast's "invalid api key" with a hint."""
    monkeypatch.setenv("CAST_API_KEY", "cast_" + "0" * 64)
    result = runner.invoke(app, ["cast", "balance"])
    assert result.exit_code == 1
    assert "invalid api key" in result.output
    assert "check CAST_API_KEY" in result.output
    assert "0" * 64 not in result.output
