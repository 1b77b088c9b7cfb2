"""PNG encoding and the two drawings a preview needs, with zlib + struct only (no imaging library).

`encode_png` writes 8-bit grayscale (h, w) or RGB (h, w, 3) arrays. `colourise` maps values in
[0, 1] through a small viridis-like lookup table, and `line_plot` draws a framed polyline with
min/max per pixel column, so one-sample spikes stay visible however many samples share a column.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"

# viridis sampled at nine evenly spaced points; `colourise` interpolates between them
_VIRIDIS_ANCHORS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 82, 139),
        (44, 113, 142),
        (33, 145, 140),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    dtype=np.float64,
)
_POSITIONS = np.linspace(0.0, 1.0, len(_VIRIDIS_ANCHORS))
VIRIDIS = (
    np.stack(
        [np.interp(np.linspace(0.0, 1.0, 256), _POSITIONS, _VIRIDIS_ANCHORS[:, c]) for c in range(3)], axis=1
    )
    .round()
    .astype(np.uint8)
)

NAN_COLOUR = (255, 255, 255)
BACKGROUND = (255, 255, 255)
FRAME_COLOUR = (96, 96, 96)
LINE_COLOUR = (31, 92, 170)


def encode_png(pixels: np.ndarray, *, level: int = 6) -> bytes:
    """Encode uint8 pixels of shape (h, w) (grayscale) or (h, w, 3) (RGB) as a PNG file."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 pixels, not {array.dtype}")
    if array.ndim == 2:
        colour_type = 0
    elif array.ndim == 3 and array.shape[2] == 3:
        colour_type = 2
    else:
        raise ValueError(f"encode_png needs shape (h, w) or (h, w, 3), not {array.shape}")
    height, width = array.shape[:2]
    if not (0 < height < 2**31 and 0 < width < 2**31):
        raise ValueError(f"encode_png cannot encode an image of {width}x{height} pixels")
    rows = np.ascontiguousarray(array).reshape(height, -1)
    # filter type 2 ("Up") for every row: each byte minus the byte above it, modulo 256
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2
    filtered[:, 1:] = rows
    filtered[1:, 1:] -= rows[:-1]
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        [
            SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)),
            _chunk(b"IEND", b""),
        ]
    )


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def colourise(values: np.ndarray) -> np.ndarray:
    """Map a 2-D array of values in [0, 1] (NaN allowed) to RGB uint8 through the viridis table."""
    finite = np.isfinite(values)
    index = np.zeros(values.shape, dtype=np.intp)
    index[finite] = np.clip(np.rint(values[finite] * 255.0), 0, 255).astype(np.intp)
    rgb = VIRIDIS[index]
    rgb[~finite] = NAN_COLOUR
    return rgb


def line_plot(values: np.ndarray, *, width: int, height: int) -> np.ndarray:
    """Draw values in [0, 1] (NaN = gap) as a framed polyline into an RGB (height, width, 3) image.

    With more samples than pixel columns, each column spans the min..max of its samples; with
    fewer, the line is interpolated. Each column also reaches to its neighbour, so the line is
    connected.
    """
    margin = max(2, width // 32)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    top, bottom, left, right = margin, height - 1 - margin, margin, width - 1 - margin
    image[top, left : right + 1] = FRAME_COLOUR
    image[bottom, left : right + 1] = FRAME_COLOUR
    image[top : bottom + 1, left] = FRAME_COLOUR
    image[top : bottom + 1, right] = FRAME_COLOUR
    inner = image[top + 2 : bottom - 1, left + 2 : right - 1]
    rows, columns = inner.shape[:2]
    if rows < 1 or columns < 1 or values.size == 0:
        return image
    lows, highs = _column_ranges(np.asarray(values, dtype=np.float64), columns)
    # connect each column to the previous one (NaN columns connect to nothing)
    lows[1:], highs[1:] = np.fmin(lows[1:], highs[:-1]), np.fmax(highs[1:], lows[:-1])
    drawn = np.isfinite(lows) & np.isfinite(highs)
    scale = rows - 1
    first_row = np.where(drawn, scale - np.rint(np.clip(highs, 0, 1) * scale), rows)
    last_row = np.where(drawn, scale - np.rint(np.clip(lows, 0, 1) * scale), -1)
    row_index = np.arange(rows)[:, None]
    inner[(row_index >= first_row[None, :]) & (row_index <= last_row[None, :])] = LINE_COLOUR
    return image


def _column_ranges(values: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    count = values.size
    if count >= columns:
        starts = (np.arange(columns, dtype=np.int64) * count) // columns
        return np.fmin.reduceat(values, starts), np.fmax.reduceat(values, starts)
    if count == 1:
        line = np.full(columns, values[0])
    else:
        line = np.interp(np.linspace(0, count - 1, columns), np.arange(count), values)
    return line, line.copy()
