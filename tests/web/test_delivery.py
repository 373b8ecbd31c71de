"""The Delivery URL over real HTTP: signatures, replays, duplicates, size limits, bad bodies."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from castbridge.sandbox.stack import Stack, run_stack
from castbridge.store.models import Job, Message
from tests.web.support import (
    CollectErrors,
    body_of,
    count,
    foreign_signature,
    intake_rows,
    jobs_of,
    message_row,
    payload,
    post_signed,
    raw_request,
)

NOTHING = {"messages": 0, "jobs": 0, "seen_webhooks": 0}
SMALL_LIMIT = 2048


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- accepted ------------------------------------------------------------------------------


async def test_signed_delivery_is_stored_with_a_send_job(tmp_path: Path) -> None:
    """An Ed25519-signed post for an installed location is 200, stored queued with a send job."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        sent = payload(stack)
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "ok": True,
            "messageId": sent["messageId"],
            "status": "queued",
            "duplicate": False,
            "error": None,
        }
        row = await message_row(stack, sent["messageId"])
        assert row is not None
        assert (row.status, row.location_id) == ("queued", sent["locationId"])
        assert row.e164
        assert stack.resources.vault.open(row.phone_enc) == "+639171234567"
        assert "+639171234567" not in row.phone_enc  # stored encrypted
        assert row.phone_hash == stack.resources.vault.hash("+639171234567")
        assert [(job.kind, job.state) for job in await jobs_of(stack, sent["messageId"])] == [
            ("send", "queued")
        ]


