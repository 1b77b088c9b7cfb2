"""Signed launch options through the real Hub: a signature is bound to its user and expires.

The attacker holds the portal's Hub service token (or a user token, which may start its own
server with any options) and a set of launch options that were valid once: they start another
user's server with them, or start a server with them after they expired. The Hub must refuse
to start either, and nothing may be mounted.
"""

from __future__ import annotations

import json
import time

import docker
import pytest
from tornado.httpclient import AsyncHTTPClient

from panbinder.data_mounts import MountSpec
from panbinder.launcher.signing import SignedFields, fields_from_options, signed_options
from tests.support import read_stream

from .conftest import DOI_OPEN, PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]


class Hub:
    """The test portal's Hub REST API, with the portal's service token."""

    def __init__(self, portal) -> None:
        self.api = f"http://127.0.0.1:{portal.hub_port}/hub/api"
        token = portal.service_token
        self.auth = {"Authorization": f"token {token}"}
        self.log = portal.state / "logs" / "jupyterhub.log"

    async def call(self, method: str, path: str, body: object = None, **kw):
        return await AsyncHTTPClient().fetch(
            f"{self.api}{path}",
            method=method,
            body=None if body is None else json.dumps(body),
            headers=self.auth,
            raise_error=False,
            allow_nonstandard_methods=True,
            **kw,
        )

    async def servers(self, user: str) -> dict:
        return json.loads((await self.call("GET", f"/users/{user}")).body)["servers"]

    async def start(self, user: str, options: dict) -> str:
        """Start ``user``'s server with ``options``; the progress stream's text (failed or ready)."""
        await self.call("POST", f"/users/{user}", {})
        resp = await self.call("POST", f"/users/{user}/server", {"user_options": options})
        assert resp.code in (201, 202), resp.body
        progress = await self.call("GET", f"/users/{user}/server/progress", request_timeout=120)
        return progress.body.decode(errors="replace")


def containers_of(user: str) -> list[str]:
    """This test run's containers whose server belongs to ``user`` (by the Hub's environment)."""
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"name": PREFIX})
        return [c.name for c in found if f"JUPYTERHUB_USER={user}" in (c.attrs["Config"]["Env"] or [])]
    finally:
        client.close()


async def assert_refused(hub: Hub, user: str, options: dict, shown: str, logged: str) -> None:
    """The spawn fails saying ``shown``, logs ``logged``, and no container was created."""
    progress = await hub.start(user, options)
    assert not await hub.servers(user)
    assert not containers_of(user)  # no container, so nothing was mounted
    log = hub.log.read_text()
    assert f"launch options refused for {user}: {logged}" in log
    assert shown in progress or shown in log  # the stream may end before the test reads it
    await hub.call("DELETE", f"/users/{user}")


async def test_signed_options_are_not_accepted_for_another_user_or_after_expiry(
    portal, publications, storage_root
):
    hub = Hub(portal)
    launched = await read_stream(f"{portal.url}/build/doi/{DOI_OPEN}")
    assert launched.last["phase"] == "ready", launched.log()
    victim = launched.last["url"].rstrip("/").rsplit("/", 1)[-1]
    captured = (await hub.servers(victim))[""]["user_options"]
    assert captured["user"] == victim and captured["signature"]
    assert captured["expires"] > time.time()  # still valid: only the user differs

    # 1. replayed, unchanged and within its lifetime, for another user
    await assert_refused(
        hub,
        "pb-replay",
        captured,
        "made for another user",
        f"options signed for '{victim}' used by 'pb-replay'",
    )

    # 2. re-addressed to the other user without re-signing
    forged = {**captured, "user": "pb-readdress"}
    await assert_refused(
        hub, "pb-readdress", forged, "not made by the panbinder portal", "Launch options were"
    )

    # 3. signed with the portal's key for this very user, for the embargoed dataset, but expired
    key = (portal.state / "secrets" / "launch-signing-key").read_text().strip()
    fields = fields_from_options(captured)
    embargoed = MountSpec(str(storage_root / "embargoed-scan"), "/data/stolen", True)
    late = SignedFields(fields.image, (embargoed,), fields.environment, "pb-late", int(time.time()) - 5)
    await assert_refused(
        hub, "pb-late", signed_options(key, late), "expired", "options for 'pb-late' expired"
    )

    # the control: the captured options, signed afresh for pb-late, start a server
    fresh = SignedFields(fields.image, fields.mounts, fields.environment, "pb-late", int(time.time()) + 60)
    progress = await hub.start("pb-late", signed_options(key, fresh))
    assert '"ready": true' in progress, progress
    assert containers_of("pb-late")
    await hub.call("DELETE", "/users/pb-late")
