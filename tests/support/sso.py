"""HighLevel custom-page payloads made the way CryptoJS makes them, by OpenSSL itself."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def openssl_encrypt(plaintext: str | bytes, secret: str) -> str:
    """`openssl enc -aes-256-cbc -md md5 -salt -a -A -pass pass:SECRET`: CryptoJS's passphrase
    format (ghl.md §13), produced independently of castbridge's code."""
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    done = subprocess.run(
        [
            "openssl",
            "enc",
            "-aes-256-cbc",
            "-md",
            "md5",
            "-salt",
            "-a",
            "-A",
            "-pass",
            f"pass:{secret}",
        ],
        input=data,
        capture_output=True,
        check=True,
    )
    return done.stdout.decode().strip()


def openssl_decrypt(payload: str, secret: str) -> bytes:
    done = subprocess.run(
        [
            "openssl",
            "enc",
            "-d",
            "-aes-256-cbc",
            "-md",
            "md5",
            "-a",
            "-A",
            "-pass",
            f"pass:{secret}",
        ],
        input=payload.encode(),
        capture_output=True,
        check=True,
    )
    return done.stdout


def context_payload(secret: str, **fields: Any) -> str:
    return openssl_encrypt(json.dumps(fields), secret)
