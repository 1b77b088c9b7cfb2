"""The build's clone: the repository (and its submodules) fetched through the URL guard.

Why not repo2docker's git content provider: it runs ``git clone <url>`` with no options, so git
would resolve the host again (a second DNS answer could point inside the facility), follow
redirects and use any transport, and its error lines went to the user's build log, which told a
caller which ports of an address are open. Here every URL (each submodule's too) is pinned by
``RepoGuard``, git's output stays in the operator's log, and the user sees one generic message.
A full commit sha skips ``git ls-remote``, so this clone is the first contact with the remote.

A rebuild may carry an archive's ``git bundle`` (``Recipe.repo_bundle``): when the upstream cannot
give the pinned commit (unreachable, deleted, or the commit gone), the checkout comes from the
bundle instead, at that commit only, and the build log says so (``FROM_BUNDLE``). The upstream is
still tried first, so a rebuild says whether the repository itself still answers.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess

from repo2docker.engine import BuildError

from panbinder.errors import PanbinderError

from .engine import run_streaming
from .url_guard import PinnedRepo, RepoGuard, unreachable

SUBMODULE_URL_RE = re.compile(r"^submodule\.(?P<name>.+)\.url (?P<url>.+)$")
MAX_SUBMODULE_DEPTH = 3
FULL_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# the build log's line when the checkout came from an archive's bundle (rebuilds.py looks for it)
FROM_BUNDLE = "rebuilt from the archive's repository bundle; upstream {url} is unreachable"
# a failed upstream clone that the bundle may stand in for; a refused address stays refused
BUNDLE_FALLBACK_REASONS = frozenset({"repo_unreachable", "unknown_ref"})


def git_env() -> dict[str, str]:
    """The environment git runs in: no prompts, and no ssh command that would override the pin."""
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _run(cmd: list[str], *, cwd: str = "") -> str:
    """Run git (registered with the build's cancel token); its output comes back, never to users."""
    args = cmd[:1] + (["-C", cwd] if cwd else []) + cmd[1:]
    return "".join(run_streaming(args, env=git_env()))


def _output(args: list[str], cwd: str) -> str:
    done = subprocess.run(["git", "-C", cwd, *args], capture_output=True, text=True, env=git_env())
    return done.stdout if done.returncode == 0 else ""


def clone_pinned(
    guard: RepoGuard, url: str, ref: str, checkout: str, *, allow_file: bool, log: logging.Logger
) -> str:
    """Clone ``url`` into ``checkout`` at ``ref`` (a commit sha or HEAD); returns the commit.

    Raises PanbinderError: 403 for a refused address, the generic unreachable message for a
    failed fetch (git's output only in ``log_message``), 404 for a commit the repository lacks.
    """
    pinned = guard.pin_blocking(url, allow_file=allow_file)
    probe(pinned, url, guard.answer_timeout)
    try:
        _run(pinned.git("clone", "--no-checkout", "--quiet", "--", pinned.url, checkout))
    except BuildError as e:
        raise unreachable(url, f"git clone {url} ({pinned.address}): {e}") from None
    sha = _output(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], checkout).strip()
    if not sha:
        raise PanbinderError(
            f"The commit {ref} is not in the repository {url}; check the ref.",
            reason="unknown_ref",
            status_code=404,
        )
    _run(["git", "reset", "--quiet", "--hard", sha], cwd=checkout)
    update_submodules(guard, checkout, log=log, depth=1)
    log.info("Checked out %s at %s\n", url, sha, extra={"phase": "fetching"})
    return sha


def falls_back_to_bundle(error: PanbinderError, bundle: str, ref: str) -> bool:
    """Whether the failed upstream clone ``error`` is retried from the archive's ``bundle``: only
    for a pinned full commit sha, and only when the upstream could not give it (unreachable, or
    the commit gone); a refused address or any other error stays the build's answer."""
    return bool(bundle) and bool(FULL_SHA_RE.match(ref)) and error.reason in BUNDLE_FALLBACK_REASONS


