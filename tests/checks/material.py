"""Real notebooks (nbformat) and real images (Pillow) for the check tests."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image, ImageDraw


def figure(
    *, changed: bool = False, size: tuple[int, int] = (200, 120), compress: int = 6, meta: str = ""
) -> str:
    """A PNG (base64) of a small plot; ``changed`` moves its curve, ``compress``/``meta`` change only bytes."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.line([(10, 110), (10, 10)], fill="black")
    draw.line([(10, 110), (190, 110)], fill="black")
    points = [(10 + 18 * i, 100 - (8 if changed else 7) * i) for i in range(11)]
    draw.line(points, fill=(31, 119, 180), width=2)
    if changed:
        draw.rectangle([150, 20, 185, 45], fill=(214, 39, 40))
    out = io.BytesIO()
    info = None
    if meta:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Software", meta)
    image.save(out, format="PNG", compress_level=compress, pnginfo=info)
    return base64.b64encode(out.getvalue()).decode()


def stdout(text: str) -> NotebookNode:
    return new_output("stream", name="stdout", text=text)


def stderr(text: str) -> NotebookNode:
    return new_output("stream", name="stderr", text=text)


def result(text: str, count: int = 1) -> NotebookNode:
    return new_output("execute_result", data={"text/plain": text}, execution_count=count)


def image(png: str) -> NotebookNode:
    return new_output(
        "display_data", data={"image/png": png, "text/plain": "<Figure size 200x120 with 1 Axes>"}
    )


def error(ename: str, evalue: str) -> NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def notebook(*cells: list[NotebookNode] | str) -> NotebookNode:
    """A notebook with one code cell per list of outputs (a string makes a markdown cell)."""
    made = []
    for index, outputs in enumerate(cells):
        if isinstance(outputs, str):
            made.append(new_markdown_cell(outputs))
        else:
            made.append(new_code_cell(f"step_{index}()", outputs=list(outputs), execution_count=index + 1))
    nb = new_notebook(cells=made)
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index}"
    return nb


def write(path: Path, nb: NotebookNode | dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb))
    return path
