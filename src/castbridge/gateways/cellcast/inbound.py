"""Polling Cellcast's `getResponses` (newest first) without losing or repeating replies.

The cursor is a `received_at` watermark plus the ids of the replies exactly at it, so a reply
sharing the watermark's timestamp is neither lost (it is new when its id is not listed) nor
reported again (it is listed). A walk goes from page 1 until it passes the watermark. When the
page cap stops it first, the cursor keeps the old watermark and says where to resume: the next
run continues at the following page instead of page 1, so replies below the cap are not skipped
(new replies arriving meanwhile push rows down, which only repeats rows, never skips them;
castbridge also dedupes on `message_id`). The cursor is stored by the caller only after the
items are saved, so a crash repeats a walk rather than losing it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from castbridge.gateways.base import InboundPage, InboundSms
from castbridge.gateways.cellcast.models import (
    ResponseItem,
    ResponsesPage,
    lenient_datetime,
    parse_rows,
)
from castbridge.logging import get_logger

log = get_logger("castbridge.gateways.cellcast")

CURSOR_VERSION = 1
MAX_TEXT_CHARS = 10_000


@dataclass(frozen=True, slots=True)
class Mark:
    """Everything up to `at` was reported, and of the replies exactly at `at`, those in `ids`."""

    at: datetime | None = None
    ids: frozenset[str] = field(default_factory=frozenset)

    def covers(self, at: datetime, ident: str) -> bool:
        if self.at is None:
            return False
        return at < self.at or (at == self.at and ident in self.ids)

    def advanced(self, top: Mark) -> Mark:
        """This mark moved up to `top` (the newest replies a completed walk saw)."""
        if top.at is None or (self.at is not None and top.at < self.at):
            return self
        if self.at is not None and top.at == self.at:
            return Mark(self.at, self.ids | top.ids)
        return top

    def to_json(self) -> dict[str, object]:
        return {"at": self.at.isoformat() if self.at else None, "ids": sorted(self.ids)}

    @classmethod
    def from_json(cls, value: object) -> Mark:
        if not isinstance(value, dict):
            raise ValueError("bad mark")
        at = value.get("at")
        ids = value.get("ids", [])
        if at is not None and not isinstance(at, str):
            raise ValueError("bad mark time")
        parsed = lenient_datetime(at) if at is not None else None
        if (at is not None and parsed is None) or not isinstance(ids, list):
            raise ValueError("bad mark")
        return cls(parsed, frozenset(str(i) for i in ids))


@dataclass(frozen=True, slots=True)
class Cursor:
    """The stored poll position: the watermark, and an unfinished walk's resume point."""

    mark: Mark = field(default_factory=Mark)
    resume_page: int | None = None
    resume_top: Mark = field(default_factory=Mark)

    def encode(self) -> str:
        body: dict[str, object] = {"v": CURSOR_VERSION, **self.mark.to_json()}
        if self.resume_page is not None:
            body["resume"] = {"page": self.resume_page, **self.resume_top.to_json()}
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def decode(cls, cursor: str | None) -> Cursor:
        """Our own JSON cursor, or a bare ISO-8601 time to start from, that instant included (a
        new account's poll can begin at its creation instead of importing every old reply)."""
        if cursor is None or not cursor.strip():
            return cls()
        text = cursor.strip()
        if not text.startswith("{"):
            at = lenient_datetime(text)
            if at is None:
                raise ValueError("a Cellcast inbound cursor is our JSON or an ISO-8601 time")
            return cls(Mark(at))
        try:
            body = json.loads(text)
            mark = Mark.from_json(body)
            resume = body.get("resume")
            if resume is None:
                return cls(mark)
            page = resume.get("page")
            if not isinstance(page, int) or isinstance(page, bool) or page < 1:
                raise ValueError("bad resume page")
            return cls(mark, page, Mark.from_json(resume))
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"unreadable Cellcast inbound cursor ({exc})") from None


def row_ident(row: ResponseItem) -> str:
    """A reply's id for ties and dedupe: Cellcast's `message_id`, else a hash of its content."""
    if row.message_id:
        return row.message_id
    at = row.received_at.isoformat() if row.received_at else ""
    content = f"{row.from_number}\x00{at}\x00{row.body}"
    return "h:" + hashlib.sha256(content.encode()).hexdigest()[:24]


def _inbound(row: ResponseItem) -> InboundSms:
    return InboundSms(
        gateway_message_id=row.message_id,
        from_number=row.from_number,
        to_number=row.to_number,
        text=row.body[:MAX_TEXT_CHARS],
        received_at=row.received_at,
    )


async def walk(
    fetch: Callable[[int], Awaitable[ResponsesPage]], cursor: str | None, *, max_pages: int
) -> InboundPage:
    """Read pages through `fetch(page)` (newest first) until the cursor's watermark is passed
    or `max_pages` were read; the replies newer than the cursor, newest first, and the cursor
    to store once they are saved."""
    state = Cursor.decode(cursor)
    mark = state.mark
    page = state.resume_page or 1
    top = state.resume_top if state.resume_page is not None else Mark()
    found: list[InboundSms] = []
    seen: set[str] = set()
    complete = False
    for _ in range(max(1, max_pages)):
        result = await fetch(page)
        rows, skipped = parse_rows(ResponseItem, result.items)
        if skipped:
            log.warning("cellcast.inbound.unreadable_rows", page=page, skipped=skipped)
        passed = False
        for row in rows:
            ident = row_ident(row)
            at = row.received_at
            if ident in seen:
                continue
            seen.add(ident)
            if at is None:
                # Without a time it cannot be ordered against the watermark: report it
                # (castbridge dedupes on message_id) and leave the watermark alone.
                found.append(_inbound(row))
                continue
            if mark.covers(at, ident):
                if mark.at is not None and at < mark.at:
                    passed = True
                continue
            if top.at is None or at > top.at:
                top = Mark(at, frozenset({ident}))
            elif at == top.at:
                top = Mark(at, top.ids | {ident})
            found.append(_inbound(row))
        last = not result.items or (
            result.next_page is None and (result.total_pages is None or page >= result.total_pages)
        )
        if passed or last:
            complete = True
            break
        page = result.next_page if result.next_page and result.next_page > page else page + 1
    if complete:
        new_cursor = Cursor(mark.advanced(top))
    else:
        # `page` is already the next page to read.
        log.info("cellcast.inbound.page_cap", pages=max_pages, resume_page=page)
        new_cursor = Cursor(mark, page, top)
    return InboundPage(items=tuple(found), cursor=new_cursor.encode())
