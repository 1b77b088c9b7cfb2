"""A stock single-user server for the launch benchmark: ``jupyterhub-singleuser`` as pip installs it.

The image is built by the benchmark, offline apart from the package index, FROM the same base image
as every panbinder image, with the same pinned server packages and nothing else: no dropped
packages (``PackSettings.drop_packages``) and no lazy Hub imports (``server_start_patches.py``). It runs
with a launched server's limits. A single-user server asks its Hub for the Hub's version at start and
checks each token with it, so a stub Hub API (version, and one user for the benchmark's token)
answers on the run engine's docker0 gateway, as the real Hub's API does.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from panbinder.builder.buildpack import PackSettings
from panbinder.builder.buildpacks.settings import BASE_IMAGE
from panbinder.builder.r2d import Repo2DockerBuilder
from panbinder.launcher.hub_process import docker_bridge_gateway
from tests.support import free_port, wait_status

STOCK_IMAGE = "panbinder-bench-stock-singleuser:1"
USER = "bench"
SCOPE = f"access:servers!server={USER}/"


def dockerfile(requirements: tuple[str, ...], *, ca: bool, index_url: str) -> str:
    lines = [f"FROM {BASE_IMAGE}"]
    if ca:
        lines += ["COPY ca.crt /etc/panbinder/ca-bundle.crt", "ENV PIP_CERT=/etc/panbinder/ca-bundle.crt"]
    if index_url:
        lines.append(f"ENV PIP_INDEX_URL={index_url}")
    lines += [
        "RUN python3 -m venv /srv/venv && /srv/venv/bin/pip install -q --no-cache-dir "
        + " ".join(requirements),
        "ENV PATH=/srv/venv/bin:$PATH HOME=/tmp",
        "USER 1000:1000",
    ]
    return "\n".join(lines) + "\n"


def build_stock_image(docker: str) -> str:
    """Build the stock image with the run engine (kept between runs: its tag names its content)."""
    if subprocess.run([docker, "image", "inspect", STOCK_IMAGE], capture_output=True).returncode == 0:
        return STOCK_IMAGE
    builder = Repo2DockerBuilder()
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-stock-") as ctx:
        if builder.ca_bundle:
            shutil.copy(builder.ca_bundle, Path(ctx, "ca.crt"))
        text = dockerfile(
            PackSettings().server_requirements, ca=bool(builder.ca_bundle), index_url=builder.index_url
        )
        Path(ctx, "Dockerfile").write_text(text)
        subprocess.run(
            [docker, "build", "-q", "-t", STOCK_IMAGE, ctx],
            check=True,
            capture_output=True,
            env={"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"},
        )
    return STOCK_IMAGE


class _Api(RequestHandler):
    def initialize(self, token: str) -> None:
        self.token = token

    def get(self, path: str) -> None:
        self.set_header("X-JupyterHub-Version", "6.1.1")
        if path == "":
            self.write({"version": "6.1.1"})
        elif path == "user" and self.request.headers.get("Authorization") == f"token {self.token}":
            self.write({"kind": "user", "name": USER, "admin": False, "groups": [], "scopes": [SCOPE]})
        else:
            self.set_status(403)


@contextmanager
def stub_hub() -> Iterator[tuple[str, str]]:
    """(Hub API URL as containers reach it, token) of a stub Hub API, for the block."""
    token = secrets.token_hex(16)
    ip, port = docker_bridge_gateway(), free_port()
    server = HTTPServer(Application([(r"/hub/api/?(.*)", _Api, {"token": token})]))
    server.listen(port, ip)
    try:
        yield f"http://{ip}:{port}/hub/api", token
    finally:
        server.stop()


def run_command(docker: str, image: str, name: str, port: int, api_url: str, token: str) -> list[str]:
    """`docker run` of the stock server with a launched server's limits and the Hub's variables."""
    env = {
        "JUPYTERHUB_API_URL": api_url,
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{USER}",
        "JUPYTERHUB_USER": USER,
        "JUPYTERHUB_SERVICE_PREFIX": f"/user/{USER}/",
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888/user/{USER}/",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([SCOPE]),
        "JUPYTERHUB_OAUTH_SCOPES": json.dumps([SCOPE]),
    }
    limits = ["--security-opt", "no-new-privileges", "--cap-drop", "ALL", "--pids-limit", "256"]
    limits += ["--memory", "2g", "--cpus", "1"]
    envs = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    publish = ["-p", f"127.0.0.1:{port}:8888"]
    return [
        docker,
        "run",
        "-d",
        "--rm",
        "--name",
        name,
        *publish,
        *limits,
        *envs,
        image,
        "jupyterhub-singleuser",
    ]


async def stock_once(docker: str, image: str, prefix: str, api_url: str, token: str) -> float:
    """Seconds from `docker run` of the stock server to its /api/status answering 200."""
    port = free_port()
    name = f"{prefix}-stock-{port}"
    command = run_command(docker, image, name, port, api_url, token)
    start = time.monotonic()
    subprocess.run(command, check=True, capture_output=True)
    try:
        await wait_status(f"http://127.0.0.1:{port}/user/{USER}/api/status", token)
        return time.monotonic() - start
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True)
