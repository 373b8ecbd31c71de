"""CellcastClient: typed calls to Cellcast's new API over an httpx2.AsyncClient it is handed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import stamina
from pydantic import BaseModel, ValidationError

from castbridge.gateways.cellcast.envelope import Envelope, read_envelope
from castbridge.gateways.cellcast.errors import (
    INVALID_RESPONSE,
    CellcastBadResponseError,
    CellcastError,
    CellcastRateLimitedError,
    CellcastValidationError,
    transport_error,
)
from castbridge.gateways.cellcast.models import (
    MAX_CONTACTS,
    AccountData,
    ChatItem,
    GatewayData,
    OptoutPage,
    ReportDetail,
    ReportPage,
    ResponsesPage,
    TokenData,
)
from castbridge.gateways.cellcast.retry import RetryPolicy, may_retry
from castbridge.gateways.cellcast.settings import DEFAULT_API_URL
from castbridge.limits import Limit, Pacer
from castbridge.logging import get_logger

__all__ = ["COUNTRY_CODE", "SHARED_SENDER", "CellcastClient", "CellcastPacing", "crlf"]

log = get_logger("castbridge.gateways.cellcast")
M = TypeVar("M", bound=BaseModel)

# The new API sends to Australia only (gateways.md §3).
COUNTRY_CODE = 61
# Cellcast's shared number: the default sender, and one that receives replies.
SHARED_SENDER = "#SharedNum#"


def crlf(text: str) -> str:
    """Cellcast wants new lines as `\\r\\n`; any mix of `\\n`, `\\r\\n` and `\\r` becomes that."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


@dataclass(frozen=True, slots=True)
class CellcastPacing:
    """Cellcast's one limit, requests per second per API key, as a bucket of a `Pacer`. Every
    request takes a token first; a `Throttled` propagates before the request leaves."""

    pacer: Pacer
    bucket: str
    limit: Limit


