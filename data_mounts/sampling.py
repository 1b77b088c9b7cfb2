"""Which values a thumbnail reads: strides for an element budget, and the chunks they touch.

Arithmetic on shapes and chunk offsets (no data is read), for the bounded read in preview.py.
"""

from __future__ import annotations

import math

import h5py


def element_steps(lengths: list[int], budget: int) -> list[int]:
    """Steps so that the product of samples per axis is at most budget (short axes kept whole)."""
    steps = [1] * len(lengths)
    remaining = budget
    order = sorted(range(len(lengths)), key=lambda k: lengths[k])
    for rank, k in enumerate(order):
        per_axis = max(1, math.floor(remaining ** (1 / (len(lengths) - rank))))
        steps[k] = max(1, math.ceil(lengths[k] / per_axis))
        remaining = max(1, remaining // math.ceil(lengths[k] / steps[k]))
    return steps


def chunks_touched(lengths: list[int], steps: list[int], chunks: list[int]) -> int:
    return math.prod(min(-(-n // s), -(-n // c)) for n, s, c in zip(lengths, steps, chunks, strict=True))


def chunk_steps(lengths: list[int], steps: list[int], chunks: list[int], allowed: int) -> list[int]:
    steps = list(steps)
    while chunks_touched(lengths, steps, chunks) > allowed:
        k = max(range(len(steps)), key=lambda j: min(-(-lengths[j] // steps[j]), -(-lengths[j] // chunks[j])))
        steps[k] = max(steps[k] + 1, math.ceil(steps[k] * 1.25), chunks[k] if steps[k] < chunks[k] else 0)
    return steps


def chunk_selection(
    ds: h5py.Dataset, offset: tuple[int, ...], axes: list[int], fixed: list[int | None], steps: list[int]
) -> tuple[tuple, tuple] | None:
    source: list[int | slice] = []
    target: list[slice] = []
    for i, (start, chunk, n) in enumerate(zip(offset, ds.chunks, ds.shape, strict=True)):
        end = min(start + chunk, n)
        index = fixed[i]
        if index is not None:
            if not start <= index < end:
                return None
            source.append(index)
            continue
        step = steps[axes.index(i)]
        first = -(-start // step) * step
        if first >= end:
            return None
        source.append(slice(first, end, step))
        target.append(slice(first // step, (end - 1) // step + 1))
    return tuple(source), tuple(target)
