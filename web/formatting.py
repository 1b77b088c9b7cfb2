"""Numbers as people read them on the portal's pages."""

from __future__ import annotations

UNITS = ("kB", "MB", "GB", "TB", "PB", "EB")


def human_size(size: int | None) -> str:
    """Decimal units, three significant digits: 2470673 -> "2.47 MB", 1 -> "1 byte"."""
    n = int(size or 0)
    if n < 1000:
        return f"{n} byte{'' if n == 1 else 's'}"
    value = float(n)
    for unit in UNITS:
        value /= 1000
        if round(value, 1) < 999.5 or unit == UNITS[-1]:
            return f"{value:.3g} {unit}"
    return f"{n} bytes"  # pragma: no cover
