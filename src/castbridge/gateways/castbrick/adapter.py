"""CastBrickGateway: CastBrick (Angola) behind the provider-neutral `Gateway`, and its SPEC."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import cast
from urllib.parse import urlsplit

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
from castbridge.gateways.castbrick.client import (
    CastBrickClient,
    CastBrickPacing,
    RetryPolicy,
)
from castbridge.gateways.castbrick.errors import (
    GATEWAY,
    CastBrickBadResponseError,
    CastBrickError,
    CastBrickForbiddenError,
    CastBrickInvalidRequestError,
    CastBrickNotFoundError,
    CastBrickValidationError,
)
from castbridge.gateways.castbrick.models import MAX_PAGE_SIZE, BalanceResponse, SmsMessage, Webhook
from castbridge.gateways.castbrick.settings import (
    DEFAULT_MAX_PARTS,
    CastBrickAccountSettings,
    CastBrickDefaults,
    check_key,
)
from castbridge.gateways.castbrick.status import to_delivery_status
from castbridge.gateways.castbrick.webhooks import (
    USED_EVENT_TYPES,
    canonical_type,
    parse_webhook_body,
)
from castbridge.gateways.spec import AccountConfig, GatewayContext, GatewaySpec
from castbridge.logging import get_logger, mask_phone
from castbridge.sms.phone import InvalidNumber, format_for_gateway, normalize
from castbridge.sms.text import GSM7_SINGLE, UCS2_SINGLE, segments

log = get_logger("castbridge.gateways.castbrick")

CASTBRICK_CAPABILITIES = Capabilities(
    name=GATEWAY,
    label="CastBrick",
    country="AO",
    number_style="e164",
    # No idempotency key: a send is attempted once, ambiguous outcomes are reconciled through
    # `GET /sms` (find_sent) before anything is sent again.
    idempotency_keys=False,
    status_poll=True,
    delivery_reports=True,
    dlr_push=True,
    inbound_push=True,
    # Whether replies can be listed is unknown (capability matrix): we promise none.
    inbound_poll=False,
    reconcile=True,
    channels=("sms",),
    # CastBrick pushes an InboundMessage event, but whether a reply to an alphanumeric sender
    # ever reaches it is unknown (capability matrix, gateways.md §5). Promising two-way only
    # from a number keeps the UI from offering replies that may never arrive.
    two_way="numeric_sender_only",
    webhook_setup="registered",
    sender_ids_api=False,
)

# Our clock and CastBrick's may differ; every time window is widened by this much.
CLOCK_MARGIN = timedelta(minutes=10)
# A status poll looks for the message from shortly before we sent it to a day after: the list
# filters by a time whose meaning (created or sent) is undocumented, and a queued message is
# sent later than we handed it over.
STATUS_WINDOW_AFTER = timedelta(days=1)
# Absence is only conclusive once the window closed this long ago (see find_sent).
RECONCILE_SETTLE = timedelta(minutes=2)
MAX_STATUS_PAGES = 10
MAX_RECONCILE_PAGES = 50
MAX_WEBHOOK_PAGES = 20


def _same_text(a: str, b: str) -> bool:
    """Equal texts, forgiving only line-ending and edge whitespace changes a gateway may make."""
    return a.replace("\r\n", "\n").strip() == b.replace("\r\n", "\n").strip()


def _now() -> datetime:
    return datetime.now(UTC)


class CastBrickGateway:
    """One CastBrick account as a `castbridge.gateways.base.Gateway`.

    Sends go to one recipient per request, so CastBrick's batch `messageId` is the message's
    id. `sender_id` is used unless the request names its own; with none, CastBrick's default
    sender is used. `fallback` is sent explicitly on every send (CastBrick's own default is
    true: see `CastBrickAccountSettings.fallback`).
    """

    capabilities = CASTBRICK_CAPABILITIES

    def __init__(
        self,
        client: CastBrickClient,
        *,
        sender_id: str | None = None,
        fallback: bool = False,
        max_parts: int = DEFAULT_MAX_PARTS,
        allow_international: bool = False,
        reconcile_settle: timedelta = RECONCILE_SETTLE,
        now: Callable[[], datetime] = _now,
    ) -> None:
        if max_parts < 1:
            raise ValueError("max_parts must be positive")
        self.client = client
        self.sender_id = sender_id
        self.fallback = fallback
        self._max_parts = max_parts
        self._allow_international = allow_international
        self._settle = reconcile_settle
        self._now = now
        # `GET /sms/{id}` is a bonus path: whether it takes the batch messageId is uncertain
        # (gateways.md §2). Once it 404s for a message the list does know, this instance stops
        # asking it (in memory; a new instance tries again).
        self._by_id = True

    # --- pure checks ------------------------------------------------------------------------

    def max_parts(self) -> int:
        return self._max_parts

    def format_number(self, e164: str) -> str:
        """E.164 as is (`+244923000000`); raises `InvalidNumber` for a number outside Angola
        unless the account allows international sends."""
        try:
            return format_for_gateway(e164, "AO", "e164")
        except InvalidNumber:
            if self._allow_international and e164.startswith("+") and e164[1:].isdigit():
                return e164
            raise

    def validate(self, to_e164: str, text: str, channel: str) -> None:
        if channel not in self.capabilities.channels:
            raise CastBrickValidationError(
                f"CastBrick sends SMS only, not {channel!r}.", code="UNSUPPORTED_CHANNEL"
            )
        try:
            self.format_number(to_e164)
        except InvalidNumber as exc:
            raise CastBrickValidationError(
                f"Cannot send SMS: {exc.reason}.", code="INVALID_NUMBER"
            ) from None
        if not text.strip():
            raise CastBrickValidationError("Cannot send an empty SMS.", code="EMPTY_MESSAGE")
        parts = segments(text)
        if parts.count > self._max_parts:
            if self._max_parts == 1:
                limit = (
                    f"{GSM7_SINGLE} characters, or {UCS2_SINGLE} when it contains emoji or "
                    "other special characters"
                )
            else:
                limit = f"{self._max_parts} SMS parts"
            raise CastBrickValidationError(
                f"Message is too long for CastBrick: it needs {parts.count} SMS parts "
                f"({parts.units} {'characters' if parts.encoding == 'GSM-7' else 'units'}), "
                f"at most {limit} allowed. Shorten it and send again.",
                code="MESSAGE_TOO_LONG",
            )

    # --- sends ------------------------------------------------------------------------------

    async def send(self, request: SendRequest) -> SendResult:
        """Send once. CastBrick stores no reference of ours, so `request.reference` is not sent;
        reconciliation matches recipient, text and time instead."""
        self.validate(request.to_e164, request.text, request.channel)
        response = await self.client.send(
            self.format_number(request.to_e164),
            request.text,
            sender_id=request.sender_id or self.sender_id,
            fallback=self.fallback,
        )
        assert response.message_id is not None  # the client refuses a send without one
        # CastBrick reports no part count, only a cost: parts stays unknown rather than guessed.
        return SendResult(gateway_message_id=response.message_id)

    # --- status -----------------------------------------------------------------------------

    async def status(
        self,
        gateway_message_id: str,
        channel: str = "sms",
        *,
        to_e164: str | None = None,
        sent_at: datetime | None = None,
    ) -> DeliveryStatus:
        """`GET /sms/{id}` first (bonus), then the main path: `GET /sms?phone=&from=&to=`,
        paged, matching the id against both `id` and `messageId`."""
        by_id_missed = False
        if self._by_id:
            item = await self._by_id_lookup(gateway_message_id, to_e164)
            if item is not None:
                return self._to_status(gateway_message_id, item)
            by_id_missed = True
        item = await self._find_in_list(gateway_message_id, to_e164, sent_at)
        if item is None:
            raise CastBrickNotFoundError(
                f"CastBrick lists no message {gateway_message_id}", code="NOT_FOUND"
            )
        if by_id_missed and self._by_id:
            log.info("castbrick.status.by_id_disabled", message_id=gateway_message_id)
            self._by_id = False
        return self._to_status(gateway_message_id, item)

    async def _by_id_lookup(self, message_id: str, to_e164: str | None) -> SmsMessage | None:
        try:
            item = await self.client.get_message(message_id)
        except (
            CastBrickNotFoundError,
            CastBrickBadResponseError,
            CastBrickValidationError,
            CastBrickInvalidRequestError,
        ):
            return None
        if message_id in item.ids() or (to_e164 is not None and self._same_phone(item, to_e164)):
            return item
        return None

    async def _find_in_list(
        self, message_id: str, to_e164: str | None, sent_at: datetime | None
    ) -> SmsMessage | None:
        start = sent_at - CLOCK_MARGIN if sent_at is not None else None
        end = sent_at + STATUS_WINDOW_AFTER if sent_at is not None else None
        phone = self.format_number(to_e164) if to_e164 is not None else None
        for page in range(1, MAX_STATUS_PAGES + 1):
            result = await self.client.list_messages(
                phone=phone, start=start, end=end, page=page, page_size=MAX_PAGE_SIZE
            )
            for item in result.items:
                if message_id in item.ids():
                    return item
            if not result.more_after(page, result.page_size or MAX_PAGE_SIZE):
                break
        return None

    def _to_status(self, message_id: str, item: SmsMessage) -> DeliveryStatus:
        return to_delivery_status(
            message_id=message_id,
            raw_status=item.status,
            error_message=item.error_message,
            delivered_at=item.delivered_at,
        )

    def _same_phone(self, item: SmsMessage, to_e164: str) -> bool:
        if not item.phone:
            return False
        try:
            return normalize(item.phone, "AO") == to_e164
        except InvalidNumber:
            return False

    # --- reconciliation ---------------------------------------------------------------------

    async def find_sent(
        self, request: SendRequest, *, since: datetime, until: datetime
    ) -> Reconciliation:
        """Look for the send in `GET /sms?phone=<to>&from=&to=` (every page), matching the
        recipient (normalised with AO), the text and the time window widened by CLOCK_MARGIN.

        Found: the message's id, conclusive. Not found is conclusive only when
        - every page of the filtered list was read (`hasNextPage` false, or the totals say so),
          with no item we could not read, so nothing in the window went unseen; and
        - the window closed at least RECONCILE_SETTLE ago: a message CastBrick took may not be
          listed at once, and if its `from`/`to` filter reads `sentAt` (undocumented), a
          message still queued has none yet.
        Otherwise the answer is "not known yet" and the core asks again later.
        """
        to = self.format_number(request.to_e164)
        start, end = since - CLOCK_MARGIN, until + CLOCK_MARGIN
        matches: list[SmsMessage] = []
        complete = False
        unreadable = 0
        for page in range(1, MAX_RECONCILE_PAGES + 1):
            result = await self.client.list_messages(
                phone=to, start=start, end=end, page=page, page_size=MAX_PAGE_SIZE
            )
            unreadable += result.unreadable
            for item in result.items:
                if item.phone is None or item.text is None:
                    unreadable += 1
                elif self._is_the_send(item, request, start, end):
                    matches.append(item)
            more = result.more_after(page, result.page_size or MAX_PAGE_SIZE)
            if more is None:
                # No paging information at all: a full page may have a successor; a short one
                # proves nothing (the server may page smaller than asked), an empty one does.
                if len(result.items) >= MAX_PAGE_SIZE:
                    continue
                complete = not result.items
                break
            if not more:
                complete = True
                break
        if matches:
            # The same text to the same number twice in one window cannot be told apart; the
            # one nearest the attempt is the likeliest.
            best = min(matches, key=lambda m: abs(((m.when or since) - since).total_seconds()))
            log.info(
                "castbrick.reconcile.found",
                to=mask_phone(to),
                message_id=best.key,
                candidates=len(matches),
            )
            return Reconciliation(SendResult(gateway_message_id=best.key), conclusive=True)
        settled = self._now() - until >= self._settle
        conclusive = complete and unreadable == 0 and settled
        log.info(
            "castbrick.reconcile.absent",
            to=mask_phone(to),
            complete=complete,
            unreadable=unreadable,
            settled=settled,
            conclusive=conclusive,
        )
        return Reconciliation(None, conclusive=conclusive)

    def _is_the_send(
        self, item: SmsMessage, request: SendRequest, start: datetime, end: datetime
    ) -> bool:
        if not self._same_phone(item, request.to_e164):
            return False
        if item.text is None or not _same_text(item.text, request.text):
            return False
        when = item.when
        # No timestamp at all: the gateway's own from/to filter put it in the window.
        return when is None or start <= when <= end

    # --- account ----------------------------------------------------------------------------

    async def verify_credentials(self) -> AccountCheck:
        """Probe the base path with `GET /billing/balance` (gateways.md §2, uncertain) and
        return it in `settings_update` for the account to store. A key CastBrick refuses raises
        `CastBrickCredentialsError`; a key that works but may not read the balance (403) is
        valid, with no balance to show."""
        probe = await self.client.probe()
        update = {"base_path": probe.base_path}
        if probe.error is not None:
            if isinstance(probe.error, CastBrickForbiddenError):
                return AccountCheck(balance=None, settings_update=update)
            raise probe.error
        if probe.balance is None:
            raise CastBrickBadResponseError(
                "CastBrick answered the balance check with an unexpected body",
                code="INVALID_RESPONSE",
            )
        return AccountCheck(balance=_balance(probe.balance), settings_update=update)

    async def balance(self) -> Balance:
        return _balance(await self.client.balance())

    async def sender_ids(self) -> list[SenderId]:
        raise UnsupportedError(
            "CastBrick has no API that lists sender IDs", code="UNSUPPORTED", gateway=GATEWAY
        )

    # --- webhooks ---------------------------------------------------------------------------

    def parse_webhook(self, body: bytes, content_type: str | None) -> list[WebhookEvent]:
        return parse_webhook_body(body, content_type)

    async def register_webhooks(self, url: str) -> list[RegisteredWebhook]:
        """One registration per event type castbridge uses, reusing what is already there:
        `GET /webhooks` first, an inactive match is switched back on, only missing types are
        created. CastBrick has no webhook secret, so `url` must carry an unguessable token."""
        _check_webhook_url(url)
        existing = await self._all_webhooks()
        registered: list[RegisteredWebhook] = []
        for event_type in USED_EVENT_TYPES:
            wanted = canonical_type(event_type)
            same = [
                w for w in existing if w.endpoint == url and canonical_type(w.event_type) == wanted
            ]
            active = next((w for w in same if w.is_active), None)
            if active is not None:
                webhook_id = active.id
            elif same:
                webhook_id = same[0].id
                await self.client.toggle_webhook(webhook_id)
            else:
                created = await self.client.create_webhook(url, event_type)
                if created is None:
                    created = await self._find_webhook_id(url, wanted)
                webhook_id = created
            registered.append(
                RegisteredWebhook(webhook_id=webhook_id, event_type=event_type, url=url)
            )
        log.info("castbrick.webhooks.registered", count=len(registered))
        return registered

    async def _all_webhooks(self) -> list[Webhook]:
        found: list[Webhook] = []
        for page in range(1, MAX_WEBHOOK_PAGES + 1):
            result = await self.client.list_webhooks(page=page, page_size=MAX_PAGE_SIZE)
            found.extend(result.items)
            if not result.items or not result.more_after(page, MAX_PAGE_SIZE):
                break
        return found

    async def _find_webhook_id(self, url: str, wanted: str) -> str:
        for webhook in await self._all_webhooks():
            if webhook.endpoint == url and canonical_type(webhook.event_type) == wanted:
                return webhook.id
        raise CastBrickBadResponseError(
            "CastBrick accepted a webhook registration but neither returned nor lists its id",
            code="INVALID_RESPONSE",
        )

    async def list_optouts(self, *, max_pages: int) -> list[OptOut]:
        raise UnsupportedError(
            "CastBrick has no documented opt-out list; its OptOut events arrive by webhook",
            code="UNSUPPORTED",
            gateway=GATEWAY,
        )

    async def poll_inbound(self, cursor: str | None, *, max_pages: int) -> InboundPage:
        raise UnsupportedError(
            "CastBrick has no documented way to list replies; they arrive by webhook",
            code="UNSUPPORTED",
            gateway=GATEWAY,
        )


def _balance(response: BalanceResponse) -> Balance:
    return Balance(amount=response.balance, currency=response.currency or "AOA", unit="money")


def _check_webhook_url(url: str) -> None:
    """HTTPS only (gateways.md §6: the URL's token is the only protection), except loopback
    for local development against the sandbox."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return
    raise CastBrickValidationError(
        "CastBrick webhooks need an https:// URL.", code="INSECURE_WEBHOOK_URL"
    )


def build(account: AccountConfig, context: GatewayContext) -> CastBrickGateway:
    defaults = cast(CastBrickDefaults, context.defaults)
    settings = account.settings
    if not isinstance(settings, CastBrickAccountSettings):
        settings = CastBrickAccountSettings.model_validate(settings.model_dump())
    client = CastBrickClient(
        context.http,
        api_key=account.api_key,
        api_url=account.api_url or defaults.api_url,
        base_path=settings.base_path,
        pacing=CastBrickPacing(
            pacer=context.pacer,
            bucket=context.account_bucket,
            limit=defaults.rate_limits()["account"],
        ),
        retry=RetryPolicy(attempts=context.attempts),
        timeout_seconds=defaults.timeout_seconds,
    )
    return CastBrickGateway(
        client,
        sender_id=account.sender_id,
        fallback=settings.fallback,
        max_parts=settings.max_parts,
        allow_international=settings.allow_international,
        reconcile_settle=timedelta(seconds=settings.reconcile_settle_seconds),
    )


SPEC = GatewaySpec(
    capabilities=CASTBRICK_CAPABILITIES,
    defaults=CastBrickDefaults,
    account_settings=CastBrickAccountSettings,
    build=build,
    check_key=check_key,
    default_channel="sms",
)

__all__ = [
    "CASTBRICK_CAPABILITIES",
    "SPEC",
    "CastBrickError",
    "CastBrickGateway",
    "build",
]
