"""Intake of a verified Delivery-URL post: judge it, then store message and first job together.

Whatever is wrong with a signed post whose messageId and locationId are readable, it is stored
and answered 200 (ghl.md §2): a message castbridge cannot send is stored as failed and its
`failed` report (with a sentence the user understands) is queued in the same transaction. A
message for a location whose install has not finished yet is held for a bounded time.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge import metrics
from castbridge.accounts import LocationSetup, SetupCache, load_setup
from castbridge.config import Settings
from castbridge.gateways.base import ValidationFailedError
from castbridge.gateways.directory import AccountUnusable, GatewayDirectory
from castbridge.ghl.models import ProviderOutboundMessage
from castbridge.installs.jobs import mint_job
from castbridge.limits import Limit
from castbridge.logging import get_logger
from castbridge.outbound.builders import report_job
from castbridge.secrets import PhoneVault, SealedPhone
from castbridge.sms.phone import InvalidNumber, normalize
from castbridge.sms.text import segments
from castbridge.store import accounts as account_store
from castbridge.store import jobs
from castbridge.store.db import Store
from castbridge.store.group import GroupCommit
from castbridge.store.jobs import NewJob
from castbridge.store.messages import Inserted, NewMessage, insert_many
from castbridge.store.models import GatewayAccount

log = get_logger(__name__)

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_TEXT_CHARS = 20_000
MAX_ATTACHMENTS = 20
# A held message looks at its install again this often.
INSTALL_RECHECK_SECONDS = 3.0


def clean_text(value: str) -> str:
    """U+0000 removed and lone surrogates (a cut emoji from JavaScript) replaced by U+FFFD:
    the text is recoverable, so it is sent, never refused. Nothing else changes (no trim)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if _SURROGATE.search(value):
        value = _SURROGATE.sub("\ufffd", value)
    return value


def clean_json(value: dict[str, Any]) -> dict[str, Any]:
    """`clean_text` applied to a webhook body's top-level strings and lists of strings (the
    fields castbridge reads); nested values of fields it ignores are left as they are."""
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, str):
            item = clean_text(item)
        elif isinstance(item, list):
            item = [clean_text(x) if isinstance(x, str) else x for x in item]
        cleaned[clean_text(key)] = item
    return cleaned


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str
    report: bool = True  # False: no token to tell HighLevel with (not installed)


@dataclass(frozen=True, slots=True)
class IntakeResult:
    message_id: int | None  # None: a repeat (or the messageId belongs to another location)
    status: str  # queued | failed | duplicate | conflict
    held: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    send_at: datetime | None = None  # when its send job falls due (spaced at the account's rate)

    @property
    def duplicate(self) -> bool:
        return self.message_id is None


class Spacer:
    """Spreads a burst's send jobs over time at the account's rate, per (account, location),
    when they are queued: a location's backlog of 10,000 is queued into the future, so a
    message of another location that arrives later is due before most of it and is claimed
    first. The worker's shared bucket still decides; this only orders the queue."""

    def __init__(self) -> None:
        self._slots: dict[tuple[int, str], tuple[float, float]] = {}

    def next_run(self, account_id: int, location_id: str, limit: Limit | None) -> datetime:
        now_wall = datetime.now(UTC)
        if limit is None:
            return now_wall
        now = time.monotonic()
        key = (account_id, location_id)
        tokens, updated = self._slots.get(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + (now - updated) * limit.rate) - 1.0
        if len(self._slots) > 100_000:
            self._slots.clear()
        self._slots[key] = (tokens, now)
        if tokens >= 0:
            return now_wall
        return now_wall + timedelta(seconds=-tokens / limit.rate)


@dataclass(frozen=True, slots=True)
class _Post:
    """One accepted post as the group commit stores it."""

    message: NewMessage
    job: NewJob | None
    mint: NewJob | None  # the location's first token, when its install is still pending


async def _store_posts(session: AsyncSession, posts: list[_Post]) -> list[Inserted]:
    """The posts of one group commit, stored together (`messages.insert_many`)."""
    inserted = await insert_many(session, [(post.message, post.job) for post in posts])
    for post, result in zip(posts, inserted, strict=True):
        if result.message_id is not None and post.mint is not None:
            await jobs.enqueue(session, post.mint)
    return inserted


