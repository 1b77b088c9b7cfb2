"""The launch badge (web/handlers/badge.py) is well-formed SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from panbinder.web.handlers.badge import badge_svg

SVG = "{http://www.w3.org/2000/svg}"


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_default_badge_parses_and_has_texts():
    root = ET.fromstring(badge_svg())
    assert root.tag == f"{SVG}svg"
    assert _texts(root) == ["launch", "panbinder"]
    assert root.find(f"{SVG}title").text == "launch: panbinder"
    assert root.get("aria-label") == "launch: panbinder"


def test_badge_width_grows_with_the_texts():
    root = ET.fromstring(badge_svg("open", "a much longer right side", "#e05d44"))
    assert _texts(root) == ["open", "a much longer right side"]
    left_width = 7 * len("open") + 10
    right_width = 7 * len("a much longer right side") + 10
    assert root.get("width") == str(left_width + right_width)
    rects = list(root.iter(f"{SVG}rect"))
    assert any(r.get("fill") == "#e05d44" and r.get("width") == str(right_width) for r in rects)
