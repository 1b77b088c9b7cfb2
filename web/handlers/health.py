"""/health (cached, time-limited checks), /versions and /metrics.

Which images have pre-started servers tells anyone what was just launched (a reader's
unpublished analysis, an embargoed publication's image), so /health gives anonymous callers
only the number of such servers; the names are for operators: a request with the portal's Hub
service token, or a signed-in user the Hub lists as an admin.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from importlib.metadata import version

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.httpclient import HTTPClientError

from panbinder import __version__
from panbinder.errors import PanbinderError

from .base import BaseHandler

_cache: dict[str, tuple[float, bool]] = {}


# what a failed check means for users, so that /health says which service is down and what fails
DOWN_MESSAGES = {
    "registry": "registry unreachable: launches and builds fail until it answers again",
    "build-engine": "build engine not answering: builds fail until it is started again; "
    "launches of built images and running servers are not affected",
    "hub": "JupyterHub not answering: launches fail until it is back; the portal starts it again "
    "when it stopped, and running servers are kept",
}


def _result(name: str, ok: bool) -> dict:
    result = {"service": name, "ok": ok}
    if not ok and name in DOWN_MESSAGES:
        result["message"] = DOWN_MESSAGES[name]
    return result


async def _check(name: str, coro_fn, *, timeout: float, cache_seconds: float) -> dict:
    """One check, time-limited, its result reused for ``cache_seconds``."""
    now = time.monotonic()
    hit = _cache.get(name)
    if hit and now - hit[0] < cache_seconds:
        return _result(name, hit[1])
    try:
        ok = bool(await asyncio.wait_for(coro_fn(), timeout))
    except Exception:
        ok = False
    _cache[name] = (now, ok)
    return _result(name, ok)


async def is_operator(handler: BaseHandler) -> bool:
    """The portal's Hub service token, or a signed-in Hub admin; never raises (False instead)."""
    identity = handler.settings.get("identity")
    if identity is None:
        return False
    scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() in ("token", "bearer") and token and identity.api_token:
        if hmac.compare_digest(token.encode(), identity.api_token.encode()):
            return True
    try:
        who = await identity.identify(handler)
        return not who.anonymous and await identity.is_admin(who.name)
    except (PanbinderError, OSError, HTTPClientError):  # a bad token, the Hub away: no details
        return False


class HealthHandler(BaseHandler):
    def _hub_check(self, launcher):
        """The Hub this portal started must be the one answering (not one an earlier run left)."""
        hub = self.settings.get("hub")
        if hub is not None and hub.proc is not None:
            return lambda: hub.owns_hub(launcher.api_token)
        return launcher.ping  # a Hub run elsewhere (ServeApp.start_hub = False)

    async def get(self) -> None:
        pipeline, docker = self.settings["pipeline"], self.settings["docker"]
        limits = {"timeout": self.settings["health_timeout"], "cache_seconds": self.settings["health_cache"]}
        checks = await asyncio.gather(
            _check("registry", pipeline.registry.ping, **limits),
            _check("docker", lambda: docker.call(docker.ping), **limits),
            _check("hub", self._hub_check(pipeline.launcher), **limits),
            _check("build-engine", pipeline.manager.builder.ping, **limits),
        )
        ok = all(c["ok"] for c in checks)
        pool = pipeline.launcher.pool
        body = {"ok": ok, "checks": checks, "prestarted_servers": pool.count if pool is not None else 0}
        if pool is not None:  # counts only: which images are warm is for operators
            body["pool"] = pool.status()
        if await is_operator(self):
            body["prestarted"] = pool.summary() if pool is not None else {}
        self.set_status(200 if ok else 503)
        self.finish(body)


class VersionsHandler(BaseHandler):
    def get(self) -> None:
        self.set_cors()
        self.finish(
            {
                "panbinder": __version__,
                "builder": f"repo2docker {version('jupyter-repo2docker')}",
                "jupyterhub": version("jupyterhub"),
                "dockerspawner": version("dockerspawner"),
            }
        )


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest())


routes = [(r"/health", HealthHandler), (r"/versions", VersionsHandler), (r"/metrics", MetricsHandler)]
