"""The portal's tornado application in this process, on 127.0.0.1, for fast tests of its HTTP side.

This is the one place in the tests that knows how the portal is put together: the components
come from the composition root, ``ServeApp.components`` (panbinder/components.py), with the
builder and launcher chosen by its ``builder_class`` and ``launcher_class`` settings, as a
deployment chooses its own; the application and the HTTP server, with its header and body
limits, from ``ServeApp.portal_app`` and ``ServeApp.http_server``, as ``panbinder serve`` makes
them. When that wiring changes, only this module changes.

Real: routes, handlers, templates, error rendering, providers and their checks, the ban list,
the pipeline, the build manager (shared builds, kept logs), the registry client, HubIdentity
(HubOAuth) and the catalogue on SQLite in the test's folder. Stand-ins, for unit tests of the
orchestration only: a builder and a launcher that record their requests and yield canned events,
and two tiny tornado apps on loopback for the registry's manifest endpoint and the Hub's user API.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from traitlets.config import Config

from panbinder.builder import Builder, BuildRequest
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.events import Event
from panbinder.launcher import Launcher, LaunchRequest
from panbinder.providers import get_provider_class
from panbinder.serve import ServeApp
from panbinder.web.auth import HubIdentity

PUBLIC_URL = "https://binder.facility.example"
CORS_ORIGIN = "https://pages.example.org"
SERVICE_TOKEN = "portal-service-token"
SHA = "0123456789abcdef0123456789abcdef01234567"
REPO = "git://127.0.0.1:9/analysis"  # never contacted: a full sha is used as it is


def git_spec(repo: str = REPO, ref: str = SHA) -> str:
    """``<url-quoted repository URL>/<ref>``, the spec after ``/v2/git/`` or ``/build/git/``."""
    return f"{quote(repo, safe='')}/{ref}"


async def _play(script: list, gate: asyncio.Event | None) -> AsyncIterator[Event]:
    """Yield ``script``'s events, raise its exceptions; wait for ``gate`` before the last item."""
    for i, item in enumerate(script):
        if gate is not None and i == len(script) - 1:
            await gate.wait()
        if isinstance(item, BaseException):
            raise item
        yield item


class RecordingBuilder(Builder):
    """Records each build request and plays ``script`` (default: a log line, then 'built');
    with ``gate`` set, a build waits for it before its last event. ``started`` is set by the
    first build."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests: list[BuildRequest] = []
        self.script: list[Event | BaseException] = [
            Event("building", "Step 1/1 : RUN true\n"),
            Event("built", "Built\n"),
        ]
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def build(self, request: BuildRequest) -> AsyncIterator[Event]:
        self.requests.append(request)
        self.started.set()
        async for event in _play(self.script, self.gate):
            yield event


class RecordingLauncher(Launcher):
    """Records each launch request and plays ``script`` (default: 'launching', then 'ready');
    with ``gate`` set, a launch waits for it before its last event. ``closed`` counts launches
    whose iteration was closed before it ended (a client that left); ``deleted`` lists the
    users it was asked to remove."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests: list[LaunchRequest] = []
        self.script: list[Event | BaseException] = [
            Event("launching", "Starting your server\n"),
            Event("ready", "Server ready\n", {"url": "http://127.0.0.1:8000/user/pb-1/", "token": "t0k"}),
        ]
        self.gate: asyncio.Event | None = None
        self.closed = 0
        self.deleted: list[str] = []

    async def delete_user(self, user: str) -> bool:
        self.deleted.append(user)
        return True

    async def launch(self, request: LaunchRequest) -> AsyncIterator[Event]:
        self.requests.append(request)
        try:
            async for event in _play(self.script, self.gate):
                yield event
        except (GeneratorExit, asyncio.CancelledError):
            self.closed += 1
            raise

    async def ping(self) -> bool:
        return True


class _Manifest(web.RequestHandler):
    def initialize(self, images: dict[str, str]) -> None:
        self.images = images

    def head(self, name: str, tag: str) -> None:
        digest = self.images.get(f"{name}:{tag}")
        if digest is None:
            raise web.HTTPError(404)
        self.set_header("Docker-Content-Digest", digest)


