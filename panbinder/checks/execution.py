"""What running a notebook gives a check: the executed notebook, its time and its first error.

Apart from ``execute`` (nbclient in this process) so that a check, which runs its notebooks in
the launched container (``in_container``), never imports nbformat or nbclient here: nbformat's
schema validation pulls in jsonschema's format checkers, whose import compiles grammars for
about 1.3 s (2.7 s under load) at the start of every ``panbinder check``. Notebooks are plain
nbformat 4 dicts (an ``nbformat.NotebookNode`` is one too).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class CellError:
    """The first error of a run: the cell (index in the notebook, id) and the exception."""

    index: int
    cell_id: str
    ename: str
    evalue: str

    def describe(self) -> str:
        cell = f"cell {self.index}" + (f" ({self.cell_id})" if self.cell_id else "")
        return f"{cell} raised {self.ename}: {self.evalue}"


@dataclasses.dataclass(frozen=True)
class Execution:
    """An executed notebook, how long it took, and its first error (None: it ran through)."""

    path: str
    notebook: dict[str, Any]
    seconds: float
    error: CellError | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def first_error(notebook: dict[str, Any]) -> CellError | None:
    """The first error output in a cell not tagged ``raises-exception``."""
    for index, cell in enumerate(notebook.get("cells") or []):
        if cell.get("cell_type") != "code" or "raises-exception" in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return CellError(
                    index, str(cell.get("id") or ""), output.get("ename", ""), output.get("evalue", "")
                )
    return None


__all__ = ["CellError", "Execution", "first_error"]
