"""Reproducibility checks end to end: ``panbinder check`` launches each publication through the
portal's Hub, runs its notebooks inside the launched container and compares their outputs.

One repository, three commits that change only a notebook (so the image's requirements layer is
built once): a notebook whose stored outputs come again (one of them read from the
publication's dataset), one that raises, and one whose stored output differs from what it prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from panbinder.checks.records import CheckRecords
from panbinder.checks.verdict import Kind
from tests.support import forget_image

from .conftest import DOI_OPEN, catalogue_of, cli, write_scan

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
