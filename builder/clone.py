"""The build's clone: the repository (and its submodules) fetched through the URL guard.

Why not repo2docker's git content provider: it runs ``git clone <url>`` with no options, so git
would resolve the host again (a second DNS answer could point inside the facility), follow
redirects and use any transport, and its error lines went to the user's build log, which told a
caller which ports of an address are open. Here every URL (each submodule's too) is pinned by
``RepoGuard``, git's output stays in the operator's log, and the user sees one generic message.
A full commit sha skips ``git ls-remote``, so this clone is the first contact with the remote.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess

from repo2docker.engine import BuildError

from panbinder.errors import PanbinderError

from .engine import run_streaming
from .url_guard import PinnedRepo, RepoGuard, unreachable

SUBMODULE_URL_RE = re.compile(r"^submodule\.(?P<name>.+)\.url (?P<url>.+)$")
MAX_SUBMODULE_DEPTH = 3


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


__all__ = ["clone_pinned"]
