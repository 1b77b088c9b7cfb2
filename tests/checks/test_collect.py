"""Collecting a repository's notebooks from a container (checks/in_container.py): the tarball is
bounded while it is read. The collect script runs here in a shell instead of ``docker exec``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from panbinder.checks.in_container import collect_repository
from panbinder.errors import PanbinderError


class LocalExec:
    """Runs ``exec CONTAINER ARGS...`` as ``ARGS...`` on this machine, with REPO_DIR set."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.outputs: list[int] = []

    def run_cli(self, *args: str, timeout: float = 60, text: bool = True) -> subprocess.CompletedProcess:
        assert args[:2] == ("exec", "server")
        env = {**os.environ, "REPO_DIR": str(self.repo)}
        proc = subprocess.run(args[2:], capture_output=True, timeout=timeout, text=text, env=env)
        self.outputs.append(len(proc.stdout))
        return proc


def repository(tmp_path: Path, notebook_bytes: int) -> Path:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "sub" / "analysis.ipynb").write_bytes(os.urandom(notebook_bytes))  # incompressible
    (repo / "panbinder.yml").write_text("notebooks: [sub/analysis.ipynb]\n")
    (repo / "data.bin").write_bytes(b"not collected")
    return repo


def test_notebooks_within_the_limit_are_copied_with_their_paths(tmp_path):
    docker = LocalExec(repository(tmp_path, 1000))
    dest = tmp_path / "dest"
    dest.mkdir()
    collect_repository(docker, "server", dest, max_bytes=100_000)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "panbinder.yml",
        "sub/analysis.ipynb",
    ]


def test_a_larger_tarball_is_cut_while_it_is_read_and_refused_naming_the_setting(tmp_path):
    docker = LocalExec(repository(tmp_path, 3_000_000))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(PanbinderError) as raised:
        collect_repository(docker, "server", dest, max_bytes=200_000)
    assert "exceed 200000 bytes" in raised.value.message
    assert "CheckRunner.max_notebook_bytes" in raised.value.message
    assert docker.outputs == [200_001]  # no more than the limit and one byte reached this process
    assert not any(dest.iterdir())
