"""CastClient: typed calls to Cast.ph's v1 API over an httpx2.AsyncClient it is handed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import stamina
from pydantic import BaseModel, ValidationError

from castbridge.gateways.cast.errors import (
    CastBadResponseError,
    CastError,
    CastRateLimitedError,
    CastValidationError,
    translate_error,
    transport_error,
)
from castbridge.gateways.cast.models import (
    MAX_BULK_RECIPIENTS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    BalanceResponse,
    BulkBody,
    BulkChannel,
    BulkResponse,
    LogsResponse,
    ProfileResponse,
    SendBody,
    SendChannel,
    SenderIdsResponse,
    SendResponse,
    StatusChannel,
    StatusResponse,
    UnsubscribedResponse,
    UnsubscribeTokenResponse,
)
from castbridge.gateways.cast.retry import RetryPolicy
from castbridge.limits import Limit, Pacer
from castbridge.logging import get_logger, mask_phone

DEFAULT_BASE_URL = "https://api.cast.ph"

__all__ = ["DEFAULT_BASE_URL", "CastClient", "CastPacing", "RetryPolicy"]

log = get_logger("castbridge.gateways.cast")
M = TypeVar("M", bound=BaseModel)


def _check_idempotency_key(key: str) -> None:
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise CastValidationError(
            f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} characters",
            code="INVALID_IDEMPOTENCY_KEY",
        )
    if not key.isascii() or not key.isprintable():
        raise CastValidationError(
            "idempotency key must be printable ASCII", code="INVALID_IDEMPOTENCY_KEY"
        )


@dataclass(frozen=True, slots=True)
class CastPacing:
    """Cast's two limits (gateways.md §1.9) as buckets of a `Pacer`: messages per second for
    this API key (`account_bucket`, taken N times for a bulk of N), and requests per second
    for our egress IP (`ip_bucket`, taken by every request). A `Throttled` from the pacer
    propagates before the request leaves."""

    pacer: Pacer
    account_bucket: str
    send_limit: Limit
    ip_bucket: str
    ip_limit: Limit


class CastClient:
    """One Cast account (one API key) over a shared `httpx2.AsyncClient`.

    With `pacing`, every request is paced through its buckets (none: no pacing, for tests).
    Every method raises a `CastError` (see `castbridge.gateways.cast.errors`) on failure.
    """

    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        pacing: CastPacing | None = None,
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
        return f"CastClient(base_url={self._base_url!r}, api_key='cast_***')"

    # --- sends ----------------------------------------------------------------------------

    async def send(
        self,
        to: str,
        message: str,
        *,
        idempotency_key: str,
        channel: SendChannel = "sms",
        sender_id: str | None = None,
        scheduled_at: datetime | None = None,
    ) -> SendResponse:
        """Send one message on `channel` (`/sms/send`, `/otp/send` or `/sim/send`).

        `idempotency_key` (1-255 chars) is sent as `X-Idempotency-Key` and reused by every retry.
        `scheduled_at` makes Cast answer 202 without a `message_id`; the bridge never uses it.
        """
        _check_idempotency_key(idempotency_key)
        if scheduled_at is not None and channel == "otp":
            raise CastValidationError("scheduled_at is not supported on /otp/send")
        body = SendBody(to=to, message=message, sender_id=sender_id, scheduled_at=scheduled_at)
        result = await self._request(
            "POST",
            f"/api/v1/{channel}/send",
            SendResponse,
            json_body=body.to_json(),
            idempotency_key=idempotency_key,
            messages=1,
        )
        # DEBUG: the worker's `gateway_accepted` line says the same at INFO, once per send.
        log.debug(
            "cast.send.accepted",
            channel=channel,
            to=mask_phone(to),
            message_id=result.message_id,
            parts=result.parts,
            replayed=result.replayed,
            sandbox=result.sandbox,
            idempotency_key=idempotency_key,
        )
        return result

    async def send_sms(
        self, to: str, message: str, *, idempotency_key: str, sender_id: str | None = None
    ) -> SendResponse:
        return await self.send(
            to, message, idempotency_key=idempotency_key, channel="sms", sender_id=sender_id
        )

    async def send_otp(
        self, to: str, message: str, *, idempotency_key: str, sender_id: str | None = None
    ) -> SendResponse:
        return await self.send(
            to, message, idempotency_key=idempotency_key, channel="otp", sender_id=sender_id
        )

    async def send_sim(
        self, to: str, message: str, *, idempotency_key: str, sender_id: str | None = None
    ) -> SendResponse:
        return await self.send(
            to, message, idempotency_key=idempotency_key, channel="sim", sender_id=sender_id
        )

    async def bulk(
        self,
        to: Sequence[str],
        message: str,
        *,
        idempotency_key: str,
        channel: BulkChannel = "sms",
        sender_id: str | None = None,
        scheduled_at: datetime | None = None,
    ) -> BulkResponse:
        """Send the same text to 1-1,000 numbers. A partial failure is returned, not raised:
        check `success` / `failures`. A request-level refusal raises a CastError."""
        _check_idempotency_key(idempotency_key)
        if not 1 <= len(to) <= MAX_BULK_RECIPIENTS:
            raise CastValidationError(f"bulk takes 1-{MAX_BULK_RECIPIENTS} numbers, got {len(to)}")
        body = BulkBody(
            to=list(to), message=message, sender_id=sender_id, scheduled_at=scheduled_at
        )
        result = await self._request(
            "POST",
            f"/api/v1/{channel}/bulk",
            BulkResponse,
            json_body=body.to_json(),
            idempotency_key=idempotency_key,
            messages=len(to),
        )
        log.info(
            "cast.bulk.done",
            channel=channel,
            total=result.total,
            sent=result.sent,
            failed=result.failed,
            replayed=result.replayed,
            idempotency_key=idempotency_key,
        )
        return result

    async def bulk_sms(
        self,
        to: Sequence[str],
        message: str,
        *,
        idempotency_key: str,
        sender_id: str | None = None,
    ) -> BulkResponse:
        return await self.bulk(
            to, message, idempotency_key=idempotency_key, channel="sms", sender_id=sender_id
        )

    async def bulk_sim(
        self,
        to: Sequence[str],
        message: str,
        *,
        idempotency_key: str,
        sender_id: str | None = None,
    ) -> BulkResponse:
        return await self.bulk(
            to, message, idempotency_key=idempotency_key, channel="sim", sender_id=sender_id
        )

    # --- reads ----------------------------------------------------------------------------

    async def status(self, message_id: str, channel: StatusChannel = "sms") -> StatusResponse:
        """Delivery status (`/sms/status/{id}`; `/sim/status/{id}` for SIM messages)."""
        if not message_id:
            raise ValueError("message_id must not be empty")
        path = f"/api/v1/{channel}/status/{quote(message_id, safe='')}"
        return await self._request("GET", path, StatusResponse)

    async def logs(
        self,
        *,
        search: str | None = None,
        start: date | None = None,
        end: date | None = None,
        limit: int = 500,
        offset: int = 0,
    ) -> LogsResponse:
        """Sent-message history, newest first (`/sms/logs`; at most 500 a page)."""
        params: dict[str, str] = {"limit": str(limit), "offset": str(offset)}
        if search:
            params["search"] = search
        if start:
            params["from"] = start.isoformat()
        if end:
            params["to"] = end.isoformat()
        return await self._request("GET", "/api/v1/sms/logs", LogsResponse, params=params)

    async def balance(self) -> BalanceResponse:
        return await self._request("GET", "/api/v1/account/balance", BalanceResponse)

    async def profile(self) -> ProfileResponse:
        """Account settings; also the cheap call that validates a key."""
        return await self._request("GET", "/api/v1/account/profile", ProfileResponse)

    async def sender_ids(self) -> SenderIdsResponse:
        return await self._request("GET", "/api/v1/account/sender-ids", SenderIdsResponse)

    async def unsubscribed(self) -> UnsubscribedResponse:
        """`GET /api/v1/account/unsubscribed`: numbers that used an opt-out link (gateways.md
        §1.9); rows are read one by one by the caller, so one odd row spoils nothing."""
        return await self._request("GET", "/api/v1/account/unsubscribed", UnsubscribedResponse)

    async def unsubscribe_token(self, phone: str, sender_id: str) -> UnsubscribeTokenResponse:
        """An opt-out link for `phone` (422 ALREADY_UNSUBSCRIBED if it opted out already)."""
        return await self._request(
            "POST",
            "/api/v1/unsubscribe/token",
            UnsubscribeTokenResponse,
            json_body={"phone": phone, "sender_id": sender_id},
        )

    # --- plumbing -------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        json_body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        messages: int = 0,
        params: dict[str, str] | None = None,
    ) -> M:
        """One logical call, retried per `self.retry` (see the comment on RetryPolicy)."""
        policy = self.retry
        started = self._clock()
        retries = 0

        def should_retry(exc: Exception) -> bool | float:
            """stamina's backoff hook: False to give up, else the exact seconds to wait."""
            nonlocal retries
            if not isinstance(exc, CastError) or not exc.retryable:
                return False  # a Throttled from the pacer is never retried in here either
            if isinstance(exc, CastRateLimitedError):
                wait = exc.retry_after
                if wait is None:
                    wait = policy.default_retry_after
            else:
                wait = policy.backoff(retries + 1)
            if self._clock() - started + wait > policy.max_total_seconds:
                return False
            retries += 1
            log.info(
                "cast.retry",
                path=path,
                code=exc.code,
                http_status=exc.http_status,
                wait_seconds=round(wait, 3),
                retry=retries,
                idempotency_key=idempotency_key,
            )
            return wait

        async for attempt in stamina.retry_context(
            on=should_retry, attempts=policy.attempts, timeout=None
        ):
            with attempt:
                return await self._once(
                    method, path, model, json_body, idempotency_key, messages, params
                )
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _pace(self, messages: int) -> None:
        pacing = self._pacing
        if pacing is None:
            return
        if messages > 0:
            # A bulk of N counts as N messages (gateways.md §1.9, the safe reading); the pacer
            # lets a bulk above the burst through a full bucket and leaves it in debt, as Cast
            # meters it.
            await pacing.pacer.take(pacing.account_bucket, pacing.send_limit, float(messages))
        await pacing.pacer.take(pacing.ip_bucket, pacing.ip_limit)

    async def _once(
        self,
        method: str,
        path: str,
        model: type[M],
        json_body: dict[str, Any] | None,
        idempotency_key: str | None,
        messages: int,
        params: dict[str, str] | None = None,
    ) -> M:
        is_send = messages > 0
        await self._pace(messages)
        headers = {"X-API-Key": self._api_key, "Accept": "application/json"}
        if idempotency_key is not None:
            headers["X-Idempotency-Key"] = idempotency_key
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
            failure = transport_error(exc, send=is_send)
            log.warning(
                "cast.request.failed",
                method=method,
                path=path,
                code=failure.code,
                outcome_unknown=failure.outcome_unknown,
                idempotency_key=idempotency_key,
            )
            raise failure from exc
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        replayed = response.headers.get("x-idempotent-replay", "").lower() == "true"
        payload = self._payload(response)
        ok = 200 <= response.status_code < 300 and isinstance(payload, dict)
        if ok and payload.get("success") is False:
            # A bulk with some failed recipients is still a result (HTTP 200, success false,
            # per-recipient errors); any other success:false is an error.
            ok = model is BulkResponse and isinstance(payload.get("results"), list)
        if not ok:
            if 200 <= response.status_code < 300 and not isinstance(payload, dict):
                raise CastBadResponseError(
                    f"Cast answered HTTP {response.status_code} with a body that is not JSON",
                    code="INVALID_RESPONSE",
                    http_status=response.status_code,
                    outcome_unknown=is_send,
                )
            error = translate_error(
                response.status_code, response.content, response.headers, send=is_send
            )
            await self._on_error(error, is_send=is_send)
            if replayed:
                error.as_final()
            log.warning(
                "cast.request.error",
                method=method,
                path=path,
                http_status=error.http_status,
                code=error.code,
                error=error.message,
                retryable=error.retryable,
                replayed=replayed,
                elapsed_ms=elapsed_ms,
                idempotency_key=idempotency_key,
            )
            raise error
        assert isinstance(payload, dict)
        if model is SendResponse or model is BulkResponse:
            payload = {**payload, "replayed": replayed}
        try:
            result = model.model_validate(payload)
        except ValidationError as exc:
            raise CastBadResponseError(
                f"Cast answered HTTP {response.status_code} with an unexpected body "
                f"({exc.error_count()} problem(s), first at {_first_loc(exc)})",
                code="INVALID_RESPONSE",
                http_status=response.status_code,
                outcome_unknown=is_send,
            ) from None
        log.debug(
            "cast.request",
            method=method,
            path=path,
            http_status=response.status_code,
            elapsed_ms=elapsed_ms,
            replayed=replayed,
        )
        return result

    @staticmethod
    def _payload(response: httpx2.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    async def _on_error(self, error: CastError, *, is_send: bool) -> None:
        """A 429 pauses the bucket it concerns, so every caller (every process) waits too."""
        if not isinstance(error, CastRateLimitedError) or self._pacing is None:
            return
        wait = (
            error.retry_after if error.retry_after is not None else self.retry.default_retry_after
        )
        pacing = self._pacing
        if is_send:
            await pacing.pacer.pause(pacing.account_bucket, pacing.send_limit, wait)
        else:
            await pacing.pacer.pause(pacing.ip_bucket, pacing.ip_limit, wait)


def _first_loc(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "?"
    return ".".join(str(part) for part in errors[0]["loc"]) or "body"