@dataclass(slots=True)
class Intake:
    settings: Settings
    store: Store
    gateways: GatewayDirectory
    vault: PhoneVault
    setups: SetupCache
    spacer: Spacer
    writes: GroupCommit

    async def setup(self, location_id: str) -> LocationSetup:
        async def read() -> LocationSetup:
            async with self.store.read() as session:
                return await load_setup(session, self.settings, location_id)

        return await self.setups.load(location_id, read)

    async def accept(
        self, payload: ProviderOutboundMessage, *, wait_at_most: float | None = None
    ) -> IntakeResult:
        """Judge and store one post in one transaction (StoreBusy when the store is busy)."""
        setup = await self.setup(payload.location_id)
        judged = await self._judge(payload, setup)
        now = datetime.now(UTC)
        account = setup.account
        if judged.refusal is None:
            status = "queued"
            run_at = judged.run_at or now
            job: NewJob | None = NewJob(
                kind="send",
                lane="send",
                run_at=run_at,
                location_id=payload.location_id,
                account_id=account.id if account else None,
            )
        else:
            status = "failed"
            job = None
            if judged.refusal.report:
                job = report_job(
                    self.settings,
                    location_id=payload.location_id,
                    created_at=now,
                    status="failed",
                    code=judged.refusal.code,
                    text=judged.refusal.message,
                )
        message = NewMessage(
            ghl_message_id=payload.message_id,
            location_id=payload.location_id,
            contact_id=payload.contact_id if isinstance(payload.contact_id, str) else None,
            # A post refused before its number was read keeps the number as it came (sealed
            # here, not up front: on the usual path it is sealed once, as E.164).
            phone=judged.phone or self.vault.seal(_raw_phone(payload)[:64], e164=False),
            text=judged.text,
            attachments=judged.attachments,
            encoding=judged.encoding,
            parts_estimate=judged.parts,
            status=status,
            held=judged.held,
            account_id=account.id if account else None,
            gateway=account.gateway if account else None,
            sender_id=setup.sender_id,
            channel=setup.channel,
            error_code=judged.refusal.code if judged.refusal else None,
            error_message=judged.refusal.message if judged.refusal else None,
        )

        mint = mint_job(payload.location_id, setup.company_id) if judged.mint else None
        inserted = await self.writes.submit_item(
            _store_posts, _Post(message, job, mint), wait_at_most=wait_at_most
        )
        if inserted.conflict == "other_location":
            log.error(
                "message_id_in_two_locations",
                message_id=payload.message_id,
                location_id=payload.location_id,
            )
            metrics.WEBHOOKS.labels("delivery", "conflict").inc()
            return IntakeResult(None, "conflict")
        if inserted.message_id is None:
            return IntakeResult(None, "duplicate")
        return IntakeResult(
            inserted.message_id,
            status,
            held=judged.held,
            error_code=message.error_code,
            error_message=message.error_message,
            send_at=job.run_at if job is not None and job.kind == "send" else None,
        )

    async def _judge(self, payload: ProviderOutboundMessage, setup: LocationSetup) -> _Judged:
        text, text_refusal = _text_of(payload, self.settings.attachments)
        attachments = _attachments(payload.attachments)
        measured = segments(text)
        raw_phone = _raw_phone(payload)
        judged = _Judged(
            phone=None,
            text=text,
            attachments=attachments,
            encoding=measured.encoding,
            parts=measured.count,
        )
        state = setup.install_state
        if state == "disabled":
            return judged.refuse(
                Refusal(
                    "NOT_INSTALLED",
                    "castbridge is disabled for this sub-account (an uninstall is being "
                    "confirmed), so the SMS was not sent. Reinstall castbridge, then send again.",
                )
            )
        if state == "uninstalled":
            return judged.refuse(
                Refusal(
                    "NOT_INSTALLED",
                    "castbridge was uninstalled from this sub-account, so the SMS was not "
                    "sent. Reinstall the castbridge app, then send again.",
                    report=False,
                )
            )
        kind = payload.type if isinstance(payload.type, str) else ""
        if kind.upper() not in {"SMS", "CUSTOM"}:
            return judged.refuse(
                Refusal(
                    "UNSUPPORTED_TYPE",
                    f"castbridge sends SMS only; HighLevel sent a {kind[:32] or 'blank'} message.",
                )
            )
        late = _late(payload.timestamp, self.settings.webhook_max_age_seconds)
        if late is not None:
            return judged.refuse(Refusal("ARRIVED_LATE", late))
        if setup.account is None or setup.refusal is not None:
            code, sentence = setup.refusal or ("SMS_NOT_CONFIGURED", "SMS is not set up.")
            return judged.refuse(Refusal(code, sentence))
        account = setup.account
        region = setup.region or "ZZ"
        try:
            e164 = normalize(raw_phone, region)
        except InvalidNumber as exc:
            return judged.refuse(Refusal("INVALID_NUMBER", f"Cannot send SMS: {exc.reason}"))
        judged.phone = self.vault.seal(e164, e164=True)
        if text_refusal is not None:
            return judged.refuse(text_refusal)
        if not text.strip():
            return judged.refuse(Refusal("EMPTY_MESSAGE", "Cannot send an empty SMS."))
        try:
            gateway = self.gateways.cached(account.id, account.version) or await self._load(
                account.id
            )
        except AccountUnusable as exc:
            return judged.refuse(Refusal(exc.code, exc.message))
        channel = setup.channel or gateway.capabilities.channels[0]
        try:
            gateway.validate(e164, text, channel)
        except ValidationFailedError as exc:
            return judged.refuse(Refusal(exc.code or "REFUSED", exc.message))
        if state in (None, "pending"):
            judged.held = "install"
            judged.mint = state == "pending" and setup.company_active
            judged.run_at = datetime.now(UTC) + timedelta(seconds=INSTALL_RECHECK_SECONDS)
        elif account.state == "paused":
            judged.held = "account"
            judged.run_at = datetime.now(UTC) + timedelta(
                seconds=self.settings.account_probe_seconds
            )
        else:
            limit = self.gateways.defaults[account.gateway].rate_limits().get("account")
            judged.run_at = self.spacer.next_run(account.id, setup.location_id, limit)
        return judged

    async def _load(self, account_id: int) -> Any:
        async with self.store.read() as session:
            row: GatewayAccount | None = await account_store.get(session, account_id)
        if row is None:
            raise AccountUnusable("SMS_NOT_CONFIGURED", "The gateway account no longer exists.")
        return self.gateways.gateway(row)


