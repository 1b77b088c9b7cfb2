"""environment.yml without conda: its dependencies installed with pip when all exist on the index.

Conda channels are unreachable on this deployment. ``PackSettings.conda_policy`` decides:

- ``"pip"`` (default): the ``pip:`` section plus every conda package whose name (after a small
  rename map) exists on the package index become a requirements file; ``python`` goes through the
  runtime policy, ``pip`` is dropped. When some names do not exist, the build fails listing them.
- ``"refuse"``: environment.yml is refused with a message.
- ``"mirror"``: the conda packages are solved and installed from ``conda_channel_mirror`` with
  py-rattler in the image (conda_mirror.py, conda_mirror_pack.py, conda_env_install.py).

As in repo2docker, ``environment.yml`` (or ``.yaml``) is read from ``binder/`` or ``.binder/``
when that folder exists; the repository itself is not ``pip install``-ed.
"""

from __future__ import annotations

import os
import re
import ssl
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from panbinder.errors import PanbinderError

from . import index_auth
from .conda_mirror import match_spec
from .conda_mirror_pack import CondaMirrorMixin
from .python_pip import DebianPipBuildPack
from .settings import PackSettings, notice, parse_environment, write_generated

# conda-forge names whose PyPI distribution is called differently
CONDA_TO_PIP = {
    "pytables": "tables",
    "pytorch": "torch",
    "py-opencv": "opencv-python",
    "opencv": "opencv-python",
    "matplotlib-base": "matplotlib",
    "msgpack-python": "msgpack",
    "pyqt": "PyQt5",
    "python-graphviz": "graphviz",
    "jupyter_core": "jupyter-core",
    "tensorflow-base": "tensorflow",
}
DROPPED = {"pip"}


def conda_to_pip(spec: str) -> tuple[str, str]:
    """("name", "pip version specifier") for a conda match spec like ``numpy=1.26``, ``h5py >=3``
    or ``numpy[version='>=1.2']``, read with ``MatchSpec`` and checked with packaging. ValueError
    (which names the spec) for a spec pip cannot express, e.g. versions joined with ``|``. The
    channel and build string do not matter to pip."""
    parsed = match_spec(spec)
    if parsed.name is None:
        raise ValueError(f"'{spec}' names no package")
    name = parsed.name.as_package_name().source
    version = str(parsed.version) if parsed.version is not None else ""
    if version in ("", "*"):
        return name, ""
    if "|" in version:
        raise ValueError(f"'{spec}' allows alternative versions ('|'), which pip cannot express")
    if version[0] not in "<>=!~":  # conda's "1.26.*" (from numpy=1.26) is pip's ==1.26.*
        version = "==" + version
    try:
        Requirement(name + version)
    except InvalidRequirement as e:
        raise ValueError(f"'{spec}' has no pip equivalent ({name}{version} is not a pip requirement)") from e
    return name, version


def exists_on_index(name: str, settings: PackSettings, index: str = "") -> bool:
    """HEAD ``<index>/<name>/`` (simple API) from the builder process; index: the main one."""
    index = index_auth.public_url((index or settings.lookup_index).rstrip("/") + "/")
    normalized = re.sub(r"[-_.]+", "-", name).lower()
    url = f"{index}{normalized}/"
    context = ssl.create_default_context(cafile=settings.ca_bundle or None)
    request = urllib.request.Request(url, method="HEAD")
    header = index_auth.authorization(url, index_auth.credentials_of(settings))
    if header:  # the deployment's credentials for this index (never in the URL, which is logged)
        request.add_unredirected_header("Authorization", header)
    try:
        with urllib.request.urlopen(request, timeout=settings.index_timeout, context=context) as resp:
            return 200 <= resp.status < 300
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise PanbinderError(
            f"The package index {index} answered {e.code} when panbinder checked "
            f"'{name}' for environment.yml. Try again later or contact the operators.",
            reason="index_unavailable",
            status_code=503,
        ) from e
    except (urllib.error.URLError, OSError) as e:
        raise PanbinderError(
            f"The package index {index} could not be reached to check environment.yml's "
            "packages. Try again later or contact the operators.",
            reason="index_unavailable",
            log_message=f"lookup of {url} failed: {e}",
            status_code=503,
        ) from e


