"""Hub-side spawner: DockerSpawner with panbinder's image check, hardening and a fast start.

Imported by the Hub (``c.JupyterHub.spawner_class``), so it must stay importable without the
portal running. The Hub polls a starting server with a randomised back-off (0.2 s growing to
5 s) and so notices readiness late; ``start`` here polls the server itself every
``ready_poll_interval`` seconds and returns as soon as it answers.
"""

from __future__ import annotations

import asyncio
import time

from dockerspawner import DockerSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, List, Unicode


class PanbinderSpawner(DockerSpawner):
    allowed_image_prefixes = List(
        Unicode(),
        help="Only images whose full name starts with one of these may be launched.",
    ).tag(config=True)
    ready_poll_interval = Float(0.05, help="Seconds between readiness checks during start.").tag(config=True)

    async def check_allowed(self, image: str) -> str:
        if any(image.startswith(p) for p in self.allowed_image_prefixes):
            return image
        raise web.HTTPError(400, f"Image {image} is not one this service built")

    async def start(self):
        ip, port = await super().start()
        await self._wait_ready(ip, port)
        return ip, port

    async def _wait_ready(self, ip: str, port: int) -> None:
        url = f"http://{ip}:{port}{self.server.base_url}api"
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                await client.fetch(url, request_timeout=2, follow_redirects=False)
                return
            except HTTPClientError as e:
                if e.code not in (599,) and e.code < 500:
                    return  # the server answers; auth or redirects are its business
            except OSError:
                pass
            status = await self.poll()
            if status is not None:
                raise RuntimeError(f"The server container exited with status {status} during start")
            await asyncio.sleep(self.ready_poll_interval)
