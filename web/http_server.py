"""The portal's HTTP server: tornado's HTTPServer with bounded headers, bodies and idle time.

Tornado refuses a header block larger than ``max_header_size`` by closing the connection
without a word, so a client (or a proxy in front of the portal) cannot tell a refusal from a
crash. ``LimitedStream`` answers ``431 Request Header Fields Too Large`` first, then keeps the
connection half-open for ``LINGER_SECONDS`` while it discards what the client is still sending:
closing a socket with unread data sends a reset, and the client would lose the answer.

Tornado counts ``idle_connection_timeout`` from the end of one request to the end of the next
request's headers, so the same number bounds a keep-alive connection left idle and a request
whose headers never finish (one header byte every few seconds).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream, UnsatisfiableReadError
from tornado.web import Application

HEADER_END = b"\r?\n\r?\n"  # what tornado's HTTP1Connection reads headers up to
LINGER_SECONDS = 2.0
_BODY_431 = b"The request's headers are too large; send fewer or smaller cookies and headers.\n"
RESPONSE_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: text/plain; charset=UTF-8\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BODY_431), _BODY_431)
)
_lingering: set[asyncio.Task] = set()


class LimitedStream(IOStream):
    """An IOStream that answers 431 when the header block outgrows its limit, then closes."""

    def _header_overflow(self) -> bool:
        regex = getattr(self, "_read_regex", None)
        return (
            isinstance(self.error, UnsatisfiableReadError) and getattr(regex, "pattern", None) == HEADER_END
        )

    def close_fd(self) -> None:
        if not self._header_overflow():
            super().close_fd()
            return
        try:
            self.socket.send(RESPONSE_431)  # small: it fits the socket's send buffer at once
            kept = self.socket.dup()  # the connection outlives this stream's descriptor
        except OSError:
            kept = None
        super().close_fd()
        if kept is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(_linger(kept), name="http-431-linger")
        except RuntimeError:  # no loop running (shutting down): close at once
            kept.close()
            return
        _lingering.add(task)
        task.add_done_callback(_lingering.discard)


async def _linger(sock: socket.socket) -> None:
    """Send FIN after the answer, discard what the client still sends, close (bounded time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    try:
        sock.setblocking(False)
        sock.shutdown(socket.SHUT_WR)
        while (left := deadline - loop.time()) > 0:
            if not await asyncio.wait_for(loop.sock_recv(sock, 65536), left):
                break
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()


class PortalHTTPServer(HTTPServer):
    """HTTPServer whose connections use ``LimitedStream``.

    TCPServer makes each connection's IOStream itself and offers no factory hook, so the stream
    is given its subclass here, before anything reads from it (the subclass adds no state).
    """

    def handle_stream(self, stream: IOStream, address: tuple) -> Any:
        if type(stream) is IOStream:
            stream.__class__ = LimitedStream
        return super().handle_stream(stream, address)


def make_http_server(
    app: Application,
    *,
    max_header_size: int,
    header_timeout: float,
    max_body_size: int,
    body_timeout: float,
    xheaders: bool = True,
) -> PortalHTTPServer:
    """The portal's server with its limits (see ``ServeApp``'s traits of the same names)."""
    return PortalHTTPServer(
        app,
        xheaders=xheaders,
        max_header_size=max_header_size,
        idle_connection_timeout=header_timeout,
        max_body_size=max_body_size,
        body_timeout=body_timeout,
    )
