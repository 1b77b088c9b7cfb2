"""The ``git`` repository provider: any git repository at a branch, tag or commit.

The spec is ``<url-quoted repository URL>/<ref>``; the ref is resolved to a full commit sha with
``git ls-remote`` (or a bare clone for a short sha), through the URL guard's pinned address.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from urllib.parse import quote, unquote

from traitlets import Bool, Float

from panbinder.builder.clone import git_env
from panbinder.builder.url_guard import PinnedRepo, RepoGuard, unreachable
from panbinder.data_mounts.access import Identity
from panbinder.data_mounts.mounts import MountPlan
from panbinder.errors import PanbinderError

from .base import RepoProvider, shared

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA_RE = re.compile(r"^[0-9a-f]{7,39}$")
BAD_REF_RE = re.compile(r"(\.\.|[\x00-\x20~^:?*\[\\]|@\{|^-|^/|/$|\.lock$|//)")


class GitProvider(RepoProvider):
    """Any git repository: ``<url-quoted repository URL>/<ref>`` (ref may contain ``/``)."""

    name = "git"

    allow_local = Bool(
        False,
        help="Allow file:// repository URLs (only for tests and single-machine trials).",
    ).tag(config=True)
    timeout = Float(
        15.0, help="Seconds allowed for asking a remote about its refs (git ls-remote), connecting included."
    ).tag(config=True)

    def __init__(self, spec: str, **kwargs) -> None:
        self._guard: RepoGuard | None = None
        self.pinned: PinnedRepo | None = None
        super().__init__(spec, **kwargs)

    def parse(self, spec: str) -> tuple[str, str]:
        quoted_url, sep, ref = spec.partition("/")
        if not sep or not quoted_url:
            raise PanbinderError(
                "Expected /git/<url-quoted repository URL>/<ref>, for example "
                "/v2/git/https%3A%2F%2Fexample.org%2Fgroup%2Frepo.git/main",
                reason="malformed_spec",
            )
        repo_url = unquote(quoted_url).strip()
        ref = unquote(ref).strip() or "HEAD"
        self.check_url(repo_url)
        if ref != "HEAD" and BAD_REF_RE.search(ref):
            raise PanbinderError(
                f"'{ref}' is not a valid git ref; give a branch, tag or commit sha.",
                reason="malformed_ref",
            )
        return repo_url, ref

    def persistent_spec(self, resolved: str) -> str:
        return f"{quote(self.repo_url, safe='')}/{resolved}"

    @property
    def guard(self) -> RepoGuard:
        """Where git may connect (RepoGuard settings), shared by the ref look-up and the clone."""
        if self._guard is None:
            self._guard = RepoGuard(parent=self, log=self.log)
        return self._guard

    def check_url(self, url: str) -> None:
        """Syntax and transport only; the address is checked (after DNS) by ``pin``."""
        self.guard.location(url, allow_file=self.allow_local)

    async def pin(self) -> PinnedRepo:
        """Resolve and check the host once; every later git command uses this address.
        Identical requests at the same moment (same URL, same settings) share one check."""
        if self.pinned is None:
            key = ("pin", id(self.config), self.repo_url, self.allow_local)
            self.pinned = await shared(key, self._pin)
        return self.pinned

    async def _pin(self) -> PinnedRepo:
        with self.guard.slot():
            return await self.guard.pin(self.repo_url, allow_file=self.allow_local)

    async def prepare(self, who: Identity) -> MountPlan:
        await self.pin()  # a refused address is a 4xx answer before any stream starts
        return await super().prepare(who)

    async def _git(self, *args: str, cwd: str | None = None) -> tuple[int, str, str]:
        assert self.pinned is not None, "pin() first"
        proc = await asyncio.create_subprocess_exec(
            *self.pinned.git(*args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=git_env(),
            cwd=cwd,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log = f"git {args[0]} {self.repo_url}: no answer in {self.timeout} s"
            raise unreachable(self.repo_url, log) from None
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def resolve(self) -> str:
        ref = self.unresolved_ref
        if SHA_RE.match(ref.lower()):
            return ref.lower()
        pinned = await self.pin()
        sha = match_ref(await self._shared_ls_remote(pinned), ref)
        if sha is None and SHORT_SHA_RE.match(ref):
            with self.guard.slot():
                sha = await self._resolve_short_sha(ref)
        if sha is None:
            raise PanbinderError(
                f"The ref '{ref}' was not found in {self.repo_url}; check the branch, tag or commit name.",
                reason="unknown_ref",
                status_code=404,
            )
        return sha

    async def _shared_ls_remote(self, pinned: PinnedRepo) -> str:
        """The remote's refs. Look-ups of the same pinned repository at the same moment share
        one ``git ls-remote`` and one RepoGuard place: a class opening one badge at once asked
        50 times, and all past ``RepoGuard.max_concurrent`` were refused as 'busy'."""
        key = ("ls-remote", *pinned.git("ls-remote", "--", pinned.url))
        return await shared(key, lambda: self._ls_remote(pinned))

    async def _ls_remote(self, pinned: PinnedRepo) -> str:
        with self.guard.slot():
            code, out, err = await self._git("ls-remote", "--", pinned.url)
        if code != 0:  # git's own words only in the log: they would map the network behind
            raise unreachable(self.repo_url, f"git ls-remote {self.repo_url}: {err.strip()}")
        return out

    async def _resolve_short_sha(self, ref: str) -> str | None:
        assert self.pinned is not None
        with tempfile.TemporaryDirectory(prefix="panbinder-ref-") as d:
            code, _, _err = await self._git("clone", "--bare", "--quiet", "--", self.pinned.url, d)
            if code != 0:
                return None
            code, out, _ = await self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=d)
            return out.strip() if code == 0 and SHA_RE.match(out.strip()) else None


def match_ref(ls_remote: str, ref: str) -> str | None:
    """Find ``ref`` in ``git ls-remote`` output: HEAD, branch, tag (peeled) or full ref name."""
    refs: dict[str, str] = {}
    for line in ls_remote.splitlines():
        sha, _, name = line.partition("\t")
        if sha and name:
            refs[name.strip()] = sha.strip()
    candidates = (
        [ref]
        if ref == "HEAD"
        else [
            f"refs/tags/{ref}^{{}}",
            f"refs/tags/{ref}",
            f"refs/heads/{ref}",
            f"{ref}^{{}}",
            ref,
        ]
    )
    for name in candidates:
        if name in refs:
            return refs[name]
    return None