class CellcastClient:
    """One Cellcast account (one API key) over a shared `httpx2.AsyncClient`.

    With `pacing`, every request is paced through its bucket (none: no pacing, for tests). Every
    method raises a `CellcastError` (see `castbridge.gateways.cellcast.errors`) on failure.
    """

    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        api_key: str,
        base_url: str = DEFAULT_API_URL,
        pacing: CellcastPacing | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not api_key or any(ch.isspace() for ch in api_key):
            raise ValueError("api_key must be a non-empty string without whitespace")
        self._http = http
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._pacing = pacing
        self.retry = retry if retry is not None else RetryPolicy()
        self._clock = clock
        # Per request, over the shared client's default: the operator's `*_TIMEOUT_SECONDS`.
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"CellcastClient(base_url={self._base_url!r}, api_key='***')"

    # --- sends ----------------------------------------------------------------------------

    async def send_sms(
        self,
        contacts: Sequence[str],
        message: str,
        *,
        sender: str = SHARED_SENDER,
        custom_string: str | None = None,
        reply_stop_to_opt_out: bool | None = None,
    ) -> GatewayData:
        """`POST /api/v1/gateway`: send `message` to 1-1,000 contacts, at once.

        Never sends `scheduleAt` or `delay`: a UTC `scheduleAt` was seen read as account-local
        time (gateways.md §3), and HighLevel messages go out immediately anyway. New lines are
        sent as `\\r\\n`. A partial result (some contacts invalid or unsubscribed) is returned,
        not raised; a whole-request refusal raises.
        """
        if not 1 <= len(contacts) <= MAX_CONTACTS:
            raise CellcastValidationError(
                f"a send takes 1-{MAX_CONTACTS} contacts, got {len(contacts)}",
                code="VALIDATION_ERROR",
            )
        body: dict[str, Any] = {
            "message": crlf(message),
            "contacts": list(contacts),
            "countryCode": COUNTRY_CODE,
            "sender": sender,
        }
        if custom_string is not None:
            body["customString"] = custom_string
        if reply_stop_to_opt_out is not None:
            body["replyStopToOptOut"] = reply_stop_to_opt_out
        envelope = await self._request("POST", "/api/v1/gateway", json_body=body, send=True)
        data = self._model(GatewayData, envelope, send=True, empty_ok=False)
        log.info(
            "cellcast.send.answered",
            contacts=len(contacts),
            queued=sum(1 for item in data.queue_response if item.message_id),
            invalid=len(data.invalid_contacts),
            unsubscribed=len(data.unsubscribe_contacts),
            custom_string=custom_string,
        )
        return data

    async def send_chat(
        self,
        numbers: Sequence[str],
        message: str,
        *,
        sender: str,
        sms_template_id: str,
        rms_template_id: str,
    ) -> list[ChatItem]:
        """`POST /api/v1/chat` (seeds/003). The answer lists only `{number, message}` per
        recipient: no message id, so nothing sent this way can be polled or reconciled."""
        if not 1 <= len(numbers) <= MAX_CONTACTS:
            raise CellcastValidationError(
                f"a chat send takes 1-{MAX_CONTACTS} numbers, got {len(numbers)}",
                code="VALIDATION_ERROR",
            )
        body = {
            "sender": sender,
            "number": list(numbers),
            # The seed sends the country code as a string here, unlike /gateway's integer.
            "countryCode": str(COUNTRY_CODE),
            "message": crlf(message),
            "smsTemplateId": sms_template_id,
            "rmsTemplateId": rms_template_id,
        }
        envelope = await self._request("POST", "/api/v1/chat", json_body=body, send=True)
        if not isinstance(envelope.data, list):
            raise CellcastBadResponseError(
                "Cellcast's chat answer has no list of recipients",
                code=INVALID_RESPONSE,
                http_status=envelope.http_status,
                outcome_unknown=True,
            )
        items: list[ChatItem] = []
        for entry in envelope.data:
            try:
                items.append(ChatItem.model_validate(entry))
            except ValidationError:
                continue
        log.info("cellcast.chat.answered", numbers=len(numbers), echoed=len(items))
        return items

    # --- reads ----------------------------------------------------------------------------

    async def report(self, message_id: str) -> ReportDetail:
        """`GET /api/v2/report/message/{id}`: one message's status."""
        path = f"/api/v2/report/message/{quote(message_id, safe='')}"
        envelope = await self._request("GET", path)
        return self._model(ReportDetail, envelope)

    async def reports(
        self,
        *,
        page: int = 1,
        limit: int = 100,
        from_date: date | None = None,
        to_date: date | None = None,
        custom_string: str | None = None,
        status: str | None = None,
    ) -> ReportPage:
        """`GET /api/v2/report/message?campType=sms…`: sent messages, filtered and paged."""
        params = {"campType": "sms", "page": str(page), "limit": str(limit)}
        if from_date is not None:
            params["fromDate"] = from_date.isoformat()
        if to_date is not None:
            params["toDate"] = to_date.isoformat()
        if custom_string is not None:
            params["customString"] = custom_string
        if status is not None:
            params["status"] = status
        envelope = await self._request("GET", "/api/v2/report/message", params=params)
        return self._model(ReportPage, envelope)

    async def account(self) -> AccountData:
        """`GET /api/v1/apiClient/account`: name, email and balances."""
        envelope = await self._request("GET", "/api/v1/apiClient/account")
        return self._model(AccountData, envelope)

    async def verify_token(self) -> TokenData:
        """`GET /api/v1/user/token/verify`: proves the key works (its `data` is optional)."""
        envelope = await self._request("GET", "/api/v1/user/token/verify")
        if not isinstance(envelope.data, dict):
            return TokenData()
        return self._model(TokenData, envelope)

    async def responses(self, page: int = 1) -> ResponsesPage:
        """`GET /api/v1/apiClient/getResponses?page=N`: replies, newest first."""
        envelope = await self._request(
            "GET", "/api/v1/apiClient/getResponses", params={"page": str(page)}
        )
        return self._model(ResponsesPage, envelope)

    async def optouts(self, *, page: int = 1, size: int = 100) -> OptoutPage:
        """`GET /api/v1/apiClient/getOptout`: the account's opted-out numbers."""
        envelope = await self._request(
            "GET",
            "/api/v1/apiClient/getOptout",
            params={"page": str(page), "size": str(size)},
        )
        return self._model(OptoutPage, envelope)

    # --- plumbing -------------------------------------------------------------------------

    @staticmethod
    def _model(
        model: type[M], envelope: Envelope, *, send: bool = False, empty_ok: bool = True
    ) -> M:
        data = envelope.data
        if data is None and empty_ok:
            data = {}
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise CellcastBadResponseError(
                f"Cellcast answered HTTP {envelope.http_status} with an unexpected body "
                f"({exc.error_count()} problem(s), first at {_first_loc(exc)})",
                code=INVALID_RESPONSE,
                http_status=envelope.http_status,
                outcome_unknown=send,
            ) from None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        send: bool = False,
    ) -> Envelope:
        """One logical call, retried per `self.retry` (see `retry.py` for what may be)."""
        policy = self.retry
        started = self._clock()
        retries = 0

        def should_retry(exc: Exception) -> bool | float:
            """stamina's backoff hook: False to give up, else the exact seconds to wait."""
            nonlocal retries
            if not may_retry(exc, send=send):
                return False
            assert isinstance(exc, CellcastError)
            wait = policy.wait_for(exc, retries + 1)
            if self._clock() - started + wait > policy.max_total_seconds:
                return False
            retries += 1
            log.info(
                "cellcast.retry",
                path=path,
                code=exc.code,
                http_status=exc.http_status,
                wait_seconds=round(wait, 3),
                retry=retries,
            )
            return wait

        async for attempt in stamina.retry_context(
            on=should_retry, attempts=policy.attempts, timeout=None
        ):
            with attempt:
                return await self._once(method, path, json_body, params, send)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _once(
        self,
        method: str,
        path: str,
        json_body: dict[str, Any] | None,
        params: dict[str, str] | None,
        send: bool,
    ) -> Envelope:
        pacing = self._pacing
        if pacing is not None:
            await pacing.pacer.take(pacing.bucket, pacing.limit)
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method,
                self._base_url + path,
                json=json_body,
                headers=headers,
                params=params,
                timeout=httpx2.USE_CLIENT_DEFAULT if self._timeout is None else self._timeout,
            )
        except httpx2.TransportError as exc:
            failure = transport_error(exc, send=send)
            log.warning(
                "cellcast.request.failed",
                method=method,
                path=path,
                code=failure.code,
                outcome_unknown=failure.outcome_unknown,
            )
            raise failure from exc
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        try:
            envelope = read_envelope(
                response.status_code, response.content, response.headers, send=send
            )
        except CellcastError as error:
            await self._on_error(error)
            log.warning(
                "cellcast.request.error",
                method=method,
                path=path,
                http_status=error.http_status,
                code=error.code,
                error=error.message,
                retryable=error.retryable,
                outcome_unknown=error.outcome_unknown,
                elapsed_ms=elapsed_ms,
            )
            raise
        log.debug(
            "cellcast.request",
            method=method,
            path=path,
            http_status=response.status_code,
            elapsed_ms=elapsed_ms,
        )
        return envelope

    async def _on_error(self, error: CellcastError) -> None:
        """A 429 pauses the key's bucket, so every caller (every process) waits too."""
        if not isinstance(error, CellcastRateLimitedError) or self._pacing is None:
            return
        wait = (
            error.retry_after if error.retry_after is not None else self.retry.default_retry_after
        )
        await self._pacing.pacer.pause(self._pacing.bucket, self._pacing.limit, wait)


def _first_loc(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "?"
    return ".".join(str(part) for part in errors[0]["loc"]) or "body"
