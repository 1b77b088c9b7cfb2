"""Script injection attacked in Chromium: hostile request values, PIDs, titles and DOIs.

A dataset with a hostile PID and title is registered through ``panbinder datasets import`` of a
crafted PaNOSC record, and a publication with a hostile DOI through ``panbinder publications
add``. Each page that renders them, or request values, is opened in headless Chromium: no
dialog may open, no injected element may exist, no Content-Security-Policy violation may be
reported (a violation means markup got in, or that the policy blocks something a page needs),
and the response carries the policy. Links and snippets are hovered, as a reader would.
"""

from __future__ import annotations

import json
import shutil
from contextlib import asynccontextmanager
from urllib.parse import quote

import pytest
from playwright.async_api import async_playwright

from panbinder.paths import slug
from panbinder.web.urls import path_segment

from .conftest import cli, write_scan

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SCRIPT = "</script><script>alert('script')</script>"
IMG = "\"><img src=x onerror=alert('img')>"
HOVER = "\"onmouseover=alert('hover') x=\""
HOSTILE_PID = f"xss:{SCRIPT}{IMG}{HOVER}"
HOSTILE_TITLE = f"title {SCRIPT}{IMG}"
HOSTILE_DOI = "10.5555/xss\"onmouseover=alert('doi')'><img/src=x/onerror=alert('doi-img')>"
HOSTILE_REF = "\"><img/src=x/onerror=alert('ref')>"
REQUIRED_CSP = (
    "default-src 'self'",
    "script-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "frame-ancestors 'self'",
)

# every element that carries an event-handler attribute, an inline script, or a payload image
INJECTED = """() => [...document.querySelectorAll('*')].filter((e) =>
    [...e.attributes].some((a) => a.name.startsWith('on')) ||
    (e.tagName === 'SCRIPT' && !e.src) ||
    (e.tagName === 'IMG' && e.getAttribute('src') === 'x') ||
    /^\\s*javascript:/i.test(e.getAttribute('href') || '')
  ).map((e) => e.outerHTML)"""
RECORD_VIOLATIONS = """window.__violations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"""


@pytest.fixture(scope="module")
def hostile(portal, publications, git_server, storage_root, tmp_path_factory):
    """A dataset (with a real scan file) and a publication whose identifiers and texts are attacks."""
    root = storage_root / "xss"
    write_scan(root / slug(HOSTILE_PID), 2)
    record = {
        "pid": HOSTILE_PID,
        "title": HOSTILE_TITLE,
        "isPublic": True,
        "creationDate": "2024-03-01T10:00:00Z",
        "instrument": {"name": IMG, "facility": SCRIPT},
        "files": [{"path": "scan.nxs", "size": 3}, {"path": f"z{IMG}.h5", "size": 3}],
    }
    path = tmp_path_factory.mktemp("xss") / "datasets.json"
    path.write_text(json.dumps([record]))
    cli(portal, "datasets", "import", str(path), f"--root={root}")
    cli(
        portal,
        "publications",
        "add",
        f"--doi={HOSTILE_DOI}",
        f"--repo={git_server.url('paper')}",
        "--ref=main",
        f"--dataset={HOSTILE_PID}",
        f"--title={HOSTILE_TITLE}",
        f"--author={IMG}",
    )


@asynccontextmanager
async def chromium():
    """A headless Debian chromium page that records dialogs and CSP violations; the build
    stream is cut so that opening a launch page builds nothing."""
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is installed by `make test`"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.dialogs = []
            page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
            await page.add_init_script(RECORD_VIOLATIONS)
            yield page
        finally:
            await browser.close()


async def open_safely(page, url: str, status: int = 200) -> None:
    """Open ``url``, hover every link and image, and check nothing ran or got in."""
    response = await page.goto(url)
    assert response.status == status, (url, response.status)
    csp = response.headers.get("content-security-policy", "")
    assert all(d in csp for d in REQUIRED_CSP), (url, csp)
    assert response.headers.get("x-content-type-options") == "nosniff"
    await page.wait_for_load_state("networkidle")
    for element in await page.locator("a, img, code, pre").all():
        if await element.is_visible():
            await element.hover()
    await page.wait_for_timeout(300)
    assert page.dialogs == [], (url, page.dialogs)
    assert await page.evaluate(INJECTED) == [], url
    assert await page.evaluate("window.__violations || []") == [], url


async def test_launch_page_with_hostile_targets_and_ref(portal, git_server):
    """Reflected: labpath/urlpath/filepath with closing script tags, and a ref that is markup;
    the stream really runs and fails with the ref in its message."""
    repo = quote(git_server.url("paper"), safe="")
    query = f"labpath={quote(SCRIPT + IMG)}&urlpath={quote(IMG)}&filepath={quote(SCRIPT)}"
    async with chromium() as page:
        await open_safely(page, f"{portal.url}/v2/git/{repo}/{quote(HOSTILE_REF)}?{query}")
        await page.locator("#status").filter(has_text="Failed").wait_for(timeout=60_000)
        assert HOSTILE_REF in await page.locator("h1").inner_text()
        assert await page.get_attribute("#launch", "data-labpath") == SCRIPT + IMG
        assert page.dialogs == [] and await page.evaluate(INJECTED) == []


