"""The outbound HTTP client: idle connections are probed without anyio's attribute lookups, and a
connection the server closed while idle is still never reused. Real HTTP on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio.abc
import httpx2
import pytest

from castbridge import httpclient

LIMITS = httpx2.Limits(max_connections=50, max_keepalive_connections=50)
TIMEOUT = httpx2.Timeout(5.0)


class _Server:
    """Answers every request 200; with `close_after_first`, closes each connection after its
    first answer, once the client has put it back in its pool."""

    def __init__(self, *, close_after_first: bool = False) -> None:
        self.close_after_first = close_after_first
        self.connections = 0
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    return
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
                if self.close_after_first:
                    await asyncio.sleep(0.05)
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    state = _Server()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/"
    async with listener:
        yield state


async def test_a_connection_the_server_closed_while_idle_is_not_reused(server: _Server) -> None:
    """The probe still sees the server's close: the next call opens a new connection instead of
    failing on the dead one (httpx2 does not retry a request it has sent)."""
    server.close_after_first = True
    async with httpclient.client(timeout=TIMEOUT, limits=LIMITS) as http:
        assert (await http.get(server.url)).status_code == 200
        await asyncio.sleep(0.2)  # the server has closed the now idle connection
        assert (await http.get(server.url)).status_code == 200
    assert server.connections == 2


async def test_idle_connections_are_probed_without_looking_their_socket_up_again(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 20 idle connections, httpx2's own client asks anyio for each one's socket twice per
    request (about 5 µs each); castbridge's client asks only when a connection opens."""
    lookups = 0
    original = anyio.abc.SocketStream.extra

    def counted(self: Any, attribute: Any, *default: Any) -> Any:
        nonlocal lookups
        if attribute is anyio.abc.SocketAttribute.raw_socket:
            lookups += 1
        return original(self, attribute, *default)

    monkeypatch.setattr(anyio.abc.SocketStream, "extra", counted)

    async def lookups_per_request(http: httpx2.AsyncClient) -> float:
        nonlocal lookups
        await asyncio.gather(*(http.get(server.url) for _ in range(20)))  # 20 in the pool
        lookups = 0
        for _ in range(10):
            await http.get(server.url)
        return lookups / 10

    async with httpx2.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as plain:
        assert await lookups_per_request(plain) >= 20
    async with httpclient.client(timeout=TIMEOUT, limits=LIMITS) as ours:
        assert await lookups_per_request(ours) == 0
