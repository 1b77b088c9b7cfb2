"""Environment locks: what exactly went into a built image, read from the image itself.

A lock is a JSON-able dict (``LOCK_VERSION`` 1)::

    {"lock_version": 1, "image": ..., "digest": "sha256:...", "created": "<ISO UTC>",
     "repo": {"url": ..., "commit": ...}, "python": "3.11.2",
     "pip": ["name==1.0", ...],            # `pip freeze --all` of /srv/venv, sorted
     "dpkg": {"package": "version", ...},  # dpkg-query of the whole image
     "base_image": {"name": ..., "id": "sha256:..."},
     "repo2docker": "2026.4.0", "panbinder": "0.1.0",
     # with a conda environment (buildpacks/conda_mirror_lock.py); older locks lack them:
     "conda": {"name": "<version>=<build> <channel URL>/<subdir>", ...},
     "conda_pip": ["name==1.0", ...]}     # `pip freeze --all` of its Python, if it has one

No build step writes the lock (such a step would re-run for every commit): it is read with one
``docker run --rm`` (about half a second) while the image is pushed. Then the image gets it as
the label ``org.panbinder.lock`` (``lock_label``: compact JSON, sorted keys, everything but the
image's own ``digest``, which cannot be known before the image exists) by a label-only build and
a second push (``labelling.py``), and the application stores the full lock, with the digest of
that final push, in the catalogue (``image_locks``). ``image_lock`` reads the label of a local
image. ``environment()`` is the part two locks must share to describe the same environment (no
names, digests or timestamps).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from panbinder import __version__
from panbinder.docker_engine import Docker, DockerCommand, as_docker
from panbinder.errors import PanbinderError
from panbinder.logs import scrub

from .buildpacks.conda_mirror_lock import (
    CONDA_META_PROBE,
    CONDA_PIP_PROBE,
    conda_environment,
    parse_conda_meta,
)
from .buildpacks.installer import AS_OF_RECORD, iso_date
from .buildpacks.settings import VENV
from .cancel import BuildCancelled

LOCK_VERSION = 1
LABEL = "org.panbinder.lock"
# Lock fields that only exist once the image does, so the image's label cannot hold them.
NOT_IN_LABEL = ("digest",)
# label(image, {key: value}) -> digest of the labelled push
Labeller = Callable[[str, dict[str, str]], str]
SEPARATOR = "----panbinder-lock----"
# Reads the versions inside the image; the sections come out in this order.
PROBE = (
    "python3 -c 'import platform; print(platform.python_version())'; "
    f"echo {SEPARATOR}; {VENV}/bin/python -m pip freeze --all --disable-pip-version-check; "
    f"echo {SEPARATOR}; dpkg-query -W -f '${{Package}}=${{Version}}\\n'; "
    f"echo {SEPARATOR}; {CONDA_META_PROBE}; echo {SEPARATOR}; {CONDA_PIP_PROBE}; "
    # the distributions the build inferred from the repository's imports (python_pip.py)
    f"echo {SEPARATOR}; cat {VENV}/panbinder-inferred-requirements.txt 2>/dev/null || true; "
    # requirements resolved as of a date (buildpacks/installer.py), one JSON line per install
    f"echo {SEPARATOR}; cat {AS_OF_RECORD} 2>/dev/null || true"
)
DIFF_KINDS = ("pip", "dpkg", "conda", "conda_pip")
DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_NAME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
log = logging.getLogger("panbinder.lock")


# A probe is one ``docker run --rm`` on the command line: the SDK needs create, start, wait,
# logs and remove for the same half second.
def _probe(docker: Docker, image: str, script: str, timeout: float = 120) -> str:
    args = ("run", "--rm", "--network=none", "--entrypoint", "/bin/sh", image, "-c", script)
    proc = docker.run_cli(*args, timeout=timeout)
    if proc.returncode != 0:
        raise PanbinderError(
            f"docker run failed: {proc.stderr.strip()[-300:]}. Check that the image exists locally.",
            reason="lock",
        )
    return proc.stdout


def _freeze_lines(text: str) -> list[str]:
    """Sorted ``pip freeze`` lines, without the credentials of a direct URL (``name @ https://user:
    token@host/...``): a lock is shown to readers."""
    return sorted(scrub(line.strip()) for line in text.splitlines() if line.strip())


def parse_probe(output: str) -> dict[str, Any]:
    """The python / pip / dpkg sections of ``PROBE``'s output, the conda and conda_pip sections
    when the image has them, and ``inferred``: the distributions the build installed because the
    code imports them, and ``resolved_as_of``: the date each requirements file resolved as of
    (older probes' output has only the first three, five or six sections)."""
    parts = output.split(SEPARATOR + "\n")
    if len(parts) not in (3, 5, 6, 7):
        raise PanbinderError(
            "The image did not report its package versions; is it a panbinder image with /srv/venv?",
            reason="lock",
            log_message=f"unexpected lock probe output: {output[:500]!r}",
        )
    python, pip, dpkg, conda, conda_pip, inferred, as_of = [*parts, "", "", "", ""][:7]
    found: dict[str, Any] = {"python": python.strip(), "pip": _freeze_lines(pip), "dpkg": parse_dpkg(dpkg)}
    conda_packages = parse_conda_meta(conda)
    if conda_packages is not None:
        found["conda"] = conda_packages
    if conda_pip.strip():
        found["conda_pip"] = _freeze_lines(conda_pip)
    if inferred.strip():
        found["inferred"] = _freeze_lines(inferred)
    dated = _dated_installs(as_of)
    if dated:
        found["resolved_as_of"] = dated
    return found


def _dated_installs(text: str) -> list[dict[str, Any]]:
    """The JSON lines of the as-of record whose ``used`` is an ISO date or null. The build's own
    code can write that file, so a line that is not such a record is logged and skipped."""
    found = []
    for line in text.splitlines():
        if not line.strip().startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        used = entry.get("used") if isinstance(entry, dict) else None
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("file", ""), str)
            and (used is None or iso_date(used))
        ):
            found.append(entry)
        else:
            log.warning("lock probe: skipped a bad line of %s: %r", AS_OF_RECORD, line[:200])
    return found


