"""GHL_WEBHOOK_KEYS parsing and HighLevel's built-in public keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from castbridge.config import ConfigError
from castbridge.ghl.keys import (
    GHL_ED25519_PUBLIC_KEY_PEM,
    GHL_RSA_PUBLIC_KEY_PEM,
    default_webhook_keys,
    load_webhook_keys,
)


def public_pem(key: object) -> str:
    public = key.public_key()  # type: ignore[attr-defined]
    return str(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    )


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    return public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ed_pem() -> str:
    return public_pem(ed25519.Ed25519PrivateKey.generate())


def raw(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_builtin_defaults_are_ed25519_and_rsa_4096() -> None:
    """HighLevel's published keys load as one Ed25519 key and one RSA-4096 key, e = 65537."""
    keys = default_webhook_keys()
    assert len(keys.ed25519) == 1
    assert len(keys.rsa) == 1
    assert keys.rsa[0].key_size == 4096
    assert keys.rsa[0].public_numbers().e == 65537
    assert raw(keys.ed25519[0]).decode() == GHL_ED25519_PUBLIC_KEY_PEM
    assert raw(keys.rsa[0]).decode() == GHL_RSA_PUBLIC_KEY_PEM


@pytest.mark.parametrize("value", [None, "", "  \n "])
def test_unset_means_builtin_defaults(value: str | None) -> None:
    """No GHL_WEBHOOK_KEYS gives HighLevel's two keys."""
    keys = load_webhook_keys(value)
    assert len(keys.ed25519) == 1
    assert len(keys.rsa) == 1


def test_pem_text_with_newlines(rsa_pem: str) -> None:
    """Two PEM blocks pasted one after the other (newlines inside) give two keys."""
    keys = load_webhook_keys(ed_pem() + rsa_pem)
    assert len(keys.ed25519) == 1
    assert len(keys.rsa) == 1


def test_comma_separated_pem_blocks(rsa_pem: str) -> None:
    """PEM blocks separated by commas parse; the newlines inside them never split a key."""
    keys = load_webhook_keys(f"{ed_pem()},{ed_pem()}, {rsa_pem}")
    assert len(keys.ed25519) == 2
    assert len(keys.rsa) == 1


def test_escaped_newlines_from_dotenv() -> None:
    """A PEM written on one line with literal \\n escapes (common in .env files) parses."""
    one_line = ed_pem().replace("\n", "\\n")
    assert len(load_webhook_keys(one_line).ed25519) == 1


def test_file_paths(tmp_path: Path, rsa_pem: str) -> None:
    """Paths to PEM files, comma- or newline-separated, are read; a file may hold two keys."""
    first = tmp_path / "ghl-ed.pem"
    first.write_text(ed_pem())
    both = tmp_path / "ghl-both.pem"
    both.write_text(ed_pem() + "\n" + rsa_pem)
    keys = load_webhook_keys(f"{first}\n{both}")
    assert len(keys.ed25519) == 2
    assert len(keys.rsa) == 1


def test_builtin_word_keeps_defaults_during_rotation(tmp_path: Path) -> None:
    """`builtin,<new key file>` trusts HighLevel's keys and the announced new one."""
    new = tmp_path / "next.pem"
    new.write_text(ed_pem())
    keys = load_webhook_keys(f"builtin,{new}")
    assert len(keys.ed25519) == 2
    assert len(keys.rsa) == 1


def test_mixed_inline_pem_and_path(tmp_path: Path, rsa_pem: str) -> None:
    """Inline PEM text and a file path can be combined."""
    path = tmp_path / "rsa.pem"
    path.write_text(rsa_pem)
    keys = load_webhook_keys(f"{ed_pem()}\n{path}")
    assert (len(keys.ed25519), len(keys.rsa)) == (1, 1)


@pytest.mark.parametrize(
    "value",
    [
        "/nonexistent/ghl.pem",
        "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----",
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=",
    ],
)
def test_bad_values_are_config_errors(value: str) -> None:
    """A missing file, a broken PEM or a block without END is a ConfigError naming the env var."""
    with pytest.raises(ConfigError, match="GHL_WEBHOOK_KEYS"):
        load_webhook_keys(value)


def test_unsupported_key_type_is_refused() -> None:
    """An EC key is not a HighLevel key type and is refused."""
    pem = public_pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="unsupported"):
        load_webhook_keys(pem)


def test_file_without_pem_is_refused(tmp_path: Path) -> None:
    """A file that holds no PEM block is a ConfigError."""
    path = tmp_path / "empty.pem"
    path.write_text("nothing here\n")
    with pytest.raises(ConfigError, match="no PEM"):
        load_webhook_keys(str(path))


def test_private_key_is_refused() -> None:
    """Pasting a private key by mistake fails instead of being used."""
    private = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigError):
        load_webhook_keys(private.decode())
