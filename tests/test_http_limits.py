"""The portal's HTTP limits, attacked with raw sockets on 127.0.0.1.

Before: a header block over 64 KiB was dropped without a status, and a request whose headers
never finished (or a keep-alive connection left idle) was held for an hour.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from panbinder.web.http_server import make_http_server

LIMITS = {"max_header_size": 64 * 1024, "header_timeout": 1.0, "max_body_size": 1024, "body_timeout": 1.0}


class Hello(RequestHandler):
    def get(self) -> None:
        self.finish("hello")

    def post(self) -> None:
        self.finish(f"{len(self.request.body)}")


@pytest.fixture
async def port():
    server = make_http_server(Application([(r"/", Hello)]), **LIMITS)
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    yield sockets[0].getsockname()[1]
    server.stop()
    await server.close_all_connections()


async def exchange(port: int, data: bytes, *, wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``data``, read until the server closes; (what it answered, seconds until closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    try:
        writer.write(data)
        await writer.drain()
    except ConnectionError:
        pass
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), wait):
            answer += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
    return answer, time.monotonic() - start


def request(headers: dict[str, str] | None = None, *, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} / HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_a_normal_request_is_answered(port):
    answer, _ = await exchange(port, request({"Connection": "close"}))
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")


@pytest.mark.parametrize("size", [70 * 1024, 1024 * 1024])
async def test_oversized_header_block_gets_431(port, size):
    answer, seconds = await exchange(port, request({"Cookie": "a=" + "x" * size}))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:80]
    assert b"too large" in answer
    assert seconds < 4  # closed after the bounded linger, not held


async def test_header_just_under_the_limit_is_served(port):
    answer, _ = await exchange(port, request({"X-Big": "x" * (60 * 1024), "Connection": "close"}))
    assert answer.startswith(b"HTTP/1.1 200")


async def test_headers_that_never_finish_are_closed_after_the_header_timeout(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed_after = None
    for _ in range(40):  # slowloris: one more header byte every 0.1 s, never the blank line
        await asyncio.sleep(0.1)
        try:
            writer.write(b"X")
            await writer.drain()
        except ConnectionError:
            closed_after = time.monotonic() - start
            break
        if reader.at_eof() or (await _closed(reader)):
            closed_after = time.monotonic() - start
            break
    writer.close()
    assert closed_after is not None and closed_after < 2.5, closed_after


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.01) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_idle_keep_alive_connection_is_closed(port):
    answer, seconds = await exchange(port, request(), wait=5)
    assert answer.startswith(b"HTTP/1.1 200")  # answered, kept alive, then closed when idle
    assert 0.8 < seconds < 2.5, seconds


async def test_body_over_the_limit_is_refused_and_slow_body_closed(port):
    answer, _ = await exchange(port, request(method="POST", body=b"x" * 4096))
    assert answer.startswith(b"HTTP/1.1 400")
    head = request(method="POST", body=b"x" * 100)[:-90]  # promises 100 bytes, sends 10
    answer, seconds = await exchange(port, head, wait=5)
    assert answer == b"" and seconds < 2.5, (answer, seconds)
