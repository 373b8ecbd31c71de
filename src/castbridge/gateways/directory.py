"""The runtime side of gateway accounts: a stored account row becomes a ready `Gateway`.

One `Gateway` per account version, cached, so every location on an account shares its client
and buckets, and a changed account (new key, sender, settings) is rebuilt on its next use.
Keys are decrypted only here, and only when a gateway is built.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import httpx2
from pydantic import ValidationError

from castbridge.gateways.base import Gateway
from castbridge.gateways.registry import spec
from castbridge.gateways.spec import AccountConfig, GatewayContext, GatewayDefaults
from castbridge.limits import BlockingPacer, Pacer
from castbridge.secrets import SecretBox, SecretDecryptError
from castbridge.store.models import GatewayAccount


class AccountUnusable(Exception):
    """The stored account cannot be turned into a gateway (its key cannot be decrypted, its
    settings no longer validate): a configuration problem for a person, not a send failure."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AccountView:
    """A gateway account without its key: safe to cache, log or show."""

    id: int
    gateway: str
    origin: str
    label: str
    state: str
    state_code: str | None
    state_reason: str | None
    sender_id: str | None
    channel: str
    region: str | None
    settings: dict[str, Any]
    owner_location_id: str | None
    webhook_token: str
    version: int
    has_key: bool

    @classmethod
    def of(cls, row: GatewayAccount) -> AccountView:
        return cls(
            id=row.id,
            gateway=row.gateway,
            origin=row.origin,
            label=row.label,
            state=row.state,
            state_code=row.state_code,
            state_reason=row.state_reason,
            sender_id=row.sender_id,
            channel=row.channel,
            region=row.region,
            settings=dict(row.settings or {}),
            owner_location_id=row.owner_location_id,
            webhook_token=row.webhook_token,
            version=row.version,
            has_key=bool(row.api_key_enc),
        )


def fingerprint(api_key: str) -> str:
    """A stable, non-reversible name for a key (to spot a changed env key, to name buckets)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:32]


class GatewayDirectory:
    """Builds and caches one `Gateway` per stored account version."""

    def __init__(
        self,
        defaults: dict[str, GatewayDefaults],
        http: httpx2.AsyncClient,
        pacer: Pacer,
        box: SecretBox | None,
        *,
        egress_id: str = "default",
        attempts: int = 1,
    ) -> None:
        self.defaults = defaults
        self._http = http
        self._pacer = pacer
        self._box = box
        self._egress = egress_id
        self._attempts = attempts
        self._cache: dict[int, tuple[int, Gateway]] = {}

    def with_pacer(self, pacer: Pacer, *, attempts: int | None = None) -> GatewayDirectory:
        """A directory over the same settings and HTTP pool pacing through `pacer` (the CLI
        waits; the worker refuses and reschedules)."""
        return GatewayDirectory(
            self.defaults,
            self._http,
            pacer,
            self._box,
            egress_id=self._egress,
            attempts=self._attempts if attempts is None else attempts,
        )

    def waiting(self, *, max_wait: float = 60.0) -> GatewayDirectory:
        """This directory pacing by waiting for tokens, for one job that makes several calls
        in a row (a webhook registration, a multi-page reply poll): refusing mid-way would
        restart it from its first call, spend the tokens again and never finish."""
        return self.with_pacer(BlockingPacer(self._pacer, max_wait=max_wait))

    def cached(self, account_id: int, version: int) -> Gateway | None:
        """The gateway built for this account version, if this process has one."""
        cached = self._cache.get(account_id)
        return cached[1] if cached is not None and cached[0] == version else None

    def gateway(self, row: GatewayAccount) -> Gateway:
        cached = self._cache.get(row.id)
        if cached is not None and cached[0] == row.version:
            return cached[1]
        gateway = self.build(row)
        self._cache[row.id] = (row.version, gateway)
        return gateway

    def build(self, row: GatewayAccount) -> Gateway:
        if not row.api_key_enc:
            raise AccountUnusable(
                "ACCOUNT_RETIRED", "This gateway account's key was removed (uninstalled)."
            )
        if self._box is None:
            raise AccountUnusable("KEY_UNREADABLE", "no secret keys to decrypt stored keys")
        try:
            api_key = self._box.decrypt(row.api_key_enc)
        except SecretDecryptError:
            raise AccountUnusable(
                "KEY_UNREADABLE",
                "The stored gateway key cannot be decrypted with CASTBRIDGE_SECRET_KEYS (was a "
                "key removed before `castbridge secrets rotate` ran?).",
            ) from None
        return self.build_for_key(
            row.gateway,
            api_key,
            account_id=row.id,
            sender_id=row.sender_id,
            channel=row.channel,
            settings=dict(row.settings or {}),
        )

    def build_for_key(
        self,
        gateway: str,
        api_key: str,
        *,
        account_id: int,
        sender_id: str | None,
        channel: str,
        settings: dict[str, Any],
    ) -> Gateway:
        """A gateway for a key that may not be stored yet (checking a key before saving it)."""
        gateway_spec = spec(gateway)
        defaults = self.defaults[gateway]
        settings = dict(settings)
        api_url = str(settings.pop("api_url", None) or defaults.api_url)
        try:
            validated = gateway_spec.account_settings.model_validate(settings)
        except ValidationError as exc:
            raise AccountUnusable(
                "SETTINGS_INVALID",
                f"The account's {gateway} settings are invalid: {exc.errors()[0]['msg']}",
            ) from None
        config = AccountConfig(
            account_id=account_id,
            gateway=gateway,
            api_key=api_key,
            api_url=api_url,
            sender_id=sender_id,
            channel=channel,
            settings=validated,
        )
        context = GatewayContext(
            http=self._http,
            pacer=self._pacer,
            account_bucket=f"acct:{gateway}:{fingerprint(api_key)[:16]}",
            ip_bucket=f"ip:{gateway}:{self._egress}",
            defaults=defaults,
            attempts=self._attempts,
        )
        return gateway_spec.build(config, context)

    def forget(self, account_id: int) -> None:
        self._cache.pop(account_id, None)
