"""The search pages through the real portal (panbinder serve with its Hub): scanned datasets found
by text and facets, embargo shown on cards, counters, and a person's path in Chromium from the
home page to a dataset with the keyboard only."""

from __future__ import annotations

import re
import shutil
from urllib.parse import quote

import pytest
import requests
from playwright.async_api import async_playwright

from .conftest import DOI_OPEN
from .test_browser import CHROMIUM_ARGS, page_shot

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]


def get(portal, path: str, **kw) -> requests.Response:
    return requests.get(portal.url + path, headers={"Accept": "text/html"}, timeout=30, **kw)


def test_scanned_datasets_are_found_by_text_and_facets(portal, publications):
    resp = requests.get(f"{portal.url}/api/search/datasets", params={"q": "scan with value"}, timeout=30)
    assert resp.status_code == 200, resp.text
    found = resp.json()
    pids = {c["pid"] for c in found["items"]}
    assert {"local:open-scan", "local:embargoed-scan", "local:released-scan"} <= pids
    access = next(f for f in found["facets"] if f["name"] == "access")["values"]
    assert {v["value"]: v["count"] for v in access}["embargoed"] >= 1
    only_open = requests.get(
        f"{portal.url}/api/search/datasets", params={"q": "scan with value", "access": "open"}, timeout=30
    ).json()
    assert "local:embargoed-scan" not in {c["pid"] for c in only_open["items"]}
    assert found["permalink"].startswith(portal.url)


def test_embargoed_card_has_a_lock_and_no_files_or_thumbnail(portal, publications):
    html = get(portal, "/datasets?q=" + quote("embargoed-scan")).text
    card = re.search(r'<li class="card embargoed" data-pid="local:embargoed-scan">.*?</li>', html, re.S)
    assert card, html[:3000]
    assert "Embargoed" in card.group(0) and "until" in card.group(0)
    assert "thumbnail" not in card.group(0) and "scan.nxs" not in card.group(0)


def test_launch_page_and_dataset_page_are_counted(portal, publications):
    before = requests.get(f"{portal.url}/api/search/publications", params={"q": DOI_OPEN}, timeout=30).json()
    launches = before["items"][0]["launches"]
    assert get(portal, f"/v2/doi/{DOI_OPEN}").status_code == 200  # the launch page (no build started here)
    after = requests.get(f"{portal.url}/api/search/publications", params={"q": DOI_OPEN}, timeout=30).json()
    assert after["items"][0]["launches"] == launches + 1
    views = requests.get(f"{portal.url}/api/datasets/local:open-scan", timeout=30).json()["views"]
    assert get(portal, "/datasets/local:open-scan").status_code == 200
    assert requests.get(f"{portal.url}/api/datasets/local:open-scan", timeout=30).json()["views"] == views + 1


def test_bad_search_parameters_answer_400_pages_and_json(portal, publications):
    resp = get(portal, "/datasets?page=0")
    assert resp.status_code == 400 and "page" in resp.text and "Traceback" not in resp.text
    resp = requests.get(f"{portal.url}/api/search/datasets", params={"technique": "nothing"}, timeout=30)
    assert resp.status_code == 400 and "PaNET" in resp.json()["message"]


async def tab_to(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching ``selector`` has the focus."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate(
            "(s) => document.activeElement && document.activeElement.matches(s)", selector
        ):
            return
    raise AssertionError(f"Tab never reached {selector}")


@pytest.mark.browser
async def test_search_facet_card_with_the_keyboard_only(portal, publications):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by `make test`"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(portal.url + "/")
            await tab_to(page, "#find-data")
            await page.keyboard.press("Enter")
            await page.wait_for_url(re.compile(r".*/datasets$"))
            await tab_to(page, "#q")
            await page.keyboard.type("scan with value")
            await page.keyboard.press("Enter")
            await page.wait_for_url(re.compile(r".*/datasets\?q=scan\+with\+value"))
            assert await page.locator("li.card").count() >= 3
            await tab_to(page, 'a[data-facet="access"][data-value="open"]')
            await page.keyboard.press("Enter")
            await page.wait_for_url(re.compile(r".*access=open.*"))
            pids = await page.locator("li.card").evaluate_all("els => els.map(e => e.dataset.pid)")
            assert "local:embargoed-scan" not in pids and "local:open-scan" in pids
            await page.screenshot(path=str(page_shot(portal, "search")), full_page=True)
            await tab_to(page, 'li[data-pid="local:open-scan"] a.card-title')
            await page.keyboard.press("Enter")
            await page.wait_for_url(re.compile(r".*/datasets/local(:|%3A)open-scan$"))
            assert "scan with value 3" in await page.locator("h1").inner_text()
            await page.screenshot(path=str(page_shot(portal, "dataset")))
        finally:
            await browser.close()
