"""Decrypting HighLevel's custom-page user context (CryptoJS passphrase = OpenSSL salted format)."""

from __future__ import annotations

import base64
import json

import pytest

from castbridge.ghl.sso import SSOError, decrypt_user_context
from castbridge.sandbox.ghl.custom_page import cryptojs_encrypt
from tests.support.sso import context_payload, openssl_decrypt, openssl_encrypt

SECRET = "shared-secret-7f3a"
CONTEXT = {
    "userId": "u1",
    "companyId": "c1",
    "role": "admin",
    "type": "agency",
    "activeLocation": "loc1",
    "userName": "Ada",
    "email": "ada@example.test",
}


def test_a_payload_made_by_openssl_decrypts_to_the_context() -> None:
    """HighLevel's documented example (type "agency" with activeLocation) is a location context."""
    payload = context_payload(SECRET, **CONTEXT)
    assert payload.startswith("U2FsdGVkX1")
    context = decrypt_user_context(payload, SECRET)
    assert (context.user_id, context.company_id, context.role) == ("u1", "c1", "admin")
    assert context.active_location == "loc1"
    assert context.can_edit
    assert (context.user_name, context.email) == ("Ada", "ada@example.test")


def test_agency_context_has_no_location_and_user_role_cannot_edit() -> None:
    fields = {k: v for k, v in CONTEXT.items() if k != "activeLocation"} | {"role": "user"}
    context = decrypt_user_context(context_payload(SECRET, **fields), SECRET)
    assert context.active_location is None
    assert not context.can_edit


def test_unicode_secret_and_names_survive() -> None:
    secret = "sécret-ü-✓"
    context = decrypt_user_context(
        context_payload(secret, **(CONTEXT | {"userName": "Zoë"})), secret
    )
    assert context.user_name == "Zoë"


def _flip(payload: str, index: int) -> str:
    raw = bytearray(base64.b64decode(payload))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: context_payload("another-secret", **CONTEXT), "wrong secret"),
        (lambda: _flip(context_payload(SECRET, **CONTEXT), -1), "tampered last block"),
        (lambda: _flip(context_payload(SECRET, **CONTEXT), 3), "tampered prefix"),
        (lambda: _flip(context_payload(SECRET, **CONTEXT), 10), "tampered salt"),
        (lambda: context_payload(SECRET, **CONTEXT)[:-8], "truncated"),
        (lambda: "not base64 at all!", "not base64"),
        (lambda: base64.b64encode(b"x" * 48).decode(), "no Salted__ prefix"),
        (lambda: "", "empty"),
        (lambda: "U2FsdGVkX1" + "A" * 20_000, "too large"),
        (lambda: openssl_encrypt("not json", SECRET), "not JSON"),
        (lambda: openssl_encrypt("[1, 2]", SECRET), "not an object"),
        (lambda: openssl_encrypt(b"\xff\xfe", SECRET), "not UTF-8"),
        (lambda: context_payload(SECRET, **(CONTEXT | {"role": "owner"})), "unknown role"),
        (lambda: context_payload(SECRET, **(CONTEXT | {"companyId": 7})), "malformed field"),
    ]
    + [
        (
            lambda name=name: context_payload(
                SECRET, **{k: v for k, v in CONTEXT.items() if k != name}
            ),
            f"no {name}",
        )
        for name in ("userId", "companyId", "role")
    ],
)
def test_every_bad_payload_fails_closed(make: object, why: str) -> None:
    """Each problem is the one SSOError, never a partial context or another exception."""
    assert callable(make)
    with pytest.raises(SSOError):
        decrypt_user_context(make(), SECRET)


def test_an_empty_secret_is_refused_even_for_a_payload_made_with_it() -> None:
    with pytest.raises(SSOError):
        decrypt_user_context(context_payload("", **CONTEXT), "")


def test_the_sandbox_host_encrypts_what_openssl_decrypts() -> None:
    """The sandbox's Custom Page host speaks the real format, checked by OpenSSL."""
    payload = cryptojs_encrypt(json.dumps(CONTEXT), SECRET)
    assert json.loads(openssl_decrypt(payload, SECRET)) == CONTEXT
    assert cryptojs_encrypt("x", SECRET) != cryptojs_encrypt("x", SECRET)  # a fresh salt each time
