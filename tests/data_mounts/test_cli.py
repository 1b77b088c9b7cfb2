"""The datasets and publications commands: output, exit status, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from panbinder import catalogue_cli as cli
from panbinder.catalogue_cli import DatasetsApp, DatasetsScanApp, PublicationsAddApp, PublicationsApp
from panbinder.data_mounts.catalogue import Catalogue
from tests.shared_data import CATALOGUE, NEXUS


def run(app: str, *args: str, cwd: Path, state: Path) -> subprocess.CompletedProcess:
    code = f"import sys; from panbinder.catalogue_cli import {app} as A; A.launch_instance(sys.argv[1:])"
    env = {**os.environ, "PANBINDER_STATE": str(state)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def pids_in(state: Path) -> list[str]:
    cat = Catalogue(db_url=f"sqlite:///{state}/catalogue.sqlite")
    with cat.session() as s:
        pids = [d.pid for d in cat.list_datasets(s, limit=1000)]
    cat.close()
    return pids


@pytest.fixture
def dirs(tmp_path) -> dict[str, Path]:
    storage = tmp_path / "storage"
    (storage / "beamline" / "run1").mkdir(parents=True)
    shutil.copyfile(NEXUS / "chopper.nxs", storage / "beamline" / "run1" / "chopper.nxs")
    return {"cwd": tmp_path, "state": tmp_path / "state", "storage": storage}


def test_import_bad_file_prints_error_and_exits_2(dirs):
    bad = dirs["cwd"] / "bad.json"
    bad.write_text(json.dumps([{"pid": "a", "title": "ok", "isPublic": True}, {"pid": "b", "title": ["x"]}]))
    result = run("DatasetsApp", "import", str(bad), cwd=dirs["cwd"], state=dirs["state"])
    assert result.returncode == 2
    assert result.stderr.startswith("error: record 1 (pid 'b'): field 'title' must be a string")
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert pids_in(dirs["state"]) == []  # record 0 was not written either


def test_import_invalid_json_and_missing_file(dirs):
    broken = dirs["cwd"] / "broken.json"
    broken.write_text("[{")
    result = run("DatasetsApp", "import", str(broken), cwd=dirs["cwd"], state=dirs["state"])
    assert result.returncode == 2 and "broken.json is not valid JSON" in result.stderr
    result = run("DatasetsApp", "import", "missing.json", cwd=dirs["cwd"], state=dirs["state"])
    assert (
        result.returncode == 2
        and result.stderr.strip() == "error: missing.json does not exist; check the file name."
    )
    result = run("DatasetsApp", "import", cwd=dirs["cwd"], state=dirs["state"])
    assert result.returncode == 2 and "usage: panbinder datasets import FILE" in result.stderr


def test_import_and_scan_through_the_cli(dirs):
    result = run(
        "DatasetsApp",
        "import",
        str(CATALOGUE / "scicatlive-seed/Dataset.json"),
        cwd=dirs["cwd"],
        state=dirs["state"],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "PID.SAMPLE.PREFIX/desy_ds1"
    assert "imported 19 datasets" in result.stderr
    # a config file gives the storage roots, like panbinder serve
    (dirs["cwd"] / "panbinder_config.py").write_text(
        f"c.Catalogue.storage_roots = [{str(dirs['storage'])!r}]\n"
    )
    result = run(
        "DatasetsApp", "scan", str(dirs["storage"] / "beamline"), cwd=dirs["cwd"], state=dirs["state"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "local:beamline/run1"
    assert "1 datasets, 1 files: 1 hashed, 0 unchanged" in result.stderr
    assert len(pids_in(dirs["state"])) == 20


def test_scan_outside_roots_refused(dirs):
    result = run(
        "DatasetsApp",
        "scan",
        "/etc",
        f"--storage-root={dirs['storage']}",
        cwd=dirs["cwd"],
        state=dirs["state"],
    )
    assert result.returncode == 2
    error, detail = result.stderr.splitlines()[:2]
    assert error.startswith("error: 'etc' is outside the storage roots")
    assert detail.startswith("detail: /etc resolves to /etc, outside ")  # the operator sees where


def test_scan_skips_bad_links_registers_the_rest_and_exits_1(dirs, tmp_path):
    beamline = dirs["storage"] / "beamline"
    (tmp_path / "secret").mkdir()
    shutil.copyfile(NEXUS / "chopper.nxs", tmp_path / "secret" / "secret.nxs")
    (beamline / "escape").symlink_to(tmp_path / "secret")
    (beamline / "run1" / "leak.nxs").symlink_to(tmp_path / "secret" / "secret.nxs")
    shutil.copytree(beamline / "run1", beamline / "run2", symlinks=True)
    (beamline / "run2" / "leak.nxs").unlink()
    result = run(
        "DatasetsApp",
        "scan",
        str(beamline),
        f"--storage-root={dirs['storage']}",
        cwd=dirs["cwd"],
        state=dirs["state"],
    )
    assert result.returncode == 1, result.stderr
    assert sorted(result.stdout.split()) == ["local:beamline/run1", "local:beamline/run2"]
    lines = result.stderr.splitlines()
    assert "skipped: escape: a symbolic link out of the storage roots" in lines
    assert "skipped: run1/leak.nxs: a symbolic link out of the storage roots" in lines
    assert "2 entries skipped; the rest was registered" in lines
    assert "Traceback" not in result.stderr
    assert sorted(pids_in(dirs["state"])) == ["local:beamline/run1", "local:beamline/run2"]


def test_group_without_subcommand(dirs):
    result = run("PublicationsApp", cwd=dirs["cwd"], state=dirs["state"])
    assert result.returncode == 2 and "error: give one of: add, import" in result.stderr


@pytest.fixture
def in_process(dirs, monkeypatch):
    monkeypatch.chdir(dirs["cwd"])
    monkeypatch.setenv("PANBINDER_STATE", str(dirs["state"]))
    calls = []

    def fake_git_resolver(parent):
        async def resolve(repo_url, ref):
            calls.append((repo_url, ref))
            return "c0ffee" * 6 + "beef"

        return resolve

    monkeypatch.setattr(cli, "git_resolver", fake_git_resolver)
    yield calls
    for app in (DatasetsApp, PublicationsApp, PublicationsAddApp, DatasetsScanApp):
        app.clear_instance()


def test_publications_add_with_repeated_dataset_option(dirs, in_process, capsys):
    Catalogue(db_url=f"sqlite:///{dirs['state']}/catalogue.sqlite").import_datasets(
        json.loads((CATALOGUE / "scicatlive-seed/Dataset.json").read_text())
    )
    app = PublicationsAddApp()
    app.initialize(
        [
            "--doi=https://doi.org/10.9999/Paper",
            "--repo=https://github.com/e/r",
            "--ref=v1",
            "--dataset=PID.SAMPLE.PREFIX/psi_ds1",
            "--dataset=PID.SAMPLE.PREFIX/psi_ds2",
            "--author=A",
            "--author=B",
            "--year=2021",
        ]
    )
    app.start()
    assert capsys.readouterr().out.strip() == "10.9999/paper"
    assert in_process == [("https://github.com/e/r", "v1")]
    cat = Catalogue(db_url=f"sqlite:///{dirs['state']}/catalogue.sqlite")
    with cat.session() as s:
        pub = cat.get_publication(s, "10.9999/paper")
        assert [d.pid for d in pub.datasets] == ["PID.SAMPLE.PREFIX/psi_ds1", "PID.SAMPLE.PREFIX/psi_ds2"]
        assert (pub.ref, pub.resolved_sha, pub.authors, pub.year) == (
            "v1",
            "c0ffee" * 6 + "beef",
            ["A", "B"],
            2021,
        )
    cat.close()


def test_publications_add_unknown_dataset(dirs, in_process, capsys):
    app = PublicationsAddApp()
    app.initialize(["--doi=10.9999/p", "--repo=https://github.com/e/r", "--dataset=nope"])
    with pytest.raises(SystemExit) as exit_info:
        app.start()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No dataset with PID 'nope' is in the catalogue") and "Traceback" not in err
    assert in_process == []
