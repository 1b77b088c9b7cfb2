"""Hub-side spawner: DockerSpawner with panbinder's image check, hardening and a fast start.

Imported by the Hub (``c.JupyterHub.spawner_class``), so it must stay importable without the
portal running. The Hub polls a starting server with a randomised back-off (0.2 s growing to
5 s) and so notices readiness late; ``start`` here polls the server itself every
``ready_poll_interval`` seconds and returns as soon as it answers.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from dockerspawner import DockerSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Any, Float, Int, List, Unicode, default


def _literal_volume_name(name: str, spawner: object) -> str:
    """Host paths are used as they are: no ``{username}`` templating of dataset paths."""
    return name


class PanbinderSpawner(DockerSpawner):
    signing_key = Unicode(help="Key that launch options must be signed with (shared with the portal).").tag(
        config=True
    )
    storage_roots = List(Unicode(), help="Only paths under these roots may be mounted.").tag(config=True)
    manifest_dir = Unicode("", help="Folder of the portal's MANIFEST.json files (mountable too).").tag(
        config=True
    )

    @default("format_volume_name")
    def _format_volume_name_default(self) -> Any:
        return _literal_volume_name

    allowed_image_prefixes = List(
        Unicode(),
        help="Only images whose full name starts with one of these may be launched.",
    ).tag(config=True)
    ready_poll_interval = Float(
        0.05,
        help="Seconds between readiness checks during start, when it is the only server starting "
        "(with n starting at once, n/4 times this: the Hub answers all of them in one process).",
    ).tag(config=True)
    container_poll_interval = Float(
        1.0,
        help="Seconds between checks, during start, that the container still runs (a docker call, "
        "so not at the pace of the HTTP readiness check).",
    ).tag(config=True)
    docker_threads = Int(
        4,
        help="Threads for the Hub's docker calls, shared by all its servers (DockerSpawner uses "
        "one, so servers starting at once waited for each other's calls).",
    ).tag(config=True)
    starting = 0  # servers of this Hub in _wait_ready now

    @property
    def executor(self) -> ThreadPoolExecutor:
        cls = PanbinderSpawner
        if cls._executor is None:
            cls._executor = ThreadPoolExecutor(max(1, self.docker_threads), thread_name_prefix="docker")
        return cls._executor

    async def check_allowed(self, image: str) -> str:
        if any(image.startswith(p) for p in self.allowed_image_prefixes):
            return image
        raise web.HTTPError(400, f"Image {image} is not one this service built")

    def apply_launch_options(self) -> None:
        """Check the portal's signature (made for this Hub user, not expired) and confinement
        again, then set mounts and environment."""
        from panbinder.data_mounts.mounts import MANIFEST_PATH
        from panbinder.launcher import signing
        from panbinder.paths import confine

        opts = self.user_options or {}
        fields = signing.fields_from_options(opts)
        if not fields.mounts and not fields.environment:
            return
        signing.verify(self.signing_key, opts.get("signature", ""), fields, user=self.user.name)
        volumes = {}
        for m in fields.mounts:
            if not m.read_only or not m.container_path.startswith("/data/"):
                raise web.HTTPError(400, "datasets are mounted read-only under /data/")
            roots = [self.manifest_dir] if m.container_path == MANIFEST_PATH else self.storage_roots
            volumes[str(confine(m.host_path, roots))] = {"bind": m.container_path, "mode": "ro"}
        self.read_only_volumes = volumes
        self.environment = {**self.environment, **fields.environment}

    async def start(self):
        from panbinder.errors import PanbinderError

        try:
            self.apply_launch_options()
        except PanbinderError as e:  # refuse to start; the operator's detail goes to the log only
            self.log.warning("launch options refused for %s: %s", self.user.name, e.log_message)
            raise web.HTTPError(e.status_code, f"launch options refused: {e.message}") from e
        except Exception as e:  # a malformed option
            self.log.warning("launch options refused for %s: %s", self.user.name, e)
            raise web.HTTPError(403, "launch options refused: they are malformed") from e
        ip, port = await super().start()
        await self._wait_ready(ip, port)
        return ip, port

    async def poll(self) -> int | str | None:
        """DockerSpawner's poll (a vanished container is reported stopped, status 0, so the Hub
        removes its route and marks the server stopped); while the run engine does not answer
        (restarting), the state is unknown and the server counts as running until the next poll,
        logged in one line instead of a traceback per server and poll."""
        from requests.exceptions import ConnectionError as DockerUnreachable

        try:
            return await super().poll()
        except DockerUnreachable as e:
            self.log.warning(
                "docker not answering; %s assumed running until the next poll: %s", self._log_name, e
            )
            return None

    async def _wait_ready(self, ip: str, port: int) -> None:
        url = f"http://{ip}:{port}{self.server.base_url}api"
        # a client of its own: the Hub's shared one (10 connections) also talks to the proxy
        client = AsyncHTTPClient(force_instance=True, max_clients=2)
        deadline = time.monotonic() + self.start_timeout
        next_poll = time.monotonic() + self.container_poll_interval
        PanbinderSpawner.starting += 1
        try:
            while time.monotonic() < deadline:
                if await self._answers(client, url):
                    return
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.container_poll_interval
                    status = await self.poll()
                    if status is not None:
                        raise RuntimeError(f"The server container exited with status {status} during start")
                await asyncio.sleep(poll_interval(self.ready_poll_interval, PanbinderSpawner.starting))
        finally:
            PanbinderSpawner.starting -= 1
            client.close()

    @staticmethod
    async def _answers(client: AsyncHTTPClient, url: str) -> bool:
        try:
            await client.fetch(url, request_timeout=2, follow_redirects=False)
            return True
        except HTTPClientError as e:
            return e.code not in (599,) and e.code < 500  # auth or redirects are its business
        except OSError:
            return False


def poll_interval(base: float, starting: int) -> float:
    """Readiness checks slow down with the number of servers starting at once (at most 1 s)."""
    return min(1.0, base * max(1.0, starting / 4))
