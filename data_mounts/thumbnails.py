"""Sampled dataset values drawn as a PNG thumbnail: a line plot for 1-D, an image for 2-D.

Block means down to the thumbnail's shape, then log or percentile scaling, with numpy only.
`preview.thumbnail` reads the values and calls `render`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from panbinder.errors import PanbinderError

from .plot_labels import MIN_SIZE, Labels, band, framed
from .png import colourise, encode_png, line_plot


def nothing_to_draw(name: str, why: str) -> PanbinderError:
    return PanbinderError(
        f"There is nothing to draw for {name}: {why}. For a thumbnail, pick a numeric dataset "
        "with one or two axes longer than 1",
        reason="nothing-to-draw",
        status_code=400,
    )


def render(
    values: np.ndarray, lengths: list[int], name: str, size: int, labels: Labels | None = None
) -> bytes:
    """The PNG for `values` read with strides from axes of full `lengths`, at most `size` pixels.

    With `labels` (a NeXus default plot) and at least MIN_SIZE pixels, the plot is drawn
    smaller and framed by its axis labels and end values (plot_labels.py), within `size`.
    """
    values[~np.isfinite(values)] = np.nan
    margin = band() if labels is not None and size >= MIN_SIZE else 0
    if values.ndim == 1:
        plot = _normalise(values, name, percentiles=False)
        height = max(32, size * 3 // 4) - margin
        pixels = line_plot(plot, width=size - margin, height=height)
        if margin:
            finite = values[np.isfinite(values)]
            labels = dataclasses.replace(labels, y_ends=(float(finite.max()), float(finite.min())))
    else:
        inner = size - margin
        image = _normalise(_reduce(values, lengths, inner), name, percentiles=True)
        repeat = inner // max(image.shape)
        if repeat > 1:
            image = image.repeat(repeat, axis=0).repeat(repeat, axis=1)
        pixels = colourise(image)
    return encode_png(framed(pixels, labels) if margin else pixels)


def _thumbnail_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Fit in size x size keeping the aspect ratio, but no side thinner than size/8 when avoidable."""
    factor = max(1, math.ceil(max(height, width) / size))
    thinnest = max(1, size // 8)
    fy, fx = (min(factor, max(1, n // thinnest)) for n in (height, width))
    return math.ceil(height / fy), math.ceil(width / fx)


def _reduce(values: np.ndarray, lengths: list[int], size: int) -> np.ndarray:
    """Block means (NaN ignored) down to the thumbnail shape."""
    out_h, out_w = _thumbnail_shape(lengths[0], lengths[1], size)
    if values.shape[0] <= out_h and values.shape[1] <= out_w:
        return values
    # block starts: out_h (out_w) blocks of nearly equal size, so the result has that shape
    rows, cols = (
        (np.arange(min(n, m)) * n) // min(n, m) for n, m in zip(values.shape, (out_h, out_w), strict=True)
    )
    finite = np.isfinite(values)
    sums = np.add.reduceat(np.where(finite, values, 0), rows, axis=0, dtype=np.float64)
    sums = np.add.reduceat(sums, cols, axis=1)
    counts = np.add.reduceat(np.add.reduceat(finite, rows, axis=0, dtype=np.int64), cols, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).astype(np.float32)


def _normalise(values: np.ndarray, name: str, *, percentiles: bool) -> np.ndarray:
    """Values mapped to [0, 1]: log10 when positive over > 3 decades; robust limits for images."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise nothing_to_draw(name, "it holds no finite numbers (only NaN or infinity)")
    low, high = float(finite.min()), float(finite.max())
    if low > 0 and high / low > 1e3:
        values, finite, low, high = np.log10(values), np.log10(finite), math.log10(low), math.log10(high)
    if percentiles:
        p1, p99 = (float(p) for p in np.percentile(finite, [1, 99]))
        if p99 > p1:
            low, high = p1, p99
    if high <= low:
        return np.where(np.isfinite(values), 0.5, np.nan)
    return (values - low) / (high - low)
