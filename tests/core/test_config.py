"""Settings: documented names, defaults, and one clear line per bad value."""

from __future__ import annotations

import pytest

from castbridge.config import ConfigError, Settings, async_database_url, load_settings
from castbridge.gateways.registry import load_defaults


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
    settings = load_settings(_env_file=None, env_file=None)
    assert settings.database_url == "sqlite+aiosqlite:////tmp/x.db"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.public_url == "https://bridge.example.com"
    assert settings.ghl_require_signature is False
    cast = load_defaults(settings)["cast"]
    assert cast.api_key is not None
    assert cast.api_key.get_secret_value() == "cast_" + "a" * 64
    assert (cast.api_url, cast.sender_id) == ("http://127.0.0.1:1234", "CASTBRIDGE")
    assert cast.rate_limit == 5.0  # type: ignore[attr-defined]
    assert cast.channel == "sim"  # type: ignore[attr-defined]


def test_defaults_are_safe() -> None:
    """Defaults: loopback, port 8080, embedded SQLite, signatures required, 450-char cap."""
    settings = Settings(_env_file=None, env_file=None)  # type: ignore[call-arg]
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.uses_embedded_database
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.ghl_require_signature is True
    assert settings.ghl_accept_legacy_rsa is False  # its sunset date has passed
    assert settings.webhook_max_age_seconds is None  # never refuse HighLevel's retries
    assert settings.default_account_locations == "*"
    cast = load_defaults(settings)["cast"]
    assert cast.api_url == "https://api.cast.ph"
    assert cast.max_chars == 450  # type: ignore[attr-defined]
    assert settings.ghl_api_url == "https://services.leadconnectorhq.com"


def test_each_bad_value_gets_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two bad values produce two lines, each starting with the environment name."""
    monkeypatch.setenv("CAST_RATE_LIMIT", "fast")
    monkeypatch.setenv("CAST_CHANNEL", "pigeon")
    with pytest.raises(ConfigError) as caught:
        load_defaults(load_settings(_env_file=None, env_file=None))
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
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, env_file=None, gateway_settings={"cast": {"api_key": "cast_" + "b" * 64}}
    )
    defaults = load_defaults(settings)
    assert "bbbb" not in repr(defaults["cast"])


@pytest.mark.parametrize(
    ("name", "value"),
    [("CASTBRIDGE_PUBLIC_URL", "bridge.example.com"), ("CASTBRIDGE_DEFAULT_REGION", "PHL")],
)
def test_malformed_values_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """A URL without a scheme or a three-letter region is a start-up error."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings(_env_file=None)


@pytest.mark.parametrize(
    ("pasted", "expected"),
    [
        ("sqlite:///data/cb.db", "sqlite+aiosqlite:///data/cb.db"),
        ("postgres://u:p@db:5432/cb", "postgresql+asyncpg://u:p@db:5432/cb"),
        ("postgresql://u@db/cb", "postgresql+asyncpg://u@db/cb"),
        ("postgresql+asyncpg://u@db/cb", "postgresql+asyncpg://u@db/cb"),
    ],
)
def test_database_urls_people_paste_map_to_async_drivers(pasted: str, expected: str) -> None:
    """sqlite:///, postgres:// and postgresql:// all work (they used to fail deep in SQLAlchemy
    with a traceback about a sync driver)."""
    assert async_database_url(pasted) == expected


def test_unsupported_database_url_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything else is one line naming the variable, not a traceback."""
    monkeypatch.setenv("CASTBRIDGE_DATABASE_URL", "mysql://u@db/cb")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value).startswith("CASTBRIDGE_DATABASE_URL: ")
    assert len(str(caught.value).splitlines()) == 1


def test_default_account_locations(monkeypatch: pytest.MonkeyPatch) -> None:
    """'*' lets every location use the operator's default account, a list only those
    locations or companies, an empty value nobody."""
    every = Settings(_env_file=None, env_file=None)  # type: ignore[call-arg]
    listed = Settings(_env_file=None, env_file=None, default_account_locations="locA, coB")  # type: ignore[call-arg]
    nobody = Settings(_env_file=None, env_file=None, default_account_locations="")  # type: ignore[call-arg]
    assert every.default_account_allowed("any", None)
    assert listed.default_account_allowed("locA", None)
    assert listed.default_account_allowed("locX", "coB")
    assert not listed.default_account_allowed("locX", "coX")
    assert not nobody.default_account_allowed("locA", "coB")


def test_env_example_lists_every_setting() -> None:
    """Every environment variable castbridge reads, its own and each gateway's, is in
    .env.example (operators copy it; a missing one is a setting nobody finds)."""
    from pathlib import Path

    from castbridge.config import _env_name
    from castbridge.gateways.registry import SPECS

    listed = {
        line.split("=", 1)[0].strip()
        for line in (Path(__file__).parents[2] / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    wanted = {_env_name(name) for name in Settings.model_fields if name != "gateway_settings"}
    for name, spec in SPECS.items():
        wanted |= {f"{name.upper()}_{field.upper()}" for field in spec.defaults.model_fields}
    assert wanted - listed == set()
