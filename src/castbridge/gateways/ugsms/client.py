"""UgsmsClient: typed calls to UGSMS's v2 API over an httpx2.AsyncClient it is handed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx2
import stamina
from pydantic import ValidationError

from castbridge.gateways.ugsms.errors import (
    UgsmsError,
    UgsmsRateLimitedError,
    UgsmsValidationError,
    bad_response,
    translate_error,
    transport_error,
)
from castbridge.gateways.ugsms.models import (
    BalanceResponse,
    BulkBody,
    BulkItem,
    BulkResponse,
    SendBody,
    SendResponse,
    flag,
)
from castbridge.gateways.ugsms.retry import RATE_WINDOW_SECONDS, RetryPolicy
from castbridge.gateways.ugsms.settings import DEFAULT_API_URL, MAX_SENDER_ID_CHARS
from castbridge.limits import Limit, Pacer
from castbridge.logging import get_logger, mask_phone, scrub_text

__all__ = ["DEFAULT_API_URL", "UgsmsClient", "UgsmsPacing"]

log = get_logger("castbridge.gateways.ugsms")
T = TypeVar("T")
Kind = Literal["send", "bulk", "balance"]

# How much of an unexpected body goes into a log line (scrubbed): enough to recognise it.
_LOG_EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class UgsmsPacing:
    """UGSMS's one limit (60 requests per minute per key) as a bucket of a `Pacer`: every request
    takes one token, sends and balance checks alike. A `Throttled` propagates before the request
    leaves."""

    pacer: Pacer
    bucket: str
    limit: Limit


class UgsmsClient:
    """One UGSMS account (one v2 API key) over a shared `httpx2.AsyncClient`.

    The key goes in the `X-API-Key` header only: v2 also accepts an `api_key` parameter, but a
    key in a URL ends up in proxy and server logs. Every method raises a `UgsmsError` (see
    `castbridge.gateways.ugsms.errors`) on failure, or `Throttled` from the pacer.
    """

    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        api_key: str,
        base_url: str = DEFAULT_API_URL,
        pacing: UgsmsPacing | None = None,
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
        self._timeout = timeout
        self._clock = clock

    def __repr__(self) -> str:
        return f"UgsmsClient(base_url={self._base_url!r}, api_key='***')"

    # --- calls ----------------------------------------------------------------------------

    async def send(
        self, numbers: str | Sequence[str], message_body: str, *, sender_id: str | None = None
    ) -> SendResponse:
        """`POST /sms/send`: one text to one or more local numbers (`07…`), comma-separated.

        Accepted only on HTTP 2xx with `success == true`. Never retried once it may have left.
        """
        joined = numbers if isinstance(numbers, str) else ",".join(numbers)
        _check_sender(sender_id)
        try:
            body = SendBody(numbers=joined, message_body=message_body, sender_id=sender_id or None)
        except ValidationError as exc:
            raise _invalid(exc) from None
        result = await self._call("POST", "/sms/send", "send", body.to_json(), _send_model)
        # DEBUG: the worker's `gateway_accepted` line says the same at INFO, once per send.
        log.debug(
            "ugsms.send.accepted",
            to=mask_phone(joined),
            message_id=result.message_id,
            recipients=result.recipients,
        )
        return result

    async def send_bulk(
        self,
        messages: Sequence[tuple[str, str]],
        *,
        sender_id: str | None = None,
        reference: str | None = None,
    ) -> BulkResponse:
        """`POST /sms/send/bulk` (uncertain: one public client uses it): one text per number,
        results mapped back by `index`. A request-level refusal raises; an ambiguous answer
        raises with `outcome_unknown` (then every message of the batch is unknown)."""
        if not messages:
            raise UgsmsValidationError(
                "a bulk request needs at least one message", code="VALIDATION_ERROR"
            )
        _check_sender(sender_id)
        try:
            body = BulkBody(
                messages=[BulkItem(number=to, message_body=text) for to, text in messages],
                sender_id=sender_id or None,
                reference=reference,
            )
        except ValidationError as exc:
            raise _invalid(exc) from None
        size = len(messages)

        def model(payload: dict[str, Any], success: bool) -> BulkResponse:
            return BulkResponse.from_payload(payload, size, success)

        result = await self._call("POST", "/sms/send/bulk", "bulk", body.to_json(), model)
        log.info(
            "ugsms.bulk.done",
            size=size,
            accepted=sum(1 for o in result.outcomes if o.accepted),
            refused=sum(1 for o in result.outcomes if o.accepted is False),
            unknown=len(result.unknown),
        )
        return result

    async def balance(self) -> BalanceResponse:
        """`GET /account/balance`: also the cheap call that proves a key works."""
        return await self._call("GET", "/account/balance", "balance", None, _balance_model)

    # --- plumbing -------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        kind: Kind,
        json_body: dict[str, Any] | None,
        model: Callable[[dict[str, Any], bool], T | None],
    ) -> T:
        """One logical call, retried per `self.retry` (see the comment on RetryPolicy)."""
        policy = self.retry
        started = self._clock()
        retries = 0

        def should_retry(exc: Exception) -> bool | float:
            """stamina's backoff hook: False to give up, else the exact seconds to wait."""
            nonlocal retries
            if not isinstance(exc, UgsmsError) or not exc.retryable or exc.outcome_unknown:
                return False  # a Throttled from the pacer is never retried in here either
            if isinstance(exc, UgsmsRateLimitedError):
                wait = exc.retry_after
                if wait is None:
                    wait = policy.default_retry_after
            else:
                wait = policy.backoff(retries + 1)
            if self._clock() - started + wait > policy.max_total_seconds:
                return False
            retries += 1
            log.info(
                "ugsms.retry",
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
                return await self._once(method, path, kind, json_body, model)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _once(
        self,
        method: str,
        path: str,
        kind: Kind,
        json_body: dict[str, Any] | None,
        model: Callable[[dict[str, Any], bool], T | None],
    ) -> T:
        is_send = kind != "balance"
        pacing = self._pacing
        if pacing is not None:
            # One token per request, a bulk included: UGSMS meters requests, not messages.
            await pacing.pacer.take(pacing.bucket, pacing.limit)
        headers = {"X-API-Key": self._api_key, "Accept": "application/json"}
        extra: dict[str, Any] = {} if self._timeout is None else {"timeout": self._timeout}
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method, self._base_url + path, json=json_body, headers=headers, **extra
            )
        except httpx2.TransportError as exc:
            failure = transport_error(exc, send=is_send)
            log.warning(
                "ugsms.request.failed",
                method=method,
                path=path,
                code=failure.code,
                outcome_unknown=failure.outcome_unknown,
            )
            raise failure from exc
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        try:
            result = self._read(response, kind, model)
        except UgsmsError as error:
            await self._after(response, error)
            log.warning(
                "ugsms.request.error",
                method=method,
                path=path,
                http_status=error.http_status,
                code=error.code,
                error=error.message,
                outcome_unknown=error.outcome_unknown,
                pauses_account=error.pauses_account,
                elapsed_ms=elapsed_ms,
            )
            raise
        await self._after(response, None)
        log.debug(
            "ugsms.request",
            method=method,
            path=path,
            http_status=response.status_code,
            elapsed_ms=elapsed_ms,
        )
        return result

    def _read(
        self,
        response: httpx2.Response,
        kind: Kind,
        model: Callable[[dict[str, Any], bool], T | None],
    ) -> T:
        """The one tolerant parser: success only on HTTP 2xx with `success == true` (for a read
        without a flag: a readable body); `success: false` is a refusal with its reason."""
        status = response.status_code
        is_send = kind != "balance"
        if not 200 <= status < 300:
            raise translate_error(status, response.content, response.headers, send=is_send)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._log_unexpected(response)
            what = "a body that is not a JSON object" if response.content else "an empty body"
            raise bad_response(what, http_status=status, send=is_send)
        success = flag(payload.get("success"))
        if success is False:
            if kind == "bulk":
                partial = model(payload, False)
                if isinstance(partial, BulkResponse) and any(
                    o.accepted is not None for o in partial.outcomes
                ):
                    return partial  # per-message refusals: each message keeps its own outcome
            raise translate_error(status, response.content, response.headers, send=is_send)
        if success is None and kind != "balance":
            # An acceptance must say so; without the flag UGSMS may or may not have sent it.
            self._log_unexpected(response)
            raise bad_response("a body without a success flag", http_status=status, send=True)
        result = model(payload, True)
        if result is None:
            self._log_unexpected(response)
            raise bad_response("a body we cannot read", http_status=status, send=is_send)
        return result

    async def _after(self, response: httpx2.Response, error: UgsmsError | None) -> None:
        """Respect UGSMS's own count: a 429 pauses the key's bucket for Retry-After; an answer
        saying `x-ratelimit-remaining: 0` pauses it for a whole window, because we cannot know
        when UGSMS's minute started and 60 s from now is past the end of any minute that
        contains this request. Every process sharing the pacer waits too (other programs may
        use the same key, which is how UGSMS's count can run ahead of ours)."""
        pacing = self._pacing
        if pacing is None:
            return
        if isinstance(error, UgsmsRateLimitedError):
            wait = error.retry_after
            if wait is None:
                wait = self.retry.default_retry_after
            await pacing.pacer.pause(pacing.bucket, pacing.limit, wait)
            return
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.strip() in ("0", "-0"):
            log.info("ugsms.ratelimit.exhausted", pause_seconds=RATE_WINDOW_SECONDS)
            await pacing.pacer.pause(pacing.bucket, pacing.limit, RATE_WINDOW_SECONDS)

    @staticmethod
    def _log_unexpected(response: httpx2.Response) -> None:
        # gateways.md §4 asks for the raw body of an unexpected answer; a scrubbed excerpt is
        # enough to recognise it without logging numbers or a whole body.
        excerpt = response.content[:_LOG_EXCERPT_CHARS].decode("utf-8", "replace")
        log.warning(
            "ugsms.response.unexpected",
            http_status=response.status_code,
            content_type=response.headers.get("content-type"),
            length=len(response.content),
            excerpt=scrub_text(" ".join(excerpt.split())),
        )


def _check_sender(sender_id: str | None) -> None:
    if sender_id and len(sender_id) > MAX_SENDER_ID_CHARS:
        raise UgsmsValidationError(
            f"The sender ID {sender_id[:20]!r} is too long for UGSMS: at most "
            f"{MAX_SENDER_ID_CHARS} characters.",
            code="INVALID_SENDER_ID",
        )


def _invalid(exc: ValidationError) -> UgsmsValidationError:
    """A body UGSMS would refuse (an empty number or text), as our validation error."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return UgsmsValidationError(f"UGSMS needs {where}: {first['msg']}", code="VALIDATION_ERROR")


def _send_model(payload: dict[str, Any], success: bool) -> SendResponse:
    return SendResponse.from_payload(payload)


def _balance_model(payload: dict[str, Any], success: bool) -> BalanceResponse | None:
    return BalanceResponse.from_payload(payload)
