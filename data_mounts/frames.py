"""Frames between the portal, the preview worker and its children.

8 bytes (header length, body length, big endian), a JSON header, then the body (a PNG, JSON).
"""

from __future__ import annotations

import json
import os
import struct

FRAME = struct.Struct(">II")
MAX_RESULT_BYTES = 64 << 20  # a tree or thumbnail larger than this is refused


def frame(header: dict, body: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return FRAME.pack(len(head), len(body)) + head + body


def parse_frame(data: bytes | bytearray) -> tuple[dict, bytes, int] | None:
    """(header, body, length) of the complete frame starting `data`, or None if incomplete."""
    if len(data) < FRAME.size:
        return None
    head_length, body_length = FRAME.unpack_from(data)
    end = FRAME.size + head_length + body_length
    if len(data) < end:
        return None
    header = json.loads(data[FRAME.size : FRAME.size + head_length])
    return header, bytes(data[FRAME.size + head_length : end]), end


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