def parse_dpkg(text: str) -> dict[str, str]:
    """``package=version`` lines into a dict."""
    found = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("=")
        if sep and name:
            found[name] = version
    return found


def normalise_name(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_freeze(lines: list[str]) -> dict[str, str]:
    """``pip freeze`` lines into {normalised name: version or the rest of the line}."""
    found = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-e "):
            found[normalise_name(line.rsplit("=", 1)[-1])] = line
            continue
        m = _NAME_RE.match(line)
        if not m:
            continue
        rest = line[m.end() :].strip()
        found[normalise_name(m.group(1))] = rest.removeprefix("==")
    return found


def image_id(image: str, *, docker_cli: Docker | str | DockerCommand) -> str:
    """The ID of a local image (PanbinderError when the engine lacks it)."""
    info = as_docker(docker_cli).inspect_image(image)
    if info is None:
        raise PanbinderError(
            f"{image} is not in the docker engine; check that it exists locally.", reason="lock"
        )
    return info["Id"]


def dpkg_of(image: str, *, docker_cli: Docker | str | DockerCommand) -> dict[str, str]:
    """The Debian packages of a local image (its base image, for example)."""
    probe = "dpkg-query -W -f '${Package}=${Version}\\n'"
    return parse_dpkg(_probe(as_docker(docker_cli), image, probe))


def pushed_digest(push_lines: list[str]) -> str:
    """The manifest digest ``docker push`` printed last ("" when it printed none)."""
    for line in reversed(push_lines):
        m = DIGEST_RE.search(line)
        if m:
            return m.group(1)
    return ""


def capture_lock(
    image: str,
    *,
    docker_cli: Docker | str | DockerCommand,
    base_image: str = "",
    repo_url: str = "",
    commit: str = "",
    digest: str = "",
    timeout: float = 120,
) -> dict[str, Any]:
    """Run the probe in ``image`` (a local image; at most ``timeout`` seconds) and return its lock."""
    import repo2docker

    docker = as_docker(docker_cli)
    out = _probe(docker, image, PROBE, timeout)
    lock: dict[str, Any] = {
        "lock_version": LOCK_VERSION,
        "image": image,
        "digest": digest,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "repo": {"url": repo_url, "commit": commit},
        **parse_probe(out),
        "base_image": {
            "name": base_image,
            "id": image_id(base_image, docker_cli=docker) if base_image else "",
        },
        "repo2docker": repo2docker.__version__,
        "panbinder": __version__,
    }
    return lock


def lock_label(lock: dict[str, Any]) -> str:
    """The value of the ``org.panbinder.lock`` label: compact JSON with sorted keys, ASCII only,
    without the fields an image cannot know about itself (``NOT_IN_LABEL``)."""
    kept = {key: value for key, value in lock.items() if key not in NOT_IN_LABEL}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"))


def parse_lock_label(text: str | None) -> dict[str, Any] | None:
    """The lock in a label value, or None when it is absent or not a lock."""
    if not text:
        return None
    try:
        lock = json.loads(text)
    except ValueError:
        return None
    if not isinstance(lock, dict) or not isinstance(lock.get("lock_version"), int):
        return None
    return lock


def repo_digest(image: str, repo_digests: list[str]) -> str:
    """The registry digest of ``image`` ("name:tag" or "name@digest") among an image's RepoDigests."""
    if "@" in image:
        return image.rpartition("@")[2]
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        name = image
    for entry in repo_digests:
        entry_name, _, digest = entry.partition("@")
        if entry_name == name:
            return digest
    return ""


def lock_from_inspect(image: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """The label lock in one ``docker image inspect`` record, with ``digest`` from its RepoDigests
    ("" when the image was never pushed or pulled under that name)."""
    labels = (info.get("Config") or {}).get("Labels") or {}
    lock = parse_lock_label(labels.get(LABEL))
    if lock is not None:
        lock["digest"] = repo_digest(image, info.get("RepoDigests") or [])
    return lock


def image_lock(image: str, *, docker_cli: Docker | str | DockerCommand = "docker") -> dict[str, Any] | None:
    """The lock in the ``org.panbinder.lock`` label of a local image; None when the image is not
    local, has no such label or cannot be read. Never raises."""
    try:
        info = as_docker(docker_cli).inspect_image(image)
        return lock_from_inspect(image, info) if isinstance(info, dict) else None
    except Exception:  # no engine answering, a timeout, odd output: no lock
        return None


class LockCapture:
    """Capture a built image's lock in a thread while it is pushed; ``finish`` hands it on.

    ``label(image, labels)``, when given, writes the lock into the image's labels and pushes it
    again (``labelling.label_and_push``), returning the new digest. Then
    ``builder.on_built(image, digest, lock)`` receives the lock with the digest of the last push.
    Any failure (the probe, the labelling, the callback) is logged as a warning and never fails
    the build; a failed labelling leaves the unlabelled image as first pushed.
    """

    def __init__(
        self,
        builder: Any,
        request: Any,
        docker_cli: Docker | str | DockerCommand,
        *,
        label: Labeller | None = None,
        timeout: float = 120,
    ) -> None:
        self.builder, self.image, self.label = builder, request.image.full, label
        self.timeout = timeout
        self.lock: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if builder.on_built is None and label is None:
            return
        args = {
            "docker_cli": docker_cli,
            "base_image": builder.base_image,
            "repo_url": request.repo_url,
            "commit": request.resolved_ref,
            "timeout": timeout,
        }
        self.thread = threading.Thread(target=self._run, args=(args,), name=f"lock-{self.image}", daemon=True)
        self.thread.start()

    def _run(self, args: dict[str, Any]) -> None:
        try:
            self.lock = capture_lock(self.image, **args)
        except BaseException as e:  # reported by finish()
            self.error = e

    def _warn(self, message: str, error: BaseException) -> None:
        self.builder.log.warning(message, self.image, error, extra={"image": self.image})

    def finish(self, push_lines: list[str], emit: Callable[[str], None] | None = None) -> None:
        """After the push: label the image and push it again (if asked), then call ``on_built``.

        ``emit`` receives one build-log line about the labelling.
        """
        if self.thread is None:
            return
        self.thread.join(timeout=self.timeout + 30)  # the probe's own limit, and its start
        if self.lock is None:
            error = self.error or TimeoutError("the lock probe did not finish")
            self._warn("could not record the environment lock of %s: %s", error)
            return
        digest = pushed_digest(push_lines)
        if self.label is not None:
            digest = self._label(self.label, self.lock, digest, emit)
        self.lock["digest"] = digest
        if self.builder.on_built is None:
            return
        try:
            self.builder.on_built(self.image, digest, self.lock)
        except Exception as e:  # the image is built and pushed: a missing lock is only a warning
            self._warn("could not record the environment lock of %s: %s", e)

    def _label(
        self, label: Labeller, lock: dict[str, Any], digest: str, emit: Callable[[str], None] | None
    ) -> str:
        """Write the lock label; the digest of the labelled push, or ``digest`` when that failed."""
        start = time.monotonic()
        try:
            labelled = label(self.image, {LABEL: lock_label(lock)})
        except BuildCancelled:
            raise
        except Exception as e:  # the unlabelled image is pushed: keep it
            self._warn("could not write the environment lock into the labels of %s: %s", e)
            return digest
        if emit is not None:
            seconds, shown = time.monotonic() - start, labelled or "no digest printed"
            emit(
                f"Labelled with its environment lock ({LABEL}) and pushed again in {seconds:.2f} s: {shown}\n"
            )
        return labelled


def environment(lock: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two locks to describe the same environment."""
    return {
        "python": lock.get("python"),
        "pip": parse_freeze(lock.get("pip", [])),
        "dpkg": dict(lock.get("dpkg", {})),
        "conda": conda_environment(lock.get("conda") or {}),
        "conda_pip": parse_freeze(lock.get("conda_pip") or []),
        "base_image": dict(lock.get("base_image", {})).get("id"),
    }


def _diff(a: dict[str, str], b: dict[str, str]) -> dict[str, Any]:
    return {
        "added": {k: b[k] for k in sorted(b.keys() - a.keys())},
        "removed": {k: a[k] for k in sorted(a.keys() - b.keys())},
        "changed": {k: [a[k], b[k]] for k in sorted(a.keys() & b.keys()) if a[k] != b[k]},
    }


def diff_locks(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Packages added, removed and changed from lock ``a`` to lock ``b`` (pip, dpkg, conda and the
    conda environment's pip), and python."""
    ea, eb = environment(a), environment(b)
    result: dict[str, Any] = {kind: _diff(ea[kind], eb[kind]) for kind in DIFF_KINDS}
    if ea["python"] != eb["python"]:
        result["python"] = [ea["python"], eb["python"]]
    if ea["base_image"] != eb["base_image"]:
        result["base_image"] = [ea["base_image"], eb["base_image"]]
    return result


def is_empty(diff: dict[str, Any]) -> bool:
    """True when ``diff_locks`` found no difference at all."""
    return not any(
        (isinstance(part, dict) and any(part.values())) or isinstance(part, list) for part in diff.values()
    )


def format_diff(diff: dict[str, Any]) -> str:
    """Human-readable lines, one per difference."""
    lines = []
    for kind in DIFF_KINDS:
        part = diff.get(kind, {})
        for name, version in part.get("added", {}).items():
            lines.append(f"{kind}: + {name} {version}")
        for name, version in part.get("removed", {}).items():
            lines.append(f"{kind}: - {name} {version}")
        for name, (old, new) in part.get("changed", {}).items():
            lines.append(f"{kind}: ~ {name} {old} -> {new}")
    for key in ("python", "base_image"):
        if key in diff:
            lines.append(f"{key}: {diff[key][0]} -> {diff[key][1]}")
    return "\n".join(lines)


__all__ = [
    "LABEL",
    "LOCK_VERSION",
    "LockCapture",
    "capture_lock",
    "diff_locks",
    "dpkg_of",
    "environment",
    "format_diff",
    "image_lock",
    "is_empty",
    "lock_from_inspect",
    "lock_label",
    "parse_dpkg",
    "parse_freeze",
    "parse_lock_label",
    "parse_probe",
    "pushed_digest",
]
