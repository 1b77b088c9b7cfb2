"""Units of dataset parameters: SI conversion by symbol, name and prefix (the units the PaNOSC
search API documents), and round trips that must hold for any value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panbinder.data_mounts import units


@pytest.mark.parametrize(
    ("value", "unit", "si", "dimension"),
    [
        (1064, "nm", 1.064e-6, "m"),
        (10, "angstrom", 1e-9, "m"),
        (1, "keV", 1.602176634e-16, "kg m2/s2"),
        (1, "kiloelectronvolt", 1.602176634e-16, "kg m2/s2"),
        (20, "celsius", 293.15, "K"),
        (20, "degC", 293.15, "K"),
        (32, "degF", 273.15, "K"),
        (300, "mK", 0.3, "K"),
        (2, "hours", 7200, "s"),
        (90, "deg", math.pi / 2, "rad"),
        (1, "bar", 1e5, "kg/m s2"),
        (1, "KiB", 8192, "bit"),
        (5, "mT", 5e-3, "kg/A s2"),
        (1, "Kelvin", 1, "K"),
    ],
)
def test_known_units_convert_to_si(value, unit, si, dimension):
    got, dim = units.to_si(value, unit)
    assert got == pytest.approx(si) and dim == dimension


@pytest.mark.parametrize("unit", ["", "NA", "None", "furlongs", "kdegC", "Kim", "x" * 50])
def test_unknown_units_are_none(unit):
    assert units.to_si(1.0, unit) is None


def test_case_matters_for_prefixes():
    assert units.to_si(1, "mK")[0] == pytest.approx(1e-3)
    assert units.to_si(1, "MK")[0] == pytest.approx(1e6)


@given(
    st.floats(-1e12, 1e12, allow_nan=False),
    st.sampled_from(["nm", "um", "angstrom", "keV", "eV", "K", "celsius", "degF", "ms", "mbar"]),
)
def test_conversion_is_monotonic(value, unit):
    low, _ = units.to_si(value, unit)
    high, _ = units.to_si(value + abs(value) * 1e-6 + 1, unit)
    assert high > low


@pytest.mark.parametrize(
    ("raw", "number"),
    [(3, 3.0), ("3.5", 3.5), (" 7 ", 7.0), (True, None), ("spy", None), ("nan", None), ({}, None)],
)
def test_numbers_from_values(raw, number):
    assert units.number(raw) == number
