"""Pure SMS helpers: text encoding and segments, phone-number normalisation (no package imports)."""

from castbridge.sms.phone import InvalidNumber, format_for_gateway, normalize
from castbridge.sms.text import MessageTooLong, Segments, check_length, segments, utf16_length

__all__ = [
    "InvalidNumber",
    "MessageTooLong",
    "Segments",
    "check_length",
    "format_for_gateway",
    "normalize",
    "segments",
    "utf16_length",
]
