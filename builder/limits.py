"""Memory, CPU and process limits for the ``RUN`` steps of a build.

dockerd's built-in BuildKit (checked on 20.10) ignores ``docker build --memory``,
``--cpu-quota`` and ``--cgroup-parent``: every ``RUN`` step runs in a runc container of its
own, in the cgroup ``<dockerd's cgroup parent>/buildkit/<step id>`` (``/docker/buildkit/<id>``
with the cgroupfs driver), created for the step and removed after it. So limits are put on
those step cgroups from outside:

- each limited build passes a marker as the build argument ``no_proxy``. BuildKit gives the
  predefined proxy arguments to ``RUN`` steps as environment variables and leaves them out
  of the cache key, so the marker does not change which layers are reused;
- one watcher thread reads the runc bundle (``config.json``) of each new step in BuildKit's
  executor folder (under the build engine's data root, see ``build_engine.py``), and when its environment has a marker it writes the build's limits into
  the step's cgroup (creating it first when runc has not yet; runc then joins it), in the
  v1 hierarchies (``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``,
  ``cpu.cfs_quota_us``, ``pids.max``) or the v2 unified one (``memory.max``,
  ``memory.swap.max``, ``cpu.max``, ``pids.max``);
- while the step runs the watcher reads its OOM-kill counter, so a build killed for memory
  ends with a message that says so.

What this does not bound: ``COPY``/``ADD`` and image export (done by dockerd itself), and a
step BuildKit shares with a concurrent build of someone else's identical step. It needs
read access to dockerd's state folder and write access to the cgroup file system (root on
the docker host); where it has neither it logs a warning and builds run without limits.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from panbinder.docker_engine import Docker, as_docker

CPU_PERIOD_US = 100_000
MARKER_ARG = "no_proxy"


def format_size(n: int) -> str:
    """'512 MB', '1.5 GB' (powers of 1024, as ByteSpecification reads "512M" and "1.5G")."""
    for unit, factor in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class StepLimits:
    """Limits of each RUN step of one build; 0 means no limit of that kind."""

    memory: int = 0  # bytes
    cpu: float = 0.0  # cores
    pids: int = 0

    @property
    def empty(self) -> bool:
        return not (self.memory or self.cpu or self.pids)


def v1_files(limits: StepLimits, *, memsw: bool) -> list[tuple[str, str, str]]:
    """(controller, file, value) to write, in order, for cgroup v1 hierarchies."""
    files = []
    if limits.memory:
        files.append(("memory", "memory.limit_in_bytes", str(limits.memory)))
        if memsw:  # swap accounting is on: no swap beyond the memory limit
            files.append(("memory", "memory.memsw.limit_in_bytes", str(limits.memory)))
    if limits.cpu:
        files.append(("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US)))
        files.append(("cpu", "cpu.cfs_quota_us", str(cpu_quota_us(limits.cpu))))
    if limits.pids:
        files.append(("pids", "pids.max", str(limits.pids)))
    return files


def v2_files(limits: StepLimits) -> list[tuple[str, str]]:
    """(file, value) to write for a cgroup v2 (unified) cgroup."""
    files = []
    if limits.memory:
        files += [("memory.max", str(limits.memory)), ("memory.swap.max", "0")]
    if limits.cpu:
        files.append(("cpu.max", f"{cpu_quota_us(limits.cpu)} {CPU_PERIOD_US}"))
    if limits.pids:
        files.append(("pids.max", str(limits.pids)))
    return files


def cpu_quota_us(cores: float) -> int:
    """CFS quota per period for ``cores`` CPUs (the kernel's minimum is 1000 µs)."""
    return max(1000, round(cores * CPU_PERIOD_US))


@dataclass(frozen=True)
class CgroupLayout:
    """Where the cgroup controllers are mounted: v1 ``{controller: mount}`` or one v2 root."""

    v1: dict[str, str] = field(default_factory=dict)
    v2: str = ""

    @property
    def usable(self) -> bool:
        return "memory" in self.v1 or bool(self.v2)

    def dirs(self, cgroup_path: str) -> dict[str, Path]:
        """The step's cgroup folder per controller ("unified" for v2)."""
        rel = cgroup_path.strip("/")
        if self.v1:
            return {c: Path(m) / rel for c, m in self.v1.items() if c in ("memory", "cpu", "pids")}
        return {"unified": Path(self.v2) / rel} if self.v2 else {}


def parse_mountinfo(text: str, v2_controllers: Callable[[str], str] | None = None) -> CgroupLayout:
    """The cgroup layout from /proc/self/mountinfo: v1 when a v1 ``memory`` hierarchy exists
    (also on hybrid hosts, whose unified mount then has no memory controller), else v2."""
    v1: dict[str, str] = {}
    v2 = ""
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) < 5 or len(rparts) < 3:
            continue
        if rparts[0] == "cgroup":
            for option in rparts[2].split(","):
                if option in ("memory", "cpu", "pids"):
                    v1[option] = parts[4]
        elif rparts[0] == "cgroup2" and not v2:
            v2 = parts[4]
    if "memory" in v1:
        return CgroupLayout(v1=v1)
    read = v2_controllers or (lambda root: Path(root, "cgroup.controllers").read_text())
    try:
        has_memory = bool(v2) and "memory" in read(v2).split()
    except OSError:
        has_memory = False
    return CgroupLayout(v2=v2 if has_memory else "")