def pip_requirements(env: dict, exists: Any, threads: int = 8) -> tuple[list[str], list[str], list[str]]:
    """(requirements, python requests, conda names missing from the index) for an environment."""
    requirements: list[str] = []
    pythons: list[str] = []
    candidates: list[tuple[str, str, str]] = []  # (conda name, pip name, version)
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            requirements.extend(str(p) for p in dep.get("pip") or [])
            continue
        name, version = conda_to_pip(str(dep))
        if name.lower() == "python":
            if version:
                pin = version.removesuffix(".*")
                pythons.append(pin.removeprefix("==") if pin.count("=") == 2 and "," not in pin else pin)
            continue
        if name.lower() in DROPPED:
            continue
        candidates.append((name, CONDA_TO_PIP.get(name.lower(), name), version))
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        found = list(pool.map(exists, [pip for _, pip, _ in candidates]))
    missing = [conda for (conda, _, _), ok in zip(candidates, found, strict=True) if not ok]
    converted = [pip + version for (_, pip, version), ok in zip(candidates, found, strict=True) if ok]
    return converted + requirements, pythons, missing


class EnvironmentYmlPipBuildPack(CondaMirrorMixin, DebianPipBuildPack):
    """environment.yml installed with pip, or from a conda channel mirror (see the module docstring)."""

    def detect(self) -> bool:
        return self._path() is not None

    def is_python_package(self) -> bool:
        return False

    def _path(self) -> str | None:
        for name in ("environment.yml", "environment.yaml"):
            path = self.binder_path(name)
            if os.path.exists(path):
                return path
        return None

    def lookup(self, name: str) -> bool:
        """Whether ``name`` is on the package index or one of the extra indexes."""
        indexes = [self.settings.lookup_index, *self.settings.extra_index_urls]
        return any(exists_on_index(name, self.settings, index) for index in indexes)

    @lru_cache
    def _converted(self) -> tuple[str, list[str], list[str]]:
        source = self._path() or "environment.yml"
        policy = self.settings.conda_policy
        if policy == "refuse":
            raise PanbinderError(
                f"{source} needs conda, which is not available on this deployment. "
                "List the packages in requirements.txt instead.",
                reason="conda_unavailable",
                status_code=422,
            )
        reqs, pythons, missing = parse_environment(
            source, lambda env: pip_requirements(env, self.lookup, self.settings.index_threads)
        )
        if missing:
            raise PanbinderError(
                f"{source} lists conda packages that have no pip package of the same name on "
                f"{index_auth.public_url(self.settings.lookup_index)}: {', '.join(missing)}. Conda is not available on this "
                "deployment: replace them with pip packages (in the 'pip:' section or requirements.txt) "
                "or Debian packages (apt.txt).",
                reason="conda_only_packages",
                status_code=422,
            )
        return source, reqs, pythons

    def requested_pythons(self) -> list[tuple[str, str]]:
        if self.uses_mirror():  # python, if any, comes from the mirror
            return super().requested_pythons()
        source, _, pythons = self._converted()
        return [*super().requested_pythons(), *((p, source) for p in pythons)]

    @lru_cache
    def _requirements(self) -> str | None:
        if self.uses_mirror():  # the 'pip:' section is installed by CondaMirrorMixin
            return None
        source, reqs, _ = self._converted()
        notice(
            self,
            f"conda channels are not reachable on this deployment: installing the {len(reqs)} "
            f"dependencies of {source} with pip instead ({', '.join(reqs) or 'none'}).",
        )
        text = f"# converted by panbinder from {source}\n" + "".join(r + "\n" for r in reqs)
        return write_generated("requirements-from-environment.yml.txt", text)
