"""Compare a notebook's executed outputs with its stored ones, cell by cell.

Only code cells that have stored outputs are compared: a cell stored without outputs promises
nothing. Within a cell, the stdout stream (chunks joined: a kernel may split a print
differently on each run), the rich outputs (``execute_result`` and ``display_data``, pairwise,
in order) and errors are compared:

- text after ``normalise`` (addresses, timestamps, temporary paths, timings), with the numbers
  in it compared with ``rel_tol``/``abs_tol`` (integers exactly: counts and shapes are not
  measurements) and the words between them exactly, whitespace aside (numpy and pandas pad
  columns to the longest number, so a value within tolerance can shift the spaces around it);
- images (``image/png``, ``image/jpeg``) decoded with Pillow, pixel by pixel: a pixel changed
  when a channel differs by more than ``pixel_tolerance``, and the image differs when more
  than ``changed_pixels`` of its pixels changed. A figure re-rendered with the same code and
  libraries is identical or nearly so, a changed curve or colour changes far more pixels;
- a cell that raised where the stored one did not (or with another exception). Comparison
  stops after such a cell: the cells after it did not run.

stderr is not compared by default (``compare_stderr``): it carries warnings and progress bars
that change with library versions, not results. Each cell with a difference also gets nbdime's
diff of the stored and executed cell, rendered as plain text, so a reader sees both versions.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import math
import re
from typing import Any

from PIL import Image, ImageChops, UnidentifiedImageError
from traitlets import Bool, Float, Int, List, Unicode
from traitlets.config import Configurable

from .normalise import normalise, split_numbers
from .render_diff import notebook_diff
from .verdict import Difference

IMAGE_TYPES = ("image/png", "image/jpeg")


def shorten(value: str, limit: int) -> str:
    value = value.strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The differences found in one notebook and nbdime's text diff of the cells that differ."""

    notebook: str
    differences: tuple[Difference, ...]
    diff: str = ""

    @property
    def same(self) -> bool:
        return not self.differences


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _stream(outputs: list[dict[str, Any]], name: str) -> str:
    return "".join(
        _text(o.get("text")) for o in outputs if o.get("output_type") == "stream" and o.get("name") == name
    )


def _rich(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in outputs if o.get("output_type") in ("execute_result", "display_data")]