def oom_kills(text: str) -> int:
    """The ``oom_kill`` counter of a v1 ``memory.oom_control`` or v2 ``memory.events`` file."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def marker(build_id: str) -> str:
    """The no_proxy value that tags a build's RUN steps (a name no proxy set-up will contain)."""
    return f"panbinder-build-{re.sub(r'[^a-z0-9-]', '-', build_id.lower())}.invalid"


def step_marker(bundle_config: dict) -> str:
    """The marker in a runc bundle's environment, or ""."""
    for entry in bundle_config.get("process", {}).get("env", []):
        key, _, value = entry.partition("=")
        if key == MARKER_ARG:
            for name in value.split(","):
                if name.startswith("panbinder-build-") and name.endswith(".invalid"):
                    return name
    return ""


@dataclass
class LimitReport:
    """What the watcher saw of one build's steps."""

    limits: StepLimits
    steps: int = 0  # steps that got the limits
    oom_kills: int = 0  # processes the kernel killed for memory in those steps
    hit_memory_limit: bool = False  # usage reached the limit at least once
    hit_pids_limit: bool = False  # a fork failed at the process limit
    problems: list[str] = field(default_factory=list)


@dataclass
class _Step:
    report: LimitReport
    dirs: dict[str, Path]
    created: list[Path]
    bundle: Path
    oom_kills: int = 0


_markers: dict[str, str] = {}  # image tag -> marker of its limited build
_markers_lock = threading.Lock()


def build_args_for(tag: str, buildargs: dict[str, str] | None = None) -> dict[str, str]:
    """Build arguments that tag the RUN steps of the limited build of image ``tag``, if any. The
    marker joins a ``no_proxy`` list the build already has (its build arguments, else the
    environment), so a deployment behind a proxy keeps its exceptions."""
    with _markers_lock:
        value = _markers.get(tag)
    if not value:
        return {}
    given = (buildargs or {}).get(MARKER_ARG) or os.environ.get(MARKER_ARG) or os.environ.get("NO_PROXY", "")
    return {MARKER_ARG: ",".join([*filter(None, given.split(",")), value])}


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _docker_root(docker: Docker | Sequence[str]) -> str:
    """The DockerRootDir of the engine ``docker`` (or the one a client command line talks to)."""
    return as_docker(docker).root_dir()