def _raw_phone(payload: ProviderOutboundMessage) -> str:
    return payload.phone if isinstance(payload.phone, str) else ""


@dataclass(slots=True)
class _Judged:
    phone: SealedPhone | None  # sealed once the number is read as E.164
    text: str
    attachments: list[str]
    encoding: str
    parts: int
    refusal: Refusal | None = None
    held: str | None = None
    mint: bool = False
    run_at: datetime | None = None

    def refuse(self, refusal: Refusal) -> _Judged:
        self.refusal = refusal
        return self


def _attachments(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item[:2048] for item in value[:MAX_ATTACHMENTS] if isinstance(item, str) and item]


def _text_of(payload: ProviderOutboundMessage, mode: str) -> tuple[str, Refusal | None]:
    """The text to send. SMS gateways have no MMS: attachment URLs are appended, or the message
    is refused, as configured (pitfall #19). A null or non-text message is refused."""
    raw = payload.message
    refusal: Refusal | None = None
    if raw is None:
        text = ""
    elif isinstance(raw, str):
        text = raw
    else:
        text = ""
        refusal = Refusal("INVALID_MESSAGE", "The message has no text castbridge can send.")
    if len(text) > MAX_TEXT_CHARS:
        return text[:MAX_TEXT_CHARS], Refusal(
            "MESSAGE_TOO_LONG",
            f"Message is too long: {len(text):,} characters. Shorten it and send again.",
        )
    urls = _attachments(payload.attachments)
    if not urls or refusal is not None:
        return text, refusal
    if mode == "reject":
        return text, Refusal(
            "ATTACHMENTS_UNSUPPORTED",
            "This message has attachments, but SMS cannot carry pictures or files "
            "and castbridge is set to refuse them. Send the text without attachments.",
        )
    joined = "\n".join(urls)
    return (f"{text}\n{joined}" if text else joined), None


def _late(timestamp: Any, max_age: float | None) -> str | None:
    """With an age cap configured, the sentence for a post older than it; an unparseable
    timestamp is ignored (ghl.md §2: its format is not guaranteed)."""
    if max_age is None or not isinstance(timestamp, str):
        return None
    try:
        sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - sent).total_seconds()
    if age <= max_age:
        return None
    return (
        f"The message reached castbridge {age / 3600:.1f} h after it was sent, later than the "
        "configured limit, so it was not sent. Send it again if it is still wanted."
    )
