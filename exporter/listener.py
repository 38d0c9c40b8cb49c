"""The listening socket, bounded: what a connection may cost and for how long.

Anyone who can reach the port can open connections; none of them may take ``/metrics`` down
for Prometheus. So: a connection that sends no (complete) request, or sits idle between
requests, is closed after IDLE_TIMEOUT; a TLS handshake must finish within
HANDSHAKE_TIMEOUT; at most MAX_CONNECTIONS are open at once, and a new connection over the
limit closes the oldest one that has not sent a byte of a request yet (a silent client, or a
load balancer's idle pool), so that a scrape is never refused while silent connections are
held; only when every connection is busy is a new one refused. One log line when the limit
bites, not one per connection. A TLS connection reads through a small buffer, and the
process's open-file limit is raised to its hard limit at start, as Go programs do.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from asyncio.sslproto import SSLProtocol
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("unpod_exporter.web")

MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 30.0  # no request (or no complete request headers) for this long: closed
HANDSHAKE_TIMEOUT = 10  # seconds
TLS_READ_BUFFER = 16 * 1024  # one TLS record; asyncio's default is 256 KiB per connection


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


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (a silent client holds one
    descriptor until it is dropped; the default soft limit is often 1,024). The new soft
    limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


class _Entry:
    """One connection as the limit sees it: the transport to abort when it must go."""

    __slots__ = ("transport",)

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None


class _Refused(asyncio.Protocol):
    """Closes a connection over the limit as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class _Watched(asyncio.Protocol):
    """The HTTP handler, with the limit told when the first bytes of a request arrive and
    when the connection ends (after the TLS handshake, for a TLS connection)."""

    def __init__(self, limit: ConnectionLimit, entry: _Entry, handler: RequestHandler,
                 tls: TlsProvider | None) -> None:
        self._limit = limit
        self._entry = entry
        self._handler = handler
        self._tls = tls
        self._heard = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._tls is None:
            self._entry.transport = transport
        elif not self._tls.accepts(transport.get_extra_info("ssl_object")):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._heard:
            self._heard = True
            self._limit.heard(self._entry)
        self._handler.data_received(data)

    def eof_received(self) -> None:
        self._handler.eof_received()  # None: the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._limit.lost(self._entry)
        if self._handler.transport is not None:
            self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()


class _ServerTls(SSLProtocol):
    """asyncio's TLS layer for a server connection, as ``create_server(ssl=...)`` builds it
    (it times the handshake and hands the application protocol its transport after it), with
    a read buffer of one record: asyncio gives each connection 256 KiB up front, and 400
    silent connections held over 100 MiB. A subclass, so that the client's TLS connections
    keep asyncio's default."""

    max_size = TLS_READ_BUFFER

    def __init__(self, limit: ConnectionLimit, entry: _Entry, app: _Watched,
                 context: ssl.SSLContext) -> None:
        # no waiter (asyncio checks for None): nothing awaits the handshake, which would
        # leave its failures as "exception never retrieved"
        super().__init__(asyncio.get_running_loop(), app, context, None,  # type: ignore[arg-type]
                         server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        self._limit = limit
        self._entry = entry

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._entry.transport = transport
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._limit.lost(self._entry)  # also during the handshake, when the app never hears
        super().connection_lost(exc)


class ConnectionLimit:
    """A protocol factory that keeps at most ``limit`` connections open, counting those
    still in their TLS handshake; over it, the oldest connection that has sent nothing goes."""

    def __init__(self, server: web.Server, limit: int = MAX_CONNECTIONS,
                 tls: TlsProvider | None = None,
                 admit: Callable[[], bool] | None = None) -> None:
        self._server = server
        self.limit = limit
        self._tls = tls
        self._admit = admit  # False: refuse new connections at once (the app's own policy)
        self._open: dict[_Entry, None] = {}  # oldest first
        self._silent: dict[_Entry, None] = {}  # of those, the ones that sent no byte yet
        self._at_limit = False
        self.dropped = 0
        self.refused = 0

    def active(self) -> int:
        return len(self._open)

    def __call__(self) -> asyncio.BaseProtocol:
        if self._admit is not None and not self._admit():
            self.refused += 1
            return _Refused()
        if len(self._open) >= self.limit and not self._drop_oldest_silent():
            self.refused += 1
            self._limit_bites()
            return _Refused()
        if self._at_limit and len(self._open) < self.limit * 3 // 4:
            self._at_limit = False
            log.info("connections below the limit again",
                     extra={"fields": {"active": len(self._open)}})
        entry = _Entry()
        self._open[entry] = None
        self._silent[entry] = None
        app = _Watched(self, entry, self._server(), self._tls)
        if self._tls is None:
            return app
        return _ServerTls(self, entry, app, self._tls.context())

    def _drop_oldest_silent(self) -> bool:
        for entry in self._silent:
            if entry.transport is not None:  # None: accepted this very loop iteration
                self.lost(entry)
                entry.transport.abort()  # type: ignore[attr-defined]
                self.dropped += 1
                self._limit_bites()
                return True
        return False

    def _limit_bites(self) -> None:
        if not self._at_limit:
            self._at_limit = True
            log.warning("connection limit reached: closing the oldest connections that sent "
                        "no request, refusing new ones while every connection is busy",
                        extra={"fields": {"limit": self.limit}})

    def heard(self, entry: _Entry) -> None:
        self._silent.pop(entry, None)

    def lost(self, entry: _Entry) -> None:
        self._open.pop(entry, None)
        self._silent.pop(entry, None)

    def close_all(self) -> None:
        """Abort every connection (at shutdown: those in a handshake have no handler yet)."""
        for entry in list(self._open):
            if entry.transport is not None:
                entry.transport.abort()  # type: ignore[attr-defined]
        self._open.clear()
        self._silent.clear()


class BoundedSite(web.TCPSite):
    """A TCPSite whose connections are limited and whose TLS handshakes are timed."""

    def __init__(self, runner: web.AppRunner, host: str | None, port: int,
                 tls: TlsProvider | None, limit: int,
                 admit: Callable[[], bool] | None = None) -> None:
        super().__init__(runner, host, port, reuse_address=True,
                         ssl_context=tls.context() if tls else None)
        self._tls = tls
        self._limit = limit
        self._admit = admit
        self.factory: ConnectionLimit | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self.factory = ConnectionLimit(server, self._limit, self._tls, self._admit)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.factory, self._host, self._port, backlog=self._backlog, reuse_address=True)
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await super().stop()
        if self.factory is not None:
            self.factory.close_all()


async def run_web(app: web.Application, host: str | None, port: int,
                  tls: TlsProvider | ssl.SSLContext | None = None,
                  max_connections: int = MAX_CONNECTIONS,
                  idle_timeout: float = IDLE_TIMEOUT,
                  admit: Callable[[], bool] | None = None) -> web.AppRunner:
    """``admit``: asked for each new connection; False refuses it before any HTTP or TLS."""
    raise_open_file_limit()
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5,
                           keepalive_timeout=idle_timeout)
    await runner.setup()
    provider = FixedTls(tls) if isinstance(tls, ssl.SSLContext) else tls
    await BoundedSite(runner, host, port, provider, max_connections, admit).start()
    return runner
