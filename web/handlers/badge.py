"""Launch badge (SVG)."""

from __future__ import annotations

from xml.sax.saxutils import escape

from .base import BaseHandler

BADGE = """<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{left}: {right}">
<title>{left}: {right}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{rw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="{lx}" y="14">{left}</text><text x="{rx}" y="14">{right}</text></g></svg>"""


def badge_svg(left: str = "launch", right: str = "panbinder", color: str = "#1f6fb2") -> str:
    lw, rw = 7 * len(left) + 10, 7 * len(right) + 10
    return BADGE.format(
        w=lw + rw,
        lw=lw,
        rw=rw,
        lx=lw / 2,
        rx=lw + rw / 2,
        left=escape(left, {'"': "&quot;"}),
        right=escape(right, {'"': "&quot;"}),
        color=escape(color, {'"': "&quot;"}),
    )


class BadgeHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "max-age=3600")
        self.set_cors()
        self.finish(badge_svg())


routes = [(r"/badge\.svg", BadgeHandler)]
