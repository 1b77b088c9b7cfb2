"""What an archive record may place in a checkout, and how bad answers and bad archives fail:
no ``.git`` folder (its configuration and hooks would run commands), tarballs of ``.``, clean
errors for malformed JSON and clashing members, a cancel that reaches the vault's wait."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from panbinder.builder.archives import (
    ArchiveSource,
    DataverseSource,
    FigshareSource,
    SoftwareHeritageSource,
    ZenodoSource,
)
from panbinder.builder.archives.bundle import bundle_record
from panbinder.builder.archives.unpack import in_git_folder
from panbinder.errors import PanbinderError
from panbinder.registry_cache.archive import ARCHIVED_REF
from tests.archive_server import ArchiveServer, zip_of

HOOK = b'#!/bin/sh\ntouch "$0.ran"\n'
FILES = {"README.md": b"paper code\n", "analysis/run.py": b"print(42)\n"}


def refused(call, *args, **kwargs) -> PanbinderError:
    with pytest.raises(PanbinderError) as info:
        call(*args, **kwargs)
    return info.value


@pytest.fixture
def server():
    with ArchiveServer() as s:
        yield s


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_git_folders_are_named_in_any_case_and_depth():
    for name in (".git", ".git/config", "top/.GIT/hooks/pre-commit", "a\\.Git\\config", "/.git/"):
        assert in_git_folder(name), name
    for name in ("README.md", ".gitignore", "a/.github/x", "x.git/y", "git/config"):
        assert not in_git_folder(name), name


def test_a_records_git_folder_is_not_unpacked(server, tmp_path):
    payload = {
        ".git/config": b"[core]\n\tfsmonitor = touch /tmp/x\n",
        "sub/.GIT/hooks/post-checkout": HOOK,
        **FILES,
    }
    server.zenodo(7001, {"code.zip": zip_of(payload, top="code")})
    ZenodoSource(config=server.config()).fetch("zenodo:7001", "7001", str(tmp_path / "c"))
    assert tree(tmp_path / "c") == ["README.md", "analysis/run.py"]


def test_a_records_git_files_are_not_downloaded(server, tmp_path):
    server.zenodo(7002, {".git/config": b"[core]\n", ".Git/hooks/pre-commit": HOOK, **FILES})
    ZenodoSource(config=server.config()).fetch("zenodo:7002", "7002", str(tmp_path / "c"))
    assert tree(tmp_path / "c") == ["README.md", "analysis/run.py"]
    assert not any(".git" in path.lower() for _, path in server.requests)


def test_a_record_of_only_git_files_has_nothing_to_build(server, tmp_path):
    server.zenodo(7003, {".git/config": b"[core]\n"})
    e = refused(ZenodoSource(config=server.config()).fetch, "zenodo:7003", "7003", str(tmp_path / "c"))
    assert e.reason == "empty_record"


class PlantedGit(ArchiveSource):
    """A fetch that leaves a ``.git`` folder in the record's files (as a fetch missing the
    check above would): bundling must not read its configuration or run its hooks."""

    marker: Path

    def fetch(self, repo_url, version, checkout, check=lambda: None) -> None:
        root = Path(checkout)
        (root / ".git/hooks").mkdir(parents=True)
        (root / "README.md").write_text("code\n")
        (root / ".git/config").write_text(f"[core]\n\tfsmonitor = touch {self.marker}\n")
        for hook in ("pre-commit", "post-commit", "reference-transaction"):
            (root / ".git/hooks" / hook).write_text(f"#!/bin/sh\ntouch {self.marker}\n")
            (root / ".git/hooks" / hook).chmod(0o755)


def test_bundling_reads_no_configuration_or_hooks_from_the_record(tmp_path):
    source = PlantedGit()
    source.marker = tmp_path / "ran"
    bundle_record(source, "zenodo:1", "1", tmp_path / "b.bundle", ref=ARCHIVED_REF)
    assert not source.marker.exists()
    subprocess.run(["git", "clone", "-q", str(tmp_path / "b.bundle"), str(tmp_path / "c")], check=True)
    assert (tmp_path / "c/README.md").read_text() == "code\n"


def test_a_tarball_of_dot_is_unpacked(server, tmp_path):
    """``tar -C dir -czf x.tgz .`` writes ``./`` first: the folder itself, not a file outside it."""
    src = tmp_path / "src"
    (src / "analysis").mkdir(parents=True)
    for name, data in FILES.items():
        (src / name).write_bytes(data)
    subprocess.run(["tar", "-C", str(src), "-czf", str(tmp_path / "x.tgz"), "."], check=True)
    server.zenodo(7101, {"code.tgz": (tmp_path / "x.tgz").read_bytes()})
    ZenodoSource(config=server.config()).fetch("zenodo:7101", "7101", str(tmp_path / "c"))
    assert tree(tmp_path / "c") == ["README.md", "analysis/run.py"]


DV = "doi:10.7910/DVN/BAD"
DV_PATH = "/dataverse/api/datasets/:persistentId/versions/1.0"


@pytest.mark.parametrize(
    "kind, path, answer, named",
    [
        ("zenodo", "/zenodo/api/records/8001", {"id": 8001, "files": ["a.txt"]}, "8001"),
        ("zenodo", "/zenodo/api/records/8001", {"files": [{"key": "a", "size": "big"}]}, "8001"),
        ("zenodo", "/zenodo/api/records/8001", {"files": [{"key": "a", "links": []}]}, "8001"),
        ("zenodo", "/zenodo/api/records/8001", {"links": "x"}, "8001"),
        ("zenodo", "/zenodo/api/records/8001", [1, 2], "8001"),
        ("figshare", "/figshare/v2/articles/9/versions/1", {"files": ["a"]}, "9 version 1"),
        ("figshare", "/figshare/v2/articles/9/versions/1", {"files": {"a": {}}}, "9 version 1"),
        ("figshare", "/figshare/v2/articles/9/versions/1", {"files": [{"name": "a", "size": "x"}]}, "9"),
        ("dataverse", DV_PATH, {"data": ["x"]}, DV),
        ("dataverse", DV_PATH, {"data": {"files": [1]}}, DV),
        ("dataverse", DV_PATH, {"data": {"files": [{"dataFile": "x"}]}}, DV),
        ("dataverse", DV_PATH, {"data": {"files": [{"dataFile": {"id": "x", "filename": "a"}}]}}, DV),
        ("dataverse", DV_PATH, {"data": {"files": [{"dataFile": {"id": 1, "filesize": [1]}}]}}, DV),
    ],
)
def test_unexpected_json_is_a_502_naming_the_record(server, kind, path, answer, named):
    server.json(path, answer)
    source, repo_url, version = {
        "zenodo": (ZenodoSource, "zenodo:8001", "8001"),
        "figshare": (FigshareSource, "figshare:9", "1"),
        "dataverse": (DataverseSource, f"dataverse:{DV}", "1.0"),
    }[kind]
    e = refused(source(config=server.config()).files, repo_url, version)
    assert (e.status_code, e.reason) == (502, "archive_bad_answer")
    assert named in e.message and "try again later" in e.message


def clashing_zip(first: str, second: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in (first, second):
            if name.endswith("/"):
                zf.mkdir(name.rstrip("/"))
            else:
                zf.writestr(name, b"x")
    return buf.getvalue()


@pytest.mark.parametrize("first, second", [("a", "a/b"), ("a/", "a"), ("a/b", "a/b/c")])
def test_a_name_both_file_and_folder_is_a_bad_member(server, tmp_path, first, second):
    server.zenodo(9001, {"code.zip": clashing_zip(first, second)})
    e = refused(ZenodoSource(config=server.config()).fetch, "zenodo:9001", "9001", str(tmp_path / "c"))
    assert (e.status_code, e.reason) == (422, "archive_bad_member")
    assert str(tmp_path) not in e.message


def test_record_files_both_file_and_folder_are_a_bad_member(server, tmp_path):
    server.zenodo(9002, {"a": b"x", "a/b": b"y"})
    e = refused(ZenodoSource(config=server.config()).fetch, "zenodo:9002", "9002", str(tmp_path / "c"))
    assert (e.status_code, e.reason) == (422, "archive_bad_member")


class Cancelled(Exception):
    pass


def test_a_cancel_stops_the_wait_for_the_vault(server, tmp_path):
    """A cancelled build frees its worker while the vault is still cooking, not after vault_timeout."""
    digest = "2" * 40
    server.json(f"/swh/api/1/vault/flat/swh:1:dir:{digest}/", {"status": "pending"})
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) >= 2:
            raise Cancelled

    source = SoftwareHeritageSource(config=server.config(SoftwareHeritageSource__vault_timeout=3.0))
    with pytest.raises(Cancelled):
        source.fetch(f"swh:1:dir:{digest}", digest, str(tmp_path / "c"), check=check)
    assert len(calls) == 2


def test_target_refuses_a_git_folder_itself(tmp_path):
    from panbinder.builder.archives.unpack import target

    for name in (".git/config", "a/.GIT/hooks/x"):
        assert refused(target, tmp_path, name).reason == "archive_bad_member"
    assert target(tmp_path, "a/.gitignore") == tmp_path.resolve() / "a/.gitignore"
