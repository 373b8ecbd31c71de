"""HighLevel's custom-page user context: decrypt the CryptoJS passphrase payload, check its fields.

HighLevel encrypts the context with `CryptoJS.AES.encrypt(json, sharedSecret)`: the OpenSSL
salted format (`Salted__` + 8-byte salt + AES-256-CBC ciphertext, key and IV from
`EVP_BytesToKey` with MD5 and one iteration), base64-encoded (ghl.md §13). The format has no
MAC and no expiry, so everything that can go wrong (bad base64, wrong prefix, wrong secret,
bad padding, not JSON, missing fields) fails closed with the one `SSOError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SALT_PREFIX = b"Salted__"
MAX_PAYLOAD_CHARS = 16_384  # a real context is a few hundred bytes
ROLES = ("admin", "user")


class SSOError(Exception):
    """The payload is not a valid HighLevel user context for this Shared Secret."""


@dataclass(frozen=True, slots=True)
class UserContext:
    """The fields castbridge trusts from the payload (`type` is unreliable and ignored)."""

    user_id: str
    company_id: str
    role: str  # "admin" | "user"
    active_location: str | None  # present: sub-account context; absent: agency context
    user_name: str
    email: str

    @property
    def can_edit(self) -> bool:
        return self.role == "admin"


def derive_key_iv(secret: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """OpenSSL `EVP_BytesToKey(MD5, 1 iteration)`: 32 bytes of key, 16 of IV."""
    derived, block = b"", b""
    while len(derived) < 48:
        # MD5 is what the format prescribes for key derivation; it is not a security choice here.
        block = hashlib.md5(block + secret + salt, usedforsecurity=False).digest()
        derived += block
    return derived[:32], derived[32:48]


def decrypt_payload(payload: str, shared_secret: str) -> bytes:
    """The plaintext bytes of a CryptoJS passphrase payload; `SSOError` for anything else."""
    if not payload or len(payload) > MAX_PAYLOAD_CHARS:
        raise SSOError("payload missing or too large")
    try:
        raw = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SSOError("payload is not base64") from None
    if raw[:8] != SALT_PREFIX or len(raw) < 32 or (len(raw) - 16) % 16:
        raise SSOError("payload is not in the salted format")
    key, iv = derive_key_iv(shared_secret.encode("utf-8"), raw[8:16])
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        # Bad padding: almost always a wrong Shared Secret (or a tampered payload).
        raise SSOError("payload does not decrypt with this secret") from None


def _text(body: dict[str, object], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise SSOError(f"context has no {name}")
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise SSOError(f"context field {name} is malformed")
    return value


def parse_context(plaintext: bytes) -> UserContext:
    """Check the decrypted JSON: `userId`, `companyId` and a known `role` are required."""
    try:
        body = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SSOError("context is not JSON") from None
    if not isinstance(body, dict):
        raise SSOError("context is not a JSON object")
    role = _text(body, "role", required=True)
    if role not in ROLES:
        raise SSOError("context has an unknown role")
    return UserContext(
        user_id=_text(body, "userId", required=True) or "",
        company_id=_text(body, "companyId", required=True) or "",
        role=role,
        active_location=_text(body, "activeLocation", required=False),
        user_name=_text(body, "userName", required=False) or "",
        email=_text(body, "email", required=False) or "",
    )


def decrypt_user_context(payload: str, shared_secret: str) -> UserContext:
    """Decrypt and check a `REQUEST_USER_DATA_RESPONSE` payload; `SSOError` on any problem."""
    if not shared_secret:
        # An empty passphrase is a key anyone can use.
        raise SSOError("no shared secret")
    return parse_context(decrypt_payload(payload, shared_secret))
