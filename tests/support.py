"""Real services for tests and benchmarks: a git daemon with repositories made on the spot,
a ``panbinder serve`` process on free ports, an event-stream reader and a kernel client.

Nothing here is faked: the portal, JupyterHub, docker and the registry are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(*args: str, cwd: Path) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="panbinder tests",
        GIT_AUTHOR_EMAIL="tests@panbinder.invalid",
        GIT_COMMITTER_NAME="panbinder tests",
        GIT_COMMITTER_EMAIL="tests@panbinder.invalid",
    )
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


class GitServer:
    """``git daemon`` on 127.0.0.1 serving repositories under ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                f"--base-path={self.base}",
                "--export-all",
                "--reuseaddr",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("git daemon did not start")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def git(self, name: str, *args: str) -> str:
        """Run a git command in repository ``name`` (tags, branches)."""
        return _git(*args, cwd=self.base / name)

    def commit(self, name: str, files: dict[str, str], message: str = "update") -> str:
        """Create the repository if needed, write ``files`` and commit; returns the sha."""
        repo = self.base / name
        if not (repo / ".git").exists():
            repo.mkdir(parents=True)
            _git("init", "-q", "-b", "main", cwd=repo)
        for rel, text in files.items():
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if rel in ("postBuild", "start") or rel.endswith(("/postBuild", "/start")):
                path.chmod(0o755)
        _git("add", "-A", cwd=repo)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=repo)
        return _git("rev-parse", "HEAD", cwd=repo).strip()


