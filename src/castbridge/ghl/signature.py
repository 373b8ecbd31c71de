"""HighLevel webhook signatures: pure, fail-closed verification over the raw request bytes.

Two schemes exist (ghl.md §3): `X-GHL-Signature` is Ed25519 over the raw body and is the one
to trust; `X-WH-Signature` is the legacy RSA-SHA256 (PKCS#1 v1.5) header, accepted only where
the caller allows it. Every way a check can fail raises the one `SignatureError`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

Scheme = Literal["ed25519", "rsa-sha256"]

ED25519_HEADER = "X-GHL-Signature"
RSA_HEADER = "X-WH-Signature"
# A genuine header is 88 (Ed25519) or 684 (RSA-4096) base64 characters; anything this large is
# an attack or a bug, and decoding it would only waste memory.
MAX_HEADER_CHARS = 4096
ED25519_SIGNATURE_BYTES = 64
MIN_RSA_BITS = 2048


class SignatureError(Exception):
    """The webhook is not provably from HighLevel. `reason` is a short, loggable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class WebhookKeys:
    """The public keys a webhook may be signed with; several per type while keys rotate."""

    ed25519: tuple[Ed25519PublicKey, ...] = ()
    rsa: tuple[RSAPublicKey, ...] = ()

    def __post_init__(self) -> None:
        for rsa_key in self.rsa:
            if rsa_key.key_size < MIN_RSA_BITS:
                raise ValueError(f"RSA webhook key of {rsa_key.key_size} bits is too weak")

    @classmethod
    def from_keys(cls, keys: Iterable[object]) -> WebhookKeys:
        """Sort loaded public keys by type; anything but Ed25519 or RSA is refused."""
        ed: list[Ed25519PublicKey] = []
        rsa: list[RSAPublicKey] = []
        for key in keys:
            if isinstance(key, Ed25519PublicKey):
                ed.append(key)
            elif isinstance(key, RSAPublicKey):
                rsa.append(key)
            else:
                raise ValueError(f"unsupported webhook key type {type(key).__name__}")
        return cls(ed25519=tuple(ed), rsa=tuple(rsa))

    @property
    def empty(self) -> bool:
        return not self.ed25519 and not self.rsa


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that also works for a plain dict."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        for key, candidate in headers.items():
            if key.lower() == wanted:
                return candidate
    return value


def _signature_value(headers: Mapping[str, str], name: str) -> str | None:
    """The header's value, or None when absent, empty or `N/A` (HighLevel's own placeholder)."""
    value = _header(headers, name)
    if value is None:
        return None
    if len(value) > MAX_HEADER_CHARS:
        raise SignatureError("malformed", f"{name} is longer than {MAX_HEADER_CHARS} characters")
    value = value.strip()
    if value in ("", "N/A"):
        return None
    return value


def _decode(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise SignatureError("malformed", f"{name} is not valid base64") from None


def _verify_ed25519(raw_body: bytes, signature: bytes, keys: tuple[Ed25519PublicKey, ...]) -> bool:
    if len(signature) != ED25519_SIGNATURE_BYTES:
        raise SignatureError("malformed", f"{ED25519_HEADER} is not a 64-byte Ed25519 signature")
    for key in keys:
        try:
            key.verify(signature, raw_body)
        except InvalidSignature:
            continue
        return True
    return False


def _verify_rsa(raw_body: bytes, signature: bytes, keys: tuple[RSAPublicKey, ...]) -> bool:
    for key in keys:
        # A signature of the wrong length cannot be from this key; skip without the math.
        if len(signature) != (key.key_size + 7) // 8:
            continue
        try:
            key.verify(signature, raw_body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return True
    return False


def verify(
    raw_body: bytes, headers: Mapping[str, str], keys: WebhookKeys, *, allow_rsa: bool
) -> Scheme:
    """Verify a HighLevel webhook; return the scheme that verified or raise `SignatureError`.

    `raw_body` must be the exact bytes received: re-serialised JSON never verifies.
    `X-GHL-Signature` is checked first and, when present, is the only thing checked (a bad
    Ed25519 signature is never rescued by an RSA header). `X-WH-Signature` counts only when
    `allow_rsa`. With no keys configured nothing verifies.
    """
    if not isinstance(raw_body, bytes | bytearray | memoryview):
        raise TypeError("raw_body must be the request's bytes")
    body = bytes(raw_body)
    if keys.empty:
        raise SignatureError("no_keys", "no webhook public keys are configured")

    ed_value = _signature_value(headers, ED25519_HEADER)
    if ed_value is not None:
        if not keys.ed25519:
            raise SignatureError("no_keys", "no Ed25519 key configured for X-GHL-Signature")
        if _verify_ed25519(body, _decode(ed_value, ED25519_HEADER), keys.ed25519):
            return "ed25519"
        raise SignatureError("invalid", f"{ED25519_HEADER} does not match the body")

    rsa_value = _signature_value(headers, RSA_HEADER)
    if rsa_value is not None and allow_rsa:
        if not keys.rsa:
            raise SignatureError("no_keys", "no RSA key configured for X-WH-Signature")
        if _verify_rsa(body, _decode(rsa_value, RSA_HEADER), keys.rsa):
            return "rsa-sha256"
        raise SignatureError("invalid", f"{RSA_HEADER} does not match the body")
    if rsa_value is not None:
        raise SignatureError("missing", f"only {RSA_HEADER} present and RSA is not accepted here")
    raise SignatureError("missing", "no signature header")
