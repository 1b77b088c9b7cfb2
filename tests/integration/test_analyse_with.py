"""'Analyse with' through the real portal, Hub and build in Debian's chromium, keyboard only on the
portal: search -> template facet -> basket -> card -> 'Analyse with' -> the template's notebook,
run in the launched server, reads the dataset mounted read-only under /data.

One template build (a repository with one notebook and no requirements)."""

from __future__ import annotations

import re
import shutil

import pytest
import requests
from playwright.async_api import async_playwright

from panbinder.data_mounts.models import Technique
from tests.support import notebook, until_url_or_failed

from .conftest import catalogue_of, cli
from .test_browser import CHROMIUM_ARGS, page_shot
from .test_search_portal import tab_to

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]

SAXS = "PaNET01188"
READ_DATA = """import json, pathlib
manifest = json.load(open('/data/MANIFEST.json'))
for ds in manifest['datasets']:
    head = (pathlib.Path(ds['path']) / 'scan.nxs').read_bytes()[:8]
    print('read', ds['pid'], 'HDF5' if head == b'\\x89HDF\\r\\n\\x1a\\n' else 'not HDF5')
"""


@pytest.fixture(scope="module")
def template(portal, git_server, storage_root, publications):
    """The template 'scan-reader' (SAXS), and two open datasets tagged SAXS."""
    git_server.commit("scan-reader", {"analyse.ipynb": notebook(READ_DATA), "README.md": "reader\n"}, "t")
    cat = catalogue_of(portal, storage_root)
    try:
        with cat.session() as s:
            saxs = s.query(Technique).filter_by(panet_id=SAXS).one_or_none() or Technique(
                panet_id=SAXS, label="small angle x-ray scattering"
            )
            for pid in ("local:open-scan", "local:released-scan", "local:embargoed-scan"):
                ds = cat.get_dataset(s, pid)
                ds.techniques = [*ds.techniques, saxs]
    finally:
        cat.close()
    cli(
        portal,
        "templates",
        "add",
        f"--repo={git_server.url('scan-reader')}",
        "--ref=main",
        "--title=Scan reader",
        "--technique=small angle scattering",
        "--notebook=analyse.ipynb",
    )
    return "scan-reader"


def test_an_embargoed_dataset_refuses_the_template_launch(portal, template):
    resp = requests.get(f"{portal.url}/build/template/{template}/local%3Aembargoed-scan", timeout=30)
    assert resp.status_code == 403 and "under embargo" in resp.json()["message"]


LAB = re.compile(r".*/user/pb-[0-9a-f]+/lab/tree/analyse\.ipynb.*")


async def close_dialogs(page) -> None:
    """Dismiss JupyterLab's notices (a dialog over the notebook takes the clicks)."""
    await page.wait_for_timeout(2000)
    for _ in range(5):
        if not await page.locator(".jp-Dialog").count():
            return
        await page.keyboard.press("Escape")
        await page.wait_for_timeout(500)


async def test_search_facet_card_analyse_with_reads_data_keyboard_only(portal, template):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by `make test`"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            await page.goto(portal.url + "/datasets?q=scan")
            await tab_to(page, f'a[data-facet="template"][data-value="{template}"]')
            await page.keyboard.press("Enter")
            await page.wait_for_url(re.compile(rf".*template={template}.*"))
            shown = await page.locator("li.card").evaluate_all("els => els.map(e => e.dataset.pid)")
            # the embargoed scan is left out, as the facet counts only open datasets
            assert set(shown) == {"local:open-scan", "local:released-scan"}
            for pid in ("local:open-scan", "local:released-scan"):  # the basket, with the keyboard
                await tab_to(page, f'li[data-pid="{pid}"] button.basket-add')
                await page.keyboard.press("Enter")
            await page.locator("#basket-count").filter(has_text="2").wait_for()
            href = await page.locator("#basket-launch").get_attribute("href")
            assert href.endswith(
                f"v2/template/{template}/local%3Aopen-scan/local%3Areleased-scan?labpath=analyse.ipynb"
            )
            assert (await page.request.get(portal.url + href[href.index("/v2/") :])).ok  # the launch page
            await page.screenshot(path=str(page_shot(portal, "analyse-search")), full_page=True)
            card = page.locator('li[data-pid="local:open-scan"]')
            await card.screenshot(path=str(page_shot(portal, "analyse-card")))
            await tab_to(page, 'li[data-pid="local:open-scan"] a.analyse')
            await page.keyboard.press("Enter")
            await until_url_or_failed(page, LAB, 600_000)
            await page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
            # the kernel first (a dialog over the notebook, such as a late stylesheet notice, is closed)
            await page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000
            )
            await close_dialogs(page)
            await page.click(".jp-NotebookPanel .jp-Cell .jp-InputArea-editor", force=True)
            await page.keyboard.press("Shift+Enter")
            output = page.locator(".jp-OutputArea-output").first
            await output.wait_for(timeout=120_000)
            assert "read local:open-scan HDF5" in await output.inner_text()
            await page.screenshot(path=str(page_shot(portal, "analyse-notebook")))
        finally:
            await browser.close()
