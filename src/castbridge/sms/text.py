"""SMS text: GSM-7 / UCS-2 encoding choice, segment counting and gateway length limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# 3GPP TS 23.038 default alphabet, the 127 printable characters (sms-text.md §2). ESC (0x1B) is
# left out on purpose: a literal U+001B in input is not text, so it forces UCS-2.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ"
    "ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Each of these is sent as ESC + code, so it costs two septets (sms-text.md §3).
GSM7_EXTENSION = "\f^{}\\[~]|€"

_GSM7_SET = frozenset(GSM7_BASIC) | frozenset(GSM7_EXTENSION)
_GSM7_EXTENSION_SET = frozenset(GSM7_EXTENSION)

# A multipart message spends 6 of its 140 octets on the User Data Header, hence 153 and 67.
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True, slots=True)
class Segments:
    """How a text is sent: its encoding, its total cost and the cost of each part.

    `units` are septets for GSM-7 and UTF-16 code units for UCS-2.
    """

    encoding: Encoding
    units: int
    parts: tuple[int, ...]

    @property
    def count(self) -> int:
        """Number of SMS parts (an empty text is still one part)."""
        return len(self.parts)


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 basic or extension table."""
    return all(ch in _GSM7_SET for ch in text)


def non_gsm7_characters(text: str) -> tuple[str, ...]:
    """The distinct characters, in order of appearance, that force `text` into UCS-2."""
    return tuple(dict.fromkeys(ch for ch in text if ch not in _GSM7_SET))


def segments(text: str) -> Segments:
    """Count the SMS parts `text` needs (sms-text.md §4.3).

    Parts are filled greedily, and a character that costs 2 (a GSM-7 extension character or a
    UCS-2 surrogate pair) is never split across parts, so a part may end one unit short of its
    limit; `ceil(units / 153)` would undercount.
    """
    if is_gsm7(text):
        encoding: Encoding = "GSM-7"
        single, per_part = GSM7_SINGLE, GSM7_PART
        costs = [2 if ch in _GSM7_EXTENSION_SET else 1 for ch in text]
    else:
        encoding = "UCS-2"
        single, per_part = UCS2_SINGLE, UCS2_PART
        # Code points above the BMP are a surrogate pair in UTF-16. Counting per code point
        # rather than with encode("utf-16-le") also copes with lone surrogates in a str.
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    total = sum(costs)
    if total <= single:
        return Segments(encoding, total, (total,))
    parts: list[int] = []
    current = 0
    for cost in costs:
        if current + cost > per_part:
            parts.append(current)
            current = 0
        current += cost
    parts.append(current)
    return Segments(encoding, total, tuple(parts))


class MessageTooLong(ValueError):
    """The text has more characters than the gateway accepts."""

    def __init__(self, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit
        super().__init__(
            f"message is {length:,} characters; this gateway accepts at most {limit:,}"
        )


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units: an emoji (outside the BMP) counts 2, never fewer than the
    code points, so a text that passes our check is not refused by a gateway that counts
    UTF-16 (gateways.md §1.10: neither Cast revision says what a "character" is)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def check_length(text: str, max_chars: int) -> None:
    """Raise `MessageTooLong` when `text` is longer than `max_chars` UTF-16 code units."""
    length = utf16_length(text)
    if length > max_chars:
        raise MessageTooLong(length, max_chars)
