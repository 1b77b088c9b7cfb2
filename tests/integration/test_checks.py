"""Reproducibility checks end to end: ``panbinder check`` launches each publication through the
portal's Hub, runs its notebooks inside the launched container and compares their outputs.

One repository, three commits that change only a notebook (so the image's requirements layer is
built once): a notebook whose stored outputs come again (one of them read from the
publication's dataset), one that raises, and one whose stored output differs from what it prints.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from panbinder.checks.records import CheckRecords
from panbinder.checks.verdict import Kind
from tests.support import forget_image

from .conftest import DOI_EMBARGO, DOI_OPEN, catalogue_of, cli, write_scan

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

REPO = "checked-paper"
DOI_GOOD = "10.5555/panbinder.check.good"
DOI_RAISES = "10.5555/panbinder.check.raises"
DOI_DIFFERS = "10.5555/panbinder.check.differs"
READ = (
    "import h5py, json, os\n"
    "m = json.load(open('/data/MANIFEST.json'))\n"
    "with h5py.File(os.path.join(m['datasets'][0]['path'], 'scan.nxs')) as f:\n"
    "    print(int(f['/entry/data/counts'][7]))"
)


def cell(source: str, printed: str, cell_id: str) -> dict:
    outputs = [{"output_type": "stream", "name": "stdout", "text": printed}] if printed else []
    return {
        "cell_type": "code",
        "execution_count": 1,
        "id": cell_id,
        "metadata": {},
        "outputs": outputs,
        "source": source,
    }


def stored_notebook(second: str, printed: str) -> str:
    return json.dumps(
        {
            "cells": [cell(READ, "91\n", "read-scan"), cell(second, printed, "answer")],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


@pytest.fixture(scope="module")
def checked(portal, git_server, storage_root, publications):
    """Three publications of one repository (one commit each) sharing a dataset whose counts[7] is 91."""
    write_scan(storage_root / "checked-scan", 13)
    cli(portal, "datasets", "scan", str(storage_root))
    cat = catalogue_of(portal, storage_root)
    with cat.session() as s:
        cat.get_dataset(s, "local:checked-scan").is_public = True
    base = {"requirements.txt": "h5py==3.16.0\n", "README.md": "checked paper\n"}
    versions = (
        (DOI_GOOD, stored_notebook("print(6 * 7)", "42\n")),
        (DOI_RAISES, stored_notebook("raise ValueError('broken on purpose')", "42\n")),
        (DOI_DIFFERS, stored_notebook("print(6 * 7)", "43\n")),
    )
    for doi, text in versions:
        sha = git_server.commit(REPO, {**base, "analysis.ipynb": text}, doi)
        cli(
            portal,
            "publications",
            "add",
            f"--doi={doi}",
            f"--repo={git_server.url(REPO)}",
            f"--ref={sha}",
            "--dataset=local:checked-scan",
        )
        cli(portal, "build", git_server.url(REPO), sha, timeout=900)
    yield cat
    cat.close()


def check(portal, doi: str) -> tuple[int, dict]:
    proc = cli(portal, "check", doi, "--json", "--CheckRunner.frozen_rebuild=False", check=False, timeout=600)
    assert proc.stdout.strip(), proc.stderr
    result = json.loads(proc.stdout)
    assert "error" not in result, (result, proc.stderr[-3000:])
    return proc.returncode, result


def test_reproducible_publication(portal, checked):
    status, result = check(portal, DOI_GOOD)
    assert (status, result["verdict"]) == (0, "reproducible"), result
    steps = {s["step"]: s for s in result["steps"]}
    assert [steps[s]["status"] for s in ("archive intact", "launches", "runs", "same results")] == [
        "passed"
    ] * 4
    assert steps["frozen rebuild"]["status"] == "skipped"
    print("step seconds:", {name: step["seconds"] for name, step in steps.items()})  # for the README
    history = CheckRecords(catalogue=checked).history(DOI_GOOD)
    assert history and history[0].id == result["id"] and history[0].result.verdict.value == "reproducible"


def test_notebook_that_raises_does_not_run(portal, checked):
    status, result = check(portal, DOI_RAISES)
    assert (status, result["verdict"]) == (4, "does not run"), result
    assert result["failed_step"] == "runs"
    message = result["message"]
    assert "analysis.ipynb" in message and "cell 1 (answer)" in message, message
    assert "ValueError: broken on purpose" in message, message


def test_embargoed_publication_does_not_run_and_says_until_when(portal, checked):
    """A check runs as an anonymous reader: a publication whose dataset is under embargo is not
    launched, and the verdict says which dataset is under embargo until when; no file of it
    reaches the check's record."""
    with checked.session() as s:  # the date the fixture set (a run may cross midnight since)
        released = checked.get_dataset(s, "local:embargoed-scan").release_date.date().isoformat()
    status, result = check(portal, DOI_EMBARGO)
    assert (status, result["verdict"], result["failed_step"]) == (4, "does not run", "launches"), result
    message = result["message"]
    assert f"(local:embargoed-scan) is under embargo until {released}" in message, message
    assert "anonymous reader" in message and "nothing was launched" in message, message
    steps = {s["step"]: s for s in result["steps"]}
    assert steps["runs"] == {
        **steps["runs"],
        "status": "skipped",
        "message": "not run: the data is under embargo",
    }
    assert steps["same results"]["status"] == "skipped"
    recorded = json.dumps(CheckRecords(catalogue=checked).latest(DOI_EMBARGO).result.to_dict())
    assert "scan.nxs" not in recorded and "/data" not in recorded  # the title and PID are public
    assert (result["differences"], result["diff"]) == ([], "")


