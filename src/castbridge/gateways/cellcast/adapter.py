"""CellcastGateway: Cellcast (new API) behind the provider-neutral `Gateway` interface."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from castbridge.gateways.base import (
    AccountCheck,
    Balance,
    Capabilities,
    DeliveryStatus,
    InboundPage,
    OptOut,
    Reconciliation,
    RegisteredWebhook,
    SenderId,
    SendRequest,
    SendResult,
    UnsupportedError,
    WebhookEvent,
)
from castbridge.gateways.cellcast.client import (
    SHARED_SENDER,
    CellcastClient,
    CellcastPacing,
    crlf,
)
from castbridge.gateways.cellcast.errors import (
    GATEWAY,
    INVALID_NUMBER,
    INVALID_RESPONSE,
    INVALID_SENDER,
    NOT_SENT,
    OPTED_OUT,
    UNKNOWN_ID,
    CellcastBadResponseError,
    CellcastError,
    CellcastNotFoundError,
    CellcastNotSentError,
    CellcastOptedOutError,
    CellcastSenderError,
    CellcastValidationError,
)
from castbridge.gateways.cellcast.inbound import walk
from castbridge.gateways.cellcast.models import (
    GatewayData,
    ReportItem,
    ReportPage,
    is_object_id,
    parse_rows,
)
from castbridge.gateways.cellcast.retry import RetryPolicy
from castbridge.gateways.cellcast.settings import CellcastAccountSettings, CellcastDefaults
from castbridge.gateways.cellcast.statuses import to_delivery_status
from castbridge.gateways.cellcast.webhooks import parse_webhook
from castbridge.gateways.spec import AccountConfig, GatewayContext
from castbridge.logging import get_logger
from castbridge.sms.phone import InvalidNumber, format_for_gateway, normalize
from castbridge.sms.text import segments

log = get_logger("castbridge.gateways.cellcast")

COUNTRY = "AU"

CELLCAST_CAPABILITIES = Capabilities(
    name=GATEWAY,
    label="Cellcast",
    country=COUNTRY,
    number_style="e164",
    idempotency_keys=False,
    status_poll=True,
    delivery_reports=True,
    dlr_push=True,  # the dashboard's Status URL
    inbound_push=True,  # the dashboard's Receive URL
    inbound_poll=True,  # getResponses
    reconcile=True,  # by customString
    channels=("sms", "chat"),
    # Replies (STOP included) come back only from #SharedNum# or a dedicated/custom number.
    two_way="numeric_sender_only",
    webhook_setup="manual",
    sender_ids_api=False,
    optout_list=True,  # getOptout
)

OPTOUT_PAGE_SIZE = 500

# customString: letters, digits and dashes (gateways.md §3). The length limit is not
# documented (**uncertain**); HighLevel references (`<locationId>:<messageId>`, both
# alphanumeric) are about 41 characters, and anything longer is shortened with a hash.
MAX_CUSTOM_STRING = 64
_CUSTOM_STRING = re.compile(r"^[A-Za-z0-9-]+$")
_NOT_CUSTOM = re.compile(r"[^A-Za-z0-9-]+")

# Sender IDs: A-Z a-z 0-9, space and dash; at most 11 characters with letters, 16 digits.
_SENDER_CHARS = re.compile(r"^[A-Za-z0-9 -]+$")
MAX_ALPHA_SENDER = 11
MAX_NUMERIC_SENDER = 16

# `fromDate`/`toDate` are whole days, most likely in the account's (Australian) time zone,
# UTC+8 to UTC+11: a day either side covers the window whatever zone Cellcast means.
RECONCILE_DATE_MARGIN = timedelta(days=1)
RECONCILE_PAGE_SIZE = 100
RECONCILE_MAX_PAGES = 20
# How long after the ambiguous attempt a missing row proves anything: a message Cellcast took
# at the last moment may reach its report list a little later (**uncertain**: no lag is
# documented). Until then absence is inconclusive and the core asks again later.
RECONCILE_SETTLE = timedelta(minutes=2)


def custom_string(reference: str) -> str:
    """Our message reference in customString's alphabet, the same way every time.

    `<locationId>:<messageId>` becomes `<locationId>-<messageId>`; HighLevel ids are
    alphanumeric, so that is one-to-one. A reference with other characters, or longer than
    MAX_CUSTOM_STRING, keeps a readable prefix and gets a hash of the whole reference, so two
    different references never share a customString.
    """
    mapped = reference.replace(":", "-")
    if _CUSTOM_STRING.match(mapped) and len(mapped) <= MAX_CUSTOM_STRING:
        return mapped
    digest = hashlib.sha256(reference.encode()).hexdigest()[:16]
    readable = _NOT_CUSTOM.sub("-", mapped).strip("-")[: MAX_CUSTOM_STRING - len(digest) - 1]
    return f"{readable}-{digest}" if readable else digest


def sender_problem(sender: str) -> str | None:
    """Why Cellcast would refuse `sender` as written, or None."""
    if sender == SHARED_SENDER:
        return None
    if not _SENDER_CHARS.match(sender):
        return "may use only letters, digits, spaces and dashes"
    if sender.isdigit():
        if len(sender) > MAX_NUMERIC_SENDER:
            return f"may have at most {MAX_NUMERIC_SENDER} digits"
    elif len(sender) > MAX_ALPHA_SENDER:
        return f"may have at most {MAX_ALPHA_SENDER} characters"
    return None


def is_two_way_sender(sender: str | None) -> bool:
    """Whether replies to `sender` come back: the shared number or a number does; an
    alphanumeric sender ID is one-way (replies and STOP never arrive). For the settings page."""
    if sender is None or sender == SHARED_SENDER:
        return True
    return sender.replace(" ", "").replace("-", "").isdigit()


def read_number(raw: str | None) -> str | None:
    """A number as Cellcast writes it (`+614…`, `614…`, `04…`, `4…`) in E.164, or None."""
    if not raw:
        return None
    try:
        return normalize(raw, COUNTRY)
    except InvalidNumber:
        return None


def _listed(entries: Sequence[Any], to_e164: str) -> bool:
    """Whether `to_e164` is among `invalidContacts` / `unsubscribeContacts` entries, which
    are numbers or objects holding one (their shape is not documented)."""
    for entry in entries:
        if isinstance(entry, dict):
            values = [v for k, v in entry.items() if k.lower() in ("number", "contact", "mobile")]
        else:
            values = [entry]
        for value in values:
            if isinstance(value, int | str) and read_number(str(value)) == to_e164:
                return True
    return False


def _has_more(result: ReportPage, page: int, limit: int) -> bool:
    """Whether the list goes on after `page`, by whichever paging field Cellcast sent; with
    none, a full page is taken to mean more (the page cap bounds the walk)."""
    if result.has_next_page is not None:
        return result.has_next_page
    if result.next_page is not None:
        return result.next_page > page
    if result.total_pages is not None:
        return page < result.total_pages
    return len(result.items) >= limit


def _now() -> datetime:
    return datetime.now(UTC)


class CellcastGateway:
    """One Cellcast account as a `castbridge.gateways.base.Gateway`.

    No idempotency key exists, so the core sends once; our reference travels as
    `customString`, which `find_sent` filters the sent list by after an ambiguous outcome.
    """

    capabilities = CELLCAST_CAPABILITIES

    def __init__(
        self,
        client: CellcastClient,
        *,
        sender_id: str | None = None,
        settings: CellcastAccountSettings | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.client = client
        self.sender_id = sender_id
        self.settings = settings if settings is not None else CellcastAccountSettings()
        self._clock = clock

    # --- pure checks ----------------------------------------------------------------------

    def format_number(self, e164: str) -> str:
        """`+61412345678` stays E.164 (Cellcast also takes `61…`, `04…`, `4…`); a number outside
        Australia raises `InvalidNumber`: the new API sends only with countryCode 61."""
        return format_for_gateway(e164, COUNTRY, "e164")

    def validate(self, to_e164: str, text: str, channel: str) -> None:
        if channel not in self.capabilities.channels:
            raise CellcastValidationError(
                f"Cellcast has no {channel!r} channel (use sms or chat).",
                code="UNSUPPORTED_CHANNEL",
            )
        if channel == "chat" and not (
            self.settings.sms_template_id and self.settings.rms_template_id
        ):
            raise CellcastValidationError(
                "Cellcast chat messages need an SMS template ID and an RMS template ID in this "
                "account's Cellcast settings. Add both, or send the message as SMS.",
                code="CHAT_NOT_CONFIGURED",
            )
        try:
            self.format_number(to_e164)
            normalize(to_e164, COUNTRY)  # a landline or an invalid number is refused here
        except InvalidNumber as exc:
            raise CellcastValidationError(
                f"Cannot send SMS: {exc.reason}", code=INVALID_NUMBER
            ) from None
        if not text.strip():
            raise CellcastValidationError("Cannot send an empty SMS.", code="EMPTY_MESSAGE")
        # Counted as sent: each new line goes out as \r\n, two characters.
        parts = segments(crlf(text)).count
        if parts > self.settings.max_parts:
            raise CellcastValidationError(
                f"Message is too long for Cellcast: it needs {parts} SMS parts and at most "
                f"{self.settings.max_parts} are allowed. Shorten it and send again.",
                code="MESSAGE_TOO_LONG",
            )

    # --- sends ----------------------------------------------------------------------------

    def _sender(self, request: SendRequest) -> str:
        sender = request.sender_id or self.sender_id or SHARED_SENDER
        problem = sender_problem(sender)
        if problem is not None:
            raise CellcastSenderError(
                f"The Cellcast sender {sender!r} {problem}.",
                code=INVALID_SENDER,
                # A bad account sender fails every message; a bad per-message one only this.
                pauses_account=request.sender_id in (None, self.sender_id),
            )
        return sender

    async def send(self, request: SendRequest) -> SendResult:
        """Send one message, once. Raises `OptedOutError` for an unsubscribed recipient,
        `ValidationFailedError` for a refused number, and an error with `outcome_unknown` when
        Cellcast may have taken it without saying so (then `find_sent` reconciles)."""
        self.validate(request.to_e164, request.text, request.channel)
        sender = self._sender(request)
        to = self.format_number(request.to_e164)
        try:
            if request.channel == "chat":
                return await self._send_chat(request, to, sender)
            return await self._send_sms(request, to, sender)
        except CellcastSenderError as exc:
            if request.sender_id is not None and request.sender_id != self.sender_id:
                exc.pauses_account = False  # the message's own sender, not the account's
            raise

    async def _send_sms(self, request: SendRequest, to: str, sender: str) -> SendResult:
        reference = custom_string(request.reference)
        data = await self.client.send_sms(
            [to],
            request.text,
            sender=sender,
            custom_string=reference,
            reply_stop_to_opt_out=self.settings.reply_stop_to_opt_out,
        )
        return self._result(data, request.to_e164, reference)

    def _result(self, data: GatewayData, to_e164: str, reference: str) -> SendResult:
        # One contact per request, so any entry in these lists is ours even when its number is
        # written in a form we cannot read.
        if data.unsubscribe_contacts and (
            _listed(data.unsubscribe_contacts, to_e164) or not data.queue_response
        ):
            raise CellcastOptedOutError(
                "The recipient has unsubscribed from this Cellcast account and cannot receive "
                "messages from it.",
                code=OPTED_OUT,
            )
        if data.invalid_contacts and (
            _listed(data.invalid_contacts, to_e164) or not data.queue_response
        ):
            raise CellcastValidationError(
                "Cellcast refused the recipient's number as invalid; check it is an Australian "
                "mobile number.",
                code=INVALID_NUMBER,
            )
        mine = [item for item in data.queue_response if read_number(item.number) == to_e164]
        if not mine:
            # Cellcast said yes without saying to whom: it may have queued the message.
            raise CellcastBadResponseError(
                "Cellcast accepted the request without a result for the recipient",
                code=INVALID_RESPONSE,
                outcome_unknown=True,
            )
        entry = next((item for item in mine if item.message_id), None)
        if entry is None or entry.message_id is None:
            # A recipient without a MessageId was not sent, even under status: true (gateways.md
            # §3); the per-recipient `jobInfo` status is from mock-only notes and not relied on.
            raise CellcastNotSentError(
                f"Cellcast did not send the message: {mine[0].result or 'no message id'}",
                code=NOT_SENT,
            )
        if not is_object_id(entry.message_id):
            log.warning("cellcast.send.odd_message_id", custom_string=reference)
        return SendResult(gateway_message_id=entry.message_id)

    async def _send_chat(self, request: SendRequest, to: str, sender: str) -> SendResult:
        settings = self.settings
        assert settings.sms_template_id is not None
        assert settings.rms_template_id is not None
        items = await self.client.send_chat(
            [to],
            request.text,
            sender=sender,
            sms_template_id=settings.sms_template_id,
            rms_template_id=settings.rms_template_id,
        )
        if not any(read_number(item.number) == request.to_e164 for item in items):
            raise CellcastBadResponseError(
                "Cellcast's chat answer does not list the recipient",
                code=INVALID_RESPONSE,
                outcome_unknown=True,
            )
        # The chat endpoint returns no message id: nothing sent this way can be polled,
        # matched to a pushed report, or found again by reference.
        return SendResult(gateway_message_id=None)

    # --- status and reconciliation --------------------------------------------------------

    async def status(
        self,
        gateway_message_id: str,
        channel: str = "sms",
        *,
        to_e164: str | None = None,
        sent_at: datetime | None = None,
    ) -> DeliveryStatus:
        """Poll `GET /api/v2/report/message/{id}`. A malformed id is refused before any call
        (Cellcast would answer a CastError): `NotFoundError`, not worth retrying."""
        if channel == "chat":
            raise UnsupportedError(
                "Cellcast chat messages have no id to poll", code="UNSUPPORTED", gateway=GATEWAY
            )
        if not is_object_id(gateway_message_id):
            raise CellcastNotFoundError(
                "Cellcast does not know this message id (not a 24-character hex id)",
                code=UNKNOWN_ID,
            )
        detail = await self.client.report(gateway_message_id)
        return to_delivery_status(gateway_message_id, detail.status, updated_at=detail.updated_at)

    async def find_sent(
        self, request: SendRequest, *, since: datetime, until: datetime
    ) -> Reconciliation:
        """Look the send up in Cellcast's sent list filtered by its customString.

        Conclusive when every page of the filtered list was read, every row was readable, no
        row was a doubtful near-match, and RECONCILE_SETTLE has passed since `until`. Why that
        proves absence: the customString is unique to this message (our reference), so the
        filtered list holds exactly its sends; a Cellcast that ignored the filter would only
        return more rows (all read and checked), never hide one.
        """
        if request.channel == "chat":
            # The chat endpoint stores no reference we could filter by.
            return Reconciliation(None, conclusive=False)
        # A naive time is taken as UTC, so the settle check never compares naive with aware.
        since, until = (
            t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in (since, until)
        )
        reference = custom_string(request.reference)
        text = crlf(request.text)
        from_date = (since - RECONCILE_DATE_MARGIN).date()
        to_date = (until + RECONCILE_DATE_MARGIN).date()
        page, complete, doubtful = 1, False, 0
        for _ in range(RECONCILE_MAX_PAGES):
            result = await self.client.reports(
                page=page,
                limit=RECONCILE_PAGE_SIZE,
                from_date=from_date,
                to_date=to_date,
                custom_string=reference,
            )
            rows, skipped = parse_rows(ReportItem, result.items)
            doubtful += skipped
            for row in rows:
                verdict = self._matches(row, request.to_e164, reference, text)
                if verdict == "yes":
                    parts = row.sms_detail.smscount if row.sms_detail else None
                    log.info("cellcast.reconcile.found", custom_string=reference)
                    return Reconciliation(
                        SendResult(gateway_message_id=row.id, parts=parts), conclusive=True
                    )
                if verdict == "maybe":
                    doubtful += 1
            if not result.items or not _has_more(result, page, RECONCILE_PAGE_SIZE):
                complete = True
                break
            page = result.next_page if result.next_page and result.next_page > page else page + 1
        settle = timedelta(seconds=self.settings.reconcile_settle_seconds)
        settled = self._clock() - until >= settle
        conclusive = complete and doubtful == 0 and settled
        log.info(
            "cellcast.reconcile.absent",
            custom_string=reference,
            complete=complete,
            doubtful=doubtful,
            settled=settled,
        )
        return Reconciliation(None, conclusive=conclusive)

    @staticmethod
    def _matches(row: ReportItem, to_e164: str, reference: str, text: str) -> str:
        """ "yes" when the row is this send, "maybe" when it could be but cannot be told
        apart, "no" otherwise."""
        same_number = read_number(row.receiver) == to_e164
        if row.custom_string is not None:
            if row.custom_string != reference:
                return "no"
            return "yes" if same_number or row.receiver is None else "maybe"
        # Rows do not document customString: trust the server's filter, but check what we can.
        if not same_number:
            return "no" if row.receiver is not None else "maybe"
        if row.message is None or crlf(row.message) == text:
            return "yes"
        return "maybe"

    # --- account --------------------------------------------------------------------------

    async def verify_credentials(self) -> AccountCheck:
        """`GET /api/v1/user/token/verify`, then the account (name and balance)."""
        token = await self.client.verify_token()
        account = await self.client.account()
        return AccountCheck(
            account_name=account.account_name or token.account_name or token.name,
            balance=Balance(amount=account.sms_balance, currency="credits", unit="credits"),
        )

    async def balance(self) -> Balance:
        account = await self.client.account()
        # SMS credits (a custom sender costs 1.3 a part), possibly fractional.
        return Balance(amount=account.sms_balance, currency="credits", unit="credits")

    async def sender_ids(self) -> list[SenderId]:
        raise UnsupportedError(
            "Cellcast has no API listing sender IDs; the sender is typed into the settings",
            code="UNSUPPORTED",
            gateway=GATEWAY,
        )

    # --- webhooks and inbound ---------------------------------------------------------------

    def parse_webhook(self, body: bytes, content_type: str | None) -> list[WebhookEvent]:
        return parse_webhook(body, content_type)

    async def register_webhooks(self, url: str) -> list[RegisteredWebhook]:
        raise UnsupportedError(
            "Cellcast webhooks are set by hand: paste the URL as both the Status URL and the "
            "Receive URL in Cellcast's dashboard (profile menu → API → API KEYS → Webhook)",
            code="UNSUPPORTED",
            gateway=GATEWAY,
        )

    async def poll_inbound(self, cursor: str | None, *, max_pages: int) -> InboundPage:
        """Replies from `getResponses` newer than `cursor` (see `inbound.py`)."""
        return await walk(self.client.responses, cursor, max_pages=max_pages)

    async def list_optouts(self, *, max_pages: int) -> list[OptOut]:
        """`getOptout`, every page up to `max_pages`. Numbers come international without the
        `+` (gateways.md §3); the list has no dates, so `at` stays unknown."""
        found: list[OptOut] = []
        for page_number in range(1, max_pages + 1):
            page = await self.client.optouts(page=page_number, size=OPTOUT_PAGE_SIZE)
            for item in page.items:
                number = str(item.get("number") or "").strip() if isinstance(item, dict) else ""
                if number:
                    found.append(OptOut(phone="+" + number if number.isdigit() else number))
            last = page.total_pages is not None and page_number >= page.total_pages
            if not page.items or page.has_next_page is False or last:
                break
        return found


def build(account: AccountConfig, context: GatewayContext) -> CellcastGateway:
    defaults = cast(CellcastDefaults, context.defaults)
    settings = cast(CellcastAccountSettings, account.settings)
    client = CellcastClient(
        context.http,
        api_key=account.api_key,
        base_url=account.api_url or defaults.api_url,
        pacing=CellcastPacing(
            pacer=context.pacer,
            bucket=context.account_bucket,
            limit=defaults.rate_limits()["account"],
        ),
        retry=RetryPolicy(attempts=context.attempts),
        timeout=defaults.timeout_seconds,
    )
    return CellcastGateway(client, sender_id=account.sender_id, settings=settings)


__all__ = [
    "CELLCAST_CAPABILITIES",
    "CellcastError",
    "CellcastGateway",
    "build",
    "custom_string",
    "is_two_way_sender",
    "read_number",
    "sender_problem",
]