def _error(outputs: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((o for o in outputs if o.get("output_type") == "error"), None)


def _decode(data: Any) -> Image.Image:
    raw = base64.b64decode(_text(data).replace("\n", ""), validate=False)
    with Image.open(io.BytesIO(raw)) as image:
        return image.convert("RGBA")


class OutputComparison(Configurable):
    """How executed outputs are compared with stored ones (tolerances and what to ignore)."""

    rel_tol = Float(
        1e-6,
        help="Relative tolerance for numbers printed in text outputs (math.isclose). 1e-6 accepts "
        "the last digits of a float printed in full changing with a BLAS or library version.",
    ).tag(config=True)
    abs_tol = Float(
        1e-12,
        help="Absolute tolerance for numbers printed in text outputs, for values near zero.",
    ).tag(config=True)
    pixel_tolerance = Int(
        8,
        help="A pixel counts as changed when one of its channels (0-255) differs by more than this "
        "(anti-aliasing and font hinting move edges by a few levels).",
    ).tag(config=True)
    changed_pixels = Float(
        0.001,
        help="An image differs when more than this fraction of its pixels changed.",
    ).tag(config=True)
    compare_stderr = Bool(
        False,
        help="Also compare stderr (warnings, progress bars). Off: stderr changes with library "
        "versions without the results changing.",
    ).tag(config=True)
    volatile_patterns = List(
        Unicode(),
        help="More regular expressions for volatile text (replaced before comparing), in addition "
        "to addresses, timestamps, temporary paths and timings.",
    ).tag(config=True)
    text_types = List(
        Unicode(),
        ["text/plain", "text/markdown", "text/latex", "text/html", "application/json"],
        help="MIME types compared as text, in order of preference: a rich output is compared by "
        "its first image type, else by the first of these that both outputs have.",
    ).tag(config=True)
    shown_chars = Int(
        200, help="Stored and executed values are shortened to this many characters in reports."
    ).tag(config=True)

    def compare_notebooks(self, name: str, stored: dict[str, Any], executed: dict[str, Any]) -> Comparison:
        """Every difference between ``stored`` and ``executed`` (notebooks as nbformat dicts)."""
        extra = [re.compile(p) for p in self.volatile_patterns]
        s_cells, e_cells = stored.get("cells", []), executed.get("cells", [])
        differences: list[Difference] = []
        for index, cell in enumerate(s_cells):
            ran = e_cells[index] if index < len(e_cells) else {}
            raised = _error(ran.get("outputs", [])) is not None
            if cell.get("cell_type") != "code" or not (cell.get("outputs") or raised):
                continue
            found = self.compare_cell(name, index, cell, ran, extra)
            differences += found
            if any(d.kind == "error" for d in found):
                break  # the cells after it did not run
        changed = {d.cell for d in differences}
        return Comparison(name, tuple(differences), notebook_diff(name, stored, executed, changed))

    def compare_cell(
        self,
        name: str,
        index: int,
        stored: dict[str, Any],
        executed: dict[str, Any],
        extra: list[re.Pattern[str]] | None = None,
    ) -> list[Difference]:
        """The differences between one stored cell and the same cell executed."""
        extra = extra or []
        cell_id = str(stored.get("id") or "")

        def diff(kind: str, before: str, after: str, detail: str = "") -> Difference:
            n = self.shown_chars
            return Difference(name, index, cell_id, kind, shorten(before, n), shorten(after, n), detail)

        s_out, e_out = stored.get("outputs", []), executed.get("outputs", [])
        s_err, e_err = _error(s_out), _error(e_out)
        if e_err is not None and (
            s_err is None
            or (s_err.get("ename"), s_err.get("evalue")) != (e_err.get("ename"), e_err.get("evalue"))
        ):
            before = f"{s_err.get('ename')}: {s_err.get('evalue')}" if s_err else "(no error)"
            after = f"{e_err.get('ename')}: {e_err.get('evalue')}"
            return [diff("error", before, after, f"the cell raised {shorten(after, self.shown_chars)}")]
        if s_out and not e_out:
            return [diff("missing", f"{len(s_out)} outputs", "(none)", "the cell produced no output")]
        found: list[Difference] = []
        streams = ["stdout", "stderr"] if self.compare_stderr else ["stdout"]
        for stream in streams:
            problem = self.compare_text(_stream(s_out, stream), _stream(e_out, stream), extra)
            if problem:
                found.append(diff(problem[0], *problem[1:]))
        s_rich, e_rich = _rich(s_out), _rich(e_out)
        if len(s_rich) != len(e_rich):
            found.append(
                diff(
                    "outputs",
                    f"{len(s_rich)} outputs",
                    f"{len(e_rich)} outputs",
                    "a different number of results",
                )
            )
        for before, after in zip(s_rich, e_rich, strict=False):
            problem = self.compare_data(before.get("data", {}), after.get("data", {}), extra)
            if problem:
                found.append(diff(*problem))
        return found

    def compare_data(
        self, stored: dict[str, Any], executed: dict[str, Any], extra: list[re.Pattern[str]]
    ) -> tuple[str, str, str, str] | None:
        """(kind, stored, executed, detail) when two mime bundles differ, else None."""
        for mime in IMAGE_TYPES:
            if mime in stored and mime in executed:
                detail = self.compare_images(stored[mime], executed[mime])
                if detail is None:
                    return None
                return (
                    "image",
                    f"{mime} ({len(_text(stored[mime]))} base64 characters)",
                    (f"{mime} ({len(_text(executed[mime]))} base64 characters)"),
                    detail,
                )
        for mime in self.text_types:
            if mime in stored and mime in executed:
                return self.compare_text(_text(stored[mime]), _text(executed[mime]), extra)
        kinds = f"{sorted(stored)} became {sorted(executed)}"
        return "outputs", ", ".join(sorted(stored)), ", ".join(sorted(executed)), f"output types {kinds}"

    def compare_text(
        self, stored: str, executed: str, extra: list[re.Pattern[str]]
    ) -> tuple[str, str, str, str] | None:
        """(kind, stored, executed, detail) when two texts differ beyond the tolerances."""
        if stored == executed:
            return None
        s_words, s_numbers = split_numbers(normalise(stored, extra))
        e_words, e_numbers = split_numbers(normalise(executed, extra))
        if _layout(s_words) != _layout(e_words) or len(s_numbers) != len(e_numbers):
            return "text", stored, executed, ""
        for before, after in zip(s_numbers, e_numbers, strict=True):
            if not self.same_number(before, after):
                detail = f"{before} became {after}"
                if not (is_integer(before) and is_integer(after)):
                    detail += f" (rel_tol {self.rel_tol:g}, abs_tol {self.abs_tol:g})"
                return "number", stored, executed, detail
        return None

    def same_number(self, before: str, after: str) -> bool:
        """Integers (counts, shapes, indices) must be equal; other numbers within the tolerances."""
        if is_integer(before) and is_integer(after):
            return int(before) == int(after)
        a, b = float(before), float(after)
        return math.isclose(a, b, rel_tol=self.rel_tol, abs_tol=self.abs_tol) or (a != a and b != b)

    def compare_images(self, stored: Any, executed: Any) -> str | None:
        """Why two base64-encoded images differ, or None when they match within tolerance."""
        try:
            a, b = _decode(stored), _decode(executed)
        except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as error:
            return f"an image could not be decoded ({error})"
        if a.size != b.size:
            return f"the image size changed from {a.size[0]}x{a.size[1]} to {b.size[0]}x{b.size[1]}"
        changed = changed_fraction(a, b, self.pixel_tolerance)
        if changed <= self.changed_pixels:
            return None
        return f"{changed:.2%} of pixels changed (tolerance {self.changed_pixels:.2%})"


def is_integer(number: str) -> bool:
    return number.lstrip("+-").isdigit()


def _layout(words: list[str]) -> list[str]:
    """The words between numbers without whitespace: a longer number pads a column differently."""
    return [re.sub(r"\s+", "", word) for word in words]


def changed_fraction(a: Image.Image, b: Image.Image, tolerance: int) -> float:
    """The fraction of pixels where some channel differs by more than ``tolerance``."""
    difference = ImageChops.difference(a, b)
    # per pixel, the largest channel difference; then a 0/255 mask of those above tolerance
    largest = difference.getchannel(0)
    for band in range(1, len(difference.getbands())):
        largest = ImageChops.lighter(largest, difference.getchannel(band))
    mask = largest.point(lambda v: 255 if v > tolerance else 0)
    histogram = mask.histogram()
    return histogram[255] / (a.size[0] * a.size[1]) if a.size[0] * a.size[1] else 0.0
