"""Execute one notebook headless with nbclient, within a time limit, and find its first error.

The kernel is either started here (a local kernel named ``kernel_name``, shut down afterwards),
given as a started kernel manager (``km``; the caller owns it and shuts it down), or reached
through its connection info (``connection``: ports, key and address of a kernel that runs
elsewhere, e.g. inside a launched server; nothing here can stop it, so the caller that started
its server stops it, also after a timeout).

nbclient stops at the first cell that raises, unless the cell is tagged ``raises-exception``
(the author expects that error); the executed notebook keeps the outputs up to that cell.
``timeout`` limits the whole notebook, not one cell: a check has a budget per notebook, and a
notebook of many short cells must not run for hours. Each cell gets what the cells before it
left (nbclient's own per-cell timeout, so its reply and liveness tasks end cleanly; cancelling
its run from outside leaves them polling a closed client). The stored notebook is never changed.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellControlSignal, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode, from_dict

from .execution import CellError, Execution, first_error


class ConnectedKernelManager(AsyncKernelManager):
    """A manager for a kernel that already runs elsewhere, known by its connection info only.

    nbclient starts a kernel unless its manager says it has one; this one always has one and
    only makes clients for it.
    """

    @property
    def has_kernel(self) -> bool:
        return True

    async def _async_is_alive(self) -> bool:
        return True


def _client(
    notebook: NotebookNode,
    *,
    timeout: float,
    km: AsyncKernelManager | None,
    cwd: str | None,
    kernel_name: str,
    startup_timeout: float,
    running: list[int],
) -> NotebookClient:
    """A client whose cells share one deadline: each cell may use what the earlier ones left.

    The deadline starts with the first cell; starting the kernel has its own limit
    (``startup_timeout``), so a slow container start does not eat the notebook's time.
    """
    deadline: list[float] = []

    def remaining(cell: NotebookNode) -> float:
        return max(0.1, deadline[0] - time.monotonic())

    def on_cell_start(cell: NotebookNode, cell_index: int) -> None:
        running[0] = cell_index
        if not deadline:
            deadline.append(time.monotonic() + timeout)
        elif time.monotonic() >= deadline[0]:
            raise CellTimeoutError(f"the notebook used its {timeout:g} s before cell {cell_index}")

    return NotebookClient(
        notebook,
        km=km,
        timeout_func=remaining,
        interrupt_on_timeout=False,  # raise CellTimeoutError: the run is over either way
        startup_timeout=int(startup_timeout),
        kernel_name=kernel_name,
        allow_errors=False,
        resources={"metadata": {"path": cwd}} if cwd else {},
        on_cell_start=on_cell_start,
        shutdown_kernel="immediate",
    )


async def execute_notebook(
    notebook: NotebookNode | dict[str, Any],
    *,
    timeout: float,
    path: str = "",
    km: AsyncKernelManager | None = None,
    connection: dict[str, Any] | None = None,
    cwd: str | None = None,
    kernel_name: str = "python3",
    startup_timeout: float = 60.0,
) -> Execution:
    """Run every code cell of ``notebook`` (a copy) and return the executed copy and its first error."""
    if km is not None and connection is not None:
        raise ValueError("give a kernel manager or a connection, not both")
    if connection is not None:
        km = ConnectedKernelManager()
        km.load_connection_info(connection)
    executed = from_dict(copy.deepcopy(dict(notebook)))
    running = [-1]
    client = _client(
        executed,
        timeout=timeout,
        km=km,
        cwd=cwd,
        kernel_name=kernel_name,
        startup_timeout=startup_timeout,
        running=running,
    )
    started = time.monotonic()
    timed_out, problem = False, None
    try:
        await client.async_execute()
    except CellTimeoutError:
        timed_out = True
    except CellControlSignal:
        pass  # CellExecutionError: the error is in the notebook's outputs, read below
    except DeadKernelError as error:
        problem = ("DeadKernelError", f"the kernel died: {error}")
    finally:
        await _release(client, owned=km is None)
    seconds = time.monotonic() - started
    error = first_error(executed)
    if timed_out:
        index = max(running[0], 0)
        cell_id = str(executed.cells[index].get("id") or "") if executed.cells else ""
        message = f"the notebook did not finish within {timeout:g} s"
        error = CellError(index, cell_id, "TimeoutError", message)
    elif error is None and problem is not None:
        index = max(running[0], 0)
        cell_id = str(executed.cells[index].get("id") or "") if executed.cells else ""
        error = CellError(index, cell_id, *problem)
    return Execution(path, executed, seconds, error, timed_out)


async def _release(client: NotebookClient, *, owned: bool) -> None:
    """Stop the client's channels; shut the kernel down only if it was started here."""
    if owned and client.km is not None:
        await client._async_cleanup_kernel()  # idempotent: after a cancel the kernel may still run
        return
    if client.kc is not None:
        client.kc.stop_channels()
        client.kc = None
