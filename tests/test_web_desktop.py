"""'Desktop' buttons on the real portal app (tests/web_app.py): cards, the publication list, the
dataset page, the home page's form and the launch page, only with ``Desktop.show_buttons``."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.test_web_escaping import assert_safe_page
from tests.test_web_search import add, page
from tests.web_app import git_spec, web_portal

DOI = "10.5555/paper.gui"
DESKTOP_LINK = f"/v2/doi/{DOI}?urlpath=desktop%2F"


async def pages_of(tmp_path, config: dict | None) -> dict[str, str]:
    async with web_portal(tmp_path, config) as portal:
        add(portal.catalogue, "pid:gui", title="Scans for GUI tools", is_public=True)
        portal.add_publication(DOI, "pid:gui")
        paths = {
            "card": "/datasets",
            "publications": "/publications",
            "dataset": f"/datasets/{quote('pid:gui', safe='')}",
            "home": "/",
            "launch": f"/v2/git/{git_spec()}?urlpath=desktop%2F",
        }
        return {name: assert_safe_page(await page(portal, path)) for name, path in paths.items()}


@pytest.mark.parametrize("config", [{"Desktop": {"show_buttons": True}}, {"Desktop": {"mode": "always"}}])
async def test_buttons_open_the_desktop_of_the_launched_server(tmp_path, config):
    html = await pages_of(tmp_path, config)
    assert 'class="button desktop" href="https://' in html["card"] and DESKTOP_LINK in html["card"]
    assert 'class="button desktop"' in html["publications"] and DESKTOP_LINK in html["publications"]
    assert 'class="desktop"' in html["dataset"] and DESKTOP_LINK in html["dataset"]
    assert 'id="launch-desktop" data-urlpath="desktop/"' in html["home"]
    # a launch asking for the desktop shows the button pressed; its script opens desktop/
    assert 'id="open-desktop" aria-pressed="true"' in html["launch"]
    assert 'data-urlpath="desktop/"' in html["launch"]


async def test_no_buttons_unless_images_have_the_desktop(tmp_path):
    html = await pages_of(tmp_path, None)
    for name, text in html.items():
        assert 'class="button desktop"' not in text and "open-desktop" not in text, name
        assert name == "launch" or "desktop%2F" not in text, name
    assert "launch-desktop" not in html["home"]