def test_changed_output_differs(portal, checked):
    status, result = check(portal, DOI_DIFFERS)
    assert (status, result["verdict"]) == (3, "runs, results differ"), result
    assert result["failed_step"] == "same results"
    (difference,) = result["differences"]
    assert (difference["notebook"], difference["cell"], difference["cell_id"]) == (
        "analysis.ipynb",
        1,
        "answer",
    )
    assert "43" in difference["stored"] and "42" in difference["executed"], difference
    assert "43" in result["diff"] and "42" in result["diff"]


def test_check_all_reports_every_publication(portal, checked):
    proc = cli(
        portal, "check", "--all", "--json", "--CheckRunner.frozen_rebuild=False", check=False, timeout=1800
    )
    results = {r["doi"]: r for r in json.loads(proc.stdout)}
    assert {DOI_GOOD, DOI_RAISES, DOI_DIFFERS} <= set(results)
    assert results[DOI_GOOD]["verdict"] == "reproducible"
    assert results[DOI_RAISES]["verdict"] == "does not run"
    assert proc.returncode >= 4  # the worst verdict among them
    empty = results[DOI_OPEN]  # its repository's only notebook is "{}"
    assert empty["verdict"] == "does not run" and "unreadable: figure.ipynb" in empty["message"], empty


def test_frozen_rebuild_step(portal, checked):
    """The check's last step rebuilds the image from its lock; the lock must come out identical."""
    proc = cli(portal, "check", DOI_GOOD, "--json", check=False, timeout=1800)
    result = json.loads(proc.stdout)
    steps = {s["step"]: s for s in result["steps"]}
    assert steps["frozen rebuild"]["status"] == "passed", (steps["frozen rebuild"], proc.stderr[-3000:])
    assert steps["frozen rebuild"]["message"] == "lock: identical"
    assert (proc.returncode, result["verdict"]) == (0, "reproducible")


def test_fresh_check_rebuilds_and_runs_the_rebuilt_image(portal, checked):
    """``check --fresh``: the image rebuilt from the repository's files today, launched and run."""
    proc = cli(portal, "check", DOI_GOOD, "--fresh", "--json", check=False, timeout=1800)
    result = json.loads(proc.stdout)
    assert result.get("kind") == "fresh", (result, proc.stderr[-3000:])
    steps = {s["step"]: s for s in result["steps"]}
    assert steps["fresh rebuild"]["status"] == "passed", steps["fresh rebuild"]
    assert "-fresh-" in result["image"] and steps["fresh rebuild"]["message"].startswith("changed upstream")
    assert (proc.returncode, result["verdict"]) == (0, "reproducible"), result
    records = CheckRecords(catalogue=checked)
    assert records.latest(DOI_GOOD, kind=Kind.FRESH).id == result["id"]


def test_lost_image_restored_from_the_archive_and_a_damaged_archive(portal, checked):
    """The registry loses the image: the check restores it from the archive and says so; then a
    byte of the archive changes: ``archive damaged``, naming the file."""
    bag = Path(cli(portal, "archive", DOI_GOOD, timeout=900).stdout.strip().splitlines()[-1])
    status, result = check(portal, DOI_GOOD)
    assert (status, result["restored"]) == (0, False), result
    assert f"archive {bag.name} verified" in result["steps"][0]["message"]

    forget_image(result["image"], blobs=False, docker="/usr/bin/docker")
    status, result = check(portal, DOI_GOOD)
    assert (status, result["verdict"], result["restored"]) == (0, "reproducible", True), result
    assert "restored from" in result["steps"][0]["message"]
    assert CheckRecords(catalogue=checked).history(DOI_GOOD)[0].result.restored

    metadata = bag / "data" / "publication.json"
    metadata.write_bytes(metadata.read_bytes().replace(b"checked-scan", b"checked-scaN"))
    status, result = check(portal, DOI_GOOD)
    assert (status, result["verdict"], result["failed_step"]) == (6, "archive damaged", "archive intact")
    assert "data/publication.json" in result["message"], result["message"]
    assert {s["status"] for s in result["steps"][1:]} == {"skipped"}


