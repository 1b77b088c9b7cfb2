"""The registry client speaks the token protocol and reads docker's config.json: against a small
registry on 127.0.0.1 that, like Harbor, GitLab and Quay, answers 401 with a Bearer challenge and
accepts only tokens from its own token server (which wants Basic credentials)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from panbinder.errors import PanbinderError
from panbinder.registry_cache import Registry
from panbinder.registry_cache.credentials import docker_config_auth, parse_challenge, request_scope
from panbinder.registry_cache.naming import ImageRef
from panbinder.registry_cache.retention import RegistryAdmin
from panbinder.registry_cache.transfer import Manifest, RegistryClient

USER, SECRET = "reader", "s3cret:with colon"
NAME = "panbinder/v1-git-x"
DIGEST = "sha256:" + "a" * 64
MANIFEST = json.dumps({"schemaVersion": 2, "config": {"digest": DIGEST, "size": 2}, "layers": []}).encode()
MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class Token(RequestHandler):
    """The token server: Basic credentials (or none, for anonymous pulls) -> a token for the
    asked scope."""

    def get(self) -> None:
        state = self.settings["state"]
        scope, auth = self.get_argument("scope", ""), self.request.headers.get("Authorization", "")
        good = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        if auth and auth != good:
            self.set_status(401)
            self.finish({"errors": [{"code": "UNAUTHORIZED"}]})
            return
        if not auth and not scope.endswith(":pull") and scope:
            self.set_status(401)  # anonymous: pulls only
            self.finish({})
            return
        state["issued"] += 1
        token = f"tok-{state['issued']}"
        state["tokens"][token] = (scope, self.get_argument("service", ""))
        self.finish({"token": token, "expires_in": state["life"]})


class Api(RequestHandler):
    """Registry endpoints that want a Bearer token whose scope covers the request."""

    def prepare(self) -> None:
        state = self.settings["state"]
        path = self.request.path
        needed = request_scope(self.request.method, path)
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
        scope, service = state["tokens"].get(token, ("-", ""))
        state["requests"].append((self.request.method, path, token))
        if service != "test-registry" or (needed and not _covers(scope, needed)):
            port = self.request.host.rsplit(":", 1)[1]
            challenge = f'Bearer realm="http://127.0.0.1:{port}/token",service="test-registry"'
            if needed:
                challenge += f',scope="{needed}"'
            self.set_header("WWW-Authenticate", challenge)
            self.set_status(401)
            self.finish({"errors": [{"code": "UNAUTHORIZED"}]})

    def head(self, *_: str) -> None:
        self.set_header("Docker-Content-Digest", DIGEST)

    def get(self, *_: str) -> None:
        if self.request.path == "/v2/_catalog":
            self.finish({"repositories": [NAME]})
        elif self.request.path.endswith("/tags/list"):
            self.finish({"name": NAME, "tags": ["1"]})
        elif "/manifests/" in self.request.path:
            self.set_header("Content-Type", MEDIA_TYPE)
            self.finish(MANIFEST)
        else:
            self.finish({})

    def put(self, *_: str) -> None:
        self.settings["state"]["put"] = self.request.body
        self.set_status(201)


def _covers(granted: str, needed: str) -> bool:
    g_kind, _, g_rest = granted.rpartition(":")
    n_kind, _, n_rest = needed.rpartition(":")
    return g_kind == n_kind and set(n_rest.split(",")) <= set(g_rest.split(","))


@pytest.fixture
async def bearer_registry():
    """(URL, state) of the registry; state counts issued tokens and records requests."""
    state = {"issued": 0, "tokens": {}, "requests": [], "life": 300}
    app = Application([(r"/token", Token), (r"/v2/.*", Api)], state=state)
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{port}", state
    server.stop()


IMAGE = ImageRef("127.0.0.1:5000", NAME, "1")


async def test_a_bearer_registry_gets_a_token_once_per_scope(bearer_registry):
    url, state = bearer_registry
    registry = Registry(url=url, username=USER, password=SECRET)
    assert await registry.digest(IMAGE) == DIGEST
    assert await registry.digest(IMAGE) == DIGEST
    assert state["issued"] == 1  # the second look-up reused the cached token
    assert [r[2][:5] for r in state["requests"]] == ["Basic", "tok-1", "tok-1"]  # Basic, then the token
    assert state["tokens"]["tok-1"] == (f"repository:{NAME}:pull", "test-registry")
    assert await registry.ping() is True


async def test_an_expired_token_is_fetched_again(bearer_registry):
    url, state = bearer_registry
    state["life"] = 0.2  # counted as expired after 0.1 s
    registry = Registry(url=url, username=USER, password=SECRET)
    assert await registry.digest(IMAGE) == DIGEST
    assert await registry.digest(IMAGE) == DIGEST
    assert state["issued"] == 1
    await asyncio.sleep(0.2)
    assert await registry.digest(IMAGE) == DIGEST
    assert state["issued"] == 2


async def test_wrong_credentials_are_a_registry_error(bearer_registry):
    url, state = bearer_registry
    registry = Registry(url=url, username=USER, password="wrong")
    with pytest.raises(PanbinderError) as info:
        await registry.digest(IMAGE)
    assert info.value.reason == "registry_error" and "401" in info.value.log_message
    assert state["issued"] == 0


async def test_anonymous_pulls_get_a_token_without_credentials(bearer_registry, tmp_path):
    url, state = bearer_registry
    registry = Registry(url=url, docker_config=str(tmp_path / "none.json"))
    assert await registry.digest(IMAGE) == DIGEST
    assert state["issued"] == 1


async def test_archive_and_retention_use_tokens_for_their_scopes(bearer_registry):
    url, state = bearer_registry
    registry = Registry(url=url, username=USER, password=SECRET)
    client = RegistryClient(registry)
    manifest = await asyncio.to_thread(client.get_manifest, IMAGE)  # blocking transport
    assert manifest.body == MANIFEST and manifest.media_type == MEDIA_TYPE
    await asyncio.to_thread(client.put_manifest, ImageRef("x", NAME, "2"), Manifest(MANIFEST, MEDIA_TYPE))
    assert state["put"] == MANIFEST
    admin = RegistryAdmin(registry)
    assert await admin.repositories() == [NAME]
    assert await admin.tags(NAME) == ["1"]
    scopes = sorted(scope for scope, _ in state["tokens"].values())
    assert scopes == ["registry:catalog:*", f"repository:{NAME}:pull", f"repository:{NAME}:pull,push"]


def config_file(tmp_path, config: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_credentials_come_from_docker_config_json(bearer_registry, tmp_path, monkeypatch):
    url, state = bearer_registry
    host = url.split("://")[1]
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # the default path follows $DOCKER_CONFIG
    config_file(tmp_path, {"auths": {host: {"auth": auth(USER, SECRET)}}})
    registry = Registry(url=url)
    assert registry.credentials() == (USER, SECRET)
    assert await registry.digest(IMAGE) == DIGEST
    assert state["issued"] == 1
    config_file(tmp_path, {"auths": {host: {"auth": auth(USER, "stale")}}})
    with pytest.raises(PanbinderError):  # read once: the settings win over the file
        await Registry(url=url, username=USER, password="wrong").digest(IMAGE)


def test_config_json_entries_match_by_host(tmp_path):
    path = config_file(
        tmp_path,
        {
            "auths": {
                "https://registry.example.org/v1/": {"auth": auth("a", "1")},
                "http://127.0.0.1:5000": {"auth": auth("b", "2")},
                "other.example.org": {"auth": "not base64!"},
            }
        },
    )
    assert docker_config_auth(path, "registry.example.org") == ("a", "1")
    assert docker_config_auth(path, "127.0.0.1:5000") == ("b", "2")
    assert docker_config_auth(path, "other.example.org") is None
    assert docker_config_auth(path, "unknown.example.org") is None
    assert docker_config_auth(tmp_path / "missing.json", "registry.example.org") is None


def test_credential_helpers_are_reported_unsupported(tmp_path, caplog):
    path = config_file(tmp_path, {"auths": {"registry.example.org": {}}, "credsStore": "desktop"})
    with caplog.at_level(logging.WARNING):
        assert docker_config_auth(path, "registry.example.org") is None
    assert "credential helper 'desktop'" in caplog.text


def test_challenges_are_parsed_with_quoted_commas():
    header = 'Bearer realm="https://auth.example.org/token",service="reg",scope="repository:a/b:pull,push"'
    challenge = parse_challenge(header)
    assert challenge is not None
    assert (challenge.realm, challenge.service, challenge.scope) == (
        "https://auth.example.org/token",
        "reg",
        "repository:a/b:pull,push",
    )
    assert parse_challenge('Basic realm="registry"') is None
    assert request_scope("HEAD", "/v2/a/b/manifests/1") == "repository:a/b:pull"
    assert request_scope("PUT", "/v2/a/b/blobs/uploads/x?digest=y") == "repository:a/b:pull,push"
    assert request_scope("GET", "/v2/_catalog?n=10") == "registry:catalog:*"
