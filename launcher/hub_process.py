"""Run JupyterHub (with configurable-http-proxy) as a child process of ``panbinder serve``.

The Hub dies with the portal (a parent-death signal, see ``panbinder.lifeline``), and the proxy
and the culler die with the Hub. Each writes a pid file under ``<state>/run``; a later ``serve``
stops what an earlier run left there (``stop_stale``) and refuses to start when something else
holds one of the ports (``check_ports``). ``owns_hub`` tells whether the Hub answering on the
port is this process's child.

A Hub that exits while the portal runs (a crash, a ``kill -9``, the OOM killer) is started
again by ``watch``: the proxy and the culler died with it, and the new Hub finds the running
servers in its database, adds their routes to its new proxy and culls them as before (their
URLs and tokens stay valid). While it is down, ``owns_hub`` is false and ``/health`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from functools import cached_property
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient
from traitlets import Bool, Dict, Float, Instance, Int, List, Unicode, default
from traitlets.config import LoggingConfigurable

from panbinder import processes
from panbinder.docker_engine import Docker
from panbinder.errors import PanbinderError
from panbinder.executor import log_task_exception, run_blocking
from panbinder.lifeline import HUB_PROGRAM, exec_prefix
from panbinder.state import state_dir

from .workspaces import Workspaces, off_without_root

HUB_CONFIG = Path(__file__).with_name("hub_config.py")
IDENTITY_PATH = "api/panbinder/identity"  # served by hub_app.IdentityHandler under /hub/
# pid file (under <state>/run) -> what its command line must name
# HubProcess.backend -> the Hub's spawner class
BACKENDS = {
    "docker": "panbinder.launcher.spawner.PanbinderSpawner",
    "swarm": "panbinder.launcher.swarm.PanbinderSwarmSpawner",
    "slurm": "panbinder.launcher.slurm_spawner.PanbinderSlurmSpawner",
}
PID_FILES = {
    "jupyterhub.pid": HUB_PROGRAM,
    "proxy.pid": "configurable-http-proxy",
    "culler.pid": "jupyterhub_idle_culler",
}


def docker_bridge_gateway(docker: Docker | None = None) -> str:
    """The run engine's docker0 gateway: containers reach the Hub API there."""
    engine = docker or Docker()
    try:
        return engine.bridge_gateway()
    finally:
        if docker is None:
            engine.close()