class _RegistryRoot(web.RequestHandler):
    def get(self) -> None:
        self.finish({})


class _HubUser(web.RequestHandler):
    """``GET /hub/api/user``: the owner of the request's token, or 403 as the Hub answers."""

    def initialize(self, users: dict[str, dict]) -> None:
        self.users = users

    def get(self) -> None:
        token = self.request.headers.get("Authorization", "").removeprefix("token ").strip()
        model = self.users.get(token)
        if model is None:
            raise web.HTTPError(403)
        self.finish({"kind": "user", "scopes": [], **model})


class _HubUserModel(web.RequestHandler):
    def initialize(self, users: dict[str, dict]) -> None:
        self.users = users

    def get(self, name: str) -> None:
        for model in self.users.values():
            if model["name"] == name:
                self.finish({"groups": [], "admin": False, **model})
                return
        raise web.HTTPError(404)


@functools.cache
def _migrated_catalogue() -> Path:
    """An empty catalogue database migrated once per test run (migrating takes about 0.4 s);
    each portal starts from a copy, and the catalogue's own start finds it up to date."""
    path = Path(tempfile.mkdtemp(prefix="panbinder-catalogue-")) / "catalogue.sqlite"
    catalogue = Catalogue(db_url=f"sqlite:///{path}")
    catalogue.start()
    catalogue.close()
    return path


def _serve(app: web.Application) -> tuple[HTTPServer, str]:
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    return server, f"http://127.0.0.1:{port}"


