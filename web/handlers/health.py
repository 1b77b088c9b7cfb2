"""/health (cached, time-limited checks), /versions and /metrics."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from panbinder import __version__
from panbinder.executor import run_blocking

from .base import BaseHandler

CHECK_TIMEOUT = 5.0
CACHE_SECONDS = 10.0
_cache: dict[str, tuple[float, bool]] = {}


def _docker_ping() -> bool:
    import docker

    client = docker.from_env(timeout=CHECK_TIMEOUT)
    try:
        return bool(client.ping())
    finally:
        client.close()


async def _check(name: str, coro_fn) -> dict:
    now = time.monotonic()
    hit = _cache.get(name)
    if hit and now - hit[0] < CACHE_SECONDS:
        return {"service": name, "ok": hit[1]}
    try:
        ok = bool(await asyncio.wait_for(coro_fn(), CHECK_TIMEOUT))
    except Exception:
        ok = False
    _cache[name] = (now, ok)
    return {"service": name, "ok": ok}


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        pipeline = self.settings["pipeline"]
        checks = await asyncio.gather(
            _check("registry", pipeline.registry.ping),
            _check("docker", lambda: run_blocking(_docker_ping)),
            _check("hub", pipeline.launcher.ping),
        )
        ok = all(c["ok"] for c in checks)
        pool = getattr(pipeline.launcher, "pool", None)
        self.set_status(200 if ok else 503)
        self.finish({"ok": ok, "checks": checks, "prestarted": pool.summary() if pool is not None else {}})


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
