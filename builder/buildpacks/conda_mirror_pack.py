"""The environment.yml build pack's steps when ``conda_policy = "mirror"`` (see conda_mirror.py).

A mixin for ``EnvironmentYmlPipBuildPack``: each hook adds the mirror's steps when the policy is
"mirror" and otherwise returns the pip pack's own. Layers: py-rattler's virtualenv comes after
the server's layer (so that one stays shared with every other image) and before the
repository's files (shared by every mirror image). The installer script and the plan (both
written into the build context), the solve and install, the kernel and a ``pip:`` section
without local references come before the full copy, so a commit that changes only code or
notebooks does not solve again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from . import conda_mirror, index_auth, installer
from .conda_mirror import CONDA_PREFIX, CondaPlan
from .settings import notice, parse_environment, write_generated

INSTALLER_NAME = "conda_env_install.py"
INSTALLER = os.path.join(os.path.dirname(os.path.abspath(__file__)), INSTALLER_NAME)
PLAN_FILE = "conda-environment.json"
PIP_FILE = "requirements-from-environment.yml.txt"


class CondaMirrorMixin:
    """environment.yml solved and installed from the conda channel mirror."""

    settings: Any

    def _path(self) -> str | None:  # provided by the build pack
        raise NotImplementedError

    def uses_mirror(self) -> bool:
        return self.settings.conda_policy == "mirror"

    def pin_plan(self, plan: CondaPlan) -> CondaPlan:
        """The plan to install; the frozen pack (frozen.py) puts a lock's exact packages in it."""
        return plan

    @lru_cache
    def conda_plan(self) -> CondaPlan:
        """The plan for this repository's environment.yml; says in the build log that the mirror is used."""
        source = self._path() or "environment.yml"
        plan = parse_environment(
            source, lambda env: self.pin_plan(conda_mirror.conda_plan(env, source, self.settings))
        )
        channels = ", ".join(f"{name} -> {url}" for name, url in plan.channels)
        notice(
            self,
            f"installing the conda packages of {source}{' as the environment lock pins them' if plan.pinned else ''} "
            f"({', '.join(plan.specs) or 'none'}) from the "
            f"conda channel mirror {plan.mirror} (channels: {channels}) into {CONDA_PREFIX}"
            + (f"; its 'pip:' section with pip ({', '.join(plan.pip)})" if plan.pip else "")
            + ".",
        )
        return plan

    @lru_cache
    def _plan_file(self) -> str:
        return write_generated(PLAN_FILE, self.conda_plan().to_json() + "\n")

    @lru_cache
    def _installer_file(self) -> str:
        with open(INSTALLER, encoding="utf-8") as f:
            return write_generated(INSTALLER_NAME, f.read())

    @lru_cache
    def _pip_file(self) -> str | None:
        plan = self.conda_plan()
        if not plan.pip:
            return None
        text = f"# the 'pip:' section of {plan.source}\n" + "".join(p + "\n" for p in plan.pip)
        return write_generated(PIP_FILE, text)

    def _pip_is_local(self) -> bool:
        path = self._pip_file()
        return bool(path) and self._requirements_are_local(path)  # type: ignore[attr-defined]

    def _pip_step(self) -> tuple[str, str]:
        """The 'pip:' section installed as of the environment files' date (installer.py), unless
        a frozen rebuild pins it or dates are off."""
        drop, path = self.settings.drop_packages, self._pip_file() or ""
        search = installer.as_of_search(self, path, '"$PY"') if self.settings.as_of != "locked" else ""
        if not search:
            return (
                "${NB_USER}",
                conda_mirror.pip_script(
                    path, self.settings.uid, drop, index_auth.secret_mount(self.settings)
                ),
            )
        mounts = installer.mounts(self.settings)
        return ("${NB_USER}", conda_mirror.dated_pip_script(path, search, mounts, drop))

    # --- repo2docker hooks ------------------------------------------------------------------

    @lru_cache
    def get_env(self) -> list[tuple[str, str]]:
        # get_env, not get_path: an ENV before the server's layer would change that layer's key
        env = list(super().get_env())  # type: ignore[misc]
        if not self.uses_mirror():
            return env
        return [
            *env,
            ("CONDA_DIR", conda_mirror.CONDA_DIR),
            ("CONDA_PREFIX", CONDA_PREFIX),
            ("PATH", conda_mirror.RUNTIME_PATH),
        ]

    @lru_cache
    def get_build_scripts(self) -> list[tuple[str, str]]:
        scripts = list(super().get_build_scripts())  # type: ignore[misc]
        if self.uses_mirror():
            self.conda_plan()  # a bad environment.yml fails before anything is built
            scripts += conda_mirror.rattler_build_scripts(self.settings)
        return scripts

    @lru_cache
    def get_preassemble_script_files(self) -> dict[str, str]:
        files = dict(super().get_preassemble_script_files())  # type: ignore[misc]
        if self.uses_mirror():
            for generated in (self._installer_file(), self._plan_file()):
                files[generated] = generated
            pip_file = self._pip_file()
            if pip_file and not self._pip_is_local():
                files[pip_file] = pip_file
        return files

    @lru_cache
    def get_preassemble_scripts(self) -> list[tuple[str, str]]:
        scripts = list(super().get_preassemble_scripts())  # type: ignore[misc]
        if self.uses_mirror():
            scripts.append(
                (
                    "${NB_USER}",
                    conda_mirror.install_script(self._installer_file(), self._plan_file(), self.settings.uid),
                )
            )
            if self._pip_file() and not self._pip_is_local():
                scripts.append(self._pip_step())
        return scripts

    @lru_cache
    def get_assemble_scripts(self) -> list[tuple[str, str]]:
        scripts = list(super().get_assemble_scripts())  # type: ignore[misc]
        if self.uses_mirror() and self._pip_is_local():
            scripts.append(self._pip_step())
        return scripts

    def build(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """repo2docker's build, with a failed solve or download turned into a message naming it."""
        report = None
        try:
            for line in super().build(*args, **kwargs):  # type: ignore[misc]
                if self.uses_mirror() and isinstance(line, str):
                    report = conda_mirror.error_report(line) or report
                yield line
        except Exception as e:
            if report is None:
                raise
            raise conda_mirror.failure_error(report, self.conda_plan()) from e
