"""Run JupyterHub (with configurable-http-proxy) as a child process of ``panbinder serve``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient
from traitlets import Dict, Float, Int, List, Unicode, default
from traitlets.config import LoggingConfigurable

HUB_CONFIG = Path(__file__).with_name("hub_config.py")


def docker_bridge_gateway() -> str:
    """The docker0 gateway: containers reach the Hub API there."""
    import docker

    client = docker.from_env()
    try:
        ipam = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
        if ipam.get("Gateway"):
            return ipam["Gateway"]
        # dockerd 20.10 leaves Gateway out on the default bridge: it is the first host address
        return str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))
    finally:
        client.close()


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

    @default("proxy_command")
    def _proxy_default(self) -> list[str]:
        state = os.environ.get("PANBINDER_STATE", ".state")
        local = Path(state, "node", "bin", "configurable-http-proxy")
        if local.exists():
            return [str(local.resolve())]
        return [shutil.which("configurable-http-proxy") or "configurable-http-proxy"]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.proc: subprocess.Popen | None = None

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
        hub_ip = self.hub_ip or docker_bridge_gateway()
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
            "authenticator_class": self.authenticator_class,
            "cull_timeout": self.cull_timeout,
            "cull_every": self.cull_every,
            "log_level": self.log_level,
            "portal_oauth_callback": portal_oauth_callback,
            "groups": self.groups,
            "extra_config": self.extra_config,
            "spawner": {
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
            },
        }

    def start(
        self, *, state_dir: Path, token: str, proxy_token: str, signing_key: str, settings: dict
    ) -> None:
        hub_dir = state_dir / "hub"
        hub_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "run").mkdir(exist_ok=True)
        (state_dir / "logs").mkdir(exist_ok=True)
        settings_file = hub_dir / "settings.json"
        settings_file.write_text(json.dumps(settings, indent=2))
        env = dict(
            os.environ,
            PANBINDER_HUB_SETTINGS=str(settings_file),
            PANBINDER_HUB_TOKEN=token,
            CONFIGPROXY_AUTH_TOKEN=proxy_token,
            PANBINDER_SIGNING_KEY=signing_key,
        )
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        log = open(state_dir / "logs" / "jupyterhub.log", "ab")
        self.log.info("starting JupyterHub at %s (log: logs/jupyterhub.log)", self.public_url)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)],
            cwd=hub_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_ready(self, token: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        client = AsyncHTTPClient()
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with {self.proc.returncode}; see logs/jupyterhub.log")
            try:
                await client.fetch(
                    f"{self.public_url}/hub/api/",
                    headers={"Authorization": f"token {token}"},
                    request_timeout=2,
                )
                return
            except Exception:
                await asyncio.sleep(0.2)
        raise RuntimeError("JupyterHub did not answer in time; see logs/jupyterhub.log")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # the Hub itself first: it stops servers, services and the proxy it started
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # then whatever of its process group is left (a proxy or service that did not exit)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            time.sleep(1)