def clone_bundle(bundle: str, url: str, sha: str, checkout: str, *, log: logging.Logger) -> str:
    """Clone the archive's git ``bundle`` (a path the caller confined to its archive) into
    ``checkout`` at the pinned commit ``sha``, which must be in it; returns ``sha``. Submodules are
    not in a bundle: a repository with submodules is checked out without them (logged)."""
    shutil.rmtree(checkout, ignore_errors=True)  # what a half-done upstream clone left
    try:
        _run(["git", "clone", "--no-checkout", "--quiet", "--", bundle, checkout])
    except BuildError as e:
        raise PanbinderError(
            "The archive's repository bundle could not be read; verify the archive "
            "(panbinder restore --verify-only) or archive the publication again.",
            reason="bundle_unreadable",
            log_message=f"git clone {bundle}: {e}",
        ) from None
    found = _output(["rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}"], checkout).strip()
    if found != sha:
        raise PanbinderError(
            f"The upstream repository {url} is unreachable and the archive's repository bundle lacks "
            f"the pinned commit {sha}; archive the publication again from a copy that has it.",
            reason="unknown_ref",
            status_code=404,
        )
    _run(["git", "reset", "--quiet", "--hard", sha], cwd=checkout)
    if os.path.exists(os.path.join(checkout, ".gitmodules")):
        log.warning("the archive's bundle holds no submodules; checked out without them\n")
    log.info(FROM_BUNDLE.format(url=url) + f" (commit {sha})\n", extra={"phase": "fetching"})
    return sha


def probe(pinned: PinnedRepo, url: str, timeout: float) -> None:
    """The remote must list its refs within ``timeout`` before the (unbounded) clone starts."""
    try:
        done = subprocess.run(
            pinned.git("ls-remote", "--", pinned.url, "HEAD"),
            capture_output=True,
            env=git_env(),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise unreachable(url, f"git ls-remote {url} ({pinned.address}): no answer in {timeout} s") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise unreachable(url, f"git ls-remote {url} ({pinned.address}): {err}")


def update_submodules(guard: RepoGuard, checkout: str, *, log: logging.Logger, depth: int) -> None:
    """Fetch each submodule through the guard, pinned like the repository itself."""
    if not os.path.exists(os.path.join(checkout, ".gitmodules")):
        return
    if depth > MAX_SUBMODULE_DEPTH:
        raise PanbinderError(
            f"Submodules are nested more than {MAX_SUBMODULE_DEPTH} levels deep; flatten them.",
            reason="submodules_too_deep",
        )
    _run(["git", "submodule", "--quiet", "init"], cwd=checkout)
    configured = _output(["config", "--get-regexp", r"^submodule\..*\.url$"], checkout)
    for line in configured.splitlines():
        m = SUBMODULE_URL_RE.match(line.strip())
        if m is None:
            continue
        name, sub_url = m["name"], m["url"]
        path = _output(["config", "-f", ".gitmodules", f"submodule.{name}.path"], checkout).strip()
        if not path:
            continue
        pinned = guard.pin_blocking(sub_url)
        probe(pinned, sub_url, guard.answer_timeout)
        fetch_submodule(pinned, checkout, name, path, sub_url)
        update_submodules(guard, os.path.join(checkout, path), log=log, depth=depth + 1)


def fetch_submodule(pinned: PinnedRepo, checkout: str, name: str, path: str, url: str) -> None:
    _run(["git", "config", f"submodule.{name}.url", pinned.url], cwd=checkout)
    try:
        _run(pinned.git("submodule", "--quiet", "update", "--", path), cwd=checkout)
    except BuildError as e:
        raise unreachable(url, f"git submodule update {path} from {url} ({pinned.address}): {e}") from None


__all__ = ["FROM_BUNDLE", "clone_bundle", "clone_pinned", "falls_back_to_bundle"]