class StepLimiter:
    """One watcher thread that puts each registered build's limits on its RUN steps' cgroups.

    ``register`` a build before it starts and ``unregister`` it after it ended (which returns
    what was seen). The thread runs while builds are registered, polling every ``interval``.
    """

    def __init__(
        self,
        executor_dir: str = "",
        *,
        docker: Docker | Sequence[str] = ("docker",),
        layout: CgroupLayout | None = None,
        interval: float = 0.005,
        log: logging.Logger | None = None,
    ) -> None:
        self.executor_dir = executor_dir  # "": <docker root>/buildkit/executor, asked once
        self.docker = as_docker(docker)  # the engine that builds
        self.layout = layout
        self.interval = interval
        self.log = log or logging.getLogger("panbinder.limits")
        self._lock = threading.Lock()
        self._builds: dict[str, LimitReport] = {}  # marker -> report
        self._steps: dict[str, _Step] = {}  # bundle name -> step
        self._seen: set[str] = set()
        self._thread: threading.Thread | None = None

    def register(self, tag: str, build_id: str, limits: StepLimits) -> LimitReport:
        mark = marker(build_id)
        report = LimitReport(limits)
        with self._lock:
            self._builds[mark] = report
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="panbinder-limits")
                self._thread.start()
        with _markers_lock:
            _markers[tag] = mark
        return report

    def unregister(self, tag: str, build_id: str) -> LimitReport | None:
        mark = marker(build_id)
        with _markers_lock:
            if _markers.get(tag) == mark:
                del _markers[tag]
        with self._lock:
            self._scan_safely()  # a last look at the steps of this build that are still there
            return self._builds.pop(mark, None)

    def _setup(self) -> str:
        if self.layout is None:
            self.layout = parse_mountinfo(_read(Path("/proc/self/mountinfo")))
        if not self.layout.usable:
            return "no cgroup hierarchy with a memory controller is mounted"
        if not self.executor_dir:
            try:
                self.executor_dir = os.path.join(_docker_root(self.docker), "buildkit", "executor")
            except Exception as e:  # the engine not answering, a missing socket
                return f"cannot ask docker for its root folder: {e}"
        if not os.access(self.executor_dir, os.R_OK | os.X_OK):
            return f"cannot read BuildKit's executor folder {self.executor_dir}"
        return ""

    def _run(self) -> None:
        problem = self._setup()
        if problem:
            problem = f"not enforced: {problem}"
        while True:
            with self._lock:
                if problem:
                    for report in self._builds.values():
                        if problem not in report.problems:
                            report.problems.append(problem)
                else:
                    self._scan_safely()
                if not self._builds and not self._steps:
                    self._thread = None
                    return
            time.sleep(self.interval)

    def _scan_safely(self) -> None:
        try:
            self._scan()
        except Exception:  # keep watching the other steps
            self.log.exception("watching build steps failed")

    def _scan(self) -> None:
        """New bundles get their build's limits; known steps are watched (lock held)."""
        if self.layout is None or not self.layout.usable:
            return  # not set up (yet)
        try:
            names = set(os.listdir(self.executor_dir))
        except OSError:
            names = set()
        self._seen &= names
        for name in names - self._seen:
            bundle = Path(self.executor_dir, name)
            if not bundle.is_dir():
                self._seen.add(name)
                continue
            try:
                config = json.loads((bundle / "config.json").read_text())
            except (OSError, ValueError):
                continue  # not written yet: look again next time
            self._seen.add(name)
            report = self._builds.get(step_marker(config))
            if report is not None:
                self._limit(name, bundle, config, report)
        for name, step in list(self._steps.items()):
            if self._watch(step):
                del self._steps[name]

    def _limit(self, name: str, bundle: Path, config: dict, report: LimitReport) -> None:
        path = config.get("linux", {}).get("cgroupsPath", "")
        if not path.startswith("/"):  # the systemd driver's "slice:prefix:name"
            report.problems.append(f"unsupported cgroup path {path!r} (use dockerd's cgroupfs driver)")
            return
        step = _Step(report, self.layout.dirs(path), [], bundle)
        try:
            self._write_limits(step)
        except OSError as e:
            report.problems.append(f"could not limit a step: {e}")
            self.log.warning("could not limit build step %s: %s", name, e)
        report.steps += 1
        self._steps[name] = step

    def _ensure(self, folder: Path, step: _Step) -> None:
        if not folder.exists():
            try:
                folder.mkdir()
                step.created.append(folder)  # before runc: it joins the folder and removes it after
            except FileExistsError:
                pass

    def _write_limits(self, step: _Step) -> None:
        limits = step.report.limits
        if self.layout.v1:
            memory = step.dirs.get("memory")
            memsw = memory is not None and (memory.parent / "memory.memsw.limit_in_bytes").exists()
            for controller, name, value in v1_files(limits, memsw=memsw):
                folder = step.dirs.get(controller)
                if folder is None:
                    step.report.problems.append(f"no {controller} cgroup hierarchy: {name} not set")
                    continue
                self._ensure(folder, step)
                (folder / name).write_text(value)
            return
        folder = step.dirs["unified"]
        self._ensure(folder, step)
        for name, value in v2_files(limits):
            if not (folder / name).exists():
                _enable_controller(folder.parent, name.split(".")[0])
            if name == "memory.swap.max" and not (folder / name).exists():
                continue  # no swap accounting: nothing to bound
            (folder / name).write_text(value)

    def _watch(self, step: _Step) -> bool:
        """Read the step's OOM counter; True once the step is over (its bundle is gone)."""
        if self.layout.v1:
            memory = step.dirs.get("memory")
            kills = oom_kills(_read(memory / "memory.oom_control")) if memory else 0
            hit = memory is not None and _read(memory / "memory.failcnt").strip() not in ("", "0")
        else:
            events = _read(step.dirs["unified"] / "memory.events")
            kills = oom_kills(events)
            hit = bool(re.search(r"^max [1-9]", events, re.MULTILINE))
        if kills > step.oom_kills:
            step.report.oom_kills += kills - step.oom_kills
            step.oom_kills = kills
        step.report.hit_memory_limit |= hit
        pids = step.dirs.get("pids", step.dirs.get("unified"))
        if pids is not None and re.search(r"^max [1-9]", _read(pids / "pids.events"), re.MULTILINE):
            step.report.hit_pids_limit = True
        if step.bundle.exists():
            return False
        for folder in step.created:
            try:
                folder.rmdir()
            except OSError:
                pass  # runc removed it already
        return True


