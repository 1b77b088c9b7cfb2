"""A desktop for GUI tools, end to end in Debian's chromium: a dataset card's 'Desktop' button
launches the publication's repository (it asks with ``binder/desktop``), the launch page opens
``/desktop`` in the server, noVNC's canvas shows the Xfce desktop, and a GUI program (xterm)
started on that desktop lists the dataset mounted read-only under /data; the container stays
hardened (uid 1000, no capabilities, no new privileges, the pids limit).

One portal of its own (its catalogue holds only this publication, so the session portal's
searches and checks are untouched) and one build: the desktop layer once per build cache."""

from __future__ import annotations

import asyncio
import io
import re
import shutil

import docker
import pytest
from PIL import Image
from playwright.async_api import async_playwright

from tests.support import container_names, session_prefix, until_url_or_failed

from .conftest import catalogue_of, cli, write_scan
from .test_browser import CHROMIUM_ARGS, page_shot

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.browser, pytest.mark.slow]
PREFIX = session_prefix("panbinder-desk")
DOI = "10.5555/panbinder.desktop"
PID = "local:gui-scan"
DESKTOP = re.compile(r".*/user/pb-[0-9a-f]+/desktop/.*")


@pytest.fixture(scope="module")
def desktop_portal(portal_factory, git_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("desktop-storage")
    config = f"""
        c.Catalogue.storage_roots = [{str(root)!r}]
        c.GitProvider.allow_local = True
        c.ServerPool.size = 0
        c.Desktop.show_buttons = True
        c.HubProcess.mem_limit = "1G"
        c.HubProcess.cpu_limit = 1.0
        c.HubProcess.pids_limit = 200
        # the first pull of the image (1.3 GB) and the start on a busy machine
        c.HubProcess.start_timeout = 300
        c.HubLauncher.launch_timeout = 300.0
        """
    with portal_factory("desk", config, prefix=PREFIX) as p:
        write_scan(root / "gui-scan", 9)
        cli(p, "datasets", "scan", str(root))
        cat = catalogue_of(p, root)
        try:
            with cat.session() as s:
                cat.get_dataset(s, PID).is_public = True
        finally:
            cat.close()
        files = {"binder/desktop": "", "README.md": "GUI tools for the scans\n"}
        git_server.commit("desktop-tools", files, "a desktop")
        repo = git_server.url("desktop-tools")
        cli(p, "publications", "add", f"--doi={DOI}", f"--repo={repo}", "--ref=main", f"--dataset={PID}")
        yield p


def distinct_colours(png: bytes) -> int:
    return len(Image.open(io.BytesIO(png)).convert("RGB").getcolors(1 << 24) or ())


async def desktop_shown(canvas, seconds: float = 120) -> bytes:
    """The canvas once it shows more than a plain background (the panel, icons, a wallpaper)."""
    for _ in range(int(seconds)):
        png = await canvas.screenshot()
        if distinct_colours(png) > 50:
            return png
        await asyncio.sleep(1)
    raise AssertionError(f"the desktop stayed blank: {distinct_colours(png)} colours")


def server_container(user: str) -> docker.models.containers.Container:
    names = [n for n in container_names(PREFIX) if user.removeprefix("pb-") in n]
    assert len(names) == 1, names
    return docker.from_env().containers.get(names[0])


def run(container, command: str, user: str = "1000", detach: bool = False) -> str:
    display = "DISPLAY=:1"
    result = container.exec_run(["sh", "-c", command], user=user, environment=[display], detach=detach)
    if detach:
        return ""
    assert result.exit_code == 0, result.output.decode(errors="replace")
    return result.output.decode(errors="replace")


async def test_card_desktop_button_opens_a_desktop_that_lists_the_data(desktop_portal):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by `make test`"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            await page.goto(desktop_portal.url + "/datasets?q=scan")
            button = page.locator(f'li[data-pid="{PID}"] a.desktop')
            assert (await button.get_attribute("href")).endswith(
                "/v2/doi/10.5555/panbinder.desktop?urlpath=desktop%2F"
            )
            await button.click()
            await page.locator("#open-desktop[aria-pressed='true']").wait_for()  # the launch page
            # the first build of the desktop layer takes minutes on a busy machine
            await until_url_or_failed(page, DESKTOP, 1_500_000)
            canvas = page.locator("canvas").first
            await canvas.wait_for(timeout=120_000)
            before = await desktop_shown(canvas)
            await page.screenshot(path=str(page_shot(desktop_portal, "desktop")))

            user = re.search(r"/user/(pb-[0-9a-f]+)/", page.url).group(1)
            container = server_container(user)
            # a GUI program on the desktop's display: xterm listing the mounted data
            listing = "find /data -name '*.nxs' | tee /tmp/listing; exec sleep 600"
            run(container, f"xterm -geometry 70x8+40+60 -e sh -c {listing!r}", detach=True)
            for _ in range(60):
                await asyncio.sleep(1)
                after = await canvas.screenshot()
                if after != before and "scan.nxs" in run(container, "cat /tmp/listing 2>/dev/null; true"):
                    break
            else:
                raise AssertionError("xterm did not show the listing of /data on the desktop")
            assert re.search(
                r"^/data/local-gui-scan[^/]*/scan\.nxs$", run(container, "cat /tmp/listing"), re.M
            )
            assert "xterm" in run(container, "ps -eo comm")
            await page.screenshot(path=str(page_shot(desktop_portal, "desktop-xterm")))

            # still hardened: the desktop runs as the user, with no capabilities
            status = run(container, "grep -E '^(Uid|CapEff|CapPrm|NoNewPrivs)' /proc/self/status")
            assert re.search(r"Uid:\s+1000\b", status) and "NoNewPrivs:\t1" in status, status
            assert re.search(r"CapEff:\s+0+\n", status) and re.search(r"CapPrm:\s+0+\n", status), status
            assert "Xtigervnc" in run(container, "ps -o user=,comm= -u 1000")
            assert "Read-only file system" in run(
                container, 'touch "$(ls -d /data/local-gui-scan*)/x" 2>&1; true'
            )
        finally:
            await browser.close()
