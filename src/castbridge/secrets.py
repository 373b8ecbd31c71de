"""Encryption at rest: tokens, gateway keys and phone numbers (Fernet, MultiFernet rotation)."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from castbridge.config import ConfigError, Settings
from castbridge.logging import get_logger

log = get_logger(__name__)

KEY_FILE_NAME = "secret.key"


class SecretDecryptError(Exception):
    """A stored secret could not be decrypted with any configured key."""


class SecretBox:
    """Encrypts with the first key, decrypts with any; `rotate` re-encrypts under the first."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError("CASTBRIDGE_SECRET_KEYS: at least one Fernet key is needed")
        fernets = []
        for index, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip().encode()))
            except ValueError:
                raise ConfigError(
                    f"CASTBRIDGE_SECRET_KEYS: key {index} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes)"
                ) from None
        self._multi = MultiFernet(fernets)
        self._primary = fernets[0]
        self.key_count = len(fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._primary.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._multi.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            # Never echo the ciphertext: it is harmless alone but noisy and useless to a reader.
            raise SecretDecryptError(
                "stored secret cannot be decrypted with CASTBRIDGE_SECRET_KEYS "
                "(was a key removed before `castbridge secrets rotate` ran?)"
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the primary key (no-op in effect if it already is)."""
        try:
            return self._multi.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError):
            raise SecretDecryptError("stored secret cannot be decrypted for rotation") from None


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def load_secret_box(settings: Settings) -> SecretBox:
    """Keys from CASTBRIDGE_SECRET_KEYS, else (SQLite only) a key kept in the data folder."""
    if settings.secret_keys is not None:
        raw = settings.secret_keys.get_secret_value()
        return SecretBox([part for part in raw.split(",") if part.strip()])
    if settings.database_url is not None and not settings.database_url.startswith("sqlite"):
        raise ConfigError("CASTBRIDGE_SECRET_KEYS: required when the database is not SQLite")
    return SecretBox([_local_key(settings.data_dir)])


def _local_key(data_dir: Path) -> str:
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    # O_EXCL: if two processes start at once, exactly one writes the key and the other reads it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    log.warning(
        "generated_secret_key",
        path=str(path),
        hint="back this file up with the database; set CASTBRIDGE_SECRET_KEYS in production",
    )
    return key


@dataclass(frozen=True, slots=True)
class SealedPhone:
    """A phone number as it is stored: encrypted, a keyed hash to find it by, a masked form
    to show. `e164` says the number was valid (the hash exists only then)."""

    enc: str
    hash: str | None
    masked: str
    e164: bool


class PhoneVault:
    """Phone numbers at rest: Fernet-encrypted, matched through an HMAC blind index."""

    def __init__(self, box: SecretBox, index_key: bytes) -> None:
        self._box = box
        self._index_key = index_key

    def hash(self, e164: str) -> str:
        return hmac.new(self._index_key, e164.encode("utf-8"), hashlib.sha256).hexdigest()

    def seal(self, value: str, *, e164: bool) -> SealedPhone:
        from castbridge.logging import mask_phone

        return SealedPhone(
            enc=self._box.encrypt(value),
            hash=self.hash(value) if e164 else None,
            masked=mask_phone(value)[:24],
            e164=e164,
        )

    def open(self, enc: str) -> str:
        return self._box.decrypt(enc)

    def encrypt(self, value: str) -> str:
        """Any other personal data kept whole (raw webhook bodies, exported lists)."""
        return self._box.encrypt(value)
