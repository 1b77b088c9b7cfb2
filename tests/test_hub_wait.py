"""The Hub's checks of a starting server (launcher/hub_wait.py), against a local HTTP server."""

from __future__ import annotations

import asyncio
import time

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from panbinder.launcher import hub_wait
from tests.support import free_port


class Answer:
    """What ``fetch`` gives the waiter: the parts of aiohttp's response the Hub reads."""

    def __init__(self, code: int, headers) -> None:
        self.status, self.headers = code, headers


async def fetch(url: str, *, raise_for_status: bool, allow_redirects: bool, **_) -> Answer:
    resp = await AsyncHTTPClient().fetch(url, raise_error=False, follow_redirects=allow_redirects)
    if resp.code == 599:
        raise resp.error
    return Answer(resp.code, resp.headers)


class Api(RequestHandler):
    def get(self) -> None:
        self.set_header("X-JupyterHub-Version", "6.1.1")
        self.finish("{}")


def test_waits_grow_from_the_interval_to_the_longest():
    wait = hub_wait.waits(0.05, 1.1, 0.5)
    assert wait(0) == pytest.approx(0.05) and wait(1) == pytest.approx(0.055)
    assert wait(100) == 0.5


async def test_a_server_is_noticed_soon_after_it_answers():
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    server = HTTPServer(Application([(r"/api", Api)]))

    async def start_later() -> float:
        await asyncio.sleep(1.2)  # where JupyterHub's doubling waits have grown to 0.8 s
        server.listen(port, "127.0.0.1")
        return time.monotonic()

    try:
        started = asyncio.ensure_future(start_later())
        resp = await hub_wait.wait_for_http_server(url, timeout=5, fetch=fetch)
        noticed = time.monotonic()
        assert resp.headers.get("X-JupyterHub-Version") == "6.1.1"
        assert noticed - await started < 0.25
    finally:
        server.stop()


async def test_an_error_answer_is_not_up_and_the_wait_ends_at_the_timeout():
    class Failing(RequestHandler):
        def get(self) -> None:
            self.set_status(503)

    port = free_port()
    server = HTTPServer(Application([(r"/api", Failing)]))
    server.listen(port, "127.0.0.1")
    try:
        began = time.monotonic()
        with pytest.raises(TimeoutError, match=r"didn't respond in 0\.5 seconds"):
            await hub_wait.wait_for_http_server(f"http://127.0.0.1:{port}/api", timeout=0.5, fetch=fetch)
        assert 0.5 <= time.monotonic() - began < 1.5
    finally:
        server.stop()
