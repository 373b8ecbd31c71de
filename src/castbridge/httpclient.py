"""The outbound HTTP clients (gateways, HighLevel): httpx2 with an idle-connection probe that costs
a poll, not an attribute lookup.

Before every request it hands out, and again when one finishes, httpcore2's pool asks each idle
connection whether the server has closed it. The question goes to anyio's stream, which builds
its table of socket attributes anew for every lookup: about 5 µs per idle connection, twice per
request. With the 20 to 30 idle connections a busy worker keeps to a gateway, that was about a
tenth of castbridge's CPU per message. The stream below remembers its socket, so the probe is
the poll it always was and nothing else; what the pool decides from it is unchanged.
"""

from __future__ import annotations

import socket
import ssl
import urllib.request
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2
from httpcore2._utils import is_socket_readable


class _RememberedSocketStream(httpcore2.AsyncNetworkStream):
    """A network stream that answers "is_readable" from the socket it looked up once."""

    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: socket.socket | None = stream.get_extra_info("socket")

    # The signatures are httpcore2's interface, `timeout` parameters included (ASYNC109).
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore2.AsyncNetworkStream:
        tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _RememberedSocketStream(tls)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # The same test anyio's stream makes (readable while idle = the server closed it),
            # on the same socket: TLS wraps the socket, it does not replace it.
            return is_socket_readable(self._socket)
        if info == "socket":
            return self._socket
        return self._stream.get_extra_info(info)


class _RememberedSocketBackend(httpcore2.AsyncNetworkBackend):
    """The pool's own network backend, with each stream it opens wrapped."""

    def __init__(self, backend: httpcore2.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _RememberedSocketStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return _RememberedSocketStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PooledTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport with the pool's network backend wrapped (see the module docstring)."""

    def __init__(self, *, limits: httpx2.Limits) -> None:
        super().__init__(limits=limits)
        pool = self._pool
        # httpx2 does not take a network backend, so it is swapped in here; a library upgrade
        # that moves either attribute fails loudly at start-up, and tests/core/test_httpclient.py
        # checks the swap still reaches the connections.
        if not isinstance(pool, httpcore2.AsyncConnectionPool) or not hasattr(
            pool, "_network_backend"
        ):  # pragma: no cover - only after an incompatible httpx2/httpcore2 upgrade
            raise RuntimeError("httpx2's transport no longer holds an httpcore2 pool")
        pool._network_backend = _RememberedSocketBackend(pool._network_backend)


def client(*, timeout: httpx2.Timeout, limits: httpx2.Limits) -> httpx2.AsyncClient:
    """An AsyncClient for many calls to a few hosts, on `PooledTransport`.

    httpx2 honours HTTP(S)_PROXY only for a client on its own transport, so with a proxy set in
    the environment the client is httpx2's plain one: the proxy matters more than the probe."""
    if urllib.request.getproxies():
        return httpx2.AsyncClient(timeout=timeout, limits=limits)
    return httpx2.AsyncClient(timeout=timeout, transport=PooledTransport(limits=limits))