async def test_signed_delivery_with_fresh_timestamp_and_webhook_id_is_accepted(
    tmp_path: Path,
) -> None:
    """A signed post carrying a current `timestamp` and a `webhookId` is accepted and recorded."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        sent = payload(stack, webhook_fields=True)
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
        assert await intake_rows(stack) == {"messages": 1, "jobs": 1, "seen_webhooks": 0}


# --- refused before anything is stored -----------------------------------------------------


def _unsigned(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {}


def _tampered(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"hello from the tests", b"HELLO from the tests"), stack.ghl.sign(body)


def _reserialised(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    # Same JSON value, other bytes: what a proxy (or a careless verifier) re-encoding it makes.
    return json.dumps(json.loads(body)).encode(), stack.ghl.sign(body)


def _wrong_key(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"X-GHL-Signature": foreign_signature(body)}


def _not_available(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"X-GHL-Signature": "N/A"}


def _empty_header(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"X-GHL-Signature": ""}


def _rsa_only(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, stack.ghl.sign(body, ed25519=False, rsa=True)


def _bad_ed25519_with_good_rsa(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {
        "X-GHL-Signature": foreign_signature(body),
        **stack.ghl.sign(body, ed25519=False, rsa=True),
    }


def _not_base64(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"X-GHL-Signature": "not base64 at all!"}


def _truncated(stack: Stack, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"X-GHL-Signature": stack.ghl.sign(body)["X-GHL-Signature"][:40]}


Breaker = Callable[[Stack, bytes], tuple[bytes, dict[str, str]]]


@pytest.mark.parametrize(
    "breaker",
    [
        _unsigned,
        _tampered,
        _reserialised,
        _wrong_key,
        _not_available,
        _empty_header,
        _rsa_only,
        _bad_ed25519_with_good_rsa,
        _not_base64,
        _truncated,
    ],
    ids=lambda breaker: breaker.__name__.strip("_"),
)
async def test_unverifiable_delivery_is_401_and_stores_nothing(
    tmp_path: Path, breaker: Breaker
) -> None:
    """A Delivery post without a valid Ed25519 signature over its exact bytes: 401, no rows."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        sent = payload(stack, webhook_fields=True)
        body, headers = breaker(stack, body_of(sent))
        response = await http.post(
            stack.delivery_url,
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"].startswith("webhook signature rejected")
        assert await intake_rows(stack) == NOTHING
        assert not stack.cast.messages


async def test_unsigned_delivery_accepted_when_signatures_not_required(tmp_path: Path) -> None:
    """With GHL_REQUIRE_SIGNATURE=false (local testing only) an unsigned post is accepted."""
    async with (
        run_stack(tmp_path, ghl_require_signature=False, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        sent = payload(stack)
        response = await http.post(
            stack.delivery_url,
            content=body_of(sent),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
        assert await count(stack, Message) == 1


@pytest.mark.parametrize(
    "age", [timedelta(minutes=10), timedelta(hours=1, minutes=10), -timedelta(minutes=6)], ids=str
)
async def test_old_timestamp_is_accepted_because_retries_resend_the_same_bytes(
    tmp_path: Path, age: timedelta
) -> None:
    """HighLevel retries a 429 with the same signed bytes ~10 minutes later, for over an hour
    (ghl.md §4): such a post is stored and queued. It used to be refused 401 for its age, and
    the message was lost."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        sent = payload(stack, webhook_fields=True)
        sent["timestamp"] = _iso(datetime.now(UTC) - age)
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
        assert await count(stack, Message) == 1


async def test_unparseable_timestamp_is_ignored(tmp_path: Path) -> None:
    """The timestamp's format is not guaranteed (ghl.md §2): one that does not parse is
    ignored and the message is queued; it used to be 422 and stay pending in HighLevel."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        sent = payload(stack, webhook_fields=True)
        sent["timestamp"] = "yesterday"
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.status_code == 200
        assert response.json()["status"] == "queued"


async def test_configured_age_cap_stores_and_reports_a_late_post(tmp_path: Path) -> None:
    """With CASTBRIDGE_WEBHOOK_MAX_AGE_SECONDS set, a post older than it is still stored and
    answered 200, and reported failed with how late it was (never a 4xx)."""
    async with (
        run_stack(tmp_path, run_worker=False, webhook_max_age_seconds=7200) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        sent = payload(stack, webhook_fields=True)
        sent["timestamp"] = _iso(datetime.now(UTC) - timedelta(hours=3))
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.status_code == 200
        assert response.json()["status"] == "failed"
        assert "3.0 h after" in response.json()["error"]


# --- duplicates ----------------------------------------------------------------------------


async def test_repeated_webhook_id_is_a_duplicate(tmp_path: Path) -> None:
    """The same signed body (same `webhookId`) posted twice: both 200, one message, one job."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        body = body_of(payload(stack, webhook_fields=True))
        first = await post_signed(http, stack, stack.delivery_url, body)
        second = await post_signed(http, stack, stack.delivery_url, body)
        assert first.status_code == second.status_code == 200
        assert first.json()["duplicate"] is False
        assert second.json()["duplicate"] is True
        assert second.json()["status"] == "duplicate"
        assert await intake_rows(stack) == {"messages": 1, "jobs": 1, "seen_webhooks": 0}


async def test_repeated_message_id_is_a_duplicate(tmp_path: Path) -> None:
    """A HighLevel retry (same `messageId`, no `webhookId`): 200 duplicate, one message, one job."""
    async with run_stack(tmp_path) as stack, httpx2.AsyncClient(timeout=10) as http:
        await stack.install()
        sent = payload(stack)
        first = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        retry = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert first.status_code == retry.status_code == 200
        assert retry.json() == {
            "ok": True,
            "messageId": sent["messageId"],
            "status": "duplicate",
            "duplicate": True,
            "error": None,
        }
        assert await count(stack, Message) == 1
        # One job row carries the message step by step.
        assert await count(stack, Job, Job.message_id.is_not(None)) == 1


async def test_same_message_id_with_new_webhook_id_is_a_duplicate(tmp_path: Path) -> None:
    """A retry that carries a fresh `webhookId` is still caught by the `messageId`."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        sent = payload(stack, webhook_fields=True)
        first = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        retry = await post_signed(
            http, stack, stack.delivery_url, body_of({**sent, "webhookId": "another-webhook-id"})
        )
        assert first.status_code == retry.status_code == 200
        assert retry.json()["duplicate"] is True
        assert await count(stack, Message) == 1
        assert await count(stack, Job) == 1


# --- size limits ---------------------------------------------------------------------------


@pytest.fixture
async def small_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack whose castbridge takes at most SMALL_LIMIT bytes per request body."""
    async with run_stack(tmp_path, max_body_bytes=SMALL_LIMIT, run_worker=False) as stack:
        await stack.install()
        yield stack


def _oversize(stack: Stack) -> bytes:
    big = payload(stack, message="x" * (SMALL_LIMIT + 100))
    return body_of(big)


async def test_oversize_body_is_413(small_stack: Stack) -> None:
    """A correctly signed body larger than CASTBRIDGE_MAX_BODY_BYTES is 413 and stores nothing."""
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await post_signed(
            http, small_stack, small_stack.delivery_url, _oversize(small_stack)
        )
        assert response.status_code == 413
        assert str(SMALL_LIMIT) in response.json()["error"]
        assert await intake_rows(small_stack) == NOTHING


async def test_body_of_exactly_the_limit_is_read(small_stack: Stack) -> None:
    """A body of exactly CASTBRIDGE_MAX_BODY_BYTES is within the limit."""
    sent = payload(small_stack, message="")
    filler = SMALL_LIMIT - len(body_of({**sent, "message": ""}))
    body = body_of({**sent, "message": "y" * filler})
    assert len(body) == SMALL_LIMIT
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await post_signed(http, small_stack, small_stack.delivery_url, body)
        # Accepted at the edge; 450 "y"s is too long for Cast, so it is stored as refused.
        assert response.status_code == 200, response.text
        assert await count(small_stack, Message) == 1


async def test_declared_oversize_is_413_before_the_body_arrives(small_stack: Stack) -> None:
    """A Content-Length over the limit is refused at once, whatever bytes actually follow."""
    body = b'{"messageId":"x"}'
    head = (
        b"POST /webhooks/ghl/delivery HTTP/1.1\r\nHost: castbridge\r\n"
        b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    status, answer = await raw_request(small_stack.url, head, body)
    assert status == 413
    assert str(SMALL_LIMIT) in json.loads(answer)["error"]
    assert await intake_rows(small_stack) == NOTHING


async def test_chunked_oversize_without_content_length_is_413(small_stack: Stack) -> None:
    """A chunked body with no Content-Length is counted as it streams and refused with 413."""
    body = _oversize(small_stack)
    headers = {"Content-Type": "application/json", **small_stack.ghl.sign(body)}

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(small_stack.delivery_url, content=chunks(), headers=headers)
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert response.status_code == 413
        assert await intake_rows(small_stack) == NOTHING


async def test_endless_chunked_stream_is_cut_off_with_413(small_stack: Stack) -> None:
    """A chunked stream far beyond the limit is answered 413 without reading it all."""
    head = (
        b"POST /webhooks/ghl/delivery HTTP/1.1\r\nHost: castbridge\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 1024
    body = b"".join(b"400\r\n" + chunk + b"\r\n" for _ in range(64))  # 64 KiB, never terminated
    status, _answer = await raw_request(small_stack.url, head, body)
    assert status == 413
    assert await intake_rows(small_stack) == NOTHING


async def test_sender_hanging_up_mid_body_is_not_a_server_error(small_stack: Stack) -> None:
    """A sender that disconnects mid-body stores nothing and is not logged as a server error."""
    handler = CollectErrors()
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(handler)
    try:
        port = int(small_stack.url.rsplit(":", 1)[1])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /webhooks/ghl/delivery HTTP/1.1\r\nHost: castbridge\r\n"
            b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
            b'{"messageId":"cut-'
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.3)
    finally:
        server_log.removeHandler(handler)
    assert [record.getMessage() for record in handler.records] == []
    assert await intake_rows(small_stack) == NOTHING
    async with httpx2.AsyncClient(timeout=10) as http:
        assert (await http.get(f"{small_stack.url}/healthz")).status_code == 200


async def test_events_url_has_the_same_size_limit(small_stack: Stack) -> None:
    """The app-events URL refuses an oversize body with 413 too."""
    event = small_stack.ghl.install_payload(location_id="sbxLocationBig000001")
    event["companyName"] = "z" * (SMALL_LIMIT + 10)
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await post_signed(http, small_stack, small_stack.events_url, body_of(event))
        assert response.status_code == 413


# --- malformed bodies ----------------------------------------------------------------------


MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "not-utf8": (b'{"messageId":"\xff\xfe"}', "UTF-8"),
    "latin1": ('{"message":"café"}'.encode("latin-1"), "UTF-8"),
    "invalid-json": (b'{"messageId": "abc",}', "not valid JSON"),
    "truncated-json": (b'{"messageId": "ab', "not valid JSON"),
    "nan": (b'{"messageId": NaN}', "not valid JSON"),
    "array": (b'[{"messageId":"abc"}]', "JSON object"),
    "string": (b'"hello"', "JSON object"),
    "null": (b"null", "JSON object"),
    "nested-lists": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "nested-in-field": (
        b'{"messageId":"m1","locationId":"l1","phone":"+639171234567","x":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        "nested too deeply",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=str)
async def test_malformed_body_is_400_with_a_json_error(tmp_path: Path, case: str) -> None:
    """A signed body that is not a UTF-8 JSON object is 400 with a JSON error, never 5xx."""
    raw, expected = MALFORMED[case]
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        response = await post_signed(http, stack, stack.delivery_url, raw)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/json"
        assert expected in response.json()["error"]
        assert await intake_rows(stack) == NOTHING


async def test_moderately_nested_extra_field_is_never_5xx(tmp_path: Path) -> None:
    """Nesting just under Python's recursion limit in an ignored field is handled, never 5xx."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        statuses = set()
        for depth in (200, 500, 900, 990, 1100):
            sent = payload(stack)
            raw = body_of(sent)[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
            response = await post_signed(http, stack, stack.delivery_url, raw)
            statuses.add(response.status_code)
            assert response.status_code in (200, 400, 422), (depth, response.text)
        assert 200 in statuses


@pytest.mark.parametrize(
    "missing", [["messageId"], ["locationId"], ["messageId", "locationId"]], ids="+".join
)
async def test_without_a_readable_message_or_location_id_it_is_400(
    tmp_path: Path, missing: list[str]
) -> None:
    """Without a readable messageId or locationId a post can never succeed: 400, nothing
    stored (the only 4xx a signed delivery gets)."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        sent: dict[str, Any] = payload(stack)
        for name in missing:
            del sent[name]
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.status_code == 400, response.text
        assert "messageId and locationId" in response.json()["error"]
        assert await intake_rows(stack) == NOTHING


BAD_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "no-phone": ({"phone": None}, "INVALID_NUMBER"),
    "phone-object": ({"phone": {"secret": "s3cr3t-value"}}, "INVALID_NUMBER"),
    "bad-phone": ({"phone": "12345"}, "INVALID_NUMBER"),
    "null-message": ({"message": None}, "EMPTY_MESSAGE"),
    "message-number": ({"message": 42}, "INVALID_MESSAGE"),
    "over-long": ({"message": "x" * 30_000}, "MESSAGE_TOO_LONG"),
    "attachments-string": ({"message": "", "attachments": "nope"}, "EMPTY_MESSAGE"),
    "type-email": ({"type": "Email"}, "UNSUPPORTED_TYPE"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS), ids=str)
async def test_a_bad_field_is_stored_answered_200_and_reported_failed(
    tmp_path: Path, case: str
) -> None:
    """A signed post whose ids are readable is never 4xx: a missing or odd phone, a null or
    non-text message, an over-long text are stored, answered 200 and reported failed with a
    reason, because a 4xx leaves the message pending in HighLevel with no explanation (ghl.md
    §2 step 2). These were 422 before. Values are never echoed back."""
    fields, code = BAD_FIELDS[case]
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        sent = {**payload(stack), **fields}
        response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "failed"
        assert "s3cr3t-value" not in response.text
        row = await message_row(stack, sent["messageId"])
        assert row is not None
        assert (row.status, row.error_code) == ("failed", code)
        assert [job.kind for job in await jobs_of(stack, sent["messageId"])] == ["report"]


async def test_a_number_refused_before_it_was_read_is_kept_as_it_came(tmp_path: Path) -> None:
    """The phone is sealed once: as E.164 when it reads as one, otherwise as it came (a post
    refused before its number was read, or for the number itself), never left out."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        for fields, stored in (({"phone": "12345"}, "12345"), ({"type": "Email"}, None)):
            sent = {**payload(stack), **fields}
            response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
            assert response.json()["status"] == "failed", response.text
            row = await message_row(stack, sent["messageId"])
            assert row is not None
            assert stack.resources.vault.open(row.phone_enc) == (stored or sent["phone"])
            assert (row.e164, row.phone_hash) == (False, None)
            assert row.phone_masked
            assert row.phone_masked != (stored or sent["phone"])


@pytest.mark.parametrize(
    ("text", "sent_as"),
    [
        # JSON escapes, as HighLevel's JavaScript writes them.
        (r"nul\u0000 in the middle", r"nul in the middle"),
        (r"cut emoji \ud83d end", r"cut emoji \ufffd end"),
        (r"  spaces and\nnewlines kept  \n", r"  spaces and\nnewlines kept  \n"),
    ],
    ids=["nul", "lone-surrogate", "untrimmed"],
)
async def test_recoverable_text_is_cleaned_not_refused(
    tmp_path: Path, text: str, sent_as: str
) -> None:
    """U+0000 is dropped and a lone surrogate (JavaScript's cut emoji) replaced, then the text
    is sent; nothing is trimmed (ghl.md §2). PostgreSQL cannot even store U+0000."""
    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        await stack.install()
        sent = payload(stack)
        raw = body_of(sent).replace(b'"hello from the tests"', b'"' + text.encode() + b'"')
        response = await post_signed(http, stack, stack.delivery_url, raw)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
        row = await message_row(stack, sent["messageId"])
        assert row is not None
        assert row.text == json.loads(b'"' + sent_as.encode() + b'"')


async def test_database_locked_is_429_with_retry_after_within_two_seconds(tmp_path: Path) -> None:
    """Another process holding SQLite's write lock: the post is answered 429 + Retry-After in
    about the busy timeout (HighLevel retries only a 429; a 5xx is final, ghl.md §2). It used
    to wait 30 s on SQLite's busy timeout and then answer 503, losing the message."""
    import sqlite3
    import time

    async with (
        run_stack(tmp_path, run_worker=False) as stack,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        await stack.install()
        database = stack.settings.effective_database_url.split("///", 1)[1]
        blocker = sqlite3.connect(database, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            sent = payload(stack)
            started = time.monotonic()
            response = await post_signed(http, stack, stack.delivery_url, body_of(sent))
            elapsed = time.monotonic() - started
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert response.status_code == 429, response.text
        assert int(response.headers["retry-after"]) > 0
        assert elapsed < 2.5
        retry = await post_signed(http, stack, stack.delivery_url, body_of(sent))
        assert retry.status_code == 200
        assert retry.json()["status"] == "queued"