def notebook(code: str, *, kernel: str = "python3", display_name: str = "Python 3") -> str:
    """One code cell saved with the kernel ``kernel`` (an old Jupyter wrote python2)."""
    return json.dumps(
        {
            "cells": [
                {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": code}
            ],
            "metadata": {"kernelspec": {"name": kernel, "display_name": display_name, "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def machine_build_engine():
    """The build engine the set-up started (its state folder as this process sees it), which a
    portal with a state folder of its own uses too."""
    from panbinder.builder.build_engine import BuildEngine

    return BuildEngine()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class Portal:
    """``panbinder serve`` in a child process with its own state directory and ports."""

    state: Path
    config: str = ""
    port: int = field(default_factory=free_port)
    hub_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    hub_api_port: int = field(default_factory=free_port)
    container_prefix: str = "panbinder-test"
    # the tests' own git daemon listens on loopback, which the default configuration refuses
    repo_hosts: tuple[str, ...] = ("127.0.0.1",)
    # started as a shell's background job (`make serve &`): SIGINT ignored, inherited by children
    background_job: bool = False
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        self.state.mkdir(parents=True, exist_ok=True)
        path = self.state / "panbinder_config.py"
        path.write_text(
            textwrap.dedent(
                f"""
                c.ServeApp.port = {self.port}
                c.HubProcess.port = {self.hub_port}
                c.HubProcess.proxy_api_port = {self.proxy_api_port}
                c.HubProcess.hub_port = {self.hub_api_port}
                c.HubProcess.container_prefix = {self.container_prefix!r}
                c.RepoGuard.allowed_hosts = {list(self.repo_hosts)!r}
                c.BuildEngine.state_dir = {machine_build_engine().state_dir!r}
                c.ServeApp.enable_build_only = True
                """
            )
            + textwrap.dedent(self.config)
        )
        return path

    def command(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``panbinder ARGS`` with this portal's configuration and state (output captured)."""
        config = self.state / "panbinder_config.py"
        return subprocess.run(
            [sys.executable, "-m", "panbinder", *args, f"--config={config}", f"--state-dir={self.state}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, timeout: float = 90) -> None:
        config = self.write_config()
        env = dict(os.environ, PANBINDER_STATE=str(self.state))
        node = Path(os.environ.get("PANBINDER_STATE", ".state"), "node", "bin", "configurable-http-proxy")
        if node.exists() and not (self.state / "node").exists():
            (self.state / "node").symlink_to(node.resolve().parent.parent)
        log = open(self.state / "portal.log", "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "panbinder",
                "serve",
                f"--config={config}",
                f"--state-dir={self.state}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ignore_sigint if self.background_job else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"panbinder serve exited:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"panbinder serve did not start:\n{self.logs()}")

    def kill(self, *, watcher: bool = False) -> None:
        """SIGKILL ``serve`` as a crash would (with ``watcher``, its process watcher first)."""
        from panbinder.processes import all_procs

        if watcher:
            for p in all_procs():
                if p.ppid == self.proc.pid and p.runs("panbinder.lifeline") and "watch" in p.args:
                    os.kill(p.pid, signal.SIGKILL)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def processes(self) -> list:
        """Every live process started by a ``serve`` run on this state folder (``processes.Proc``)."""
        from panbinder.processes import all_procs

        state = str(self.state.resolve())
        return [p for p in all_procs() if p.state == state]

    @property
    def service_token(self) -> str:
        """The portal's Hub service token (admin scopes on the test Hub)."""
        return (self.state / "secrets" / "hub-service-token").read_text().strip()

    def user_token(self, name: str) -> str:
        """A new Hub API token of user ``name``, made with the service token."""
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.hub_port}/hub/api/users/{name}/tokens",
            data=b"{}",
            method="POST",
            headers={"Authorization": f"token {self.service_token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.load(resp)["token"]

    def logs(self) -> str:
        parts = []
        for name in ("portal.log", "logs/jupyterhub.log", "logs/lifeline.log"):
            p = self.state / name
            if p.exists():
                parts.append(f"--- {name}\n" + p.read_text(errors="replace")[-6000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=70)  # HubProcess.stop_timeout (45 s) and the rest
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def build_url(self, repo_url: str, ref: str, query: str = "") -> str:
        return f"{self.url}/build/git/{quote(repo_url, safe='')}/{ref}" + (f"?{query}" if query else "")


@dataclass
class Stream:
    events: list[dict]
    keepalives: int
    raw: str
    seconds: float

    @property
    def phases(self) -> list[str]:
        return [e["phase"] for e in self.events]

    @property
    def last(self) -> dict:
        return self.events[-1] if self.events else {}

    def log(self) -> str:
        return "".join(e.get("message", "") for e in self.events)


async def read_stream(url: str, timeout: float = 900, headers: dict | None = None) -> Stream:
    """Read a /build event stream to its end."""
    chunks: list[bytes] = []
    start = time.monotonic()
    req = HTTPRequest(
        url,
        headers={"Accept": "text/event-stream", **(headers or {})},
        streaming_callback=chunks.append,
        request_timeout=timeout,
    )
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    raw = b"".join(chunks).decode()
    if resp.code != 200:
        raise AssertionError(f"/build answered {resp.code}: {raw or resp.body}")
    events, keepalives = [], 0
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith(":"):
            keepalives += 1
            continue
        for line in block.splitlines():  # a terminal event also has a 'retry:' line
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return Stream(events, keepalives, raw, time.monotonic() - start)


async def run_code(server_url: str, token: str, code: str, timeout: float = 60, kernel_name: str = "") -> str:
    """Start a kernel (the server's default, or ``kernel_name``) in a launched server, run ``code``,
    return its stdout (raise on error)."""
    client = AsyncHTTPClient()
    base = server_url.rstrip("/")
    auth = {"Authorization": f"token {token}"}
    body = json.dumps({"name": kernel_name} if kernel_name else {})
    resp = await client.fetch(f"{base}/api/kernels", method="POST", body=body, headers=auth)
    kernel_id = json.loads(resp.body)["id"]
    ws_url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers=auth))
    msg_id = uuid.uuid4().hex
    conn.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "tests",
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    out: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
            if raw is None:
                raise RuntimeError("kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise RuntimeError(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
        raise TimeoutError("kernel did not finish")
    finally:
        conn.close()
        await client.fetch(
            f"{base}/api/kernels/{kernel_id}", method="DELETE", headers=auth, raise_error=False
        )


async def wait_status(url: str, token: str = "", timeout: float = 60) -> None:
    """Poll a Jupyter server's /api/status until it answers 200."""
    client = AsyncHTTPClient()
    headers = {"Authorization": f"token {token}"} if token else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await client.fetch(url, headers=headers, request_timeout=2)
            return
        except (HTTPClientError, OSError):
            await asyncio.sleep(0.02)
    raise TimeoutError(url)


async def timed_launch(build_url: str) -> float:
    """Seconds from GET /build/... to a launched server whose /api/status answers."""
    start = time.monotonic()
    s = await read_stream(build_url)
    if s.last.get("phase") != "ready":
        raise RuntimeError(s.log())
    await wait_status(s.last["url"] + "api/status", s.last["token"])
    return time.monotonic() - start


@contextmanager
def running_git(base: Path) -> Iterator[GitServer]:
    """A git daemon serving ``base`` for the length of the block."""
    server = GitServer(base)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_portal(
    state: Path, *, prefix: str, config: str = "", start: bool = True, **fields: Any
) -> Iterator[Portal]:
    """``panbinder serve`` for the length of the block (started by the caller when ``start`` is
    False); stopped and its containers removed afterwards. ``fields`` go to ``Portal``."""
    portal = Portal(state=state, container_prefix=prefix, config=config, **fields)
    try:
        if start:
            portal.start()
        yield portal
    finally:
        portal.stop()
        remove_containers(prefix)


def _docker_client(host: str = ""):
    """An SDK client of the engine at ``host`` (default: DOCKER_HOST, else the local socket)."""
    import docker

    return docker.DockerClient(base_url=host) if host else docker.from_env()


def remove_containers(prefix: str, host: str = "") -> None:
    """Remove containers whose name starts with ``prefix`` (clean-up by name)."""
    client = _docker_client(host)
    try:
        for c in client.containers.list(all=True, filters={"name": prefix}):
            if c.name.startswith(prefix):
                c.remove(force=True)
    finally:
        client.close()


def container_names(prefix: str, host: str = "") -> list[str]:
    """Names of containers starting with ``prefix`` (one listing: others come and go meanwhile)."""
    client = _docker_client(host)
    try:
        found = client.api.containers(all=True, filters={"name": prefix})
    finally:
        client.close()
    names = [n.lstrip("/") for c in found for n in c["Names"]]
    return sorted(n for n in names if n.startswith(prefix))


def session_prefix(base: str) -> str:
    """A container name prefix of this process, so parallel runs do not clean up each other."""
    return f"{base}{os.getpid()}"


def remove_stale_containers(base: str) -> None:
    """Remove containers that earlier runs (named ``<base><pid>…``) left when their process died."""
    import docker

    client = docker.from_env()
    try:
        for c in client.containers.list(all=True, filters={"name": base}):
            rest = c.name[len(base) :] if c.name.startswith(base) else ""
            pid = rest.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                c.remove(force=True)
    finally:
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def forget_image(image: str, *, blobs: bool, docker: str = "docker") -> None:
    """Lose ``image`` as a registry wipe would: its manifest (and with ``blobs`` its repository's
    links to the blobs, so every blob must be sent again) and the local engine's copy."""
    from panbinder.registry_cache.naming import parse_image
    from panbinder.registry_cache.transfer import RegistryClient, TransferError

    ref = parse_image(image)
    client = RegistryClient(f"http://{ref.registry}")
    try:
        manifest = client.get_manifest(ref)
    except TransferError:
        manifest = None
    if manifest is not None:
        doomed = [f"manifests/{manifest.digest}"] + [f"blobs/{b.digest}" for b in manifest.blobs() if blobs]
        for path in doomed:
            status, _, body = client._request("DELETE", f"{client.url}/v2/{ref.name}/{path}")
            if status not in (202, 404):
                raise RuntimeError(f"DELETE {path} of {ref.name}: HTTP {status} {body[:200]!r}")
    subprocess.run([docker, "rmi", "-f", image], capture_output=True)


# --- fault injection: shared by the fault tests and ``benchmarks/faults.py`` ------------------


class OwnRegistry:
    """``docker-registry serve`` on a free loopback port, stopped and started again at will."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.config = root / "registry.yml"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        (self.root / "storage").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            "storage:\n"
            f"  filesystem: {{rootdirectory: {self.root / 'storage'}}}\n"
            "  delete: {enabled: true}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        log = open(self.root / "registry.log", "ab")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if subprocess.run(["curl", "-sf", f"{self.url}/v2/"], capture_output=True).returncode == 0:
                return
            assert self.proc.poll() is None, (self.root / "registry.log").read_text()
            time.sleep(0.1)
        raise AssertionError("the test's registry did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_until(check, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``check()`` until it is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def quick_recovery_config(*, cull_timeout: int) -> str:
    """Portal settings for the fault tests and benchmark: a pool of one refilled at once and swept
    every 2 s, a Hub that notices a vanished server within 2 s, a reaper every 3 s with a 15 s
    grace period."""
    return f"""
c.GitProvider.allow_local = True
c.ServerPool.size = 1
c.ServerPool.refill_delay = 0.5
c.ServerPool.sweep_interval = 2
c.HubProcess.poll_interval = 2
c.HubProcess.cull_timeout = {cull_timeout}
c.Reaper.interval = 3
c.Reaper.grace_period = 15
"""


async def portal_health(portal: Portal) -> tuple[int, dict]:
    """(status, body) of the portal's /health, with the service token (operator details)."""
    resp = await AsyncHTTPClient().fetch(
        f"{portal.url}/health",
        headers={"Authorization": f"token {portal.service_token}"},
        raise_error=False,
        request_timeout=30,
    )
    return resp.code, json.loads(resp.body)


def hub_pid(portal: Portal) -> int:
    from panbinder.processes import read_pid_file

    return read_pid_file(portal.state / "run" / "jupyterhub.pid") or 0


def kill_hub(portal: Portal) -> int:
    """SIGKILL the portal's Hub alone (its proxy and culler die with it); returns its pid."""
    pid = hub_pid(portal)
    assert pid, "no Hub pid file"
    os.kill(pid, signal.SIGKILL)
    return pid


def hub_users(portal: Portal, prefix: str = "pb-") -> dict[str, dict]:
    """The Hub's temporary users (name -> model), read with the portal's service token."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{portal.hub_port}/hub/api/users?limit=1000",
        headers={"Authorization": f"token {portal.service_token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return {u["name"]: u for u in json.load(resp) if u["name"].startswith(prefix)}


def server_running(user: dict | None) -> bool:
    """Whether a Hub user model lists a ready default server."""
    return bool(user and (user.get("servers") or {}).get("", {}).get("ready"))


@contextmanager
def own_run_engine(folder: Path) -> Iterator[Any]:
    """A run engine (dockerd) of the caller's own: own socket, data root, exec root and bridge,
    started and stopped with the build engine's functions (``BuildEngine``), so restarting it
    disturbs nothing else on the machine. Its bridge is named ``docker-r…``, so the build
    engine's isolation rules (``docker+``) keep build steps away from its servers. A portal
    uses it with ``c.Docker.host = engine.host``."""
    from panbinder.builder.build_engine import BuildEngine

    n = os.getpid() % 250
    engine = BuildEngine(
        state_dir=str(folder),
        bridge=f"docker-r{os.getpid() % 10_000_000}",
        bridge_address=f"172.28.{n}.1/24",
        seed_images=[],
    )
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()
        unmount_under(folder)


def unmount_under(folder: Path) -> None:
    """Lazily unmount what a stopped dockerd left mounted under ``folder`` (its data root, a
    killed build's layers), deepest first, so the folder can be removed."""
    root = str(Path(folder).resolve())
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m == root or m.startswith(root + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def restart_engine(engine: Any, *, kill: bool = False) -> float:
    """Restart ``engine``'s dockerd as an operator would (SIGTERM, or SIGKILL with ``kill``,
    then start it with the same settings); returns the seconds it was away."""
    start = time.monotonic()
    pid = engine._pid()
    assert pid, "the engine's dockerd is not running"
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        wait_until(lambda: not _alive_process(pid), 60, f"dockerd {pid} stopping")
    finally:
        engine.start()  # back, whatever happened meanwhile
    return time.monotonic() - start


def _alive_process(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # a child of this process would stay a zombie
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def leftover_processes(portal: Portal) -> list:
    """Processes of earlier, dead runs on the portal's state folder (``processes.Proc``): those
    not of the live run (its owner id is the one its children carry), and all of them when the
    portal is not running. The docker daemons a run may have started are not counted."""
    from panbinder.processes import all_procs

    state = str(portal.state.resolve())
    marked = [p for p in all_procs() if p.state == state and not p.daemon]
    live = portal.proc.pid if portal.proc is not None and portal.proc.poll() is None else None
    owners = {p.owner for p in marked if p.ppid == live}
    return [p for p in marked if p.owner not in owners and p.pid != live]


def processes_running(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (a build step's unique ``sleep`` argument)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def eventually(check, timeout: float, what: str, interval: float = 1.0) -> None:
    """Await ``check()`` (a coroutine function or a plain one) until it is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = check()
        if await result if asyncio.iscoroutine(result) else result:
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"not within {timeout:g} s: {what}")


async def until_url_or_failed(page, url: re.Pattern, timeout_ms: float) -> None:
    """Wait in a browser page for ``url``, or fail at once with the launch page's message when the
    launch fails (its status reads "Failed")."""
    landed = asyncio.ensure_future(page.wait_for_url(url, timeout=timeout_ms))
    failed = asyncio.ensure_future(
        page.locator("#status").filter(has_text="Failed").wait_for(timeout=timeout_ms)
    )
    await asyncio.wait({landed, failed}, return_when=asyncio.FIRST_COMPLETED)
    for task in (landed, failed):
        task.cancel()
    await asyncio.gather(landed, failed, return_exceptions=True)
    assert url.match(page.url), await page.locator("main").inner_text()
