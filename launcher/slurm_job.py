"""The Slurm back-end's job: sbatch options from a resource profile, and the job script.

Pure functions, tested without a cluster. The job runs as an unprivileged user (never the
Hub's root) and starts the image with rootless podman: podman's processes stay in the job's
cgroup, so the job's ``--mem`` and ``--cpus-per-task`` hold for the server (a ``docker run``
from a job escapes them: the docker daemon starts the container, outside the job).

Why this shape (measured on Debian 12, podman 4.3, Slurm 22.05):

- The port: batchspawner's ``batchspawner-singleuser`` wrapper picks a port and posts it to
  the Hub, then runs the server *as a Python script in the same process*, so it cannot wrap
  ``podman run``, and running it inside the image would need batchspawner in every image.
  Here the job script picks the port on the node and posts it itself (``curl``, the token read
  from the environment, not the command line) to the spawner's own endpoint, which accepts a
  port only while that server starts (``slurm_spawner.py``); the server in the container then
  listens on that port of the node (``--network host``).
- Host networking: rootless podman's own networks need ``/dev/net/tun`` (slirp4netns), which
  unprivileged users may not open on every node. On a compute node the host network is the
  node's; on a machine that also runs the Hub, the server can reach the Hub's loopback
  services (see README, Slurm back-end).
- The image: ``podman pull`` from the registry into the job user's storage on the node, once
  per image (layers shared with earlier images are kept); later launches find it there.
- Jobs end by ``scancel``, which kills podman's pause process and conmon with the job: the
  next job's podman then refused every command ("cannot re-exec process to join the existing
  user namespace", "could not find any running process") until ``podman system migrate``;
  the script runs it only in that state. The container name is the job id's, taken over
  with ``--replace`` (a new cluster counts job ids from 1 again).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from panbinder.errors import PanbinderError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The container's processes sit in a cgroup podman makes under the job step's (cgroup v1), and
# Slurm 22.05's proctrack/cgroup signals only the step's own processes: a cancelled job left its
# server running. The job kills them itself when it ends (its user owns their user namespace).
ORPHAN_KILL = (
    'for f in /sys/fs/cgroup/freezer/slurm*/uid_*/job_"$SLURM_JOB_ID"/step_*/*/cgroup.procs; '
    'do [ -f "$f" ] && xargs -r kill -9 <"$f"; done 2>/dev/null'
)


class Resources(Protocol):
    """What a profile gives a job (``profiles.Profile`` has these fields)."""

    cpu: float
    memory: str
    gpus: int
    partition: str
    time_limit: int


def slurm_memory(memory: str) -> str:
    """'2G' -> '2048M' (Slurm's --mem takes whole units; MiB keep '1.5G' exact enough)."""
    from panbinder.launcher.profiles import memory_bytes

    return f"{max(1, memory_bytes(memory) // 2**20)}M"


def sbatch_options(resources: Resources) -> list[str]:
    """A profile as sbatch options: whole CPUs (rounded up), memory, GPUs as generic resources,
    partition and time limit (minutes) when set."""
    options = [
        f"--cpus-per-task={max(1, math.ceil(resources.cpu))}",
        f"--mem={slurm_memory(resources.memory)}",
    ]
    if resources.gpus:
        options.append(f"--gres=gpu:{resources.gpus}")
    if resources.partition:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", resources.partition):
            raise PanbinderError(
                f"partition {resources.partition!r} is not a Slurm partition name", reason="bad_profile"
            )
        options.append(f"--partition={resources.partition}")
    if resources.time_limit:
        options.append(f"--time={resources.time_limit}")
    return options


@dataclass(frozen=True)
class JobSpec:
    image: str
    sbatch: tuple[str, ...]  # options from sbatch_options (and the deployment's own)
    mounts: tuple[tuple[str, str], ...] = ()  # (host path, container path), read-only
    environment: tuple[str, ...] = ()  # names passed from the job's environment to the server
    keepvars: str = ""  # sbatch --export: the names the job takes from the Hub's environment
    args: tuple[str, ...] = ()  # more jupyterhub-singleuser arguments
    pids_limit: int = 256
    registry_tls_verify: bool = False
    port_url_path: str = "panbinder/slurm-port"  # under JUPYTERHUB_API_URL
    job_name: str = "panbinder-server"
    output: str = "/dev/null"
    workdir: str = ""  # sbatch --chdir (the job user's home); empty: sbatch's own folder
    podman: str = "podman"
    prologue: tuple[str, ...] = field(default=())  # shell lines before podman (module loads...)
    workspace: tuple[str, ...] = ()  # (folder on the cluster, container path): read-write, or none


def _podman_run(spec: JobSpec) -> list[str]:
    """``podman run``'s options: hardening, the Hub's variables and the signed ones, mounts."""
    run = [
        "--rm", "--network", "host",
        "--security-opt", "no-new-privileges", "--cap-drop", "ALL", f"--pids-limit={spec.pids_limit}",
        "--env", "JUPYTERHUB_*",
    ]  # fmt: skip
    for name in spec.environment:
        if not _ENV_NAME.match(name) or name.startswith("JUPYTERHUB_"):
            raise PanbinderError(
                f"environment name {name!r} cannot be passed to a server", reason="bad_environment"
            )
        run += ["--env", name]
    for host, container in spec.mounts:
        if not container.startswith("/data/") or ":" in host + container or "," in host + container:
            raise PanbinderError(
                f"mount {container!r} cannot be made read-only under /data/", reason="bad_mounts"
            )
        run += ["--volume", f"{host}:{container}:ro"]
    if spec.workspace:
        host, container = spec.workspace
        if (
            not (host.startswith("/") and container.startswith("/"))
            or ":" in host + container
            or "," in host + container
        ):
            raise PanbinderError(f"workspace folder {host!r} cannot be mounted", reason="bad_mounts")
        run += ["--volume", f"{host}:{container}:rw"]
    return run


def job_script(spec: JobSpec) -> str:
    """The sbatch script: pull the image once, tell the Hub the port, run the server."""
    podman = shlex.quote(spec.podman)
    run = [
        podman,
        "run",
        "--replace",
        '--name="panbinder-job-$SLURM_JOB_ID"',
        *(shlex.quote(a) for a in _podman_run(spec)),
    ]
    server = ["jupyterhub-singleuser", "--ip=0.0.0.0", '--port="$port"', *(shlex.quote(a) for a in spec.args)]
    directives = [
        f"--job-name={spec.job_name}",
        f"--output={spec.output}",
        *([f"--chdir={spec.workdir}"] if spec.workdir else []),
        f"--export={spec.keepvars}" if spec.keepvars else "--export=NONE",
        *spec.sbatch,
    ]
    if any("\n" in d or "\r" in d for d in directives):  # would end the #SBATCH comment
        raise PanbinderError(
            "A Slurm job option holds a line break; check the job name, output, folder and "
            "sbatch_extra settings.",
            reason="slurm_job",
        )
    image = shlex.quote(spec.image)
    tls = "true" if spec.registry_tls_verify else "false"
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {shlex.quote(d)}" for d in directives),
        "set -euo pipefail",
        'export PATH="/usr/local/bin:/usr/bin:/bin${PATH:+:$PATH}"',
        'export HOME="${HOME:-$(getent passwd "$(id -un)" | cut -d: -f6)}"',
        'export XDG_RUNTIME_DIR="$(mktemp -d "${TMPDIR:-/tmp}/panbinder-podman-XXXXXX")"',
        f'end_job() {{ {ORPHAN_KILL}; rm -rf "$XDG_RUNTIME_DIR"; }}',
        "trap end_job EXIT",
        "trap 'exit 143' TERM",
        *spec.prologue,
        *([f"mkdir -p {shlex.quote(spec.workspace[0])}"] if spec.workspace else []),
        podman_recovery(podman),
        f"{podman} image exists {image} || {podman} pull --quiet --tls-verify={tls} {image} >/dev/null",
        "port=$(python3 -c 'import socket; s = socket.socket(); s.bind((\"\", 0)); print(s.getsockname()[1])')",
        "printf 'Authorization: token %s\\n' \"$JUPYTERHUB_API_TOKEN\" | curl -fsS -H @- "
        '-H \'Content-Type: application/json\' -d "{\\"port\\": $port}" '
        f'"$JUPYTERHUB_API_URL/{spec.port_url_path}" >/dev/null',
        " ".join([*run, image, *server, "&"]),
        'wait "$!"',
        "",
    ]
    return "\n".join(lines)


def podman_recovery(podman: str = "podman") -> str:
    """Shell line: a job killed by scancel leaves its container marked running and podman's
    pause process gone, and podman then refuses every command until migrate (no live container
    of this user is left on the node when it does, so migrate stops nothing running)."""
    return (
        f"{podman} ps --quiet >/dev/null 2>&1 || "
        f"{{ {podman} system migrate && {podman} container prune --force; }} >/dev/null 2>&1"
    )


def keepvars(names: Sequence[str]) -> str:
    """sbatch --export value: only these names (so the Hub's own environment stays behind)."""
    return ",".join(sorted(n for n in names if _ENV_NAME.match(n)))
