"""nbdime's diff of a stored and an executed notebook, as plain text, for the cells that differ.

nbdime matches cells by their source, so a cell whose outputs changed is one "patch" entry
under ``/cells/<index>``; its pretty-printer shows the output lines removed and added (images
as a short base64 prefix and an md5). Only outputs are shown: sources are the same (the check
executed the stored notebook), and ids, metadata and execution counts change on every run.
The diff is rendered with Python's difflib, never by running git or diff.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbdime.prettyprint import PrettyPrintConfig

ONLY_OUTPUTS = argparse.Namespace(
    sources=False, outputs=True, attachments=False, metadata=False, id=False, details=False
)


def _config(out: io.StringIO) -> PrettyPrintConfig:
    from nbdime.prettyprint import PrettyPrintConfig

    return PrettyPrintConfig(out=out, include=ONLY_OUTPUTS, use_git=False, use_diff=False, use_color=False)


def cell_diffs(stored: dict[str, Any], executed: dict[str, Any], cells: Iterable[int]) -> dict[int, str]:
    """Cell index -> nbdime's text diff of that cell, for each of ``cells`` nbdime sees change."""
    wanted = set(cells)
    if not wanted:
        return {}
    # imported here: nbformat's schema validation pulls in jsonschema's format checkers (about
    # 1.6 s here, mostly rfc3987-syntax), and every command lists this package's settings
    import nbformat
    from nbdime import diff_notebooks
    from nbdime.prettyprint import pretty_print_diff

    a, b = nbformat.from_dict(stored), nbformat.from_dict(executed)
    texts: dict[int, str] = {}
    for entry in diff_notebooks(a, b):
        if entry.get("key") != "cells" or entry.get("op") != "patch":
            continue
        for change in entry["diff"]:
            index = change.get("key")
            if change.get("op") != "patch" or index not in wanted:
                continue
            out = io.StringIO()
            pretty_print_diff(a.cells[index], change["diff"], f"/cells/{index}", _config(out))
            texts[index] = out.getvalue().strip()
    return texts


def notebook_diff(name: str, stored: dict[str, Any], executed: dict[str, Any], cells: Iterable[int]) -> str:
    """The diffs of ``cells``, each under a header naming the notebook and the cell."""
    texts = cell_diffs(stored, executed, cells)
    return "\n\n".join(f"### {name}, cell {index}\n{text}" for index, text in sorted(texts.items()) if text)
