"""Webhook signature verification: real Ed25519/RSA signatures over the exact fixture bytes."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from castbridge.ghl.signature import (
    MAX_HEADER_CHARS,
    SignatureError,
    WebhookKeys,
    verify,
)
from tests.ghl.conftest import fixture_bytes

BODY = fixture_bytes("delivery_sms.json")
UNICODE_BODY = fixture_bytes("delivery_custom_unicode.json")


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys(ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey) -> WebhookKeys:
    return WebhookKeys(ed25519=(ed_key.public_key(),), rsa=(rsa_key.public_key(),))


def ed_sig(key: ed25519.Ed25519PrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body)).decode()


def rsa_sig(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def test_ed25519_signature_verifies(ed_key: ed25519.Ed25519PrivateKey, keys: WebhookKeys) -> None:
    """A valid X-GHL-Signature over the raw bytes verifies as ed25519."""
    headers = {"X-GHL-Signature": ed_sig(ed_key, BODY)}
    assert verify(BODY, headers, keys, allow_rsa=False) == "ed25519"


def test_non_ascii_body_verifies(ed_key: ed25519.Ed25519PrivateKey, keys: WebhookKeys) -> None:
    """A UTF-8 body with emoji verifies on its exact bytes."""
    headers = {"x-ghl-signature": ed_sig(ed_key, UNICODE_BODY)}
    assert verify(UNICODE_BODY, headers, keys, allow_rsa=False) == "ed25519"


def test_header_lookup_is_case_insensitive(
    ed_key: ed25519.Ed25519PrivateKey, keys: WebhookKeys
) -> None:
    """A plain dict with any header casing works."""
    headers = {"X-Ghl-SIGNATURE": ed_sig(ed_key, BODY)}
    assert verify(BODY, headers, keys, allow_rsa=False) == "ed25519"


def test_rsa_signature_verifies_when_allowed(rsa_key: rsa.RSAPrivateKey, keys: WebhookKeys) -> None:
    """A valid legacy X-WH-Signature verifies as rsa-sha256 when RSA is allowed."""
    headers = {"X-WH-Signature": rsa_sig(rsa_key, BODY)}
    assert verify(BODY, headers, keys, allow_rsa=True) == "rsa-sha256"


def test_rsa_signature_refused_when_not_allowed(
    rsa_key: rsa.RSAPrivateKey, keys: WebhookKeys
) -> None:
    """On the Delivery URL (allow_rsa=False) a valid RSA signature alone is not enough."""
    headers = {"X-WH-Signature": rsa_sig(rsa_key, BODY)}
    with pytest.raises(SignatureError) as caught:
        verify(BODY, headers, keys, allow_rsa=False)
    assert caught.value.reason == "missing"


def test_bad_ed25519_never_falls_back_to_valid_rsa(
    ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey, keys: WebhookKeys
) -> None:
    """A present-but-bad X-GHL-Signature fails even beside a valid X-WH-Signature."""
    headers = {
        "X-GHL-Signature": ed_sig(ed_key, BODY + b" "),
        "X-WH-Signature": rsa_sig(rsa_key, BODY),
    }
    with pytest.raises(SignatureError) as caught:
        verify(BODY, headers, keys, allow_rsa=True)
    assert caught.value.reason == "invalid"


def test_na_ed25519_header_counts_as_missing(rsa_key: rsa.RSAPrivateKey, keys: WebhookKeys) -> None:
    """X-GHL-Signature: N/A is treated as absent, so the legacy header is then checked."""
    headers = {"X-GHL-Signature": "N/A", "X-WH-Signature": rsa_sig(rsa_key, BODY)}
    assert verify(BODY, headers, keys, allow_rsa=True) == "rsa-sha256"


def _tampered_bodies() -> list[tuple[bytes, bytes]]:
    """(signed original, what arrives instead)."""
    parsed = json.loads(BODY)
    return [
        (BODY, BODY.replace(b"Hello", b"Hellp")),
        (BODY, BODY.rstrip(b"\n")),
        (BODY, BODY + b" "),
        (BODY, json.dumps(parsed).encode()),  # Python's default separators add spaces
        (BODY, json.dumps(parsed, indent=2).encode()),
        (UNICODE_BODY, json.dumps(json.loads(UNICODE_BODY)).encode()),  # escapes non-ASCII
        (UNICODE_BODY, json.dumps(json.loads(UNICODE_BODY), ensure_ascii=False).encode()),
    ]


@pytest.mark.parametrize(("original", "received"), _tampered_bodies())
def test_changed_or_reserialised_body_fails(
    ed_key: ed25519.Ed25519PrivateKey, keys: WebhookKeys, original: bytes, received: bytes
) -> None:
    """Tampering, whitespace changes and re-serialisation all break the signature."""
    assert original != received
    headers = {"X-GHL-Signature": ed_sig(ed_key, original)}
    with pytest.raises(SignatureError):
        verify(received, headers, keys, allow_rsa=False)


def test_wrong_key_fails(keys: WebhookKeys) -> None:
    """A signature from a key we do not trust fails."""
    stranger = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError) as caught:
        verify(BODY, {"X-GHL-Signature": ed_sig(stranger, BODY)}, keys, allow_rsa=True)
    assert caught.value.reason == "invalid"


def test_ed25519_signature_in_rsa_header_fails(
    ed_key: ed25519.Ed25519PrivateKey, keys: WebhookKeys
) -> None:
    """The wrong algorithm for the header (Ed25519 bytes in X-WH-Signature) fails."""
    with pytest.raises(SignatureError):
        verify(BODY, {"X-WH-Signature": ed_sig(ed_key, BODY)}, keys, allow_rsa=True)


def test_rsa_signature_in_ed25519_header_fails(
    rsa_key: rsa.RSAPrivateKey, keys: WebhookKeys
) -> None:
    """RSA bytes in X-GHL-Signature are the wrong length for Ed25519 and fail as malformed."""
    with pytest.raises(SignatureError) as caught:
        verify(BODY, {"X-GHL-Signature": rsa_sig(rsa_key, BODY)}, keys, allow_rsa=True)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "N/A",
        "not base64 at all!",
        "QUJD",  # valid base64, 3 bytes
        "@@@@",
        "ä" * 88,
        "A" * (MAX_HEADER_CHARS + 1),
    ],
)
def test_malformed_header_values_fail(
    ed_key: ed25519.Ed25519PrivateKey, keys: WebhookKeys, value: str
) -> None:
    """Empty, N/A, non-base64, wrong-length, non-ASCII and huge values all raise SignatureError."""
    with pytest.raises(SignatureError):
        verify(BODY, {"X-GHL-Signature": value}, keys, allow_rsa=True)


def test_truncated_signature_fails(ed_key: ed25519.Ed25519PrivateKey, keys: WebhookKeys) -> None:
    """A signature cut short (still valid base64) fails."""
    raw = ed_key.sign(BODY)[:48]
    with pytest.raises(SignatureError):
        verify(BODY, {"X-GHL-Signature": base64.b64encode(raw).decode()}, keys, allow_rsa=False)


def test_truncated_rsa_signature_fails(rsa_key: rsa.RSAPrivateKey, keys: WebhookKeys) -> None:
    """An RSA signature of the wrong length fails without error from cryptography."""
    raw = rsa_key.sign(BODY, padding.PKCS1v15(), hashes.SHA256())[:-1]
    with pytest.raises(SignatureError):
        verify(BODY, {"X-WH-Signature": base64.b64encode(raw).decode()}, keys, allow_rsa=True)


def test_no_signature_header_fails(keys: WebhookKeys) -> None:
    """An unsigned post is rejected."""
    with pytest.raises(SignatureError) as caught:
        verify(BODY, {"Content-Type": "application/json"}, keys, allow_rsa=True)
    assert caught.value.reason == "missing"


def test_no_keys_configured_refuses(ed_key: ed25519.Ed25519PrivateKey) -> None:
    """With no keys nothing verifies, even a well-formed signature (fail closed)."""
    with pytest.raises(SignatureError) as caught:
        verify(BODY, {"X-GHL-Signature": ed_sig(ed_key, BODY)}, WebhookKeys(), allow_rsa=True)
    assert caught.value.reason == "no_keys"


def test_only_rsa_keys_refuses_ed25519_header(
    ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    """An Ed25519 header with only RSA keys configured is refused, not skipped."""
    only_rsa = WebhookKeys(rsa=(rsa_key.public_key(),))
    with pytest.raises(SignatureError) as caught:
        verify(BODY, {"X-GHL-Signature": ed_sig(ed_key, BODY)}, only_rsa, allow_rsa=True)
    assert caught.value.reason == "no_keys"


def test_key_rotation_accepts_either_key(ed_key: ed25519.Ed25519PrivateKey) -> None:
    """With an old and a new key configured, signatures from both verify."""
    new_key = ed25519.Ed25519PrivateKey.generate()
    both = WebhookKeys(ed25519=(ed_key.public_key(), new_key.public_key()))
    for signer in (ed_key, new_key):
        assert verify(BODY, {"X-GHL-Signature": ed_sig(signer, BODY)}, both, allow_rsa=False)


def test_rsa_key_rotation_accepts_either_key(rsa_key: rsa.RSAPrivateKey) -> None:
    """Two RSA keys configured: a signature from either verifies."""
    bigger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    both = WebhookKeys(rsa=(rsa_key.public_key(), bigger.public_key()))
    for signer in (rsa_key, bigger):
        headers = {"X-WH-Signature": rsa_sig(signer, BODY)}
        assert verify(BODY, headers, both, allow_rsa=True) == "rsa-sha256"


def test_weak_rsa_key_is_refused() -> None:
    """An RSA key under 2048 bits cannot be configured."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="too weak"):
        WebhookKeys(rsa=(weak.public_key(),))


def test_body_must_be_bytes(ed_key: ed25519.Ed25519PrivateKey, keys: WebhookKeys) -> None:
    """Passing parsed text instead of the raw bytes is a programming error."""
    with pytest.raises(TypeError):
        verify(BODY.decode(), {"X-GHL-Signature": ed_sig(ed_key, BODY)}, keys, allow_rsa=False)  # type: ignore[arg-type]