class HubProcess(LoggingConfigurable):
    ip = Unicode("127.0.0.1", help="Address the Hub's public proxy listens on.").tag(config=True)
    port = Int(8000, help="Port of the Hub's public proxy.").tag(config=True)
    proxy_api_port = Int(8001, help="Port of configurable-http-proxy's REST API (on 127.0.0.1).").tag(
        config=True
    )
    hub_ip = Unicode(
        "", help="Address the Hub's own server binds to; containers call it. Empty: docker0 gateway."
    ).tag(config=True)
    hub_port = Int(8081, help="Port of the Hub's own server.").tag(config=True)
    docker = Instance(
        Docker,
        help="The run engine, where the Hub's spawner starts servers and whose bridge gateway the "
        "servers call the Hub at (given by the composition root).",
    )
    proxy_command = List(
        Unicode(), help="configurable-http-proxy command (default: the one the set-up installed)."
    ).tag(config=True)
    authenticator_class = Unicode(
        "null", help="JupyterHub authenticator for the Hub (temporary users need no login)."
    ).tag(config=True)
    cull_timeout = Int(
        600, help="Seconds of inactivity before a launched server and its user are removed."
    ).tag(config=True)
    cull_every = Int(60, help="Seconds between idle checks.").tag(config=True)
    backend = Unicode(
        "docker",
        help="""Where servers run: 'docker' (a container each on the run engine), 'swarm' (a
        service each on the swarm the run engine is a manager of; docker swarm init), 'slurm'
        (a Slurm job each, running the image with podman; settings on PanbinderSlurmSpawner
        through extra_config), or the import path of a JupyterHub spawner class.""",
    ).tag(config=True)
    swarm_network = Unicode(
        "panbinder-swarm",
        help="Swarm back-end: the swarm-scoped bridge network servers join (made when missing).",
    ).tag(config=True)
    swarm_node_labels = Dict(
        help="""Swarm back-end: dataset roots found only on some nodes, each mapped to the node
        label those nodes carry ('KEY=VALUE'), e.g. {'/gpfs/p11': 'panbinder.data.p11=true'};
        a launch mounting a dataset under such a root is placed on those nodes only.""",
    ).tag(config=True)
    mem_limit = Unicode("2G", help="Memory limit of each launched server.").tag(config=True)
    cpu_limit = Float(1.0, help="CPU limit (cores) of each launched server.").tag(config=True)
    pids_limit = Int(256, help="Process limit of each launched server.").tag(config=True)
    start_timeout = Int(120, help="Seconds a server may take to start.").tag(config=True)
    container_prefix = Unicode("panbinder", help="Name prefix of launched containers.").tag(config=True)
    default_url = Unicode("/lab", help="Page a launched server opens by default.").tag(config=True)
    environment = Dict(help="Extra environment for launched servers.").tag(config=True)
    groups = Dict(
        help="Hub groups and their members to create at start, e.g. proposal groups: {'proposal-42': ['alice']}."
    ).tag(config=True)
    extra_config = Dict(
        help="More JupyterHub settings as {'Class': {'trait': value}}, e.g. the authenticator's."
    ).tag(config=True)
    log_level = Unicode("INFO", help="Hub log level.").tag(config=True)
    ready_timeout = Float(60.0, help="Seconds to wait for the Hub to answer after starting it.").tag(
        config=True
    )
    cleanup_servers = Bool(
        True,
        help="""Stop the launched servers when the Hub stops (JupyterHub.cleanup_servers). False
        leaves them running for the next Hub to adopt: it finds them in its database, and a
        server that is gone by then is forgotten.""",
    ).tag(config=True)
    stop_timeout = Float(
        45.0,
        help="""Seconds the Hub may take to stop (servers, then the culler, then the proxy) before
        it is killed; servers get all but 10 of them. What is left then is killed by pid.""",
    ).tag(config=True)

    restart = Bool(
        True,
        help="""Start the Hub again when it exits while the portal runs. Running servers are
        kept: the new Hub adopts them (same URLs and tokens) and its culler culls them.""",
    ).tag(config=True)
    watch_interval = Float(1.0, help="Seconds between checks that the Hub still runs.").tag(config=True)
    restart_backoff = Float(
        30.0, help="Longest wait (seconds) between attempts to start a Hub that keeps failing."
    ).tag(config=True)
    sqlite_wal = Bool(
        True,
        help="""Write-ahead logging for the Hub's SQLite database (commits wait for no disk sync).
        Turn off when the state directory is on a network file system.""",
    ).tag(config=True)
    start_check_interval = Float(
        0.025,
        help="""Seconds between the Hub's first checks that a starting server answers (each wait
        then grows by 5 %, up to 0.5 s; hub_wait.py). JupyterHub's own waits double from
        0.2 s, which noticed a server a few hundred milliseconds after it answered.""",
    ).tag(config=True)
    poll_interval = Int(
        30,
        help="""Seconds between the Hub's checks that each server's container still runs
        (Spawner.poll_interval): a server whose container vanished (the run engine restarted) is
        reported stopped and its route removed within this time.""",
    ).tag(config=True)

    @default("proxy_command")
    def _proxy_default(self) -> list[str]:
        local = state_dir(self) / "node" / "bin" / "configurable-http-proxy"
        if local.exists():
            return [str(local.resolve())]
        return [shutil.which("configurable-http-proxy") or "configurable-http-proxy"]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.proc: subprocess.Popen | None = None
        self.nonce = ""
        self.state_dir = Path(".")
        self.stopping = False
        self.restarts = 0
        self.down_since: float | None = None  # monotonic time the watcher found the Hub gone
        self.watcher: asyncio.Task | None = None
        self._start_args: dict = {}

    @property
    def public_url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def settings(
        self,
        *,
        state_dir: Path,
        allowed_image_prefixes: list[str],
        cors_origin: str,
        storage_roots: list[str],
        portal_oauth_callback: str = "",
    ) -> dict:
        hub_ip = self.hub_ip or docker_bridge_gateway(self.docker)
        args = []
        if cors_origin:
            args.append(f"--ServerApp.allow_origin={cors_origin}")
        env = {"JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1", **self.environment}
        return {
            "bind_url": f"{self.public_url}/",
            "hub_ip": hub_ip,
            "hub_port": self.hub_port,
            "hub_connect_ip": hub_ip,
            "proxy_api_url": f"http://127.0.0.1:{self.proxy_api_port}",
            "proxy_command": self.proxy_command,
            "db_url": f"sqlite:///{state_dir / 'hub' / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(state_dir / "hub" / "cookie_secret"),
            "pid_file": str(state_dir / "run" / "jupyterhub.pid"),
            "proxy_pid_file": str(state_dir / "run" / "proxy.pid"),
            "culler_pid_file": str(state_dir / "run" / "culler.pid"),
            "cleanup_servers": self.cleanup_servers,
            "poll_interval": self.poll_interval,
            "start_check_interval": self.start_check_interval,
            "sqlite_wal": self.sqlite_wal,
            "stop_servers_timeout": max(1.0, self.stop_timeout - 10),
            "authenticator_class": self.authenticator_class,
            "cull_timeout": self.cull_timeout,
            "cull_every": self.cull_every,
            "log_level": self.log_level,
            "portal_oauth_callback": portal_oauth_callback,
            "groups": self.groups,
            "extra_config": self.extra_config,
            "spawner": {
                "class": self.spawner_class(),
                "network": self.swarm_network,
                "node_labels": self.swarm_node_labels,
                "allowed_image_prefixes": allowed_image_prefixes,
                "default_image": "",
                "default_url": self.default_url,
                "mem_limit": self.mem_limit,
                "cpu_limit": self.cpu_limit,
                "pids_limit": self.pids_limit,
                "start_timeout": self.start_timeout,
                "container_prefix": self.container_prefix,
                "environment": env,
                "args": args,
                "storage_roots": storage_roots,
                "manifest_dir": str(state_dir / "manifests"),
                "workspaces": self.workspaces.settings(),
            },
        }

    @cached_property
    def workspaces(self) -> Workspaces:
        """The Hub's workspace settings: off (one warning) on docker and swarm unless root."""
        settings = Workspaces(parent=self, log=self.log)
        off_without_root(settings, self.backend)
        return settings

    def spawner_class(self) -> str:
        """The Hub's spawner class for ``backend``."""
        if self.backend in BACKENDS:
            return BACKENDS[self.backend]
        if "." in self.backend:
            return self.backend
        raise PanbinderError(
            f"HubProcess.backend {self.backend!r} is not one of {', '.join(BACKENDS)}; set one of "
            "them, or the import path of a spawner class.",
            reason="unknown_backend",
            status_code=500,
        )

    def start(
        self, *, state_dir: Path, token: str, proxy_token: str, signing_key: str, settings: dict
    ) -> None:
        self.state_dir = state_dir
        self._start_args = dict(
            state_dir=state_dir,
            token=token,
            proxy_token=proxy_token,
            signing_key=signing_key,
            settings=settings,
        )
        hub_dir = state_dir / "hub"
        hub_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "run").mkdir(exist_ok=True)
        (state_dir / "logs").mkdir(exist_ok=True)
        settings_file = hub_dir / "settings.json"
        settings_file.write_text(json.dumps(settings, indent=2))
        self.nonce = secrets.token_hex(16)
        env = dict(
            os.environ,
            PANBINDER_HUB_SETTINGS=str(settings_file),
            PANBINDER_HUB_TOKEN=token,
            PANBINDER_HUB_NONCE=self.nonce,
            CONFIGPROXY_AUTH_TOKEN=proxy_token,
            PANBINDER_SIGNING_KEY=signing_key,
        )
        run_engine = self.docker.host
        if run_engine:  # the Hub's spawner starts servers in the same engine as the portal's calls
            env["DOCKER_HOST"] = run_engine
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        log = open(state_dir / "logs" / "jupyterhub.log", "ab")
        self.log.info("starting JupyterHub at %s (log: logs/jupyterhub.log)", self.public_url)
        # SIGTERM when the portal dies: the Hub's own clean-up stops servers, culler and proxy
        lifeline = [*exec_prefix(os.getpid()), "--"]
        self.proc = subprocess.Popen(
            [*lifeline, sys.executable, "-m", HUB_PROGRAM, "-f", str(HUB_CONFIG)],
            cwd=hub_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def watch(self, token: str) -> None:
        """Start the Hub again whenever it exits without ``stop`` (when ``restart`` is set)."""
        if not self.restart or self.proc is None or self.watcher is not None:
            return
        self.watcher = asyncio.get_running_loop().create_task(self._watch(token), name="hub-watch")
        self.watcher.add_done_callback(lambda t: log_task_exception(t, self.log))

    async def _watch(self, token: str) -> None:
        while not self.stopping:
            await asyncio.sleep(self.watch_interval)
            if self.stopping or self.proc is None or self.proc.poll() is None:
                continue
            self.down_since = time.monotonic()
            self.log.error(
                "JupyterHub (pid %d) exited with status %s; starting it again (running servers are kept)",
                self.proc.pid,
                self.proc.returncode,
            )
            delay = self.watch_interval
            while not self.stopping:
                try:
                    await self._start_again(token)
                    break
                except Exception as e:  # ports still held, the Hub failing at start: try again
                    self.log.error("JupyterHub did not start again: %s; next try in %.0f s", e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.restart_backoff)
            if self.stopping:
                return
            self.restarts += 1
            self.log.warning("JupyterHub is back after %.1f s", time.monotonic() - self.down_since)
            self.down_since = None

    async def _start_again(self, token: str) -> None:
        """Clear what the dead Hub left (its proxy and culler, their ports), then start it."""
        await run_blocking(self.stop_stale, self.state_dir)
        ports = self.ports(self._start_args["settings"]["hub_ip"])
        deadline = time.monotonic() + 10
        while not all(processes.port_free(ip, port) for ip, port, _ in ports):
            if time.monotonic() > deadline:
                check_ports(ports)  # names the holder
            await asyncio.sleep(0.2)
        if self.stopping:
            return
        self.start(**self._start_args)
        await self.wait_ready(token)

    async def wait_ready(self, token: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        client = AsyncHTTPClient()
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with {self.proc.returncode}; see logs/jupyterhub.log")
            if await self.owns_hub(token, client=client, timeout=2):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("JupyterHub did not answer in time; see logs/jupyterhub.log")

    async def owns_hub(
        self, token: str, *, client: AsyncHTTPClient | None = None, timeout: float = 5
    ) -> bool:
        """Whether the Hub answering at ``public_url`` is the child this object started."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        own = client or AsyncHTTPClient(force_instance=True)  # not queued behind launches
        try:
            resp = await own.fetch(
                f"{self.public_url}/hub/{IDENTITY_PATH}",
                headers={"Authorization": f"token {token}"},
                request_timeout=timeout,
            )
            who = json.loads(resp.body)
        except Exception:
            return False
        finally:
            if client is None:
                own.close()
        return who.get("pid") == self.proc.pid and who.get("nonce") == self.nonce

    def ports(self, hub_ip: str) -> list[tuple[str, int, str]]:
        """(address, port, setting) of every port the Hub and its proxy listen on."""
        return [
            (self.ip, self.port, "HubProcess.port"),
            ("127.0.0.1", self.proxy_api_port, "HubProcess.proxy_api_port"),
            (hub_ip, self.hub_port, "HubProcess.hub_port"),
        ]

    def stop_stale(self, state_dir: Path) -> list[processes.Proc]:
        """Stop a Hub, proxy and culler that an earlier run on ``state_dir`` left running.

        Only a pid whose command line names that program and which carries this state folder
        is stopped (pids are reused); the Hub first, so its own clean-up may run.
        """
        state = str(state_dir.resolve())
        stopped = []
        for name, program in PID_FILES.items():
            path = state_dir / "run" / name
            proc = processes.stale_from_pid_file(path, program, state)
            if proc is not None:
                self.log.warning(
                    "stopping %s (pid %d) left by an earlier run: %s", name, proc.pid, proc.command
                )
                timeout = self.stop_timeout if name == "jupyterhub.pid" else 5
                processes.stop_pids([proc.pid], timeout=timeout)
                stopped.append(proc)
            path.unlink(missing_ok=True)  # JupyterHub would kill a reused proxy pid unchecked
        return stopped

    def stop(self) -> None:
        """Stop the Hub (servers, culler, proxy: see hub_app.py) within ``stop_timeout``."""
        self.stopping = True  # the watcher does not start it again
        if self.watcher is not None:
            with contextlib.suppress(RuntimeError):  # its loop already closed
                self.watcher.get_loop().call_soon_threadsafe(self.watcher.cancel)
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.log.error("JupyterHub did not stop in %.0f s; killing it", self.stop_timeout)
                self.proc.kill()
                self.proc.wait()
        for proc in self.stop_stale(self.state_dir):  # a proxy or culler the Hub did not stop
            self.log.error("stopped pid %d left after the Hub stopped: %s", proc.pid, proc.command)


def check_ports(ports: list[tuple[str, int, str]]) -> None:
    """Fail with a clear message when something already listens on one of ``ports``."""
    for ip, port, setting in ports:
        if processes.port_free(ip, port):
            continue
        holders = processes.port_holders(port)
        who = "; ".join(f"pid {p.pid}: {p.command}" for p in holders) or "a process this user cannot see"
        raise PanbinderError(
            f"Port {port} on {ip} ({setting}) is already in use by {who}. Stop that program or "
            f"choose another port with c.{setting}.",
            reason="port_in_use",
            status_code=500,
        )
