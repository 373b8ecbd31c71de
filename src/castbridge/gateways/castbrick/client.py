"""CastBrickClient: typed calls to CastBrick's API over an httpx2.AsyncClient it is handed."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import stamina
from pydantic import BaseModel, ValidationError

from castbridge.gateways.castbrick.errors import (
    CastBrickBadResponseError,
    CastBrickBasePathError,
    CastBrickError,
    CastBrickRateLimitedError,
    CastBrickValidationError,
    cut,
    translate_error,
    transport_error,
)
from castbridge.gateways.castbrick.models import (
    MAX_PAGE_SIZE,
    BalanceResponse,
    MessagePage,
    SendBody,
    SendResponse,
    SmsMessage,
    Webhook,
    WebhookPage,
)
from castbridge.gateways.castbrick.settings import DEFAULT_API_URL, BasePath
from castbridge.limits import Limit, Pacer
from castbridge.logging import get_logger, mask_phone

__all__ = ["CastBrickClient", "CastBrickPacing", "Probe", "RetryPolicy"]

log = get_logger("castbridge.gateways.castbrick")
M = TypeVar("M", bound=BaseModel)

# Probe order. Both are tried until one answers as CastBrick; the bare host goes first because
# the docs page and the JS SDK's notes ("no /v1") say so, so a server answering on both (like
# the official mock) keeps the documented form.
BASE_PATHS: tuple[BasePath, ...] = ("", "/v1")
BALANCE_PATH = "/billing/balance"


@dataclass(frozen=True, slots=True)
class CastBrickPacing:
    """CastBrick's one known limit, requests per API key, as a bucket of a `Pacer`: every
    request takes a token first, and a `Throttled` propagates before the request leaves."""

    pacer: Pacer
    bucket: str
    limit: Limit


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often one call is retried in-process; `attempts` counts the first try, and the
    default (1) never retries: the worker keeps its own persisted backoff.

    CastBrick has no idempotency key, so a send is retried only when it provably never left:
    a connect error, a pool timeout or a 429 (the limiter answers before anything is
    processed). Reads are also retried on 5xx and timeouts. A 429 waits its `Retry-After`
    (`default_retry_after` without one); other failures back off exponentially. No retry
    starts that would end after `max_total_seconds`.
    """

    attempts: int = 1
    max_total_seconds: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    backoff_jitter: float = 0.5
    default_retry_after: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.max_total_seconds <= 0:
            raise ValueError("max_total_seconds must be positive")
        if min(self.backoff_initial, self.backoff_max, self.backoff_jitter) < 0:
            raise ValueError("backoff values must not be negative")
        if self.default_retry_after < 0:
            raise ValueError("default_retry_after must not be negative")

    def backoff(self, retry_number: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** (retry_number - 1))
        return base + random.uniform(0, self.backoff_jitter)


@dataclass(frozen=True, slots=True)
class Probe:
    """Which base path answered as CastBrick, and what it said: the balance, or the 401/403
    the key got (the path is known either way)."""

    base_path: BasePath
    balance: BalanceResponse | None
    error: CastBrickError | None = None


