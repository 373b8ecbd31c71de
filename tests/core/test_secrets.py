"""Encryption at rest: round trip, rotation, the generated local key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from castbridge.config import ConfigError, Settings
from castbridge.secrets import SecretBox, SecretDecryptError, generate_key, load_secret_box


def test_round_trip_hides_plaintext() -> None:
    """Ciphertext does not contain the plaintext and decrypts back to it."""
    box = SecretBox([generate_key()])
    token = "ghl-access-token-1234567890"
    sealed = box.encrypt(token)
    assert token not in sealed
    assert box.decrypt(sealed) == token


def test_rotation_moves_secrets_to_the_new_first_key() -> None:
    """With [new, old] keys, old ciphertext decrypts, and rotate() re-encrypts under new."""
    old, new = generate_key(), generate_key()
    sealed_old = SecretBox([old]).encrypt("secret")
    both = SecretBox([new, old])
    assert both.decrypt(sealed_old) == "secret"
    rotated = both.rotate(sealed_old)
    assert SecretBox([new]).decrypt(rotated) == "secret"
    with pytest.raises(SecretDecryptError):
        SecretBox([old]).decrypt(rotated)


def test_wrong_key_error_does_not_echo_ciphertext() -> None:
    """Decrypting with an unrelated key fails with a message that names the setting only."""
    sealed = SecretBox([generate_key()]).encrypt("secret")
    with pytest.raises(SecretDecryptError) as caught:
        SecretBox([generate_key()]).decrypt(sealed)
    assert sealed not in str(caught.value)


def test_invalid_key_is_a_config_error() -> None:
    """A malformed key names its position in CASTBRIDGE_SECRET_KEYS."""
    with pytest.raises(ConfigError, match="key 2"):
        SecretBox([generate_key(), "not-a-key"])


def test_embedded_database_generates_a_private_key_once(tmp_path: Path) -> None:
    """Without CASTBRIDGE_SECRET_KEYS a 0600 key file is created once and then reused."""
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    first = load_secret_box(settings)
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sealed = first.encrypt("x")
    assert load_secret_box(settings).decrypt(sealed) == "x"
