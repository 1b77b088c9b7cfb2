"""Axis labels and end tick values around a thumbnail, drawn with Pillow's built-in font.

A thumbnail of a NeXus default plot (nexus_plot.py) gets a band below it (the x axis's first
and last values, then its label) and a band on its left (the y axis's label and end values,
turned a quarter). The font is the one Pillow carries inside its module (no file is opened),
loaded once by `font()`; the preview worker calls it before its children chroot.
Thumbnails smaller than MIN_SIZE get no labels: the text would not fit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .png import BACKGROUND

MIN_SIZE = 128  # thumbnails smaller than this are drawn without labels
FONT_SIZE = 10
TEXT_COLOUR = (40, 40, 40)
PAD = 2


@dataclass(frozen=True)
class Labels:
    """What to write around a plot: labels, and the values at each end of the axes (or None)."""

    x: str = ""
    y: str = ""
    x_ends: tuple[float, float] | None = None
    y_ends: tuple[float, float] | None = None  # (top, bottom)


@functools.cache
def font():  # -> PIL.ImageFont.FreeTypeFont | ImageFont
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (ImportError, OSError):  # Pillow without FreeType: its bitmap font
        return ImageFont.load_default_imagefont()


def line_height() -> int:
    ascent, descent = font().getmetrics()
    return ascent + descent + PAD


def band() -> int:
    """Pixels each labelled side needs: two lines of text."""
    return 2 * line_height() + PAD


def number(value: float) -> str:
    if not math.isfinite(value):
        return ""
    return f"{value:.3g}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def _fit(text: str, width: int) -> str:
    """`text`, cut with an ellipsis to at most `width` pixels."""
    if width <= 0:
        return ""
    measure = font().getlength
    if measure(text) <= width:
        return text
    while text and measure(text + "…") > width:
        text = text[:-1]
    return text + "…" if text else ""


def _row(width: int, left: str, right: str = "", centre: str = ""):  # -> PIL.Image.Image
    """One line of text `width` pixels wide: left- and right-aligned values, or a centred label."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (max(1, width), line_height()), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if centre:
        text = _fit(centre, width)
        draw.text(((width - font().getlength(text)) / 2, 0), text, fill=TEXT_COLOUR, font=font())
    if left or right:
        half = width // 2 - PAD
        draw.text((0, 0), _fit(left, half), fill=TEXT_COLOUR, font=font())
        text = _fit(right, half)
        draw.text((width - font().getlength(text), 0), text, fill=TEXT_COLOUR, font=font())
    return image


def framed(plot: np.ndarray, labels: Labels) -> np.ndarray:
    """`plot` (RGB uint8) with the y band on its left and the x band below, as one RGB array."""
    from PIL import Image

    height, width = plot.shape[:2]
    side = band()
    canvas = Image.new("RGB", (width + side, height + side), BACKGROUND)
    canvas.paste(Image.fromarray(np.ascontiguousarray(plot)), (side, 0))
    x_ends = [number(v) for v in labels.x_ends] if labels.x_ends else ["", ""]
    canvas.paste(_row(width, *x_ends), (side, height + PAD))
    canvas.paste(_row(width, "", centre=labels.x), (side, height + PAD + line_height()))
    # the y band is drawn as rows and turned a quarter: its first row becomes the leftmost column
    y_ends = [number(v) for v in labels.y_ends] if labels.y_ends else ["", ""]
    turned = [_row(height, "", centre=labels.y), _row(height, y_ends[1], y_ends[0])]
    for index, row in enumerate(turned):
        canvas.paste(row.rotate(90, expand=True), (index * line_height(), 0))
    return np.asarray(canvas)
