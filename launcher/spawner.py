"""Hub-side spawner: DockerSpawner with panbinder's image check, hardening and a fast start.

Imported by the Hub (``c.JupyterHub.spawner_class``), so it must stay importable without the
portal running. The Hub polls a starting server with a randomised back-off (0.2 s growing to
5 s) and so notices readiness late; ``start`` here polls the server itself every
``ready_poll_interval`` seconds and returns as soon as it answers.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dockerspawner import DockerSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Any, Float, Int, Unicode, default

from panbinder.errors import PanbinderError
from panbinder.launcher.launch_options import SignedLaunch, refusal
from panbinder.launcher.profiles import Profile, docker_resources
from panbinder.launcher.publish_command import command_files
from panbinder.launcher.server_changes import server_files
from panbinder.launcher.workspace_disk import WorkspaceDisk
from panbinder.launcher.workspaces import Workspaces, workspace_key

WORKSPACE_LABEL = "org.panbinder.workspace"
SERVER_FILES = "/opt/panbinder"  # server_changes.py and its configuration, in anonymous servers
PUBLISH_COMMAND = "/usr/local/bin/panbinder-publish"  # in servers with a workspace


def _literal_volume_name(name: str, spawner: object) -> str:
    """Host paths are used as they are: no ``{username}`` templating of dataset paths."""
    return name


class PanbinderSpawner(SignedLaunch, DockerSpawner):
    @default("format_volume_name")
    def _format_volume_name_default(self) -> Any:
        return _literal_volume_name

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
    publish_api_url = Unicode(
        "",
        help="URL of the portal's registration of derived datasets as servers reach it (set "
        "from DerivedData.api_url by panbinder serve; empty: servers get no panbinder-publish).",
    ).tag(config=True)
    starting = 0  # servers of this Hub in _wait_ready now
    workspace_owner = ""  # the signed-in portal user whose workspace this server mounts
    changes_config = ""  # config folder of the changes download in anonymous servers ("": none)

    @property
    def executor(self) -> ThreadPoolExecutor:
        cls = PanbinderSpawner
        if cls._executor is None:
            cls._executor = ThreadPoolExecutor(max(1, self.docker_threads), thread_name_prefix="docker")
        return cls._executor

    async def check_allowed(self, image: str) -> str:
        if self.image_allowed(image):
            return image
        raise web.HTTPError(400, f"Image {image} is not one this service built")

    def apply_launch_options(self) -> None:
        """Check the portal's signature and confinement again (``launch_options.py``, the same
        check as every panbinder spawner), then set mounts, environment and the profile's limits."""
        checked = self.checked_launch(self.user_options, self.user.name)
        if checked.empty:
            return
        self.read_only_volumes = {
            str(m.path): {"bind": m.spec.container_path, "mode": "ro"} for m in checked.mounts
        }
        self.environment = {**self.environment, **checked.environment}
        if checked.profile is not None:
            self.use_profile(checked.profile)
        self.workspace_owner = checked.workspace

    def use_profile(self, profile: Profile) -> None:
        """The signed resource profile's limits, and its GPUs as a device request."""
        resources = docker_resources(profile)
        self.mem_limit = resources["mem_limit"]
        self.cpu_limit = resources["cpu_limit"]
        if resources["device_requests"]:
            self.extra_host_config = {
                **self.extra_host_config,
                "device_requests": resources["device_requests"],
            }

    async def start(self):
        try:
            self.apply_launch_options()
        except Exception as e:  # refused or malformed options: the operator's detail goes to the log only
            raise refusal(self.log, self.user.name, e) from e
        self.changes_config = ""
        if self.workspace_owner:
            await self.prepare_workspace()
            await self.offer_publish()
        else:
            await self.offer_changes()
        ip, port = await super().start()
        await self._wait_ready(ip, port)
        return ip, port

    async def prepare_workspace(self) -> None:
        """Make and mount the owner's workspace filesystem (``workspace_disk.py``), then mount it
        read-write at ``Workspaces.container_path`` with the back-end's ``use_workspace``."""
        settings = Workspaces(parent=self, log=self.log)
        if not settings.enabled:
            self.log.warning("workspace of %s not mounted: Workspaces.enabled is off", self._log_name)
            return
        disk = WorkspaceDisk(settings)
        loop = asyncio.get_running_loop()
        try:
            record = await loop.run_in_executor(self.executor, disk.ensure, self.workspace_owner)
        except PanbinderError as e:
            self.log.error("workspace of %s: %s", self._log_name, e.log_message)
            raise web.HTTPError(e.status_code, e.message) from e
        volume = settings.volume_name(self.workspace_owner)
        await self.use_workspace(volume, str(disk.mount_dir(record.key)), settings.container_path)
        self.environment = {**self.environment, "PANBINDER_WORKSPACE": settings.container_path}

    async def offer_changes(self) -> None:
        """A server without a workspace: the download of its changed files (``server_changes.py``,
        mounted read-only at /opt/panbinder) and a notice in the home folder saying that changes
        are temporary."""
        settings = Workspaces(parent=self, log=self.log)
        if not settings.changes_download:
            return
        folder = Path(settings.root) / "server-files" / "opt"
        try:
            notice = await asyncio.get_running_loop().run_in_executor(self.executor, server_files, folder)
        except OSError as e:  # the server still starts, without the download
            self.log.warning("changes download for %s not offered: %s", self._log_name, e)
            return
        home = posixpath.dirname(settings.container_path.rstrip("/"))
        self.read_only_volumes = {
            **self.read_only_volumes,
            str(folder): {"bind": SERVER_FILES, "mode": "ro"},
            str(notice): {"bind": f"{home}/{notice.name}", "mode": "ro"},
        }
        self.changes_config = f"{SERVER_FILES}/config"  # joined into JUPYTER_CONFIG_PATH at create

    async def offer_publish(self) -> None:
        """A server with a workspace: ``panbinder-publish`` (``publish_command.py``) in a folder
        mounted read-only at /opt/panbinder, the command itself also at PUBLISH_COMMAND (on the
        PATH of every image: repo2docker's entrypoint starts the server from a login shell,
        which sets PATH anew, so a folder appended to the container's PATH is lost), and the
        portal's registration endpoint as PANBINDER_API_URL."""
        if not self.publish_api_url or "PANBINDER_WORKSPACE" not in self.environment:
            return
        folder = Path(Workspaces(parent=self, log=self.log).root) / "server-files" / "publish"
        try:
            bin_dir = await asyncio.get_running_loop().run_in_executor(self.executor, command_files, folder)
        except OSError as e:  # the server still starts, without the command
            self.log.warning("panbinder-publish for %s not offered: %s", self._log_name, e)
            return
        self.read_only_volumes = {
            **self.read_only_volumes,
            str(folder): {"bind": SERVER_FILES, "mode": "ro"},
            str(bin_dir / "panbinder-publish"): {"bind": PUBLISH_COMMAND, "mode": "ro"},
        }
        self.environment = {**self.environment, "PANBINDER_API_URL": self.publish_api_url}

    async def create_object(self):
        """The container (or service), with the changes download's config folder appended to the
        JUPYTER_CONFIG_PATH the server would otherwise have: the signed environment's (or the
        operator's), else the image's. No PYTHONPATH: the config file puts the module on the
        server's sys.path (``server_changes.py``), so the image's and the kernels' stay as they are."""
        if self.changes_config:
            own = self.environment.get("JUPYTER_CONFIG_PATH")
            base = own if isinstance(own, str) else await self.image_env("JUPYTER_CONFIG_PATH")
            joined = join_search_path(base, self.changes_config)
            self.environment = {**self.environment, "JUPYTER_CONFIG_PATH": joined}
        return await super().create_object()

    async def image_env(self, name: str) -> str:
        """The value of ``name`` in the image's ENV ("" when unset, or when the image cannot be
        inspected here, e.g. a swarm's image not pulled on the Hub's node: then ours alone)."""
        try:
            info = await self.docker("inspect_image", self.image)
        except Exception as e:
            self.log.debug("image %s not inspected for %s: %s", self.image, name, e)
            return ""
        for item in (info.get("Config") or {}).get("Env") or []:
            key, _, value = item.partition("=")
            if key == name:
                return value
        return ""

    async def use_workspace(self, volume: str, device: str, path: str) -> None:
        """One engine: a local docker volume that binds the mounted workspace (made once; made
        again if its folder changed), mounted read-write without docker's copy of image files."""
        from docker.errors import NotFound

        options = {"type": "none", "o": "bind", "device": device}
        try:
            found = await self.docker("inspect_volume", volume)
        except NotFound:
            found = None
        if found is not None and (found.get("Options") or {}) != options:
            await self.docker("remove_volume", volume)  # fails while a running server uses it
            found = None
        if found is None:
            labels = {WORKSPACE_LABEL: workspace_key(self.workspace_owner)}
            await self.docker("create_volume", volume, driver="local", driver_opts=options, labels=labels)
        self.volumes = {**self.volumes, volume: {"bind": path, "mode": "rw,nocopy"}}

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if self.workspace_owner:  # last use: when the server stops (culled, or its user's choice)
            disk = WorkspaceDisk(Workspaces(parent=self, log=self.log))
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self.executor, disk.touch, self.workspace_owner
                )
            except Exception as e:
                self.log.warning("last use of the workspace of %s not recorded: %s", self._log_name, e)

    def get_state(self) -> dict:
        state = super().get_state()
        if self.workspace_owner:  # a restarted Hub still records its last use at stop
            state["workspace_owner"] = self.workspace_owner
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.workspace_owner = state.get("workspace_owner", "")

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


def join_search_path(base: str, folder: str) -> str:
    """``folder`` appended to the ``:``-separated ``base`` (once)."""
    parts = [p for p in base.split(":") if p]
    return ":".join(parts if folder in parts else [*parts, folder])


def poll_interval(base: float, starting: int) -> float:
    """Readiness checks slow down with the number of servers starting at once (at most 1 s)."""
    return min(1.0, base * max(1.0, starting / 4))
