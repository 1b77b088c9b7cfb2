"""Physical units of dataset parameters, converted to SI so a query in one unit finds values
stored in another (a wavelength asked in nm finds one stored in angstrom).

The PaNOSC search API converts with mathjs and documents the units and prefixes it accepts
(``doc/units-and-prefixes.md`` of panosc-eu/search-api): these are the same units, by symbol
or name, with the same decimal prefixes (and binary ones for bits and bytes). ``to_si`` gives
``(value in SI, dimension)``; two quantities compare only when their dimensions are equal.
Temperatures have an offset (celsius, fahrenheit), so they convert as absolute values.
Unknown units give None: such a value is compared as written, unit included.
"""

from __future__ import annotations

import functools
import math

# name -> (factor to the SI unit, offset added after scaling, dimension)
_BASE: dict[str, tuple[float, float, str]] = {
    "m": (1.0, 0.0, "m"),
    "angstrom": (1e-10, 0.0, "m"),
    "rad": (1.0, 0.0, "rad"),
    "deg": (math.pi / 180, 0.0, "rad"),
    "grad": (math.pi / 200, 0.0, "rad"),
    "arcmin": (math.pi / 10800, 0.0, "rad"),
    "arcsec": (math.pi / 648000, 0.0, "rad"),
    "s": (1.0, 0.0, "s"),
    "minute": (60.0, 0.0, "s"),
    "hour": (3600.0, 0.0, "s"),
    "day": (86400.0, 0.0, "s"),
    "Hz": (1.0, 0.0, "1/s"),
    "g": (1e-3, 0.0, "kg"),
    "A": (1.0, 0.0, "A"),
    "K": (1.0, 0.0, "K"),
    "degC": (1.0, 273.15, "K"),
    "degF": (5 / 9, 459.67 * 5 / 9, "K"),
    "mol": (1.0, 0.0, "mol"),
    "cd": (1.0, 0.0, "cd"),
    "N": (1.0, 0.0, "kg m/s2"),
    "J": (1.0, 0.0, "kg m2/s2"),
    "erg": (1e-7, 0.0, "kg m2/s2"),
    "Wh": (3600.0, 0.0, "kg m2/s2"),
    "eV": (1.602176634e-19, 0.0, "kg m2/s2"),
    "W": (1.0, 0.0, "kg m2/s3"),
    "Pa": (1.0, 0.0, "kg/m s2"),
    "psi": (6894.757293168361, 0.0, "kg/m s2"),
    "atm": (101325.0, 0.0, "kg/m s2"),
    "torr": (101325.0 / 760, 0.0, "kg/m s2"),
    "bar": (1e5, 0.0, "kg/m s2"),
    "C": (1.0, 0.0, "A s"),
    "V": (1.0, 0.0, "kg m2/A s3"),
    "ohm": (1.0, 0.0, "kg m2/A2 s3"),
    "F": (1.0, 0.0, "A2 s4/kg m2"),
    "Wb": (1.0, 0.0, "kg m2/A s2"),
    "T": (1.0, 0.0, "kg/A s2"),
    "H": (1.0, 0.0, "kg m2/A2 s2"),
    "S": (1.0, 0.0, "A2 s3/kg m2"),
    "b": (1.0, 0.0, "bit"),
    "B": (8.0, 0.0, "bit"),
}
# other spellings (case-sensitive: "mK" is millikelvin, "MK" megakelvin)
_ALIASES = {
    "meter": "m", "metre": "m", "meters": "m", "metres": "m", "Å": "angstrom", "Ang": "angstrom",
    "angstroms": "angstrom", "A0": "angstrom", "radian": "rad", "radians": "rad", "degree": "deg",
    "degrees": "deg", "gradian": "grad", "arcminute": "arcmin", "arcsecond": "arcsec",
    "second": "s", "seconds": "s", "sec": "s", "secs": "s", "min": "minute", "mins": "minute",
    "minutes": "minute", "h": "hour", "hr": "hour", "hrs": "hour", "hours": "hour", "days": "day",
    "hertz": "Hz", "gram": "g", "grams": "g", "ampere": "A", "amp": "A", "kelvin": "K",
    "celsius": "degC", "°C": "degC", "fahrenheit": "degF", "°F": "degF", "mole": "mol",
    "candela": "cd", "newton": "N", "joule": "J", "electronvolt": "eV", "watt": "W",
    "pascal": "Pa", "coulomb": "C", "volt": "V", "Ω": "ohm", "farad": "F", "weber": "Wb",
    "tesla": "T", "henry": "H", "siemens": "S", "bit": "b", "bits": "b", "byte": "B", "bytes": "B",
}  # fmt: skip
_PREFIXES = {
    "y": 1e-24, "z": 1e-21, "a": 1e-18, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6,
    "μ": 1e-6, "m": 1e-3, "c": 1e-2, "d": 1e-1, "da": 1e1, "h": 1e2, "k": 1e3, "M": 1e6, "G": 1e9,
    "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24,
}  # fmt: skip
_LONG_PREFIXES = {
    "yocto": 1e-24, "zepto": 1e-21, "atto": 1e-18, "femto": 1e-15, "pico": 1e-12, "nano": 1e-9,
    "micro": 1e-6, "milli": 1e-3, "centi": 1e-2, "deci": 1e-1, "deca": 1e1, "hecto": 1e2,
    "kilo": 1e3, "mega": 1e6, "giga": 1e9, "tera": 1e12, "peta": 1e15, "exa": 1e18,
    "zetta": 1e21, "yotta": 1e24,
}  # fmt: skip
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_NO_PREFIX = {"degC", "degF", "minute", "hour", "day", "deg", "grad", "arcmin", "arcsec", "angstrom"}


@functools.lru_cache(maxsize=1024)
def unit(name: str) -> tuple[float, float, str] | None:
    """``(factor, offset, dimension)`` of a unit name, or None when it is not a known unit."""
    text = name.strip()
    if not text or len(text) > 40:
        return None
    found = _plain(text)
    if found:
        return found
    for prefixes in (_LONG_PREFIXES, _PREFIXES, _BINARY):
        for prefix, scale in prefixes.items():
            if text.startswith(prefix) and len(text) > len(prefix):
                base = _plain(text[len(prefix) :])
                if base and base[1] == 0.0 and _prefixable(text[len(prefix) :], prefixes is _BINARY):
                    return (base[0] * scale, 0.0, base[2])
    return None


def _plain(text: str) -> tuple[float, float, str] | None:
    key = _ALIASES.get(text) or _ALIASES.get(text.lower()) if text not in _BASE else text
    return _BASE.get(key) if key else None


def _prefixable(text: str, binary: bool) -> bool:
    key = text if text in _BASE else (_ALIASES.get(text) or _ALIASES.get(text.lower()))
    if key in _NO_PREFIX:
        return False
    return key in ("b", "B") if binary else True


def to_si(value: float, name: str) -> tuple[float, str] | None:
    """``value`` in ``name`` as ``(value in SI, dimension)``; None for an unknown unit."""
    found = unit(name)
    if found is None or not math.isfinite(value):
        return None
    factor, offset, dimension = found
    return value * factor + offset, dimension


def number(value: object) -> float | None:
    """A parameter value as a finite number (numbers and numeric strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) and abs(number) < 1e300 else None
