"""Settings: documented names, defaults, and one clear line per bad value."""

from __future__ import annotations

import pytest

from castbridge.config import ConfigError, Settings, load_settings


def test_documented_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every product-interface variable is read under its exact documented name."""
    env = {
        "CASTBRIDGE_DATABASE_URL": "sqlite+aiosqlite:////tmp/x.db",
        "CASTBRIDGE_HOST": "0.0.0.0",
        "CASTBRIDGE_PORT": "9000",
        "CASTBRIDGE_PUBLIC_URL": "https://bridge.example.com/",
        "CAST_API_URL": "http://127.0.0.1:1234",
        "CAST_API_KEY": "cast_" + "a" * 64,
        "CAST_SENDER_ID": "CASTBRIDGE",
        "CAST_RATE_LIMIT": "5",
        "CAST_CHANNEL": "sim",
        "GHL_CLIENT_ID": "app-123",
        "GHL_CLIENT_SECRET": "shh",
        "GHL_REQUIRE_SIGNATURE": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(_env_file=None)
    assert settings.database_url == "sqlite+aiosqlite:////tmp/x.db"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.public_url == "https://bridge.example.com"
    assert settings.cast_api_key is not None
    assert settings.cast_api_key.get_secret_value() == "cast_" + "a" * 64
    assert settings.cast_rate_limit == 5.0
    assert settings.cast_channel == "sim"
    assert settings.ghl_require_signature is False


def test_defaults_are_safe() -> None:
    """Defaults: loopback, port 8080, embedded SQLite, signatures required, 450-char cap."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.uses_embedded_database
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.ghl_require_signature is True
    assert settings.cast_api_url == "https://api.cast.ph"
    assert settings.cast_max_chars == 450
    assert settings.ghl_api_url == "https://services.leadconnectorhq.com"


def test_each_bad_value_gets_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two bad values produce two lines, each starting with the environment name."""
    monkeypatch.setenv("CAST_RATE_LIMIT", "fast")
    monkeypatch.setenv("CAST_CHANNEL", "pigeon")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert any(line.startswith("CAST_RATE_LIMIT: ") for line in lines)
    assert any(line.startswith("CAST_CHANNEL: ") for line in lines)


def test_secret_keys_required_off_sqlite() -> None:
    """A PostgreSQL database without CASTBRIDGE_SECRET_KEYS is refused at start-up."""
    with pytest.raises(ConfigError, match="CASTBRIDGE_SECRET_KEYS"):
        load_settings(_env_file=None, database_url="postgresql+asyncpg://u@db/castbridge")


def test_secrets_are_masked_in_repr() -> None:
    """SecretStr keeps keys out of repr() and therefore out of tracebacks."""
    settings = Settings(_env_file=None, cast_api_key="cast_" + "b" * 64)  # type: ignore[call-arg]
    assert "bbbb" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [("CASTBRIDGE_PUBLIC_URL", "bridge.example.com"), ("CASTBRIDGE_DEFAULT_REGION", "PHL")],
)
def test_malformed_values_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """A URL without a scheme or a three-letter region is a start-up error."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings(_env_file=None)
