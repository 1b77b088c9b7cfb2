"""Registry retention lists a registry whose catalogue names a repository with no tags left
(every tag deleted): that repository has none, the others are listed. On 127.0.0.1 only."""

from __future__ import annotations

import asyncio

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from panbinder.errors import PanbinderError
from panbinder.registry_cache import Registry
from panbinder.registry_cache.retention import RegistryAdmin


class Catalogue(RequestHandler):
    def get(self) -> None:
        self.finish({"repositories": ["panbinder/emptied", "panbinder/kept", "panbinder/broken"]})


class Tags(RequestHandler):
    def get(self, name: str) -> None:
        if name == "panbinder/emptied":  # what distribution answers once every tag is deleted
            self.set_status(404)
            self.finish({"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]})
        elif name == "panbinder/broken":
            self.set_status(500)
            self.finish("{}")
        else:
            self.finish({"name": name, "tags": ["a", "b"]})


@pytest.fixture
async def admin():
    app = Application([(r"/v2/_catalog", Catalogue), (r"/v2/(.+)/tags/list", Tags)])
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    yield RegistryAdmin(Registry(url=f"http://127.0.0.1:{port}"))
    server.stop()


async def test_a_repository_with_every_tag_deleted_has_no_tags(admin):
    assert await admin.repositories() == ["panbinder/emptied", "panbinder/kept", "panbinder/broken"]
    assert await admin.tags("panbinder/emptied") == []
    assert await admin.tags("panbinder/kept") == ["a", "b"]


async def test_other_registry_errors_still_raise(admin):
    with pytest.raises(PanbinderError, match="failed on GET /v2/panbinder/broken/tags/list"):
        await asyncio.wait_for(admin.tags("panbinder/broken"), 10)
