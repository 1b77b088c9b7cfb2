"""The build engine: a docker engine of its own for builds, apart from the one that runs servers.

Debian's dockerd 20.10 can crash in BuildKit when a build is cancelled, and a crashed dockerd
takes every container it runs with it. So builds run in a second dockerd with its own data
root, exec root, pid file, socket and bridge, which pushes to the same registry; the engine that
runs readers' servers (DockerSpawner, the pool, archive and restore) never builds and pulls
each image from the registry at launch. A build engine that dies stops the builds it ran, which
end with a clear ``failed`` event, and nothing else.

Build steps run on the engine's own bridge (``bridge``, ``bridge_address``), never on the host
network: from there the host's loopback (the registry, which has no authentication, the portal,
the Hub's proxy) is out of reach, and the two engines' isolation rules (both dockerds add theirs
to the same iptables chains) keep build steps away from readers' servers. What build steps may
reach on the host listens on ``gateway()``, for example a facility's conda channel mirror.

Started by the set-up (``panbinder build-engine start``, idempotent: a second start that finds
it answering takes about 0.1 s) and stopped by ``scripts/stop.sh`` (``panbinder build-engine
stop``), which also removes the bridge and the iptables rules dockerd leaves behind for it.
Base images reach it from the run engine (``docker save | docker load``) at start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from traitlets import Float, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from panbinder.command import PanbinderBase
from panbinder.docker_engine import Docker, DockerCommand, docker_argv
from panbinder.docker_engine import default_cli as default_docker_cli
from panbinder.errors import PanbinderError
from panbinder.state import state_dir

from .buildpacks.settings import BASE_IMAGE


def _run(args: list[str], *, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise PanbinderError(
            "The build engine could not be set up; the operator's log says why.",
            reason="build_engine",
            log_message=f"{' '.join(args)} failed: {proc.stderr.strip()[-500:]}",
            status_code=503,
        )
    return proc


class BuildEngine(LoggingConfigurable):
    """Where builds run: the docker engine every build, label build and lock probe talks to."""

    state_dir = Unicode(
        help="Folder of the build engine's socket, pid file, data root, exec root and log "
        "(default: <state_dir>/build-engine of the command, PanbinderBase.state_dir, where the set-up "
        "starts it).",
    ).tag(config=True)
    host = Unicode(
        help="Docker host URL of the build engine (default: unix://<state_dir>/build.sock).",
    ).tag(config=True)
    data_root = Unicode(help="dockerd --data-root of the build engine (default: <state_dir>/data).").tag(
        config=True
    )
    exec_root = Unicode(help="dockerd --exec-root of the build engine (default: <state_dir>/exec).").tag(
        config=True
    )
    bridge = Unicode(
        "pbbuild0",
        help="Name of the build engine's bridge (at most 15 characters); build steps run there.",
    ).tag(config=True)
    bridge_address = Unicode(
        "172.30.0.1/24",
        help="The bridge's address and prefix: its gateway, as build steps see the host, and its "
        "subnet, which must not overlap the run engine's networks.",
    ).tag(config=True)
    docker_cli = Unicode(help="Docker client for the build engine (default: Debian's /usr/bin/docker).").tag(
        config=True
    )
    dockerd = Unicode("dockerd", help="The dockerd command that start() runs.").tag(config=True)
    seed_images = List(
        Unicode(),
        [BASE_IMAGE],
        help="Images every build needs (base images): start() copies those the build engine lacks "
        "from the run engine (docker save | docker load).",
    ).tag(config=True)
    start_timeout = Float(60.0, help="Seconds start() waits for the build engine to answer.").tag(config=True)

    @default("state_dir")
    def _state_dir_default(self) -> str:
        return str(state_dir(self) / "build-engine")

    @default("host")
    def _host_default(self) -> str:
        return f"unix://{self.state_dir}/build.sock"

    @default("data_root")
    def _data_root_default(self) -> str:
        return os.path.join(self.state_dir, "data")

    @default("exec_root")
    def _exec_root_default(self) -> str:
        return os.path.join(self.state_dir, "exec")

    @default("docker_cli")
    def _docker_cli_default(self) -> str:
        return default_docker_cli()

    @validate("bridge")
    def _check_bridge(self, proposal) -> str:
        name = proposal["value"]
        if not (0 < len(name) <= 15) or "/" in name or " " in name:
            raise TraitError(f"BuildEngine.bridge {name!r}: a network interface name of 1 to 15 characters")
        return name

    @validate("bridge_address")
    def _check_address(self, proposal) -> str:
        try:
            iface = ipaddress.ip_interface(proposal["value"])
        except ValueError as e:
            raise TraitError(f"BuildEngine.bridge_address: {e} (write it like '172.30.0.1/24')") from None
        if iface.network.prefixlen >= 31 or iface.ip == iface.network.network_address:
            raise TraitError(f"BuildEngine.bridge_address {proposal['value']!r}: a host address in a subnet")
        return proposal["value"]

    # --- what clients need ------------------------------------------------------------------

    def docker(self) -> Docker:
        """The build engine's docker client (command line and SDK), made once."""
        made = getattr(self, "_docker", None)
        if made is None or (made.cli, made.host) != (self.docker_cli, self.host):
            made = self._docker = Docker(cli=self.docker_cli, host=self.host, log=self.log)
        return made

    def command(self, *args: str) -> list[str]:
        """The docker client command line for the build engine, followed by ``args``."""
        return self.docker().command(*args)

    def gateway(self) -> str:
        """The host's address on the build bridge: the one host address build steps reach."""
        return str(ipaddress.ip_interface(self.bridge_address).ip)

    @property
    def subnet(self) -> str:
        return str(ipaddress.ip_interface(self.bridge_address).network)

    @property
    def pidfile(self) -> Path:
        return Path(self.state_dir, "dockerd.pid")

    @property
    def log_file(self) -> Path:
        return Path(self.state_dir, "dockerd.log")

    def ping(self, timeout: float = 5.0) -> bool:
        """True when the build engine answers (``docker version`` reaches its server)."""
        try:
            proc = _run(self.command("version", "--format", "{{.Server.Version}}"), timeout=timeout)
        except (OSError, subprocess.SubprocessError):
            return False
        return proc.returncode == 0 and bool(proc.stdout.strip())

    def dockerd_args(self) -> list[str]:
        """The dockerd command line: own socket, data, exec root, pid file and bridge; iptables
        on so build steps reach the package index through NAT."""
        return [
            self.dockerd,
            f"--host={self.host}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--bridge={self.bridge}",
            "--iptables=true",
        ]

    # --- start and stop -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the build engine unless it answers already; raise PanbinderError when it does not
        come up within ``start_timeout`` (with the end of its log in the operator's message)."""
        if not self.ping(timeout=3):
            self._make_bridge()
            for folder in (self.state_dir, self.data_root, self.exec_root):
                Path(folder).mkdir(parents=True, exist_ok=True)
            self._stop_stale()
            self.log.info("starting the build engine (%s)", self.host)
            with open(self.log_file, "ab") as log:
                subprocess.Popen(
                    self.dockerd_args(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives the command that started it
                )
            self._wait_ready()
        self.isolate()
        self.seed()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.ping(timeout=3):
                return
            time.sleep(0.2)
        tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
        raise PanbinderError(
            "The build engine did not start; builds cannot run until it does.",
            reason="build_engine",
            log_message=f"dockerd for {self.host} did not answer in {self.start_timeout:g} s:\n{tail}",
            status_code=503,
        )

    def _make_bridge(self) -> None:
        if _run(["ip", "link", "show", self.bridge]).returncode != 0:
            _run(["ip", "link", "add", "name", self.bridge, "type", "bridge"], check=True)
        _run(["ip", "addr", "replace", self.bridge_address, "dev", self.bridge], check=True)
        _run(["ip", "link", "set", self.bridge, "up"], check=True)

    def _pid(self) -> int:
        """The pid of this engine's dockerd, or 0 (a pid file naming another process counts as none)."""
        return _running(self.pidfile, f"--pidfile={self.pidfile}")

    def _containerd_pid(self) -> int:
        """The pid of the containerd this engine's dockerd started, or 0."""
        folder = Path(self.exec_root, "containerd")
        return _running(folder / "containerd.pid", str(folder))

    def _stop_stale(self) -> None:
        """A dockerd of this pid file that no longer answers, and a containerd a killed dockerd
        left behind, would keep the new one from starting: stop them first."""
        self._stop_daemons(dockerd_wait=10)

    def _stop_daemons(self, *, dockerd_wait: float) -> int:
        """Stop this engine's dockerd (given ``dockerd_wait`` seconds), its containerd and the
        build steps they left; the dockerd's pid (0: none ran)."""
        pid = self._pid()
        if pid:
            _terminate(pid, dockerd_wait)
        containerd = self._containerd_pid()
        if containerd:
            _terminate(containerd, 10)
        # a containerd that died with its dockerd can linger as a zombie until init reaps it, and
        # dockerd takes any pid that still exists for a running containerd: it waited for that
        # one's socket and failed ("timeout waiting for containerd to start") after a kill mid-build
        Path(self.exec_root, "containerd", "containerd.pid").unlink(missing_ok=True)
        self.reap_steps()
        return pid

    def reap_steps(self) -> list[str]:
        """Stop the build steps a killed dockerd of this engine left running.

        BuildKit runs each RUN step as a runc container of its own, which outlives a dockerd
        killed mid-build; its bundle stays in this engine's executor folder under the step's id,
        which is also its runc id. Returns the ids."""
        folder = Path(self.data_root, "buildkit", "executor")
        steps = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        for step in steps:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                _run(["runc", "delete", "--force", step], timeout=30)
        if steps:
            self.log.warning("stopped %d build steps left by a stopped build engine", len(steps))
        return steps

    def stop(self) -> bool:
        """Stop the build engine, then remove its bridge and the iptables rules dockerd left for
        it. True when a running dockerd was stopped."""
        pid = self._stop_daemons(dockerd_wait=30)
        self.pidfile.unlink(missing_ok=True)
        for table in ("filter", "nat"):
            listing = _run(["iptables", "-t", table, "-S"]).stdout
            for deletion in leftover_deletions(table, listing, self.bridge, self.subnet):
                _run(["iptables", *deletion])
        if _run(["ip", "link", "show", self.bridge]).returncode == 0:
            _run(["ip", "link", "delete", self.bridge])
        return bool(pid)

    def isolation_rules(self) -> list[list[str]]:
        """iptables rules (chain first) that keep build steps away from what is not theirs.

        DOCKER-USER: build steps and the run engine's containers cannot reach each other. Each
        dockerd adds its isolation rules to the same DOCKER-ISOLATION chains and flushes them when
        it starts, so the engine started last would otherwise be the only one isolated; dockerd
        leaves DOCKER-USER to the operator and never flushes it. INPUT: of the host, build steps
        reach only the bridge's gateway (not the Hub's API on the run engine's bridge, nor any
        service listening on all addresses)."""
        rules = [["INPUT", "-i", self.bridge, "!", "-d", self.gateway(), "-j", "DROP"]]
        for other in ("docker+", "br-+"):
            rules.append(["DOCKER-USER", "-i", self.bridge, "-o", other, "-j", "DROP"])
            rules.append(["DOCKER-USER", "-i", other, "-o", self.bridge, "-j", "DROP"])
        return rules

    def isolate(self) -> None:
        """Insert each of ``isolation_rules`` once."""
        for chain, *rule in self.isolation_rules():
            if _run(["iptables", "-C", chain, *rule]).returncode != 0:
                _run(["iptables", "-I", chain, *rule], check=True)

    def seed(self, source: Docker | None = None) -> list[str]:
        """Copy each of ``seed_images`` the build engine lacks from the run engine (``source``;
        default the client's own default engine). Returns the images copied."""
        source = source or Docker(cli=self.docker_cli, log=self.log)
        copied = []
        for image in self.seed_images:
            if self.docker().has_image(image):
                continue
            if not source.has_image(image):
                self.log.warning("the run engine has no image %s to copy into the build engine", image)
                continue
            self.log.info("copying %s into the build engine", image)
            # save | load stream between the two engines' clients (the SDK would hold the image in memory)
            save = subprocess.Popen(source.command("save", image), stdout=subprocess.PIPE)
            load = subprocess.run(self.command("load", "--quiet"), stdin=save.stdout, capture_output=True)
            save.stdout.close()
            if save.wait() != 0 or load.returncode != 0:
                raise PanbinderError(
                    "The build engine lacks its base image; builds cannot run.",
                    reason="build_engine",
                    log_message=f"copying {image} failed: {load.stderr.decode(errors='replace')[-300:]}",
                    status_code=503,
                )
            copied.append(image)
        return copied


def leftover_deletions(table: str, listing: str, bridge: str, subnet: str) -> list[list[str]]:
    """iptables arguments that delete each rule of ``listing`` (``iptables -t TABLE -S``) that
    names ``bridge`` as interface or ``subnet`` as source: dockerd 20.10 leaves its bridge's
    FORWARD, isolation and NAT rules behind when it stops, and DOCKER-USER holds ours."""
    names_bridge = re.compile(rf"(^|\s)-[io] {re.escape(bridge)}(\s|$)")
    deletions = []
    for line in listing.splitlines():
        if line.startswith("-A ") and (names_bridge.search(line) or f" -s {subnet} " in f"{line} "):
            deletions.append(["-t", table, "-D", *shlex.split(line[3:])])
    return deletions


def _running(pidfile: Path, marker: str) -> int:
    """The pid in ``pidfile`` when that process runs and its command line contains ``marker``
    (so a reused pid is never signalled), else 0."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return 0
    return pid if marker in cmdline else 0


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # our own child (a test's start) would stay a zombie
            time.sleep(0.1)


def main_action(engine: BuildEngine, action: str) -> int:
    """``panbinder build-engine start|stop|status``: exit status 0 when done / answering."""
    if action == "start":
        try:
            engine.start()
        except PanbinderError as e:
            print(f"error: {e.message}\n{e.log_message}", file=sys.stderr)
            return 1
        print(f"build engine ready at {engine.host} (bridge {engine.bridge}, {engine.bridge_address})")
        return 0
    if action == "stop":
        print("build engine stopped" if engine.stop() else "build engine was not running")
        return 0
    if action == "status":
        ok = engine.ping()
        print(f"build engine at {engine.host}: {'answering' if ok else 'not answering'}")
        return 0 if ok else 1
    print("usage: panbinder build-engine start|stop|status", file=sys.stderr)
    return 2


class BuildEngineApp(PanbinderBase):
    name = "panbinder-build-engine"
    description = "Start, stop or check the docker engine that runs builds: build-engine start|stop|status."
    classes = [PanbinderBase, BuildEngine]

    def start(self) -> None:
        engine = BuildEngine(parent=self, log=self.log)
        sys.exit(main_action(engine, self.extra_args[0] if self.extra_args else ""))


__all__ = [
    "BuildEngine",
    "BuildEngineApp",
    "DockerCommand",
    "default_docker_cli",
    "docker_argv",
    "main_action",
]
