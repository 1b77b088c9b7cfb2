"""``/publications/<doi>/notebooks/<path>?as=stored|executed[&check=frozen|fresh]``: a notebook the
last check ran, read-only, as stored in the repository at the pinned commit or as the check
executed it (``checks.kept`` keeps both), rendered inert by ``web.notebook_html``.

The same access rule as the publication page (``publication_card``: the page of a registered
publication). A check runs as an anonymous reader, so its outputs come from open datasets only.
The page carries the portal's CSP with ``img-src`` widened to ``data:`` (the outputs' PNG and JPEG
images, which cannot run anything); scripts stay limited to the portal's own files.

Rendering takes about a second for a notebook with a few figures, and seconds of CPU for a 5 MB
one, so it is bounded three ways. Each notebook of a check is rendered once: its HTML is kept on
disk next to it (``KeptVersion.keep_rendered``, removed with the check), the last few
(``CACHED``, each under ``MAX_CACHED`` characters) in memory too, and concurrent requests for
one notebook await the same render. Renders run one at a time on their own thread (not the
shared ``run_blocking`` pool, so other handlers are never stalled behind them), and when
``MAX_RENDERING`` notebooks are already being rendered or waiting, another answers 503 with a
message to try again shortly.

A DOI may contain ``/notebooks/``: the path is split at the first ``/notebooks/`` whose prefix is
a registered publication (only the first ``MAX_SPLITS`` are tried: one catalogue lookup each);
when none is, the whole path is a DOI and the publication page answers.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from panbinder.checks.kept import VERSIONS, KeptCheck, KeptNotebooks, KeptVersion
from panbinder.checks.verdict import Kind
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking

from ..api.catalogue import _not_found
from ..notebook_html import notebook_html
from ..urls import target_problem
from .base import CONTENT_SECURITY_POLICY
from .catalogue import PublicationPage

SEPARATOR = "/notebooks/"
NOTEBOOK_CSP = CONTENT_SECURITY_POLICY.replace("img-src 'self' blob:", "img-src 'self' blob: data:")
CACHED, MAX_CACHED = 16, 2_000_000
MAX_RENDERING = 4  # notebooks being rendered or waiting for the render thread
MAX_SPLITS = 4
_rendered: OrderedDict[tuple, str] = OrderedDict()
_rendering: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, asyncio.Future[str]]] = (
    weakref.WeakKeyDictionary()
)
_renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notebook-render")


def _render_now(version: KeptVersion) -> str:
    return notebook_html(version.read(), name=version.notebook.path)


async def _render(kept: KeptNotebooks, version: KeptVersion) -> str:
    """The notebook's HTML: kept on disk by an earlier render, or rendered on the render thread."""
    body = await run_blocking(version.rendered)
    if body is not None:
        return body
    try:
        body = await asyncio.get_running_loop().run_in_executor(_renderer, _render_now, version)
    except FileNotFoundError as error:  # a newer check removed this one's folder meanwhile
        raise PanbinderError(
            "A newer check replaced this notebook while it was being shown; reload the page.",
            reason="replaced",
            status_code=503,
        ) from error
    await run_blocking(version.keep_rendered, body, kept.max_rendered_bytes)
    return body


def _finished(rendering: dict[tuple, asyncio.Future[str]], key: tuple, task: asyncio.Future[str]) -> None:
    rendering.pop(key, None)
    if not task.cancelled():
        task.exception()  # marked retrieved: the waiters have it, and with none left it needs no log


async def rendered(kept: KeptNotebooks, doi: str, path: str, which: str, kind: Kind) -> tuple[str, KeptCheck]:
    """The inert HTML of a kept notebook (rendered once per check) and the check that kept it."""
    version = await run_blocking(kept.version, doi, path, which, kind)
    key = (id(kept), str(version.folder), version.notebook.index, which)
    if key in _rendered:
        _rendered.move_to_end(key)
        return _rendered[key], version.check
    rendering = _rendering.setdefault(asyncio.get_running_loop(), {})
    task = rendering.get(key)
    if task is None:
        if len(rendering) >= MAX_RENDERING:
            raise PanbinderError(
                "Too many notebooks are being rendered right now; try again in a minute.",
                reason="busy",
                log_message=f"notebook view: {len(rendering)} renders in flight, {path!r} refused",
                status_code=503,
            )
        task = rendering[key] = asyncio.ensure_future(_render(kept, version))
        task.add_done_callback(lambda done: _finished(rendering, key, done))
    body = await asyncio.shield(task)  # a request that goes away does not cancel the others' render
    if len(body) <= MAX_CACHED:
        _rendered[key] = body
        while len(_rendered) > CACHED:
            _rendered.popitem(last=False)
    return body, version.check


def split_candidates(value: str) -> list[tuple[str, str]]:
    """The (doi, path) splits of ``value`` at its first ``MAX_SPLITS`` ``/notebooks/``, the first
    one first."""
    found, start = [], 0
    while len(found) < MAX_SPLITS and (at := value.find(SEPARATOR, start)) > 0:
        found.append((value[:at], value[at + len(SEPARATOR) :]))
        start = at + 1
    return found


class NotebookPage(PublicationPage):
    async def get(self, doi_and_path: str) -> None:
        located = await self.located(doi_and_path)
        if located is None:  # a DOI with '/notebooks/' in it: its publication page
            await super().get(doi_and_path)
            return
        self.set_header("Content-Security-Policy", NOTEBOOK_CSP)
        doi, path = located
        pub = await self.publication_card(doi)  # the publication page's access rule
        which = self.get_argument("as", "executed")
        kind_name = self.get_argument("check", Kind.FROZEN.value)
        if which not in VERSIONS:
            raise PanbinderError(
                f"'as' must be 'stored' or 'executed', not '{which[:40]}'.", reason="bad_argument"
            )
        if kind_name not in (Kind.FROZEN.value, Kind.FRESH.value):
            raise PanbinderError(
                f"'check' must be 'frozen' or 'fresh', not '{kind_name[:40]}'.", reason="bad_argument"
            )
        problem = target_problem(path) if path else "is empty"
        if problem is not None:
            raise PanbinderError(
                f"The notebook path {problem}; give its path in the repository, like analysis.ipynb.",
                reason="bad_path",
            )
        kept: KeptNotebooks | None = self.settings.get("kept_notebooks")
        if kept is None:
            raise PanbinderError(
                "This portal keeps no checked notebooks.", reason="not_found", status_code=404
            )
        kind = Kind(kind_name)
        body, check = await rendered(kept, pub["doi"], path, which, kind)
        self.render("notebook.html", pub=pub, path=path, which=which, kind=kind.value, body=body, check=check)

    async def located(self, value: str) -> tuple[str, str] | None:
        """The (registered DOI, notebook path) in ``value``; None when ``value`` is itself a
        registered DOI; 404 when neither."""
        candidates = split_candidates(value)

        def fn(cat, session):
            for doi, path in candidates:
                if cat.get_publication(session, doi) is not None:
                    return doi, path
            if cat.get_publication(session, value) is not None:
                return None
            raise _not_found("publication with DOI", candidates[0][0] if candidates else value)

        return await self.query(fn)


routes = [(r"/publications/(.+/notebooks/.+)", NotebookPage)]
