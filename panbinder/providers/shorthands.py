"""BinderHub's shorthands for git hosts: ``/v2/gh/<owner>/<repo>/<ref>``,
``/v2/gl/<url-quoted group/subgroup/repo>/<ref>`` and ``/v2/gist/<owner>/<gist id>/<ref>``.

Each only names a repository URL on its host (``base_url``, a setting, so a facility's GitHub
Enterprise or GitLab fits) and is then the git provider: the same URL guard, ``git ls-remote``
resolution and clone. Images are named as for ``/v2/git/`` with that URL, so a launch by
shorthand and one by URL share them. A missing ref means the default branch (HEAD).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from traitlets import Unicode

from panbinder.errors import PanbinderError

from .git import BAD_REF_RE, GitProvider

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class ShorthandProvider(GitProvider):
    """Base class: ``split`` gives the repository's path on ``base_url`` and the ref."""

    example = ""
    image_provider = "git"

    def split(self, spec: str) -> tuple[str, str, str]:
        """(repository path on base_url, the spec before the ref, the ref as given)."""
        raise NotImplementedError

    def malformed(self, spec: str) -> PanbinderError:
        return PanbinderError(
            f"'{spec}' is not a {self.name} address; expected /v2/{self.name}/{self.example}.",
            reason="malformed_spec",
        )

    def parse(self, spec: str) -> tuple[str, str]:
        path, self.head, ref = self.split(spec)
        ref = unquote(ref).strip() or "HEAD"
        if ref != "HEAD" and BAD_REF_RE.search(ref):
            raise PanbinderError(
                f"'{ref}' is not a valid git ref; give a branch, tag or commit sha.", reason="malformed_ref"
            )
        repo_url = f"{self.base_url.rstrip('/')}/{path}"
        self.check_url(repo_url)
        return repo_url, ref

    def persistent_spec(self, resolved: str) -> str:
        return f"{self.head}/{resolved}"


class GitHubProvider(ShorthandProvider):
    name = "gh"
    example = "<owner>/<repository>/<ref>"
    base_url = Unicode("https://github.com", help="Where /v2/gh/ repositories live.").tag(config=True)

    def split(self, spec: str) -> tuple[str, str, str]:
        owner, _, rest = spec.partition("/")
        repo, _, ref = rest.partition("/")
        repo = repo.removesuffix(".git")
        if not NAME_RE.match(owner) or not NAME_RE.match(repo) or repo in (".", ".."):
            raise self.malformed(spec)
        return f"{owner}/{repo}", f"{owner}/{repo}", ref


class GistProvider(ShorthandProvider):
    name = "gist"
    example = "<owner>/<gist id>/<ref>"
    base_url = Unicode("https://gist.github.com", help="Where /v2/gist/ gists live.").tag(config=True)

    def split(self, spec: str) -> tuple[str, str, str]:
        owner, _, rest = spec.partition("/")
        gist, _, ref = rest.partition("/")
        if not NAME_RE.match(owner) or not re.fullmatch(r"[0-9a-fA-F]+", gist):
            raise self.malformed(spec)
        return f"{owner}/{gist}.git", f"{owner}/{gist}", ref


class GitLabProvider(ShorthandProvider):
    name = "gl"
    example = "<url-quoted group/repository>/<ref>"
    base_url = Unicode("https://gitlab.com", help="Where /v2/gl/ repositories live.").tag(config=True)

    def split(self, spec: str) -> tuple[str, str, str]:
        quoted, _, ref = spec.partition("/")
        path = unquote(quoted).strip("/").removesuffix(".git")
        parts = path.split("/")
        if len(parts) < 2 or not all(NAME_RE.match(p) and p not in (".", "..") for p in parts):
            raise self.malformed(spec)
        return f"{path}.git", quoted, ref