def _enable_controller(parent: Path, controller: str) -> None:
    try:
        (parent / "cgroup.subtree_control").write_text(f"+{controller}")
    except OSError:
        pass


def _killed(tail: list[str]) -> bool:
    """The step was killed, or an allocation failed (MemoryError, ENOMEM) before the OOM killer."""
    return any(
        "exit code: 137" in line
        or line.strip().endswith("Killed")
        or "MemoryError" in line
        or "Cannot allocate memory" in line
        for line in tail
    )


def limit_failure_message(report: LimitReport, tail: list[str], owner: str = "BuildManager") -> str:
    """What to tell the user when a failed build hit its limits, or "" when it did not."""
    limits = report.limits
    if limits.memory and (report.oom_kills or (report.hit_memory_limit and _killed(tail))):
        return (
            f"The build ran out of memory (limit {format_size(limits.memory)} per build step, "
            f"{owner}.build_memory_limit) and was stopped. Reduce what postBuild or the package "
            "installation needs at once, or ask the operators to raise the limit."
        )
    if limits.pids and report.hit_pids_limit:
        return (
            f"The build started more processes than this service allows (limit {limits.pids} per "
            f"build step, {owner}.build_pids_limit). Start fewer processes at once in postBuild "
            "(for example fewer parallel compile jobs), or ask the operators to raise the limit."
        )
    return ""
