"""The listening socket, bounded: what a connection may cost and for how long.

Anyone who can reach the port can open connections; none of them may take ``/metrics`` down
for Prometheus. So: a connection that sends no (complete) request, or sits idle between
requests, is closed after IDLE_TIMEOUT; a TLS handshake must finish within
HANDSHAKE_TIMEOUT; at most MAX_CONNECTIONS are served at once (one log line when the limit is
reached, not one per connection, checked before any TLS state exists); and a TLS connection
reads through a small buffer.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import ssl
from typing import Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("unpod_exporter.web")

MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 30.0  # no request (or no complete request headers) for this long: closed
HANDSHAKE_TIMEOUT = 10.0
TLS_READ_BUFFER = 16 * 1024  # one TLS record; asyncio's default is 256 KiB per connection

# asyncio gives every TLS connection a 256 KiB read buffer up front: 400 silent connections
# held over 100 MiB. A record is at most 16 KiB, so a buffer of that size reads as well.
asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


class TlsProvider(Protocol):
    """Where a new connection's TLS context comes from (asked per connection, so that a
    changed web config applies without a restart), and who may stay after the handshake."""

    def context(self) -> ssl.SSLContext: ...

    def accepts(self, sslobj: ssl.SSLObject) -> bool: ...


class FixedTls:
    """One context for every connection."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context

    def context(self) -> ssl.SSLContext:
        return self._context

    def accepts(self, sslobj: ssl.SSLObject) -> bool:
        return True


class _Refused(asyncio.Protocol):
    """Closes a connection over the limit as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class _TlsUpgrade(asyncio.Protocol):
    """Accepts a plain TCP connection, then does the TLS handshake itself (bounded in time)
    and hands the TLS transport to the HTTP handler: the limit is checked before any TLS
    state exists, so a refused connection is closed at once, TLS or not."""

    def __init__(self, limit: ConnectionLimit, handler: RequestHandler,
                 tls: TlsProvider) -> None:
        self._limit = limit
        self._handler = handler
        self._tls = tls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello is for the TLS layer, not for us
        task = asyncio.get_running_loop().create_task(self._upgrade(transport))
        self._limit.handshakes.add(task)
        task.add_done_callback(self._limit.handshakes.discard)

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(transport, self._handler, self._tls.context(),
                                       server_side=True,
                                       ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError):
            tls = None
        finally:
            self._limit.unconnected.discard(self._handler)
        if tls is None or not self._tls.accepts(tls.get_extra_info("ssl_object")):
            (tls or transport).abort()
            return
        self._handler.connection_made(tls)


class ConnectionLimit:
    """A protocol factory that serves at most ``limit`` connections at once, counting those
    still in their TLS handshake."""

    def __init__(self, server: web.Server, limit: int = MAX_CONNECTIONS,
                 tls: TlsProvider | None = None) -> None:
        self._server = server
        self.limit = limit
        self._tls = tls
        self.unconnected: set[RequestHandler] = set()
        self.handshakes: set[asyncio.Task[None]] = set()
        self._at_limit = False

    def active(self) -> int:
        return len(self._server.connections) + len(self.unconnected)

    def __call__(self) -> asyncio.BaseProtocol:
        active = self.active()
        if active >= self.limit:
            if not self._at_limit:
                self._at_limit = True
                log.warning("connection limit reached: refusing new connections until some "
                            "close", extra={"fields": {"limit": self.limit}})
            return _Refused()
        if self._at_limit and active < self.limit * 3 // 4:
            self._at_limit = False
            log.info("accepting connections again", extra={"fields": {"active": active}})
        handler = self._server()
        if self._tls is None:
            return handler  # plain HTTP: the loop connects it at once
        self.unconnected.add(handler)
        return _TlsUpgrade(self, handler, self._tls)


class BoundedSite(web.TCPSite):
    """A TCPSite whose connections are limited and whose TLS handshakes are timed."""

    def __init__(self, runner: web.AppRunner, host: str | None, port: int,
                 tls: TlsProvider | None, limit: int) -> None:
        super().__init__(runner, host, port, reuse_address=True,
                         ssl_context=tls.context() if tls else None)
        self._tls = tls
        self._limit = limit
        self.factory: ConnectionLimit | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self.factory = ConnectionLimit(server, self._limit, self._tls)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.factory, self._host, self._port, backlog=self._backlog, reuse_address=True)
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.factory is not None:
            for task in list(self.factory.handshakes):
                task.cancel()
        await super().stop()


async def run_web(app: web.Application, host: str | None, port: int,
                  tls: TlsProvider | ssl.SSLContext | None = None,
                  max_connections: int = MAX_CONNECTIONS,
                  idle_timeout: float = IDLE_TIMEOUT) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5,
                           keepalive_timeout=idle_timeout)
    await runner.setup()
    provider = FixedTls(tls) if isinstance(tls, ssl.SSLContext) else tls
    await BoundedSite(runner, host, port, provider, max_connections).start()
    return runner
