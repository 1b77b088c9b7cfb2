"""Registry look-ups say what failed: nothing answering is "registry unreachable" (refused,
silent or cut off), an answering registry's error is another message, a missing image is None.
Everything listens on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from panbinder.errors import PanbinderError
from panbinder.registry_cache import Registry
from panbinder.registry_cache.naming import ImageRef
from tests.support import free_port

IMAGE = ImageRef("127.0.0.1:5000", "panbinder/v1-git-x", "0" * 40)


class Manifests(RequestHandler):
    def head(self, name: str, tag: str) -> None:
        status = self.settings["status"]
        self.set_status(status)
        if status == 200:
            self.set_header("Docker-Content-Digest", "sha256:" + "a" * 64)


class Root(RequestHandler):
    def get(self) -> None:
        self.set_status(self.settings["status"])
        self.finish("{}")


@pytest.fixture
def answering():
    """A registry stand-in on loopback answering every request with a chosen status."""
    servers = []

    def start(status: int) -> str:
        app = Application([(r"/v2/", Root), (r"/v2/(.+)/manifests/(.+)", Manifests)], status=status)
        sock, port = bind_unused_port()
        server = HTTPServer(app)
        server.add_sockets([sock])
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def silent():
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


async def assert_unreachable(registry: Registry) -> None:
    with pytest.raises(PanbinderError) as info:
        await registry.digest(IMAGE)
    error = info.value
    assert error.reason == "registry_unreachable" and error.status_code == 503
    assert error.message.startswith("Registry unreachable:") and "try again" in error.message
    assert registry.url not in error.message  # the internal address stays in the log
    assert registry.url in error.log_message
    assert await registry.ping() is False


async def test_closed_port_is_registry_unreachable():
    await assert_unreachable(Registry(url=f"http://127.0.0.1:{free_port()}"))


async def test_silent_registry_is_unreachable_after_its_timeout(silent):
    await assert_unreachable(Registry(url=silent, timeout=0.5))


async def test_registry_error_is_not_called_unreachable(answering):
    registry = Registry(url=answering(500))
    with pytest.raises(PanbinderError) as info:
        await registry.digest(IMAGE)
    assert info.value.reason == "registry_error" and info.value.status_code == 503
    assert "Registry unreachable" not in info.value.message


async def test_missing_image_is_none_and_present_image_has_its_digest(answering):
    assert await Registry(url=answering(404)).digest(IMAGE) is None
    registry = Registry(url=answering(200))
    assert await registry.digest(IMAGE) == "sha256:" + "a" * 64
    assert await registry.ping() is True


def test_credentials_go_only_to_the_registrys_own_origin():
    from panbinder.registry_cache.registry import _same_origin

    base = "https://registry.example.org"
    assert _same_origin("https://registry.example.org/v2/x/manifests/y", base)
    for other in (
        "https://registry.example.org.evil.test/v2/",
        "http://registry.example.org/v2/",
        "https://registry.example.org:5001/v2/",
        "https://evil.test/registry.example.org/v2/",
    ):
        assert not _same_origin(other, base), other
