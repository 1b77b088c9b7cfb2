"""A person's path: open the launch link in a real browser, watch the log, land in JupyterLab."""

from __future__ import annotations

import re
import shutil
from contextlib import asynccontextmanager
from urllib.parse import quote

import pytest
from playwright.async_api import async_playwright

from .conftest import DOI_EMBARGO, HUB_PASSWORD

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@asynccontextmanager
async def browser_page(link: str):
    """Headless Debian chromium with ``link`` open."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by `make test`"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(link)
            yield page
        finally:
            await browser.close()


async def test_launch_link_opens_the_notebook_in_jupyterlab(portal, git_server, analysis_repo):
    link = f"{portal.url}/v2/git/{quote(git_server.url(analysis_repo), safe='')}/main?labpath=figure.ipynb"
    async with browser_page(link) as page:
        await page.wait_for_url(re.compile(r".*/user/pb-[0-9a-f]+/lab/tree/figure\.ipynb.*"), timeout=180_000)
        # JupyterLab renders the notebook from the repository, with its cell
        await page.wait_for_selector(".jp-NotebookPanel", timeout=60_000)
        await page.wait_for_selector("text=data/values.txt", timeout=60_000)
        await page.screenshot(path=str(page_shot(portal, "jupyterlab")))


async def test_launch_page_shows_a_failure_message(portal, git_server, analysis_repo):
    link = f"{portal.url}/v2/git/{quote(git_server.url(analysis_repo), safe='')}/no-such-branch"
    async with browser_page(link) as page:
        status = page.locator("#status")
        await status.filter(has_text="Failed").wait_for(timeout=60_000)
        assert "'no-such-branch' was not found" in await status.inner_text()
        await page.screenshot(path=str(page_shot(portal, "failed")))


def page_shot(portal, name: str):
    """Screenshots stay with the test portal's state, to look at after a run."""
    return portal.state / f"browser-{name}.png"


async def test_embargoed_doi_signs_in_through_the_hub_and_launches(portal, publications):
    """Anonymous: the page says why and offers to sign in; after the Hub's login, it launches."""
    async with browser_page(f"{portal.url}/v2/doi/{DOI_EMBARGO}") as page:
        message = await page.locator("#message").inner_text()
        assert "under embargo" in message and "Nothing was launched" in message
        await page.click("#login")
        await page.fill("input[name=username]", "alice")
        await page.fill("input[name=password]", HUB_PASSWORD)
        await page.click("input[type=submit], button[type=submit]")
        await page.wait_for_url(re.compile(r".*/user/pb-[0-9a-f]+/lab.*"), timeout=180_000)
        await page.wait_for_selector(".jp-LabShell", timeout=60_000)
        await page.screenshot(path=str(page_shot(portal, "embargo-signed-in")))
