"""Repository providers: turn the spec after ``/v2/<provider>/`` into a repository and a ref.

A provider is a plug-in (entry point group ``panbinder.providers``). Each parses its spec,
validates it and resolves the ref to an immutable version before anything else happens.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from importlib.metadata import entry_points
from urllib.parse import quote, unquote

from traitlets import Bool, Float
from traitlets.config import LoggingConfigurable

from panbinder.data_mounts.access import Identity
from panbinder.data_mounts.mounts import MountPlan
from panbinder.errors import PanbinderError

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA_RE = re.compile(r"^[0-9a-f]{7,39}$")
SCP_LIKE_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$")
BAD_REF_RE = re.compile(r"(\.\.|[\x00-\x20~^:?*\[\\]|@\{|^-|^/|/$|\.lock$|//)")


class RepoProvider(LoggingConfigurable):
    """Base class. Subclasses set ``name`` and implement ``parse`` and ``resolve``."""

    name = "base"

    @property
    def image_provider(self) -> str:
        """The provider whose naming the image uses (a DOI launches its repository's image)."""
        return self.name

    def __init__(self, spec: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.repo_url, self.unresolved_ref = self.parse(spec)

    def parse(self, spec: str) -> tuple[str, str]:
        raise NotImplementedError

    async def resolve(self) -> str:
        """The immutable version (a full commit sha for git)."""
        raise NotImplementedError

    def persistent_spec(self, resolved: str) -> str:
        """The spec that names this exact version, for binder_persistent_request."""
        return self.spec

    async def prepare(self, who: Identity) -> MountPlan:
        """Checks and mounts for this user before anything streams; raises PanbinderError (4xx)."""
        return MountPlan((), ())


class GitProvider(RepoProvider):
    """Any git repository: ``<url-quoted repository URL>/<ref>`` (ref may contain ``/``)."""

    name = "git"

    allow_local = Bool(
        False,
        help="Allow file:// repository URLs (only for tests and single-machine trials).",
    ).tag(config=True)
    timeout = Float(30.0, help="Seconds allowed for asking a remote about its refs.").tag(config=True)

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

    def check_url(self, url: str) -> None:
        lowered = url.lower()
        if lowered.startswith(("https://", "http://", "git://", "ssh://")) or SCP_LIKE_RE.match(url):
            rest = url.split("://", 1)[-1]
            host = rest.rsplit("@", 1)[-1] if "@" in rest.split("/", 1)[0] else rest
            if re.search(r"\s", url) or url.startswith("-") or host.startswith("-"):
                raise PanbinderError(f"'{url}' is not a valid repository URL.", reason="bad_url")
            if "://" in url and (not rest or rest.startswith("/")):
                raise PanbinderError(f"'{url}' has no host name.", reason="bad_url")
            return
        if lowered.startswith("file://"):
            if self.allow_local:
                return
            raise PanbinderError(
                "Local repositories (file://) are not allowed on this service; "
                "give an https, git or ssh URL.",
                reason="local_repo",
                status_code=403,
            )
        raise PanbinderError(
            f"'{url}' is not a repository URL this service understands; "
            "give an https://, git:// or ssh:// URL (url-quoted in the path).",
            reason="bad_url",
        )

    async def _git(self, *args: str, cwd: str | None = None) -> tuple[int, str, str]:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_SSH_COMMAND="ssh -o BatchMode=yes")
        proc = await asyncio.create_subprocess_exec(
            "git",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PanbinderError(
                f"The repository {self.repo_url} did not answer within {self.timeout:.0f} s; "
                "check the URL or try again later.",
                reason="repo_timeout",
            ) from None
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def resolve(self) -> str:
        ref = self.unresolved_ref
        if SHA_RE.match(ref.lower()):
            return ref.lower()
        code, out, err = await self._git("ls-remote", "--", self.repo_url)
        if code != 0:
            detail = next((ln for ln in err.splitlines() if ln.strip()), "no answer")
            raise PanbinderError(
                f"Could not reach the repository {self.repo_url} ({detail.strip()}). "
                "Check the URL and that the repository is public.",
                reason="repo_unreachable",
                log_message=f"git ls-remote {self.repo_url}: {err.strip()}",
            )
        sha = match_ref(out, ref)
        if sha is None and SHORT_SHA_RE.match(ref):
            sha = await self._resolve_short_sha(ref)
        if sha is None:
            raise PanbinderError(
                f"The ref '{ref}' was not found in {self.repo_url}; check the branch, tag or commit name.",
                reason="unknown_ref",
                status_code=404,
            )
        return sha

    async def _resolve_short_sha(self, ref: str) -> str | None:
        with tempfile.TemporaryDirectory(prefix="panbinder-ref-") as d:
            code, _, _err = await self._git("clone", "--bare", "--quiet", "--", self.repo_url, d)
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


def get_provider_class(name: str) -> type[RepoProvider]:
    for ep in entry_points(group="panbinder.providers"):
        if ep.name == name:
            return ep.load()
    known = sorted(ep.name for ep in entry_points(group="panbinder.providers"))
    raise PanbinderError(
        f"Unknown repository provider '{name}'; this service knows: {', '.join(known)}.",
        reason="unknown_provider",
        status_code=404,
    )
