"""Wheels the tests build themselves, for package indexes they serve to builds (a package that is
on no public index, so only the test's index can satisfy it)."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile

PURE = "py3-none-any"
ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed member times: the same wheel bytes in every run


def wheel(
    name: str,
    version: str,
    code: str,
    *,
    requires_python: str = "",
    tag: str = PURE,
    compression: int = zipfile.ZIP_STORED,
) -> tuple[str, bytes]:
    """(file name, bytes) of a wheel of the distribution ``name`` whose one module (``name`` with
    dashes as underscores) holds ``code``; ``tag`` says which Pythons it is for (a binary wheel's
    tag, e.g. cp39-cp39-manylinux_2_17_x86_64)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += f"Requires-Python: {requires_python}\n" if requires_python else ""
    files = {
        f"{module}/__init__.py": code.encode(),
        f"{dist}/METADATA": metadata.encode(),
        f"{dist}/WHEEL": f"Wheel-Version: 1.0\nGenerator: panbinder-tests\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for path, data in files.items():
            z.writestr(zipfile.ZipInfo(path, ZIP_TIME), data)
    return f"{module}-{version}-{tag}.whl", buf.getvalue()
