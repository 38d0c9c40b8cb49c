"""A small forward HTTP proxy on loopback (absolute-form requests and CONNECT), with a log."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class Proxy:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []  # (method, target)
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, _, rest = head.partition(b"\r\n")
            method, target, version = request_line.decode().split(" ")
            self.log.append((method, target))
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, upstream = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                url = urlsplit(target)
                up_reader, upstream = await asyncio.open_connection(url.hostname, url.port or 80)
                path = url.path + (f"?{url.query}" if url.query else "")
                headers = [line for line in rest.split(b"\r\n")
                           if not line.lower().startswith(b"proxy-")]
                upstream.write(f"{method} {path} {version}\r\n".encode() + b"\r\n".join(headers))
                await upstream.drain()
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            for stream in (writer, upstream):
                if stream is not None:
                    stream.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(OSError):
        sink.close()
