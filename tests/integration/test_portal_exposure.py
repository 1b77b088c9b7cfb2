"""What the running portal gives away: /health's pre-started images, oversized headers.

Attacks: an anonymous caller reads /health to learn which images were just launched; a client
sends a header block over 64 KiB (the portal dropped the connection without a status).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.support import read_stream

from .conftest import HUB_ADMIN

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]


async def health(portal, token: str = "") -> dict:
    headers = {"Authorization": f"token {token}"} if token else {}
    resp = await AsyncHTTPClient().fetch(f"{portal.url}/health", headers=headers, raise_error=False)
    return json.loads(resp.body)


async def test_health_names_prestarted_images_only_to_operators(portal, git_server, analysis_repo):
    launched = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    assert launched.last["phase"] == "ready", launched.log()
    image = launched.last["image"]
    for _ in range(120):
        operator_view = await health(portal, portal.service_token)
        if operator_view["prestarted"].get(image):
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("no server was pre-started after a launch")
    admin_view = await health(portal, portal.user_token(HUB_ADMIN))
    assert admin_view["prestarted"].get(image)
    for view in (
        await health(portal),  # anonymous
        await health(portal, portal.user_token("alice")),  # signed in, not an admin
        await health(portal, "not-a-valid-token"),
    ):
        assert "prestarted" not in view and view["prestarted_servers"] >= 1, view
        assert image not in json.dumps(view) and image.split(":")[0] not in json.dumps(view)


async def test_oversized_headers_get_431_from_the_portal(portal):
    reader, writer = await asyncio.open_connection("127.0.0.1", portal.port)
    cookie = "a=" + "x" * (70 * 1024)
    writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:100]
