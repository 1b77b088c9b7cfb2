"""URLs built from request or catalogue values, and the checks on URLs users hand us.

Pure functions, tested without a server. Three rules keep a crafted value from leaving the
portal or the launched server:

- a value put into a link's path is percent-encoded (``path_segment``), so ``"``, ``<``, ``?``
  or ``#`` in a PID or DOI stay data, and ``..`` never becomes a dot segment a browser resolves;
- a launch target (``labpath``, ``filepath``, ``urlpath``) is a relative path inside the user's
  server: no scheme, no leading ``/``, no ``//``, backslash, ``..`` segment or control character,
  also after percent-decoding (browsers read ``%2e%2e`` as ``..`` and ``\\`` as ``/``);
- ``/login?next=`` goes back only to a path under the portal's base URL.

Absolute links (launch URLs, badges, build logs) start from the configured public URL, never
from the request's ``Host`` header, which a client chooses.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote, unquote, urlsplit

from panbinder.errors import PanbinderError

LAUNCH_TARGETS = ("urlpath", "labpath", "filepath")
MAX_TARGET_LENGTH = 1024
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
MARKDOWN_SAFE = ":/?#@!$&'*+,;=%~"  # percent-encode the rest: ( ) < > [ ] space " \ `


def path_segment(value: str) -> str:
    """``value`` percent-encoded for a URL path; ``/`` kept (DOIs read as ``10.5555/x``)
    unless a part is empty, ``.`` or ``..``, when every ``/`` is encoded too."""
    parts = value.split("/")
    safe = "" if any(p in ("", ".", "..") for p in parts) else "/"
    return quote(value, safe=safe)


def _decoded_forms(value: str) -> list[str]:
    """``value`` and its percent-decodings (twice: a proxy or server may decode again)."""
    once = unquote(value)
    return [value, once, unquote(once)]


def target_problem(value: str) -> str | None:
    """Why ``value`` is not a relative path inside the server, or None if it is."""
    if len(value) > MAX_TARGET_LENGTH:
        return f"is longer than {MAX_TARGET_LENGTH} characters"
    for form in _decoded_forms(value):
        path = re.split(r"[?#]", form, maxsplit=1)[0]
        if CONTROL_RE.search(form):
            return "contains a control character (tab, newline...)"
        if "\\" in path:
            return "contains a backslash; use '/' between folders"
        if path.startswith("/"):
            return "starts with '/'; give the path relative to the server, without the leading '/'"
        if SCHEME_RE.match(path) or "//" in path:
            return "is a full URL or contains '//'; give a path inside the server, like lab/tree/x.ipynb"
        if ".." in path.split("/"):
            return "contains a '..' folder; give the path from the repository's top folder"
    return None


def launch_targets(arguments: dict[str, str]) -> dict[str, str]:
    """The launch targets from a request's arguments, each checked (PanbinderError 400)."""
    targets = {}
    for name in LAUNCH_TARGETS:
        value = arguments.get(name, "")
        problem = target_problem(value) if value else None
        if problem:
            raise PanbinderError(
                f"'{name}' {problem}.", reason="bad_launch_target", log_message=f"{name}={value!r}"
            )
        targets[name] = value
    return targets


def local_next(target: str, base_url: str) -> str:
    """``target`` if it is a path under ``base_url`` on this site, else ``base_url``."""
    root = base_url.rstrip("/")
    if not target:
        return base_url
    for form in _decoded_forms(target):
        if CONTROL_RE.search(form) or "\\" in form or not form.startswith("/") or form.startswith("//"):
            return base_url
        parts = urlsplit(form)
        if parts.scheme or parts.netloc or ".." in parts.path.split("/"):
            return base_url
        if not (parts.path == root or parts.path.startswith(root + "/")):
            return base_url
    return target


def public_base(public_url: str, base_url: str) -> str:
    """The portal's absolute URL with the base URL, ending in ``/``."""
    return public_url.rstrip("/") + "/" + base_url.strip("/") + ("/" if base_url.strip("/") else "")


def template_launch_url(base: str, name: str, pids: list[str], notebook: str = "") -> str:
    """ "Analyse with": ``v2/template/<name>/<pid>/<pid>...``, each PID one fully encoded path
    segment (a ``/`` in a PID stays inside its segment), opening ``notebook`` in JupyterLab."""
    spec = "/".join([quote(name, safe=""), *(quote(pid, safe="") for pid in pids)])
    labpath = f"?labpath={quote(notebook, safe='/')}" if notebook else ""
    return f"{base}v2/template/{spec}{labpath}"


def review_url(base: str, doi: str, token: str) -> str:
    """A publication's review link: its launch URL with the link's token (URL-safe already)."""
    return f"{base}v2/doi/{path_segment(doi)}?review_token={quote(token, safe='')}"


def doi_links(base: str, doi: str) -> dict[str, str]:
    """Launch and badge URLs of a publication, and the badge snippets to paste elsewhere."""
    launch = f"{base}v2/doi/{path_segment(doi)}"
    badge = f"{base}badge/doi/{path_segment(doi)}.svg"
    md_launch, md_badge = quote(launch, safe=MARKDOWN_SAFE), quote(badge, safe=MARKDOWN_SAFE)
    attr_launch, attr_badge = html.escape(launch, quote=True), html.escape(badge, quote=True)
    return {
        "launch_url": launch,
        "badge_url": badge,
        "badge_markdown": f"[![launch]({md_badge})]({md_launch})",
        "badge_html": f'<a href="{attr_launch}"><img src="{attr_badge}" alt="launch"></a>',
    }