DOI_SHOWN = "10.5555/panbinder.check.shown"
PAYLOAD = "<script>window.__xss = 'script'</script><img src=x onerror=\"window.__xss = 'onerror'\">"


def png_base64() -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (6, 4), (200, 30, 30)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def shown_notebook(png: str) -> str:
    """A notebook whose stored outputs hold a script and an onerror payload (and a real PNG); its
    code prints the same outputs again when the check executes it."""
    source = (
        "import base64\n"
        "from IPython.display import HTML, Image, display\n"
        f"display(HTML({PAYLOAD!r}))\n"
        f"display(Image(data=base64.b64decode({png!r})))"
    )
    outputs = [
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"text/html": PAYLOAD, "text/plain": "<IPython.core.display.HTML object>"},
        },
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"image/png": png, "text/plain": "<IPython.core.display.Image object>"},
        },
    ]
    markdown = {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": f"# Figure 1 {PAYLOAD}"}
    code = {**cell(source, "", "figure"), "outputs": outputs}
    return json.dumps({**json.loads(stored_notebook("print(6 * 7)", "42\n")), "cells": [markdown, code]})


async def assert_inert(page, url: str) -> None:
    """``url`` opened: the CSP is there (no unsafe script source), nothing ran or got in."""
    from .test_xss import INJECTED, REQUIRED_CSP

    response = await page.goto(url)
    assert response.status == 200, (url, response.status)
    csp = response.headers.get("content-security-policy", "")
    assert all(d in csp for d in REQUIRED_CSP) and "unsafe" not in csp, csp
    await page.wait_for_load_state("networkidle")
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__xss") is None
    assert page.dialogs == [] and await page.evaluate(INJECTED) == []
    assert await page.evaluate("window.__violations || []") == [], url


@pytest.mark.browser
async def test_notebooks_shown_inert_and_the_overview_counts(portal, git_server, checked):
    """A checked notebook whose outputs carry a script and an onerror payload, opened in Chromium
    as stored and as executed: nothing runs, the PNG shows; the overview page counts every
    publication by its last frozen check."""
    from .test_xss import chromium

    png = png_base64()
    base = {"requirements.txt": "h5py==3.16.0\n", "README.md": "checked paper\n"}
    sha = git_server.commit(REPO, {**base, "analysis.ipynb": shown_notebook(png)}, DOI_SHOWN)
    cli(portal, "publications", "add", f"--doi={DOI_SHOWN}", f"--repo={git_server.url(REPO)}", f"--ref={sha}")
    cli(portal, "build", git_server.url(REPO), sha, timeout=900)
    _, result = check(portal, DOI_SHOWN)
    assert result["steps"][2]["status"] == "passed", result  # it ran: the executed version is kept

    page_url = f"{portal.url}/publications/{DOI_SHOWN}"
    async with chromium() as page:
        await assert_inert(page, page_url)
        links = await page.locator("ul.check-notebooks a").evaluate_all("(a) => a.map((e) => e.href)")
        assert links == [
            f"{page_url}/notebooks/analysis.ipynb?as=executed",
            f"{page_url}/notebooks/analysis.ipynb?as=stored",
        ]
        for link in links:
            await assert_inert(page, link)
            assert "Figure 1" in await page.locator(".notebook-view h1").inner_text()
            image = page.locator(f".notebook-view img[src='data:image/png;base64,{png}']")
            assert await image.evaluate("(img) => img.complete && img.naturalWidth") == 6
            assert "not shown here: text/html output" in await page.locator(".notebook-view").inner_text()

        await assert_inert(page, f"{portal.url}/reproducibility")
        shown = {
            await row.get_attribute("data-verdict"): int(await row.locator("td.n").inner_text())
            for row in await page.locator("tr.count").all()
        }
    records = CheckRecords(catalogue=checked)
    with checked.session() as session:
        dois = [p.doi for p in checked.list_publications(session, limit=100_000)]
    expected = Counter(
        latest.result.verdict.value if (latest := records.latest(doi)) else "never checked" for doi in dois
    )
    assert shown == {name: expected.get(name, 0) for name in shown}, (shown, expected)
    assert sum(shown.values()) == len(dois) and shown[result["verdict"]] >= 1
