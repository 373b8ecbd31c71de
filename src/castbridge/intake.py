"""Intake of a verified Delivery-URL post: validate, then store message and first job together."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.config import Settings
from castbridge.sms.phone import InvalidNumber, format_for_gateway, normalize
from castbridge.sms.text import MessageTooLong, check_length, segments
from castbridge.store import repository as repo

# The only gateway wired up so far sends to the Philippines only.
GATEWAY_COUNTRY = "PH"
GATEWAY_LABEL = "Cast.ph"


class DeliveryPayload(BaseModel):
    """HighLevel's Conversation Provider outbound message (ghl.md §2).

    Only what an SMS send needs is required; `userId`, `timestamp` and `webhookId` are optional
    because HighLevel omits them for workflow and bulk sends.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    messageId: str = Field(min_length=1, max_length=64)
    locationId: str = Field(min_length=1, max_length=64)
    contactId: str | None = Field(None, max_length=64)
    type: str = Field("SMS", max_length=32)
    # Required, but may be empty: an empty (or blank) number is an invalid number like any
    # other, answered 200 and reported `failed` with a reason. A 422 left the message at
    # "pending" in HighLevel with no explanation.
    phone: str = Field(max_length=64)
    message: str = Field("", max_length=20_000)
    attachments: list[str] = Field(default_factory=list, max_length=20)
    userId: str | None = Field(None, max_length=64)
    timestamp: str | None = None
    webhookId: str | None = Field(None, max_length=128)


@dataclass(frozen=True, slots=True)
class IntakeResult:
    message_id: int | None  # None: a repeat of a messageId already stored
    status: str  # "queued" or "failed"
    error_code: str | None = None
    error_message: str | None = None

    @property
    def duplicate(self) -> bool:
        return self.message_id is None


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str


def compose_text(payload: DeliveryPayload, attachment_mode: str) -> tuple[str, Refusal | None]:
    """The text to send; Cast has no MMS, so attachment URLs are appended or the message refused."""
    text = payload.message
    urls = [url for url in payload.attachments if url]
    if not urls:
        return text, None
    if attachment_mode == "reject":
        return text, Refusal(
            "ATTACHMENTS_UNSUPPORTED",
            "This message has attachments, but SMS cannot carry pictures or files "
            "and castbridge is set to refuse them. Send the text without attachments.",
        )
    joined = "\n".join(urls)
    return (f"{text}\n{joined}" if text else joined), None


def validate(
    payload: DeliveryPayload,
    *,
    settings: Settings,
    install_state: str | None,
    region: str | None,
) -> tuple[str | None, str, Refusal | None]:
    """Return (E.164 recipient or None, text to send, refusal or None)."""
    text, refusal = compose_text(payload, settings.attachments)
    if install_state is None or install_state == "uninstalled":
        when = "is not installed" if install_state is None else "was uninstalled"
        return (
            None,
            text,
            Refusal(
                "NOT_INSTALLED",
                f"castbridge {when} for this sub-account, so the SMS was not sent. "
                "Reinstall the castbridge app, then send again.",
            ),
        )
    if payload.type.upper() not in {"SMS", "CUSTOM"}:
        return (
            None,
            text,
            Refusal(
                "UNSUPPORTED_TYPE",
                f"castbridge sends SMS only; HighLevel sent a {payload.type} message.",
            ),
        )
    try:
        e164 = normalize(payload.phone, region or settings.default_region)
        format_for_gateway(e164, GATEWAY_COUNTRY, "national")
    except InvalidNumber as exc:
        return None, text, Refusal("INVALID_NUMBER", f"Cannot send SMS: {exc.reason}")
    if refusal is not None:
        return e164, text, refusal
    if not text.strip():
        return e164, text, Refusal("EMPTY_MESSAGE", "Cannot send an empty SMS.")
    try:
        check_length(text, settings.cast_max_chars)
    except MessageTooLong as exc:
        return (
            e164,
            text,
            Refusal(
                "MESSAGE_TOO_LONG",
                f"Message is too long for {GATEWAY_LABEL}: {exc.length} characters, "
                f"at most {exc.limit} allowed. Shorten it and send again.",
            ),
        )
    return e164, text, None


async def accept_delivery(
    session: AsyncSession, payload: DeliveryPayload, settings: Settings
) -> IntakeResult:
    """Validate and store in the caller's transaction; the caller commits, then answers 200.

    A sendable message gets a `send` job due now. A message that cannot be sent is stored as
    failed with a `report` job, so HighLevel shows the reason instead of a message stuck at
    pending; the report waits out HighLevel's "not downstreamed yet" window.
    """
    install_state = await repo.location_install_state(session, payload.locationId)
    location = await repo.get_location_settings(session, payload.locationId)
    region = location.region if location is not None else None
    e164, text, refusal = validate(
        payload, settings=settings, install_state=install_state, region=region
    )
    measured = segments(text)
    now = repo.utcnow()
    if refusal is None:
        status = "queued"
        job = repo.NewJob(kind="send", run_at=now, payload={})
    else:
        status = "failed"
        job = repo.NewJob(
            kind="report",
            run_at=now + timedelta(seconds=settings.report_initial_delay_seconds),
            payload={
                "status": "failed",
                "error": {"code": refusal.code, "type": "saas", "message": refusal.message},
            },
        )
    message_id = await repo.insert_message_with_job(
        session,
        repo.NewMessage(
            ghl_message_id=payload.messageId,
            location_id=payload.locationId,
            contact_id=payload.contactId,
            phone_raw=payload.phone,
            phone_e164=e164,
            text=text,
            attachments=list(payload.attachments),
            encoding=measured.encoding,
            parts_estimate=measured.count,
            status=status,
            error_code=refusal.code if refusal else None,
            error_message=refusal.message if refusal else None,
        ),
        job,
    )
    return IntakeResult(
        message_id=message_id,
        status=status,
        error_code=refusal.code if refusal else None,
        error_message=refusal.message if refusal else None,
    )
