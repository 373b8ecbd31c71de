"""Outside strings on their way into typed columns: no U+0000, scrubbed, cut to width.

Gateways and HighLevel send codes, statuses, ids and error texts of any length and content
(gateways.md §6); a value longer than its column must never crash-loop a job, and a stored
error must never hold a phone number, token or key.
"""

from __future__ import annotations

from castbridge.logging import scrub_text

ERROR_TEXT_LIMIT = 500


def fit(value: str | None, width: int) -> str | None:
    """`value` without NULs, cut to `width` characters (an id, a code, a status)."""
    if value is None:
        return None
    value = value.replace("\x00", "")
    return value if len(value) <= width else value[:width]


def clip(text: str | None, limit: int = ERROR_TEXT_LIMIT) -> str | None:
    """A free text (an error, a detail) scrubbed of secrets and numbers and cut to `limit`."""
    if text is None:
        return None
    text = scrub_text(text.replace("\x00", ""))
    return text if len(text) <= limit else text[: limit - 1] + "…"
