"""Helpers for the HighLevel-facing HTTP tests: signed posts, OAuth steps, raw HTTP, row counts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx2
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select

from castbridge.sandbox.stack import Stack
from castbridge.store.installations import InstallationInfo, get_installation, list_installations
from castbridge.store.models import AuditEvent, Installation, Job, Message, SeenWebhook


class CollectErrors(logging.Handler):
    """Keeps every ERROR-or-worse record of the logger it is added to."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float) -> bool:
    """Await `check()` every 50 ms until it is true or `within` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def count(stack: Stack, model: type[Any], *where: Any) -> int:
    """Rows of `model` (optionally filtered) in castbridge's database, read through the store."""
    async with stack.resources.sessions() as session:
        statement = select(func.count()).select_from(model)
        if where:
            statement = statement.where(*where)
        return int((await session.execute(statement)).scalar_one())


async def intake_rows(stack: Stack) -> dict[str, int]:
    """What a Delivery URL post can leave behind: messages, jobs and remembered webhook ids."""
    return {
        "messages": await count(stack, Message),
        # Jobs of messages: the worker's standing jobs (housekeeping, pollers) are not intake's.
        "jobs": await count(stack, Job, Job.message_id.is_not(None)),
        "seen_webhooks": await count(stack, SeenWebhook),
    }


async def message_row(stack: Stack, ghl_message_id: str) -> Message | None:
    async with stack.resources.sessions() as session:
        return (
            await session.execute(select(Message).where(Message.ghl_message_id == ghl_message_id))
        ).scalar_one_or_none()


async def jobs_of(stack: Stack, ghl_message_id: str) -> list[Job]:
    async with stack.resources.sessions() as session:
        rows = await session.execute(
            select(Job)
            .join(Message, Message.id == Job.message_id)
            .where(Message.ghl_message_id == ghl_message_id)
            .order_by(Job.id)
        )
        return list(rows.scalars())


async def installation(stack: Stack, location_id: str) -> InstallationInfo | None:
    async with stack.resources.sessions() as session:
        return await get_installation(session, location_id)


async def installations(stack: Stack) -> list[InstallationInfo]:
    async with stack.resources.sessions() as session:
        return await list_installations(session)


async def raw_installation(stack: Stack, user_type: str, resource_id: str) -> Installation:
    async with stack.resources.sessions() as session:
        row = (
            await session.execute(
                select(Installation).where(
                    Installation.user_type == user_type, Installation.resource_id == resource_id
                )
            )
        ).scalar_one()
        return row


async def audit(stack: Stack, action: str) -> list[AuditEvent]:
    async with stack.resources.sessions() as session:
        rows = await session.execute(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return list(rows.scalars())


async def post_signed(
    http: httpx2.AsyncClient,
    stack: Stack,
    url: str,
    body: bytes,
    *,
    ed25519: bool = True,
    rsa: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    """POST exactly `body`, signed by the HighLevel sandbox over those bytes."""
    signed = {"Content-Type": "application/json", **stack.ghl.sign(body, ed25519=ed25519, rsa=rsa)}
    return await http.post(url, content=body, headers={**signed, **(headers or {})})


def foreign_signature(body: bytes) -> str:
    """A valid Ed25519 signature, but by a key HighLevel never published."""
    return base64.b64encode(ed25519.Ed25519PrivateKey.generate().sign(body)).decode()


def payload(stack: Stack, **fields: Any) -> dict[str, Any]:
    """A Delivery URL body to a valid Philippine mobile."""
    fields.setdefault("phone", "+639171234567")
    fields.setdefault("message", "hello from the tests")
    return stack.ghl.delivery_payload(**fields)


def body_of(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


async def callback_url(
    http: httpx2.AsyncClient, stack: Stack, *, agency: bool = False, location_id: str | None = None
) -> str:
    """Walk /oauth/install and the sandbox's choose-location page; return the callback URL."""
    start = await http.get(f"{stack.url}/oauth/install")
    assert start.status_code == 302, start.text
    target = start.headers["location"]
    extra: dict[str, str] = {}
    if agency:
        extra["user_type"] = "Company"
    if location_id is not None:
        extra["location_id"] = location_id
    if extra:
        target = f"{target}&{urlencode(extra)}"
    choose = await http.get(target)
    assert choose.status_code == 302, choose.text
    return str(choose.headers["location"])


def query_param(url: str, name: str) -> str:
    return parse_qs(urlparse(url).query)[name][0]


async def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send hand-made HTTP/1.1 bytes (for framing no well-behaved client produces).

    Returns the status code and the response body; the server may answer before reading
    everything, so a reset after the response is fine.
    """
    parsed = urlparse(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    try:
        writer.write(head + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        response = await asyncio.wait_for(_read_response(reader), timeout=10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return response


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body