@dataclass
class Stream:
    """An event stream as a client reads it: the events, the raw text, the keepalive comments."""

    code: int
    raw: str
    events: list[dict] = field(default_factory=list)

    @property
    def phases(self) -> list[str]:
        return [e["phase"] for e in self.events]

    @property
    def last(self) -> dict:
        return self.events[-1]


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true (polled every 20 ms); AssertionError after ``timeout``."""
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reached within {timeout} s: {check}")


def parse_stream(raw: str) -> list[dict]:
    return [
        json.loads(line[len("data: ") :])
        for block in raw.split("\n\n")
        for line in block.splitlines()
        if line.startswith("data: ")
    ]


@dataclass
class WebPortal:
    """The running in-process portal and what the tests steer and read."""

    url: str
    serve: ServeApp
    pipeline: Any
    registry_images: dict[str, str]  # "<name>:<tag>" -> digest, answered by the registry stand-in
    hub_users: dict[str, dict]  # token -> {"name", "groups", "admin"}, answered by the Hub stand-in
    storage: Path
    hub_server: HTTPServer
    hub_url: str  # the Hub stand-in, where /login sends anonymous readers
    identity: HubIdentity

    @property
    def builder(self) -> RecordingBuilder:
        return self.pipeline.manager.builder

    @property
    def launcher(self) -> RecordingLauncher:
        return self.pipeline.launcher

    @property
    def catalogue(self):
        return self.serve.components.catalogue

    async def fetch(
        self, path: str, *, accept: str = "application/json", token: str = "", **kwargs: Any
    ) -> HTTPResponse:
        headers = {"Accept": accept, **kwargs.pop("headers", {})}
        if token:
            headers["Authorization"] = f"token {token}"
        return await AsyncHTTPClient().fetch(
            self.url + path,
            headers=headers,
            raise_error=False,
            follow_redirects=False,
            request_timeout=20,
            **kwargs,
        )

    def provider(self, name: str, spec: str):
        """The provider ``name`` (entry point group ``panbinder.providers``) for ``spec``, set
        up as the portal sets up those of its requests."""
        return get_provider_class(name)(spec, parent=self.serve)

    def stop_hub(self) -> None:
        """The Hub stops answering (its port is closed)."""
        self.hub_server.stop()

    def add_dataset(self, pid: str, *, public: bool = True, groups: tuple[str, ...] = (), **fields: Any):
        """A dataset whose folder exists under the storage root, with one file ``scan.nxs``
        (embargoed for a year unless ``public``)."""
        from panbinder.data_mounts.models import Dataset, DatasetFile

        folder = self.storage / pid.replace(":", "-")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "scan.nxs").write_bytes(b"not really hdf5")
        fields.setdefault("location", str(folder))
        release = None if public else datetime.now(UTC) + timedelta(days=365)
        with self.catalogue.session() as session:
            session.add(
                Dataset(
                    pid=pid,
                    title=f"dataset {pid}",
                    is_public=public,
                    release_date=release,
                    groups=list(groups),
                    files=[DatasetFile(path="scan.nxs", size=15)],
                    **fields,
                )
            )
        return folder

    def add_publication(self, doi: str, *pids: str, repo: str = REPO, sha: str = SHA) -> None:
        from panbinder.data_mounts.models import Publication

        with self.catalogue.session() as session:
            datasets = [self.catalogue.get_dataset(session, pid) for pid in pids]
            session.add(
                Publication(
                    doi=doi,
                    title=f"paper {doi}",
                    repo_url=repo,
                    ref="main",
                    resolved_sha=sha,
                    datasets=datasets,
                )
            )

    async def stream(self, path: str, **kwargs: Any) -> Stream:
        resp = await self.fetch(path, accept="text/event-stream", **kwargs)
        raw = resp.body.decode()
        return Stream(resp.code, raw, parse_stream(raw) if resp.code == 200 else [])


def portal_config(tmp_path: Path, registry_url: str, overrides: dict | None = None) -> Config:
    settings: dict[str, dict] = {
        "PanbinderBase": {"state_dir": str(tmp_path / "state")},
        "ServiceApp": {"builder_class": RecordingBuilder, "launcher_class": RecordingLauncher},
        "ServeApp": {"cors_allow_origin": CORS_ORIGIN, "public_url": PUBLIC_URL, "enable_build_only": True},
        "Registry": {"url": registry_url, "timeout": 5.0},
        "RepoGuard": {"allowed_hosts": ["127.0.0.1"]},
        "Catalogue": {"storage_roots": [str(tmp_path / "storage")]},
    }
    for section, values in (overrides or {}).items():
        settings.setdefault(section, {}).update(values)
    return Config(settings)


@asynccontextmanager
async def web_portal(tmp_path: Path, config: dict | None = None) -> AsyncIterator[WebPortal]:
    """The portal's application on a free loopback port, configured as ``panbinder serve`` with
    ``config`` (``{"Section": {"trait": value}}``) over the test defaults above."""
    images: dict[str, str] = {}
    users: dict[str, dict] = {}
    registry, registry_url = _serve(
        web.Application(
            [(r"/v2/", _RegistryRoot), (r"/v2/(.+)/manifests/([^/]+)", _Manifest, {"images": images})]
        )
    )
    hub, hub_url = _serve(
        web.Application(
            [
                (r"/hub/api/user", _HubUser, {"users": users}),
                (r"/hub/api/users/([^/]+)", _HubUserModel, {"users": users}),
            ]
        )
    )
    (tmp_path / "storage").mkdir(exist_ok=True)
    (tmp_path / "state").mkdir(exist_ok=True)
    shutil.copyfile(_migrated_catalogue(), tmp_path / "state" / "catalogue.sqlite")
    log = logging.getLogger("panbinder-web-test")
    serve = ServeApp(config=portal_config(tmp_path, registry_url, config), log=log)
    pipeline = serve.components.pipeline
    pipeline.catalogue.start()  # migrations (here: none, a migrated copy) run before anything serves
    identity = serve.identity(hub_url, hub_url, SERVICE_TOKEN)
    server = serve.http_server(serve.portal_app(identity, cookie_secret="0" * 64))
    sock, port = bind_unused_port()
    server.add_sockets([sock])
    try:
        yield WebPortal(
            url=f"http://127.0.0.1:{port}{serve.base_url.rstrip('/')}",
            serve=serve,
            pipeline=pipeline,
            registry_images=images,
            hub_users=users,
            storage=tmp_path / "storage",
            hub_server=hub,
            hub_url=hub_url,
            identity=identity,
        )
    finally:
        server.stop()
        await pipeline.manager.stop_all("shutdown", timeout=5)
        registry.stop()
        hub.stop()
        pipeline.catalogue.close()
