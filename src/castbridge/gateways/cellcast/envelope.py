"""The one tolerant reader of Cellcast answers: every endpoint's envelope, success or failure.

Cellcast's endpoint families wrap answers differently (gateways.md §3):

- `gateway`, `report/message`, `chat`: a flat `status: true|false`, `message`, `data`,
  `error: {}`; a report may come as a bare `{data: {…}}`;
- `apiClient/*`: `meta: {code: 200, status: "success"}` (`"SUCCESS"` on some) and `data`;
- errors of either: `status: false` (also under HTTP 200) with `message` and `error {…}`,
  `{code: 401, message: "Token expired"}`, or `400 {code, message, stack}`.

An answer is a failure when HTTP is not 2xx, or `status` is false, or `meta.status` is present
and not "success" (any case), or `meta.code`/`code` is an error code, or `invalid_token` is set,
or `error` is non-empty. Everything else is a success whose `data` the caller then checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from castbridge.gateways.cellcast.errors import (
    INVALID_RESPONSE,
    CellcastBadResponseError,
    CellcastError,
    translate_error,
)

_FALSE_STATUSES = frozenset({"false", "error", "fail", "failed", "failure"})


@dataclass(frozen=True, slots=True)
class Envelope:
    """A successful answer: its HTTP status, the decoded body and its `data` (maybe None)."""

    http_status: int
    body: Mapping[str, Any]
    data: Any

    @property
    def message(self) -> str | None:
        value = self.body.get("message")
        return value if isinstance(value, str) else None


def _nonempty(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, Mapping | list | tuple | str):
        return len(value) > 0
    return True


def _error_code(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 400


def failed(body: Mapping[str, Any]) -> bool:
    """Whether a decoded 2xx body says the request failed (see the module docstring)."""
    status = body.get("status")
    if status is False or (isinstance(status, str) and status.strip().lower() in _FALSE_STATUSES):
        return True
    meta = body.get("meta")
    if isinstance(meta, Mapping):
        meta_status = meta.get("status")
        if meta_status is not None and str(meta_status).strip().lower() != "success":
            return True
        if _error_code(meta.get("code")):
            return True
    if status is not True and _error_code(body.get("code")):
        return True
    invalid_token = body.get("invalid_token")
    if invalid_token is True or (
        isinstance(invalid_token, int) and not isinstance(invalid_token, bool) and invalid_token > 0
    ):
        return True
    return _nonempty(body.get("error"))


def decode(content: bytes) -> Any:
    """The JSON in `content`, or None when it is empty or not JSON."""
    if not content:
        return None
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def read_envelope(
    http_status: int, content: bytes, headers: Mapping[str, str], *, send: bool
) -> Envelope:
    """The answer as an `Envelope`, or the `CellcastError` it stands for.

    A 2xx that is not a JSON object is unreadable: for a send its outcome is unknown (Cellcast
    may have queued the message before the answer broke).
    """
    body = decode(content)
    ok_http = 200 <= http_status < 300
    if not isinstance(body, Mapping):
        if ok_http:
            raise CellcastBadResponseError(
                f"Cellcast answered HTTP {http_status} with a body that is not a JSON object",
                code=INVALID_RESPONSE,
                http_status=http_status,
                outcome_unknown=send,
            )
        raise translate_error(http_status, None, headers, send=send)
    if not ok_http or failed(body):
        raise translate_error(http_status, body, headers, send=send)
    return Envelope(http_status, body, body.get("data"))


__all__ = ["CellcastError", "Envelope", "decode", "failed", "read_envelope"]
