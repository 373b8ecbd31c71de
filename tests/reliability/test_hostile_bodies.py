"""Hostile webhook bodies: sizes up to 10 MB, broken encodings and JSON, odd unicode, random
phone numbers and random field values, all validly signed unless the size check comes first.

castbridge runs as `python -m castbridge serve` (signature checks on, worker off, so a stored
message keeps the status intake gave it) with its memory watched through /proc; the sandboxes
are served on loopback from a background thread.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from castbridge.sandbox.ghl import GHLSandbox
from tests.reliability.support import (
    FAST,
    PH_MOBILE,
    BackgroundStack,
    Castbridge,
    cast_config,
    ghl_config,
    messages_by_ghl_id,
    peak_rss_kib,
    report,
    reset_peak_rss,
    sized,
)

PHONE_EXAMPLES = sized(150, 1_500)
FIELD_EXAMPLES = sized(150, 1_500)
MIB = 1024 * 1024
ANSWERS_WITHOUT_FAULT = {200, 400, 401, 413, 422}


class Harness:
    """The background sandboxes, castbridge in its process, and a client."""

    def __init__(self, background: BackgroundStack, castbridge: Castbridge) -> None:
        self.background = background
        self.castbridge = castbridge
        self.ghl: GHLSandbox = background.stack.ghl
        self.delivery_url = f"{castbridge.url}/webhooks/ghl/delivery"
        self.events_url = f"{castbridge.url}/webhooks/ghl/events"
        self.http = httpx2.Client(timeout=60.0)

    def payload(self, **fields: Any) -> dict[str, Any]:
        base = self.ghl.delivery_payload(phone=PH_MOBILE.format(7), message="hello")
        base.update(fields)
        return base

    def post_signed(self, body: bytes, url: str | None = None) -> httpx2.Response:
        headers = {"Content-Type": "application/json", **self.ghl.sign(body)}
        return self.http.post(url or self.delivery_url, content=body, headers=headers)

    def stored(self) -> dict[str, Any]:
        return self.background.run(messages_by_ghl_id(self.background.stack.settings))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    workdir = tmp_path_factory.mktemp("bodies")
    with BackgroundStack(
        workdir / "stack",
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        with_castbridge=False,
        **FAST,
    ) as background:
        castbridge = Castbridge(background.stack.settings, workdir, CASTBRIDGE_RUN_WORKER="false")
        try:
            background.run(castbridge.start())
            background.run(background.stack.install())
            harness = Harness(background, castbridge)
            yield harness
            harness.http.close()
        finally:
            castbridge.stop()


def assert_no_unhandled_errors(castbridge: Castbridge) -> None:
    logs = castbridge.logs()
    assert "unhandled_error" not in logs, logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]


def padded(payload: bytes, size: int) -> bytes:
    """A valid JSON object of exactly `size` bytes (JSON allows trailing whitespace)."""
    assert len(payload) <= size
    return payload + b" " * (size - len(payload))


def chunks(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """`total` bytes of JSON-ish filler, produced as they are sent (never held whole)."""
    sent = 0
    while sent < total:
        piece = min(chunk, total - sent)
        yield b" " * piece
        sent += piece


def test_body_sizes_up_to_10_mb(harness: Harness) -> None:
    """0 B to 10 MB: exactly the limit is accepted, one byte more is 413, memory stays flat."""
    limit = harness.background.stack.settings.max_body_bytes
    answers: dict[str, int | None] = {}
    accepted: list[str] = []
    # Small and boundary sizes, signed, with and without Content-Length.
    answers["0 B"] = harness.post_signed(b"").status_code
    for size in [1024, limit - 1, limit]:
        payload = harness.payload()
        response = harness.post_signed(padded(harness.ghl.encode(payload), size))
        answers[f"{size} B"] = response.status_code
        if response.status_code == 200:
            accepted.append(payload["messageId"])
    warm = reset_peak_rss(harness.castbridge.pid)
    for size in [limit + 1, MIB, 10 * MIB]:
        payload = harness.ghl.encode(harness.payload())
        body = padded(payload, size)
        answers[f"{size} B"] = harness.post_signed(body).status_code
        del body
        # Streamed, chunked (no Content-Length): castbridge must stop reading at the limit.
        try:
            streamed = harness.http.post(
                harness.delivery_url,
                content=chunks(size),
                headers={"Content-Type": "application/json"},
            )
            answers[f"{size} B chunked"] = streamed.status_code
        except httpx2.TransportError:
            answers[f"{size} B chunked"] = None
    peak = peak_rss_kib(harness.castbridge.pid)
    report(
        "body sizes",
        {**answers, "rss_before_kib": warm, "peak_rss_growth_kib": peak - warm},
    )
    assert answers["0 B"] == 400
    assert all(answers[f"{size} B"] == 200 for size in [1024, limit - 1, limit]), answers
    too_large = {
        key: status
        for key, status in answers.items()
        if key.split()[0].isdigit() and int(key.split()[0]) > limit
    }
    assert set(too_large.values()) == {413}, answers
    # 10 MB read whole would raise peak memory by 10 MB or more; streaming keeps it small.
    assert peak - warm < 4 * 1024, (warm, peak)
    stored = harness.stored()
    assert all(message_id in stored for message_id in accepted)
    assert_no_unhandled_errors(harness.castbridge)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def malformed_bodies(harness: Harness) -> dict[str, bytes]:
    """Bodies that are not what a Delivery URL expects, in every way short of the size limit."""
    p = harness.payload
    enc = harness.ghl.encode

    def with_fields(**fields: Any) -> bytes:
        return enc(p(**fields))

    valid = p()
    return {
        "not UTF-8": b'{"messageId":"\xff\xfe"}',
        "latin-1 JSON": json.dumps(p(message="caf\u00e9"), ensure_ascii=False).encode("latin-1"),
        "UTF-16 JSON": json.dumps(valid).encode("utf-16"),
        "UTF-8 BOM": b"\xef\xbb\xbf" + enc(p()),
        "truncated JSON": enc(p())[:-7],
        "JSON array": b"[1,2,3]",
        "JSON string": b'"hello"',
        "JSON null": b"null",
        "two objects": enc(p()) + enc(p()),
        "NaN": with_fields().replace(b'"hello"', b"NaN"),
        "Infinity": with_fields().replace(b'"hello"', b"-Infinity"),
        "deep arrays 100k": b"[" * 100_000 + b"]" * 100_000,
        "deep objects 40k": nested(40_000),
        "deep arrays in a field": enc(p()).replace(b'"hello"', b"[" * 50_000 + b"]" * 50_000),
        "integer of 5000 digits": enc(p()).replace(b'"hello"', b"9" * 5000),
        "integer of 5000 digits as messageId": with_fields(messageId=0).replace(
            b'"messageId":0', b'"messageId":' + b"7" * 5000
        ),
        "float 1e999": enc(p()).replace(b'"hello"', b"1e999"),
        "messageId 100 KB": with_fields(messageId="m" * 100_000),
        "locationId 100 KB": with_fields(locationId="l" * 100_000),
        "phone 100 KB": with_fields(phone="9" * 100_000),
        "message 200 KB": with_fields(message="x" * 200_000),
        "message 20000 chars": with_fields(message="y" * 20_000),
        "20 attachments of 10 KB": with_fields(
            attachments=["https://a.example/" + "z" * 10_000] * 20
        ),
        "10000 attachments": with_fields(attachments=["u"] * 10_000),
        "attachments not a list": with_fields(attachments="https://a.example/x.png"),
        "messageId a number": with_fields(messageId=12345),
        "messageId an object": with_fields(messageId={"$gt": ""}),
        "message null": with_fields(message=None),
        "phone a list": with_fields(phone=["+639181234567"]),
        "extra fields 5000": with_fields(**{f"f{n}": n for n in range(5_000)}),
        "type huge": with_fields(type="SMS" * 10_000),
        "timestamp garbage": with_fields(timestamp="yesterday-ish"),
        "timestamp year 1": with_fields(timestamp="0001-01-01T00:00:00+14:00"),
        "timestamp year 9999": with_fields(timestamp="9999-12-31T23:59:59-14:00"),
        "webhookId 10 KB": with_fields(webhookId="w" * 10_000),
        "NUL in message": with_fields(message="a\u0000b"),
        "NUL in messageId": with_fields(messageId="id\u0000nul"),
        "NUL in locationId": with_fields(locationId="sbx\u0000Location"),
        "NUL in phone": with_fields(phone="+63918\u00001234567"),
        "lone surrogate in message": with_fields().replace(b'"hello"', b'"\\ud800"'),
        "lone surrogate in messageId": with_fields(messageId="X").replace(
            b'"messageId":"X"', b'"messageId":"\\udfff\\ud800"'
        ),
        "lone surrogate in phone": with_fields().replace(
            b'"phone":"+63918', b'"phone":"\\ud83d+63918'
        ),
        "surrogate pair escaped": with_fields().replace(b'"hello"', b'"\\ud83d\\ude00"'),
        "emoji ZWJ and skin tones": with_fields(
            message="\U0001f468\u200d\U0001f469\U0001f3fd\u200d\U0001f467"
        ),
        "RTL override": with_fields(message="\u202eSMS desrever", messageId="\u202erid"),
        "combining marks": with_fields(message="Z\u0351\u0352\u0353" * 500),
        "noncharacters": with_fields(message="\ufffe\uffff\U0010ffff", messageId="\uffff"),
        "private use and BOM": with_fields(message="\ue000\ufeff"),
        "fullwidth digits phone": with_fields(
            phone="\uff10\uff19\uff11\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17"
        ),
        "arabic-indic digits phone": with_fields(
            phone="\u0660\u0669\u0661\u0668\u0661\u0662\u0663\u0664\u0665\u0666\u0667"
        ),
        "GSM and UCS-2 mix at the limit": with_fields(message="\u20ac" * 449 + "\U0001f600"),
    }


def test_malformed_and_odd_bodies_never_fault(harness: Harness) -> None:
    """Non-UTF-8, broken or deeply nested JSON, huge fields, unicode edges: no 5xx, no crash."""
    answers: dict[str, int | None] = {}
    for name, body in malformed_bodies(harness).items():
        for url in (harness.delivery_url, harness.events_url):
            key = f"{url.rsplit('/', 1)[1]}: {name}"
            try:
                response = harness.post_signed(body, url)
            except httpx2.TransportError:
                answers[key] = None  # the connection was cut: no answer at all
                continue
            answers[key] = response.status_code
            assert "Traceback" not in response.text
    faults = {
        name: status for name, status in answers.items() if status not in ANSWERS_WITHOUT_FAULT
    }
    report("odd bodies", {"bodies": len(answers), **Counter(answers.values())})
    assert faults == {}, faults
    assert_no_unhandled_errors(harness.castbridge)


phones = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=20),
    st.text("0123456789", max_size=20),
    st.text("0123456789", min_size=1, max_size=16).map(lambda digits: "+" + digits),
    st.text("0123456789 -().+", max_size=25),
    st.integers(0, 10**11 - 1).map(lambda n: f"09{n:011d}"[:11]),
    st.integers(0, 10**9 - 1).map(lambda n: f"+639{n:09d}"),
)


def test_random_phone_numbers_answered_200(harness: Harness) -> None:
    """Hypothesis phone numbers in signed webhooks: 200 and stored as queued or failed, always."""
    outcomes: Counter[str] = Counter()
    sent: dict[str, str] = {}

    @given(phone=phones)
    @settings(
        max_examples=PHONE_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def attempt(phone: str) -> None:
        payload = harness.payload(phone=phone)
        response = harness.post_signed(harness.ghl.encode(payload))
        assert response.status_code == 200, (phone, response.status_code, response.text)
        status = response.json()["status"]
        assert status in {"queued", "failed"}, (phone, response.json())
        outcomes[status] += 1
        sent[payload["messageId"]] = status

    attempt()
    stored = harness.stored()
    report("phone numbers", {"examples": sum(outcomes.values()), **outcomes})
    assert {m: stored[m].status for m in sent if m in stored} == sent
    assert set(sent) <= set(stored)
    assert_no_unhandled_errors(harness.castbridge)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = [
    "messageId",
    "locationId",
    "contactId",
    "type",
    "phone",
    "message",
    "attachments",
    "userId",
    "timestamp",
    "webhookId",
]


def test_random_field_values_never_fault(harness: Harness) -> None:
    """Hypothesis: any JSON value in any Delivery-URL field, signed: answered without a 5xx."""
    answers: Counter[int] = Counter()

    @given(changes=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=4))
    @settings(
        max_examples=FIELD_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def attempt(changes: dict[str, Any]) -> None:
        response = harness.post_signed(harness.ghl.encode(harness.payload(**changes)))
        answers[response.status_code] += 1
        assert response.status_code in ANSWERS_WITHOUT_FAULT, (changes, response.text)

    attempt()
    report("random field values", {"examples": sum(answers.values()), **answers})
    assert_no_unhandled_errors(harness.castbridge)