def _iso(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _payload(response: httpx2.Response) -> Any:
    try:
        return json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


_NOT_JSON = object()


class CastBrickClient:
    """One CastBrick account (one API key) over a shared `httpx2.AsyncClient`.

    `api_url` is the host (`https://api.castbrick.co`); `base_path` the prefix its API answers
    on (`""` or `"/v1"`). With `base_path=None` the first call probes for it, once per client,
    in memory. An `api_url` ending in `/v1` means `base_path="/v1"` unless one is given.
    Every method raises a `CastBrickError` on failure (or `Throttled` before a request left).
    """

    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        api_key: str,
        api_url: str = DEFAULT_API_URL,
        base_path: BasePath | None = None,
        pacing: CastBrickPacing | None = None,
        retry: RetryPolicy | None = None,
        timeout_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not api_key or any(ch.isspace() for ch in api_key):
            raise ValueError("api_key must be a non-empty string without whitespace")
        host = api_url.rstrip("/")
        if host.endswith("/v1"):
            host = host[: -len("/v1")]
            base_path = "/v1" if base_path is None else base_path
        self._http = http
        self._api_key = api_key
        self._host = host
        self._base_path: BasePath | None = base_path
        self._pacing = pacing
        self.retry = retry if retry is not None else RetryPolicy()
        self._timeout = timeout_seconds
        self._clock = clock
        self._probe_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"CastBrickClient(api_url={self._host!r}, base_path={self._base_path!r})"

    @property
    def base_path(self) -> BasePath | None:
        return self._base_path

    # --- base path --------------------------------------------------------------------------

    async def probe(self) -> Probe:
        """`GET /billing/balance` on the bare host, then on `/v1`, until one answers as
        CastBrick: a JSON 2xx, or a JSON 401/403 for a key it refuses (gateways.md §2,
        uncertain base path). A 404 (or a non-JSON page) means "not here". Raises the
        transient error when a candidate could not be judged (429, 5xx, network) and none
        answered, `CastBrickBasePathError` when every candidate said "not here"."""
        undecided: CastBrickError | None = None
        for candidate in BASE_PATHS:
            try:
                response = await self._send_once(
                    "GET", self._host + candidate + BALANCE_PATH, send=False
                )
            except CastBrickError as exc:
                undecided = undecided or exc
                continue
            payload = _payload(response)
            status = response.status_code
            if 200 <= status < 300 and isinstance(payload, dict):
                self._decided(candidate, status)
                try:
                    balance = BalanceResponse.model_validate(payload)
                except ValidationError:
                    balance = None
                return Probe(candidate, balance)
            if status in (401, 403) and isinstance(payload, dict):
                self._decided(candidate, status)
                error = translate_error(status, response.content, response.headers, send=False)
                return Probe(candidate, None, error)
            if status == 429 or status >= 500 or status == 408:
                error = translate_error(status, response.content, response.headers, send=False)
                await self._on_error(error)
                undecided = undecided or error
        if undecided is not None:
            raise undecided
        raise CastBrickBasePathError(
            f"Neither {self._host}/v1 nor {self._host} answers like the CastBrick API; "
            "check the account's API URL.",
            code="BASE_PATH_NOT_FOUND",
        )

    def _decided(self, base_path: BasePath, status: int) -> None:
        if base_path != self._base_path:
            log.info("castbrick.base_path.found", base_path=base_path, http_status=status)
        self._base_path = base_path

    async def ensure_base_path(self) -> BasePath:
        """The base path, probed once (concurrent first calls share one probe)."""
        if self._base_path is not None:
            return self._base_path
        async with self._probe_lock:
            if self._base_path is None:
                await self.probe()
        assert self._base_path is not None
        return self._base_path

    # --- sends ------------------------------------------------------------------------------

    async def send(
        self, to: str, content: str, *, sender_id: str | None, fallback: bool
    ) -> SendResponse:
        """`POST /sms/send` to exactly one recipient (gateways.md §6: batch id = message id).

        Success needs HTTP 2xx, a JSON object without an `error`, and a `messageId` (or `id`);
        anything else raises, with `outcome_unknown` where CastBrick may have taken it.
        """
        body = SendBody(recipients=[to], content=content, sender_id=sender_id, fallback=fallback)
        result = await self._request(
            "POST", "/sms/send", SendResponse, json_body=body.to_json(), send=True
        )
        if result.error:
            # The OpenAPI file gives the success body a nullable `error`: set, it is an error,
            # and we cannot tell whether anything went out.
            raise CastBrickBadResponseError(
                f"CastBrick answered the send with an error: {cut(result.error)}",
                code="SEND_ERROR_IN_SUCCESS",
                outcome_unknown=True,
            )
        if not result.message_id:
            raise CastBrickBadResponseError(
                "CastBrick accepted the send without a messageId",
                code="INVALID_RESPONSE",
                outcome_unknown=True,
            )
        if result.recipient_count == 0:
            raise CastBrickValidationError(
                "CastBrick accepted the request but dispatched it to no recipient",
                code="SMS.NoRecipients",
            )
        # DEBUG: the worker's `gateway_accepted` line says the same at INFO, once per send.
        log.debug(
            "castbrick.send.accepted",
            to=mask_phone(to),
            message_id=result.message_id,
            status=result.status,
        )
        return result

    # --- reads ------------------------------------------------------------------------------

    async def get_message(self, message_id: str) -> SmsMessage:
        """`GET /sms/{id}` (in the OpenAPI file; no SDK calls it, so it is a bonus path)."""
        if not message_id:
            raise ValueError("message_id must not be empty")
        return await self._request("GET", f"/sms/{quote(message_id, safe='')}", SmsMessage)

    async def list_messages(
        self,
        *,
        phone: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        status: str | None = None,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
    ) -> MessagePage:
        """`GET /sms?phone=&from=&to=&status=&pageNumber=&pageSize=` (≤ 100 a page)."""
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page must be >= 1 and page_size 1-{MAX_PAGE_SIZE}")
        params = {"pageNumber": str(page), "pageSize": str(page_size)}
        if phone:
            params["phone"] = phone
        if start is not None:
            params["from"] = _iso(start)
        if end is not None:
            params["to"] = _iso(end)
        if status:
            params["status"] = status
        return await self._request("GET", "/sms", MessagePage, params=params)

    async def balance(self) -> BalanceResponse:
        return await self._request("GET", BALANCE_PATH, BalanceResponse)

    # --- webhooks ---------------------------------------------------------------------------

    async def list_webhooks(self, *, page: int = 1, page_size: int = MAX_PAGE_SIZE) -> WebhookPage:
        params = {"pageNumber": str(page), "pageSize": str(page_size)}
        return await self._request("GET", "/webhooks", WebhookPage, params=params)

    async def create_webhook(self, endpoint: str, event_type: str) -> str | None:
        """`POST /webhooks {endpoint, eventType}` → the new id as a JSON string (or an object
        with `id`); None when the answer carries no id."""
        response = await self._call(
            "POST", "/webhooks", json_body={"endpoint": endpoint, "eventType": event_type}
        )
        payload = _payload(response)
        if isinstance(payload, str | int) and not isinstance(payload, bool) and str(payload):
            return cut(str(payload), 200)
        if isinstance(payload, dict):
            found = payload.get("id") or payload.get("webhookId")
            if isinstance(found, str | int) and not isinstance(found, bool):
                return cut(str(found), 200)
        if payload is _NOT_JSON:
            raise CastBrickBadResponseError(
                f"CastBrick answered HTTP {response.status_code} to a webhook registration "
                "with a body that is not JSON",
                code="INVALID_RESPONSE",
                http_status=response.status_code,
            )
        return None

    async def get_webhook(self, webhook_id: str) -> Webhook:
        return await self._request("GET", f"/webhooks/{quote(webhook_id, safe='')}", Webhook)

    async def toggle_webhook(self, webhook_id: str) -> None:
        await self._call("PUT", f"/webhooks/{quote(webhook_id, safe='')}/toggle", json_body={})

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._call("DELETE", f"/webhooks/{quote(webhook_id, safe='')}")

    # --- plumbing ---------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        send: bool = False,
    ) -> M:
        response = await self._call(method, path, json_body=json_body, params=params, send=send)
        payload = _payload(response)
        if not isinstance(payload, dict):
            what = "a body that is not JSON" if payload is _NOT_JSON else "no JSON object"
            raise CastBrickBadResponseError(
                f"CastBrick answered HTTP {response.status_code} with {what}",
                code="INVALID_RESPONSE",
                http_status=response.status_code,
                outcome_unknown=send,
            )
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise CastBrickBadResponseError(
                f"CastBrick answered HTTP {response.status_code} with an unexpected body "
                f"({exc.error_count()} problem(s), first at {_first_loc(exc)})",
                code="INVALID_RESPONSE",
                http_status=response.status_code,
                outcome_unknown=send,
            ) from None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        send: bool = False,
    ) -> httpx2.Response:
        """One logical call with a 2xx answer, retried per `self.retry`. The base path is
        probed first when unknown (a probe failure raises before the call: nothing sent)."""
        base = await self.ensure_base_path()
        url = self._host + base + path
        policy = self.retry
        started = self._clock()
        retries = 0

        def should_retry(exc: Exception) -> bool | float:
            """stamina's hook: False to give up, else the exact seconds to wait."""
            nonlocal retries
            if not isinstance(exc, CastBrickError) or not exc.retryable:
                return False  # a Throttled from the pacer is never retried in here either
            if send and exc.outcome_unknown:
                return False  # no idempotency key: an ambiguous send is reconciled, not resent
            if isinstance(exc, CastBrickRateLimitedError):
                wait = (
                    exc.retry_after if exc.retry_after is not None else policy.default_retry_after
                )
            else:
                wait = policy.backoff(retries + 1)
            if self._clock() - started + wait > policy.max_total_seconds:
                return False
            retries += 1
            log.info(
                "castbrick.retry",
                method=method,
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
                response = await self._send_once(
                    method, url, json_body=json_body, params=params, send=send
                )
                if 200 <= response.status_code < 300:
                    return response
                error = translate_error(
                    response.status_code, response.content, response.headers, send=send
                )
                await self._on_error(error)
                log.warning(
                    "castbrick.request.error",
                    method=method,
                    path=path,
                    http_status=error.http_status,
                    code=error.code,
                    error=error.message,
                    retryable=error.retryable,
                    outcome_unknown=error.outcome_unknown,
                )
                raise error
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _send_once(
        self,
        method: str,
        url: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        send: bool,
    ) -> httpx2.Response:
        """Pace, then make one request; transport failures become CastBrickUnavailableError."""
        if self._pacing is not None:
            await self._pacing.pacer.take(self._pacing.bucket, self._pacing.limit)
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        extra: dict[str, Any] = {}
        if self._timeout is not None:
            extra["timeout"] = self._timeout
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method, url, json=json_body, params=params, headers=headers, **extra
            )
        except httpx2.RequestError as exc:
            failure = transport_error(exc, send=send)
            log.warning(
                "castbrick.request.failed",
                method=method,
                code=failure.code,
                outcome_unknown=failure.outcome_unknown,
            )
            raise failure from exc
        log.debug(
            "castbrick.request",
            method=method,
            http_status=response.status_code,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

    async def _on_error(self, error: CastBrickError) -> None:
        """A 429 pauses the key's bucket, so every caller (every process) waits too."""
        if not isinstance(error, CastBrickRateLimitedError) or self._pacing is None:
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
