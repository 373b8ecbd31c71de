"""HighLevel's published webhook public keys (built-in defaults) and parsing of GHL_WEBHOOK_KEYS."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from castbridge.config import ConfigError
from castbridge.ghl.signature import WebhookKeys

# Copied verbatim from ghl.md §3 (HighLevel's WebhookAuthentication doc). Third-party copies of
# the RSA key with typos circulate; this is the text that loads as RSA-4096, e = 65537.
GHL_ED25519_PUBLIC_KEY_PEM = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----
"""

GHL_RSA_PUBLIC_KEY_PEM = """-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
"""

# In GHL_WEBHOOK_KEYS, this word stands for both keys above (handy while a key rotates:
# `builtin,/etc/castbridge/ghl-next.pem`).
BUILTIN_TOKEN = "builtin"

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----.*?-----END (?P=label)-----", re.DOTALL
)
_ENV = "GHL_WEBHOOK_KEYS"


def default_webhook_keys() -> WebhookKeys:
    """HighLevel's Ed25519 key and its legacy RSA-4096 key."""
    return _keys_from_pem_text(GHL_ED25519_PUBLIC_KEY_PEM + GHL_RSA_PUBLIC_KEY_PEM, "built-in")


def load_webhook_keys(value: str | None) -> WebhookKeys:
    """Keys from GHL_WEBHOOK_KEYS, or HighLevel's published keys when it is unset or blank.

    The value may hold PEM text (newlines and all), paths to PEM files, and the word
    `builtin`, separated by commas or newlines. PEM blocks are found by their BEGIN/END lines
    first, so the newlines inside them never split a key. A configured value replaces the
    defaults; list `builtin` to keep them.
    """
    if value is None or not value.strip():
        return default_webhook_keys()
    # .env files often carry PEM text on one line with literal "\n" escapes.
    text = value.replace("\\n", "\n") if "-----BEGIN" in value else value
    loaded: list[object] = []
    for match in _PEM_BLOCK.finditer(text):
        loaded.extend(_load_block(match.group(0), "inline PEM"))
    remainder = _PEM_BLOCK.sub(",", text)
    if "-----BEGIN" in remainder or "-----END" in remainder:
        raise ConfigError(f"{_ENV}: a PEM block is missing its BEGIN or END line")
    for item in re.split(r"[,\n]", remainder):
        item = item.strip()
        if not item:
            continue
        if item.lower() == BUILTIN_TOKEN:
            builtin = default_webhook_keys()
            loaded.extend([*builtin.ed25519, *builtin.rsa])
            continue
        loaded.extend(_load_file(Path(item).expanduser()))
    if not loaded:
        raise ConfigError(f"{_ENV}: no public key found")
    try:
        return WebhookKeys.from_keys(loaded)
    except ValueError as exc:
        raise ConfigError(f"{_ENV}: {exc}") from None


def _load_file(path: Path) -> list[object]:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"{_ENV}: {path} is neither PEM text nor an existing file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{_ENV}: cannot read {path}: {exc}") from None
    blocks = [match.group(0) for match in _PEM_BLOCK.finditer(text)]
    if not blocks:
        raise ConfigError(f"{_ENV}: {path} contains no PEM public key")
    keys: list[object] = []
    for block in blocks:
        keys.extend(_load_block(block, str(path)))
    return keys


def _load_block(block: str, origin: str) -> list[object]:
    try:
        return [load_pem_public_key(block.encode("ascii"))]
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigError(f"{_ENV}: {origin} is not a valid PEM public key") from None


def _keys_from_pem_text(text: str, origin: str) -> WebhookKeys:
    keys: list[object] = []
    for match in _PEM_BLOCK.finditer(text):
        keys.extend(_load_block(match.group(0), origin))
    return WebhookKeys.from_keys(keys)
