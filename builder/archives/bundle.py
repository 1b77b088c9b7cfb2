"""An archive record's files as a ``git bundle``, for the self-describing archives of
publications (registry_cache/archive.py) whose code lives in Zenodo, Figshare, Dataverse or
Software Heritage: one commit of the files a build fetches, with a fixed author and date, so a
restore keeps them as it keeps a git repository and two bundles of one version hold the same
commit.

git keeps its repository outside the record's folder (``--git-dir``) and reads no configuration
but its own (no global or system file, no hooks, no fsmonitor): the files are hostile input, and
nothing in them may run a command as the operator.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from panbinder.errors import PanbinderError

from .base import ArchiveSource

FIXED = {
    "GIT_AUTHOR_NAME": "panbinder",
    "GIT_AUTHOR_EMAIL": "panbinder@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "panbinder",
    "GIT_COMMITTER_EMAIL": "panbinder@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}


def _git(git_dir: Path, work: Path, *args: str) -> None:
    env = {
        **os.environ,
        **FIXED,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(git_dir.parent),
    }
    command = [
        "git",
        f"--git-dir={git_dir}",
        f"--work-tree={work}",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
        *args,
    ]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise PanbinderError(
            f"Could not bundle the archive record's files: git {args[0]} failed.",
            reason="archive_bundle",
            log_message=f"git {' '.join(args)}: {done.stderr.strip()}",
        )


def bundle_record(source: ArchiveSource, repo_url: str, version: str, dest: Path, *, ref: str) -> None:
    """Fetch ``repo_url`` at ``version`` and write its files as one commit, under ``ref`` and
    HEAD, into the bundle ``dest``."""
    with tempfile.TemporaryDirectory(prefix="panbinder-record-") as tmp:
        work = Path(tmp) / "record"
        git_dir = Path(tmp) / "b.git"
        source.fetch(repo_url, version, str(work))
        _git(git_dir, work, "init", "--quiet", "--initial-branch=main")
        _git(git_dir, work, "add", "--all", "--force")
        _git(git_dir, work, "commit", "--quiet", "--no-verify", "-m", f"{repo_url} version {version}")
        _git(git_dir, work, "update-ref", ref, "HEAD")
        _git(git_dir, work, "bundle", "create", "--quiet", str(dest), ref, "HEAD", "--branches")


__all__ = ["bundle_record"]