@pytest.mark.parametrize(
    "query",
    [
        "labpath=javascript:alert('labpath')",
        "urlpath=//evil.invalid/",
        "urlpath=/%5Cevil.invalid/",
        f"filepath=../../hub/{quote(SCRIPT)}",
    ],
)
async def test_launch_targets_leaving_the_server_are_refused_in_the_page(portal, git_server, query):
    repo = quote(git_server.url("paper"), safe="")
    async with chromium() as page:
        await open_safely(page, f"{portal.url}/v2/git/{repo}/main?{query}", status=400)
        name = query.split("=")[0]
        assert (await page.locator("#message").inner_text()).startswith(f"'{name}' ")


async def test_hostile_repository_url_in_the_path(portal):
    async with chromium() as page:
        await open_safely(page, f"{portal.url}/v2/git/{quote(IMG + SCRIPT, safe='')}/main", status=400)


async def test_dataset_page_with_a_hostile_pid_and_title(portal, hostile):
    async with chromium() as page:
        await open_safely(page, f"{portal.url}/datasets/{path_segment(HOSTILE_PID)}")
        assert await page.locator("h1").inner_text() == HOSTILE_TITLE
        assert await page.get_attribute("#preview", "data-pid") == HOSTILE_PID
        # the preview script read this very PID's file and drew a thumbnail (a blob: image)
        tree = page.locator("#tree")
        await tree.filter(has_text="entry").wait_for(timeout=30_000)
        thumb = page.locator("#thumb[src^='blob:']")
        await thumb.wait_for(timeout=30_000, state="attached")
        assert await thumb.evaluate("(img) => img.complete && img.naturalWidth") > 0
        # the file named as markup: the tree API's refusal is shown as text
        await page.select_option("#preview-file", index=1)
        await tree.filter(has_not_text="entry").wait_for(timeout=30_000)
        await page.wait_for_timeout(300)
        assert page.dialogs == [] and await page.evaluate(INJECTED) == []
        assert await page.evaluate("window.__violations") == []
        await page.click(f"a[href='/publications/{path_segment(HOSTILE_DOI)}']")
        await page.wait_for_url(f"**/publications/{path_segment(HOSTILE_DOI)}")
        assert await page.locator("h1").inner_text() == HOSTILE_TITLE


async def test_publication_page_and_badge_snippets_with_a_hostile_doi(portal, hostile):
    async with chromium() as page:
        await open_safely(page, f"{portal.url}/publications/{path_segment(HOSTILE_DOI)}")
        snippets = await page.locator("pre.copy").all_inner_texts()
        launch = await page.get_attribute("a.launch", "href")
        assert launch == f"{portal.url}/v2/doi/{path_segment(HOSTILE_DOI)}"
        # pasted where a reader sees it: the HTML snippet is one link around one image
        await page.set_content(f"<p>{snippets[1]}</p>")
        await page.hover("a")
        await page.wait_for_timeout(300)
        assert page.dialogs == [] and await page.evaluate(INJECTED) == []
        assert await page.evaluate("document.querySelector('a').getAttributeNames()") == ["href"]
        assert await page.get_attribute("a", "href") == launch
        assert f"]({launch})" in snippets[0]


async def test_doi_launch_page_with_a_hostile_doi(portal, hostile):
    async with chromium() as page:
        await page.route("**/build/**", lambda route: route.abort())  # open the page, build nothing
        await open_safely(page, f"{portal.url}/v2/doi/{path_segment(HOSTILE_DOI)}")
        assert "paper" in await page.locator("h1").inner_text()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/datasets/{quote(SCRIPT + IMG)}", 404),
        (f"/publications/10.5555/{quote(SCRIPT + IMG)}", 404),
        (f"/v2/doi/10.5555/{quote(SCRIPT + IMG)}", 400),
        (f"/v2/doi/10.5555/{quote(SCRIPT)}", 404),
        (f"/no/such/page/{quote(SCRIPT + IMG)}", 404),
        (f"/api/preview/tree/{path_segment(HOSTILE_PID)}?file={quote(IMG)}", 404),
        (f"/api/datasets/{path_segment(HOSTILE_PID)}x", 404),
    ],
)
async def test_error_pages_show_request_and_catalogue_values_as_text(portal, hostile, path, status):
    async with chromium() as page:
        await open_safely(page, portal.url + path, status=status)
        message = await page.locator("#message").inner_text()
        assert "<" in message or message.startswith("Nothing here")  # shown as text


async def test_home_page_and_badges(portal):
    async with chromium() as page:
        await open_safely(page, f"{portal.url}/")
        await page.fill("#repo", IMG)
        await page.fill("#labpath", SCRIPT)
        assert await page.evaluate(INJECTED) == []
        for badge in ("/badge.svg", f"/badge/doi/{path_segment(HOSTILE_DOI)}.svg"):
            await open_safely(page, portal.url + badge)
