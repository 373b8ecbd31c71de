"""Settings: every knob castbridge reads from the environment or `.env`, validated at start-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# What an SMS provider needs (ghl.md §7), agency scopes included so bulk installs can mint
# location tokens; users.readonly lets the settings page confirm its user with HighLevel.
DEFAULT_GHL_SCOPES = (
    "conversations/message.write conversations/message.readonly conversations.readonly "
    "conversations.write contacts.readonly contacts.write oauth.readonly oauth.write "
    "locations.readonly users.readonly"
)


def _env(name: str) -> AliasChoices:
    """Accept the documented environment name and the Python field name (tests use the latter)."""
    return AliasChoices(name, name.lower())


class ConfigError(Exception):
    """Invalid or missing configuration; `str()` is one line per problem, ready to print."""


class Settings(BaseSettings):
    """castbridge configuration. Build once in `main` (or in a test) and pass it down."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # --- castbridge itself -------------------------------------------------------------
    data_dir: Path = Field(Path("castbridge-data"), validation_alias=_env("CASTBRIDGE_DATA_DIR"))
    database_url: str | None = Field(None, validation_alias=_env("CASTBRIDGE_DATABASE_URL"))
    host: str = Field("127.0.0.1", validation_alias=_env("CASTBRIDGE_HOST"))
    port: int = Field(8080, ge=1, le=65535, validation_alias=_env("CASTBRIDGE_PORT"))
    public_url: str | None = Field(None, validation_alias=_env("CASTBRIDGE_PUBLIC_URL"))
    secret_keys: SecretStr | None = Field(None, validation_alias=_env("CASTBRIDGE_SECRET_KEYS"))
    log_level: str = Field("INFO", validation_alias=_env("CASTBRIDGE_LOG_LEVEL"))
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias=_env("CASTBRIDGE_LOG_FORMAT")
    )
    # FULL fsyncs the WAL on every commit, so an acknowledged webhook survives power loss as
    # well as kill -9; NORMAL survives only process crashes. Operators may trade down.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", validation_alias=_env("CASTBRIDGE_SQLITE_SYNCHRONOUS")
    )
    # How to read a number written without a country code when neither the location nor its
    # gateway account says; unset: the account's gateway country (PH, AO, AU, UG).
    default_region: str | None = Field(None, validation_alias=_env("CASTBRIDGE_DEFAULT_REGION"))
    max_body_bytes: int = Field(
        256 * 1024, ge=1024, validation_alias=_env("CASTBRIDGE_MAX_BODY_BYTES")
    )
    attachments: Literal["append", "reject"] = Field(
        "append", validation_alias=_env("CASTBRIDGE_ATTACHMENTS")
    )
    run_worker: bool = Field(True, validation_alias=_env("CASTBRIDGE_RUN_WORKER"))
    worker_concurrency: int = Field(
        32, ge=1, le=1024, validation_alias=_env("CASTBRIDGE_WORKER_CONCURRENCY")
    )
    # Slots per lane, e.g. "send=16,status=8,report=8,inbound=4,admin=2"; unset: derived
    # from CASTBRIDGE_WORKER_CONCURRENCY.
    lane_concurrency: str | None = Field(None, validation_alias=_env("CASTBRIDGE_LANE_CONCURRENCY"))
    worker_lease_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("CASTBRIDGE_WORKER_LEASE_SECONDS")
    )
    worker_poll_interval: float = Field(
        0.5, gt=0, validation_alias=_env("CASTBRIDGE_WORKER_POLL_INTERVAL")
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, validation_alias=_env("CASTBRIDGE_SHUTDOWN_GRACE_SECONDS")
    )
    send_max_attempts: int = Field(8, ge=1, validation_alias=_env("CASTBRIDGE_SEND_MAX_ATTEMPTS"))
    # Persisted backoff between a job's attempts (sends; status reports other than HighLevel's
    # 403 window): full jitter, doubling from the base up to the cap.
    retry_base_seconds: float = Field(
        2.0, gt=0, validation_alias=_env("CASTBRIDGE_RETRY_BASE_SECONDS")
    )
    retry_cap_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("CASTBRIDGE_RETRY_CAP_SECONDS")
    )
    # Idempotent gateways keep their keys for a limited time (24 h for the shortest,
    # gateways.md §1.5); resending after that could bill twice, so sending stops well before.
    send_horizon_seconds: float = Field(
        6 * 3600.0, gt=0, le=23 * 3600.0, validation_alias=_env("CASTBRIDGE_SEND_HORIZON_SECONDS")
    )
    # Delivery-report polling: seconds after acceptance of each poll; the last gap repeats
    # until the horizon (gateways.md §1.7 suggests 5 s, 10 s, 30 s, 1, 2, 5, 10 min, then 15 min).
    status_poll_schedule: str = Field(
        "5,10,30,60,120,300,600,900", validation_alias=_env("CASTBRIDGE_STATUS_POLL_SCHEDULE")
    )
    status_poll_horizon_seconds: float = Field(
        24 * 3600.0, gt=0, validation_alias=_env("CASTBRIDGE_STATUS_POLL_HORIZON_SECONDS")
    )
    # What HighLevel is told when no delivery report arrives by the horizon: "pending" leaves
    # the message as sent-but-unconfirmed (never a fake "delivered"), "failed" marks it failed.
    status_on_horizon: Literal["pending", "failed"] = Field(
        "pending", validation_alias=_env("CASTBRIDGE_STATUS_ON_HORIZON")
    )
    report_max_attempts: int = Field(
        12, ge=1, validation_alias=_env("CASTBRIDGE_REPORT_MAX_ATTEMPTS")
    )
    # First status report no sooner than this after the webhook: HighLevel answers 403 until
    # the message is "downstreamed" (ghl.md §8).
    report_initial_delay_seconds: float = Field(
        5.0, ge=0, validation_alias=_env("CASTBRIDGE_REPORT_INITIAL_DELAY_SECONDS")
    )

    # --- HighLevel ---------------------------------------------------------------------
    ghl_client_id: str | None = Field(None, validation_alias=_env("GHL_CLIENT_ID"))
    ghl_client_secret: SecretStr | None = Field(None, validation_alias=_env("GHL_CLIENT_SECRET"))
    ghl_conversation_provider_id: str | None = Field(
        None, validation_alias=_env("GHL_CONVERSATION_PROVIDER_ID")
    )
    ghl_sso_key: SecretStr | None = Field(None, validation_alias=_env("GHL_SSO_KEY"))
    ghl_api_url: str = Field(
        "https://services.leadconnectorhq.com", validation_alias=_env("GHL_API_URL")
    )
    ghl_marketplace_url: str = Field(
        "https://marketplace.gohighlevel.com", validation_alias=_env("GHL_MARKETPLACE_URL")
    )
    ghl_scopes: str = Field(DEFAULT_GHL_SCOPES, validation_alias=_env("GHL_SCOPES"))
    ghl_webhook_keys: str | None = Field(None, validation_alias=_env("GHL_WEBHOOK_KEYS"))
    ghl_require_signature: bool = Field(True, validation_alias=_env("GHL_REQUIRE_SIGNATURE"))
    # X-WH-Signature (RSA) was deprecated on 2026-09-01 and that date has passed (ghl.md §3):
    # off by default; when turned on it is accepted on the app-events URL only.
    ghl_accept_legacy_rsa: bool = Field(False, validation_alias=_env("GHL_ACCEPT_LEGACY_RSA"))
    ghl_rate_limit: float = Field(8.0, gt=0, le=10.0, validation_alias=_env("GHL_RATE_LIMIT"))
    ghl_timeout_seconds: float = Field(15.0, gt=0, validation_alias=_env("GHL_TIMEOUT_SECONDS"))
    oauth_state_ttl_seconds: float = Field(
        600.0, gt=0, validation_alias=_env("CASTBRIDGE_OAUTH_STATE_TTL_SECONDS")
    )
    # HighLevel retries re-send the same signed bytes ~10 min apart, for over an hour (ghl.md
    # §4), so a post is never refused for its age. Set, a Delivery-URL post older than this is
    # still stored and answered 200, and reported failed ("arrived N h late"); at least 2 h.
    webhook_max_age_seconds: float | None = Field(
        None, ge=7200, validation_alias=_env("CASTBRIDGE_WEBHOOK_MAX_AGE_SECONDS")
    )
    # Requests per minute per client IP on /oauth/install and /oauth/callback.
    oauth_rate_limit_per_minute: int = Field(
        30, ge=1, validation_alias=_env("CASTBRIDGE_OAUTH_RATE_LIMIT_PER_MINUTE")
    )
    # Refuse OAuth callbacks without our `state`. Off by default: installs started from the
    # HighLevel Marketplace come back without one (ghl.md §6.1).
    oauth_require_state: bool = Field(
        False, validation_alias=_env("CASTBRIDGE_OAUTH_REQUIRE_STATE")
    )

    # --- gateway accounts ------------------------------------------------------------------
    # Which gateway's operator default account (its <NAME>_API_KEY ...) serves locations
    # without an account of their own.
    default_gateway: str = Field("cast", validation_alias=_env("CASTBRIDGE_DEFAULT_GATEWAY"))
    # Who may send on the operator's default account: "*" (every installed location), a
    # comma-separated list of location and company ids, or empty (nobody).
    default_account_locations: str = Field(
        "*", validation_alias=_env("CASTBRIDGE_DEFAULT_ACCOUNT_LOCATIONS")
    )
    # After an ambiguous send on a gateway without idempotency keys, "not in the gateway's
    # records" counts as "not sent" only once the send is this old (records lag a little).
    reconcile_settle_seconds: float = Field(
        60.0, ge=0, validation_alias=_env("CASTBRIDGE_RECONCILE_SETTLE_SECONDS")
    )
    # How long after acceptance a pushed delivery report is waited for before polling as the
    # fallback; unset: each gateway's own window (2 minutes).
    push_report_window_seconds: float | None = Field(
        None, gt=0, validation_alias=_env("CASTBRIDGE_PUSH_REPORT_WINDOW_SECONDS")
    )
    # A paused account's held messages are reported failed after this long.
    account_hold_grace_seconds: float = Field(
        1800.0, gt=0, validation_alias=_env("CASTBRIDGE_ACCOUNT_HOLD_GRACE_SECONDS")
    )
    # First probe of a paused account after this long; the gap doubles up to 15 minutes.
    account_probe_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("CASTBRIDGE_ACCOUNT_PROBE_SECONDS")
    )
    # A delivery for a location whose install has not finished is held this long, then failed.
    install_wait_seconds: float = Field(
        600.0, gt=0, validation_alias=_env("CASTBRIDGE_INSTALL_WAIT_SECONDS")
    )
    # Which egress IP this process sends from, for gateways that limit per IP: processes
    # sharing an IP share the bucket (set it per host when hosts have their own IPs).
    egress_id: str = Field("default", validation_alias=_env("CASTBRIDGE_EGRESS_ID"))
    # Where rate-limit buckets live: "auto" (the database on PostgreSQL, this process on
    # SQLite), "database" or "process".
    shared_limits: Literal["auto", "database", "process"] = Field(
        "auto", validation_alias=_env("CASTBRIDGE_SHARED_LIMITS")
    )
    # `castbridge worker` serves its own counters (sends, HighLevel calls, refreshes) on this
    # port at /metrics, on CASTBRIDGE_HOST, without authentication; unset: not served.
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, validation_alias=_env("CASTBRIDGE_WORKER_METRICS_PORT")
    )
    # Retention: finished jobs and the attempts of finished messages are deleted after this many
    # days, finished messages (and whatever of theirs is left) after the longer second figure.
    retention_days: float = Field(7.0, gt=0, validation_alias=_env("CASTBRIDGE_RETENTION_DAYS"))
    message_retention_days: float = Field(
        90.0, gt=0, validation_alias=_env("CASTBRIDGE_MESSAGE_RETENTION_DAYS")
    )
    # --- two-way --------------------------------------------------------------------------
    # Replies by polling (gateways that offer it): how often each account is polled and how
    # many pages one poll may walk (newest first). Polling also covers a webhook that was never
    # configured or was down.
    inbound_poll_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("CASTBRIDGE_INBOUND_POLL_SECONDS")
    )
    inbound_poll_max_pages: int = Field(
        40, ge=1, le=1000, validation_alias=_env("CASTBRIDGE_INBOUND_POLL_MAX_PAGES")
    )
    # How often each account whose gateway lists its opt-outs (Cast's unsubscribe list,
    # Cellcast getOptout) is synced into castbridge's own suppression.
    optout_sync_seconds: float = Field(
        3600.0, gt=0, validation_alias=_env("CASTBRIDGE_OPTOUT_SYNC_SECONDS")
    )
    # Attempts to hand a reply to HighLevel before it is parked as dead (replayable).
    inbound_max_attempts: int = Field(
        12, ge=1, validation_alias=_env("CASTBRIDGE_INBOUND_MAX_ATTEMPTS")
    )
    # Where replies on the operator's default accounts go when no location texted that number
    # before (empty: they are parked as unroutable for the operator).
    default_account_primary_location: str | None = Field(
        None, validation_alias=_env("CASTBRIDGE_DEFAULT_ACCOUNT_PRIMARY_LOCATION")
    )
    # Words that opt a number out / back in, besides the built-in ones (STOP, STOPALL,
    # UNSUBSCRIBE, CANCEL, END, QUIT / START, UNSTOP, and Portuguese for Angola): comma-
    # separated; `AO:PARAR` applies only to accounts of gateways sending to that country.
    optout_keywords: str = Field("", validation_alias=_env("CASTBRIDGE_OPTOUT_KEYWORDS"))
    optin_keywords: str = Field("", validation_alias=_env("CASTBRIDGE_OPTIN_KEYWORDS"))

    # How long a webhook may wait for the database before it is answered 429 + Retry-After.
    store_timeout_seconds: float = Field(
        1.5, gt=0, le=10, validation_alias=_env("CASTBRIDGE_STORE_TIMEOUT_SECONDS")
    )
    # Who may frame the settings page (CSP frame-ancestors); default "'self' https:" because
    # white-label agencies run HighLevel on their own domains (ghl.md §13).
    settings_frame_ancestors: str | None = Field(
        None, validation_alias=_env("CASTBRIDGE_SETTINGS_FRAME_ANCESTORS")
    )
    # How long a settings-page session lasts before the page re-runs the HighLevel handshake.
    settings_session_seconds: float = Field(
        900.0, gt=0, le=86400, validation_alias=_env("CASTBRIDGE_SETTINGS_SESSION_SECONDS")
    )
    # Settings-page API calls per minute per session (and per client address for /app/session).
    settings_rate_limit_per_minute: int = Field(
        120, ge=1, validation_alias=_env("CASTBRIDGE_SETTINGS_RATE_LIMIT_PER_MINUTE")
    )
    # Bearer token protecting /metrics, /readyz details and /docs; unset: they are open.
    admin_token: SecretStr | None = Field(None, validation_alias=_env("CASTBRIDGE_ADMIN_TOKEN"))
    # Which env file gateway defaults are read from as well (the settings' own, `.env`).
    env_file: str | None = Field(".env", validation_alias=_env("CASTBRIDGE_ENV_FILE"))
    # Per-gateway default overrides by gateway and field (embedders and tests), e.g.
    # {"cast": {"api_url": "http://127.0.0.1:8001"}}; the environment has `CAST_API_URL`.
    gateway_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, validation_alias="gateway_settings"
    )

    @field_validator("message_retention_days")
    @classmethod
    def _messages_outlive_jobs(cls, value: float, info: ValidationInfo) -> float:
        jobs_days = info.data.get("retention_days")
        if jobs_days is not None and value < jobs_days:
            raise ValueError(
                "CASTBRIDGE_MESSAGE_RETENTION_DAYS must be at least CASTBRIDGE_RETENTION_DAYS "
                "(a message is kept at least as long as its jobs and attempts)"
            )
        return value

    @field_validator("default_region")
    @classmethod
    def _region_upper(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) != 2 or not value.isalpha():
            raise ValueError("must be a two-letter region code such as PH")
        return value.upper()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return None if value is None else async_database_url(value)

    @field_validator("status_poll_schedule")
    @classmethod
    def _schedule_numbers(cls, value: str) -> str:
        try:
            gaps = [float(part) for part in value.split(",") if part.strip()]
        except ValueError as exc:
            raise ValueError("must be comma-separated seconds, e.g. 5,10,30,60") from exc
        if not gaps or any(gap <= 0 for gap in gaps):
            raise ValueError("must list at least one positive number of seconds")
        return value

    @field_validator("public_url", "ghl_api_url", "ghl_marketplace_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    # --- derived values ------------------------------------------------------------------
    @property
    def uses_embedded_database(self) -> bool:
        """True when the store is the built-in SQLite file (no URL configured)."""
        return self.database_url is None

    @property
    def effective_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'castbridge.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def default_account_allowed(self, location_id: str, company_id: str | None) -> bool:
        """CASTBRIDGE_DEFAULT_ACCOUNT_LOCATIONS: may this location use the default account?"""
        allowed = {part.strip() for part in self.default_account_locations.split(",")}
        allowed -= {"", "none"}
        if "*" in allowed:
            return True
        return location_id in allowed or (company_id is not None and company_id in allowed)

    @property
    def poll_gaps(self) -> list[float]:
        return [float(part) for part in self.status_poll_schedule.split(",") if part.strip()]

    def missing_for_highlevel(self) -> list[str]:
        """Environment names that must be set before HighLevel can talk to us."""
        required = {
            "GHL_CLIENT_ID": self.ghl_client_id,
            "GHL_CLIENT_SECRET": self.ghl_client_secret,
            "GHL_CONVERSATION_PROVIDER_ID": self.ghl_conversation_provider_id,
            "CASTBRIDGE_PUBLIC_URL": self.public_url,
        }
        return [name for name, value in required.items() if value is None]


def async_database_url(url: str) -> str:
    """The URL forms people paste, mapped to castbridge's async drivers; anything else raises
    ValueError with one sentence (shown as `CASTBRIDGE_DATABASE_URL: ...`)."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must be a URL such as sqlite:///path/castbridge.db or postgresql://…")
    scheme = scheme.lower()
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        return f"sqlite+aiosqlite://{rest}"
    if scheme in {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg"}:
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(
        f"{scheme}:// is not supported; use sqlite:///path/castbridge.db or "
        "postgresql://user:password@host/dbname"
    )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ConfigError with one line per bad value."""
    # Empty values count as unset everywhere (env_ignore_empty), except here, where an empty
    # value is documented to mean "nobody may use the default account".
    if os.environ.get("CASTBRIDGE_DEFAULT_ACCOUNT_LOCATIONS") == "":
        overrides.setdefault("default_account_locations", "")
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            lines.append(f"{_env_name(field)}: {error['msg']}")
        raise ConfigError("\n".join(lines)) from None
    database_url = settings.database_url
    if settings.secret_keys is None and database_url and not database_url.startswith("sqlite"):
        raise ConfigError(
            "CASTBRIDGE_SECRET_KEYS: required when CASTBRIDGE_DATABASE_URL is not SQLite "
            "(generate one with `castbridge secrets generate`)"
        )
    return settings


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and alias.choices:
        return str(alias.choices[0])
    return field.upper()


def settings_env(settings: Settings, *, only_set: bool = False) -> dict[str, str]:
    """The environment variables (documented names) that reproduce `settings` in another
    process; `only_set` keeps just the values given explicitly, leaving defaults to the child."""
    env: dict[str, str] = {}
    names = settings.model_fields_set if only_set else Settings.model_fields
    for name in names:
        value = getattr(settings, name)
        if value is None:
            continue
        if name == "gateway_settings":
            # The gateways' own settings read `<NAME>_<FIELD>` (gateways/spec.py).
            for gateway, fields in value.items():
                for field, item in fields.items():
                    if item is None:
                        continue
                    if isinstance(item, SecretStr):
                        item = item.get_secret_value()
                    env[f"{gateway.upper()}_{field.upper()}"] = str(item)
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[_env_name(name)] = str(value)
    return env
