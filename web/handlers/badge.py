"""Launch badge (SVG)."""

from __future__ import annotations

from panbinder.checks.svg import render_badge

from .base import BaseHandler


def badge_svg(left: str = "launch", right: str = "panbinder", color: str = "#1f6fb2") -> str:
    return render_badge(left, right, color)


class BadgeHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "max-age=3600")
        self.set_cors()
        self.finish(badge_svg())


routes = [(r"/badge\.svg", BadgeHandler)]
