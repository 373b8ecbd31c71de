"""Settings-page sessions: castbridge's own short-lived, opaque bearer tokens.

A session is exchanged once for a verified HighLevel payload (ghl.md §13) and carries only what
castbridge decided: the location (or agency) it may see, whether it may edit, and the name to
greet. It is Fernet-sealed (encrypted and authenticated) under a key from the keyring, so every
web process can check it, the browser cannot read or alter it, and it expires on its own.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

SESSION_KEY_NAME = "settings_session"


class SessionError(Exception):
    """The token is missing, altered, sealed under another key, or expired."""


@dataclass(frozen=True, slots=True)
class Session:
    """Who is looking at the page and what they may do."""

    company_id: str
    location_id: str | None  # None: the agency view
    can_edit: bool
    user_name: str
    subject: str  # a stable, non-identifying handle for rate limits and audit (hashed user id)
    expires_at: float  # epoch seconds
    agency: bool = False  # opened from the agency view (an agency admin chose this location)
    # HighLevel's user id, to confirm the user again with HighLevel (sealed: never readable).
    user_id: str = ""

    @property
    def read_only(self) -> bool:
        return not self.can_edit


class Sealer:
    """Seals and opens sessions and other small server-side handles (a test SMS's lookup)."""

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(key[:32]))
        self._clock = clock

    def now(self) -> float:
        return self._clock()

    def seal_session(self, session: Session) -> str:
        return self.seal({"kind": "session", **asdict(session)})

    def open_session(self, token: str) -> Session:
        body = self.open(token, kind="session")
        try:
            session = Session(
                company_id=str(body["company_id"]),
                location_id=None if body["location_id"] is None else str(body["location_id"]),
                can_edit=bool(body["can_edit"]),
                user_name=str(body["user_name"]),
                subject=str(body["subject"]),
                expires_at=float(body["expires_at"]),
                agency=bool(body.get("agency", False)),
                user_id=str(body.get("user_id", "")),
            )
        except (KeyError, TypeError, ValueError):
            raise SessionError("malformed session") from None
        if session.expires_at <= self.now():
            raise SessionError("session expired")
        return session

    def seal(self, body: dict[str, Any]) -> str:
        return self._fernet.encrypt_at_time(
            json.dumps(body, separators=(",", ":")).encode(), int(self.now())
        ).decode()

    def open(self, token: str, *, kind: str) -> dict[str, Any]:
        if not token or len(token) > 4096:
            raise SessionError("no session")
        try:
            raw = self._fernet.decrypt(token.encode("ascii"))
            body = json.loads(raw)
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise SessionError("invalid session") from None
        if not isinstance(body, dict) or body.get("kind") != kind:
            raise SessionError("invalid session")
        return body
