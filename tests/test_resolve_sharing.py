"""Many requests for one repository at once share its look-ups (the address check and one
`git ls-remote`), each holding one RepoGuard place, so a class opening one badge together is not
refused as 'busy'."""

from __future__ import annotations

import asyncio
import shutil
from urllib.parse import quote

import pytest
from traitlets.config import Config

from panbinder.providers.git import GitProvider
from tests.support import running_git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


async def test_identical_lookups_at_once_share_one_pin_and_one_ls_remote(tmp_path, monkeypatch):
    config = Config({"RepoGuard": {"allowed_hosts": ["127.0.0.1"], "max_concurrent": 2}})
    runs = []
    original = GitProvider._git

    async def counted(self, *args, **kwargs):
        runs.append(args[0])
        await asyncio.sleep(0.2)  # a remote that takes its time: the others arrive meanwhile
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(GitProvider, "_git", counted)
    with running_git(tmp_path / "git") as git:
        sha = git.commit("shared", {"README.md": "x\n"})
        spec = f"{quote(git.url('shared'), safe='')}/main"
        providers = [GitProvider(spec, config=config) for _ in range(30)]
        pins = await asyncio.gather(*(p.pin() for p in providers), return_exceptions=True)
        assert len({repr(p) for p in pins}) == 1, pins[:3]  # one check of the address, shared
        results = await asyncio.gather(*(p.resolve() for p in providers), return_exceptions=True)
        assert results == [sha] * 30
        assert runs == ["ls-remote"]
        git.commit("shared", {"README.md": "y\n"})
        assert await providers[0].resolve() != sha  # nothing kept once the look-up is over
