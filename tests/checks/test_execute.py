"""Executing a notebook with nbclient against a real local ipykernel: outputs, first error, deadline."""

from __future__ import annotations

import time

import pytest
from jupyter_client.manager import AsyncKernelManager
from nbformat.v4 import new_code_cell, new_notebook

from panbinder.checks.execute import execute_notebook


def nb(*sources: str, tags: dict[int, list[str]] | None = None):
    cells = [new_code_cell(source) for source in sources]
    for index, cell in enumerate(cells):
        cell.id = f"c{index}"
        cell.metadata["tags"] = (tags or {}).get(index, [])
    return new_notebook(cells=cells)


async def test_a_notebook_runs_through_and_the_stored_copy_is_untouched(tmp_path):
    (tmp_path / "counts.txt").write_text("42\n")
    stored = nb("print(open('counts.txt').read().strip())", "6 * 7")
    run = await execute_notebook(stored, timeout=60, cwd=str(tmp_path), path="a.ipynb")
    assert run.ok and run.path == "a.ipynb" and not run.timed_out
    assert run.notebook.cells[0].outputs[0]["text"] == "42\n"
    assert run.notebook.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert all(not cell.outputs for cell in stored.cells)


async def test_the_first_error_names_the_cell_and_the_exception_and_stops_the_run():
    run = await execute_notebook(nb("x = {}", "x['energy']", "print('after')"), timeout=60)
    assert run.error is not None
    assert (run.error.index, run.error.cell_id, run.error.ename) == (1, "c1", "KeyError")
    assert run.error.evalue == "'energy'"
    assert run.error.describe() == "cell 1 (c1) raised KeyError: 'energy'"
    assert run.notebook.cells[2].outputs == []


async def test_an_error_the_author_expects_does_not_stop_the_run():
    run = await execute_notebook(nb("1/0", "print('after')", tags={0: ["raises-exception"]}), timeout=60)
    assert run.ok
    assert run.notebook.cells[1].outputs[0]["text"] == "after\n"


async def test_the_time_limit_is_for_the_whole_notebook():
    """Four cells of 1.2 s each never hit a per-cell limit of 3 s; the notebook's limit stops cell 2."""
    started = time.monotonic()
    run = await execute_notebook(nb(*["import time; time.sleep(1.2)"] * 4), timeout=3)
    assert run.timed_out and run.error is not None and run.error.ename == "TimeoutError"
    assert run.error.index == 2 and "within 3 s" in run.error.evalue
    assert time.monotonic() - started < 10
    assert run.notebook.cells[1].outputs == [] and run.notebook.cells[3].outputs == []


@pytest.fixture
async def kernel():
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    yield km
    await km.shutdown_kernel(now=True)


async def test_a_kernel_known_by_its_connection_info_runs_the_notebook_and_is_left_running(kernel):
    info = kernel.get_connection_info()
    run = await execute_notebook(nb("value = 41", "value + 1"), timeout=60, connection=info)
    assert run.ok and run.notebook.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert await kernel.is_alive()
    again = await execute_notebook(nb("value"), timeout=60, connection=info)  # same kernel, same state
    assert again.notebook.cells[0].outputs[0]["data"]["text/plain"] == "41"


async def test_a_given_kernel_manager_is_used_and_not_shut_down(kernel):
    run = await execute_notebook(nb("import os; os.getpid()"), timeout=60, km=kernel)
    assert run.ok
    assert await kernel.is_alive()
    assert int(run.notebook.cells[0].outputs[0]["data"]["text/plain"]) == kernel.provisioner.pid


async def test_a_kernel_manager_and_a_connection_together_are_refused(kernel):
    with pytest.raises(ValueError, match="not both"):
        await execute_notebook(nb("1"), timeout=5, km=kernel, connection=kernel.get_connection_info())


async def test_a_second_run_matches_the_first_and_a_changed_input_is_caught(tmp_path):
    """Execute, store, execute again: object addresses and clocks differ, results do not."""
    from panbinder.checks.compare import OutputComparison

    (tmp_path / "counts.txt").write_text("3 4 5\n")
    source = nb(
        "import datetime; counts = [int(v) for v in open('counts.txt').read().split()]",
        "print(object(), datetime.datetime.now().isoformat())",
        "print('mean', sum(counts) / len(counts))",
    )
    first = await execute_notebook(source, timeout=60, cwd=str(tmp_path))
    second = await execute_notebook(source, timeout=60, cwd=str(tmp_path))
    assert first.notebook.cells[1].outputs != second.notebook.cells[1].outputs
    assert OutputComparison().compare_notebooks("a.ipynb", first.notebook, second.notebook).same
    (tmp_path / "counts.txt").write_text("3 4 6\n")
    drifted = await execute_notebook(source, timeout=60, cwd=str(tmp_path))
    found = OutputComparison().compare_notebooks("a.ipynb", first.notebook, drifted.notebook)
    assert [(d.cell, d.cell_id, d.kind) for d in found.differences] == [(2, "c2", "number")]
    assert found.differences[0].detail.startswith("4.0 became 4.333333333333333")
