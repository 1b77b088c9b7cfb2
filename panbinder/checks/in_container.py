"""Run a check's notebooks inside a launched server's container, through the docker wrapper.

Why ``docker exec`` and not a kernel started through the server's REST API: a kernel the
server starts listens on the container's loopback, so the host reaches it only through the
server's websocket bridge, and a websocket kernel client for nbclient would be code of our own
to keep in step with jupyter_server. ``docker exec`` of a small Python script (``RUNNER``) that
runs nbclient *inside* the container needs nothing the image lacks (jupyter_server depends on
nbconvert, which depends on nbclient), runs with the container's user, limits, read-only
dataset mounts and environment (the launcher's hardening applies to every process in it), and
hands the executed notebook back as JSON on stdout. The host keeps the wall-clock limit: the
exec is killed ``grace`` seconds after the notebook's budget.

The notebooks compared are the repository's files in the image (``REPO_DIR``): repo2docker
copies the repository at the pinned commit into the image before anything runs, so they are
the stored notebooks at that commit, and they are there when the upstream repository is gone
(a restored archive). Files read from a container are hostile input: the tarball is cut at
``max_bytes`` + 1 bytes inside the container (``head -c``), so no more than that ever reaches
this process, refused when it is longer than ``max_bytes``, and unpacked with tarfile's ``data``
filter.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from panbinder.docker_engine import Docker
from panbinder.errors import PanbinderError

from .execution import CellError, Execution, first_error

# Runs in the container with the image's Python: argv[1] the notebook's time budget (seconds),
# the notebook on stdin, {"notebook": ..., "cell": index, "problem": ...} on stdout.
RUNNER = r"""
import json, sys, time
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellControlSignal, CellTimeoutError, DeadKernelError
budget = float(sys.argv[1])
nb = nbformat.read(sys.stdin, as_version=4)
state = {"cell": -1, "problem": None, "deadline": None}
def remaining(cell):
    return max(0.1, state["deadline"] - time.monotonic()) if state["deadline"] else budget
def started(cell, cell_index):
    state["cell"] = cell_index
    if state["deadline"] is None:
        state["deadline"] = time.monotonic() + budget
    elif time.monotonic() >= state["deadline"]:
        raise CellTimeoutError("out of time before cell %d" % cell_index)
client = NotebookClient(nb, timeout_func=remaining, interrupt_on_timeout=False, allow_errors=False,
                        on_cell_start=started, shutdown_kernel="immediate",
                        resources={"metadata": {"path": "."}})
try:
    client.execute()
except CellTimeoutError:
    state["problem"] = "timeout"
except CellControlSignal:
    pass
except DeadKernelError as error:
    state["problem"] = "the kernel died: %s" % error
except Exception as error:
    state["problem"] = "%s: %s" % (type(error).__name__, error)
json.dump({"notebook": nb, "cell": state["cell"], "problem": state["problem"]}, sys.stdout)
"""

# the repository's notebooks and plan files, as a tarball on stdout, at most $1 bytes of it
COLLECT = (
    'cd "${REPO_DIR:-$HOME}" && find . -path ./.git -prune -o -type f '
    r"\( -name '*.ipynb' -o -name panbinder.yml -o -name .panbinder.yml \) -print0 "
    '| tar -c --null -T - | head -c "$1"'
)
# the notebook's folder as working directory, then the image's Python (first python3 on PATH)
EXEC = 'cd "${REPO_DIR:-$HOME}" && cd "$(dirname "$1")" && exec python3 -c "$2" "$3"'


def collect_repository(docker: Docker, container: str, dest: Path, *, max_bytes: int) -> None:
    """Copy the image's notebooks and plan files (paths kept) into ``dest``; PanbinderError when
    they exceed ``max_bytes`` (at most ``max_bytes`` + 1 bytes are read)."""
    proc = docker.run_cli(
        "exec", container, "sh", "-c", COLLECT, "sh", str(max_bytes + 1), timeout=120, text=False
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip()[-500:]
        raise PanbinderError(f"The repository's notebooks could not be read from the image: {detail}")
    if len(proc.stdout) > max_bytes:
        raise PanbinderError(
            f"The repository's notebooks and plan files exceed {max_bytes} bytes (as a tarball); raise "
            "CheckRunner.max_notebook_bytes to check this publication"
        )
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tf:
        tf.extractall(dest, filter="data")


def _error_at(notebook: Any, index: int, ename: str, evalue: str) -> CellError:
    index = max(index, 0)
    cells = notebook.get("cells") or []
    cell_id = str(cells[index].get("id") or "") if index < len(cells) else ""
    return CellError(index, cell_id, ename, evalue)


def execute_in_container(
    docker: Docker, container: str, path: str, notebook: dict[str, Any], *, timeout: float, grace: float = 60
) -> Execution:
    """Execute ``notebook`` (the file ``path`` of the repository) in ``container`` (blocking)."""
    stored = notebook
    began = time.monotonic()
    try:
        proc = docker.run_cli(
            "exec", "-i", container, "sh", "-c", EXEC, "sh", path, RUNNER, str(timeout),
            input=json.dumps(notebook), timeout=timeout + grace,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        message = f"the notebook did not finish within {timeout:g} s"
        return Execution(path, stored, timeout, _error_at(stored, 0, "TimeoutError", message), True)
    try:
        answer = json.loads(proc.stdout)
        executed = answer["notebook"]
        if not isinstance(executed, dict):
            raise TypeError("not a notebook")
    except (ValueError, KeyError, TypeError):
        detail = (proc.stderr or "").strip()[-500:] or f"exit status {proc.returncode}"
        error = _error_at(stored, 0, "ExecutionError", f"the notebook could not be run: {detail}")
        return Execution(path, stored, 0.0, error)
    problem, cell = answer.get("problem"), int(answer.get("cell", -1))
    if problem == "timeout":
        message = f"the notebook did not finish within {timeout:g} s"
        return Execution(path, executed, timeout, _error_at(executed, cell, "TimeoutError", message), True)
    error = first_error(executed)
    if error is None and problem:
        error = _error_at(executed, cell, "ExecutionError", str(problem))
    return Execution(path, executed, time.monotonic() - began, error)
