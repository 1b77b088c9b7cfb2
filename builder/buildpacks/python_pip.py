"""requirements.txt, setup.py / pyproject.toml and runtime.txt: Debian's Python in a venv, pip.

Derived from repo2docker's ``BaseImage``, which already handles apt.txt, postBuild and start.
The single-user server (jupyterhub + jupyterlab) is installed before the repository's files
arrive, so that layer is shared by every image; requirements.txt is copied and installed on
its own, so a commit that changes only code or notebooks rebuilds in seconds.

The rules follow repo2docker's ``PythonBuildPack`` exactly:

- ``requirements.txt`` is read from ``binder/`` or ``.binder/`` when that folder exists, else
  from the root.
- The repository is a Python package, and is installed with ``pip install .`` after the full
  copy, when there is *no* binder folder and the root has ``setup.py``, or a ``pyproject.toml``
  with both a ``[project]`` and a ``[build-system]`` table. This happens whether or not
  requirements.txt mentions the repository.
- requirements.txt is installed before the repository is copied (its own cached layer) unless
  the repository is a package or a line refers to local files (``-e .``, ``-r other.txt``, ...);
  then it is installed after the full copy, before ``pip install .``.
- ``runtime.txt`` ``python-X.Y`` picks the Python; here only the base image's Python exists, so
  ``PackSettings.runtime_policy`` decides between a notice in the build log and a refusal.
"""

from __future__ import annotations

import json
import os
import shlex
import tomllib
from functools import lru_cache

from repo2docker.buildpacks.base import BaseImage
from repo2docker.utils import is_local_pip_requirement

from panbinder.errors import PanbinderError

from . import desktop, imports, index_auth, installer
from .kernels import alias_notice, alias_script, python_aliases
from .runtime import check_python, read_runtime
from .server_start_patches import IN_IMAGE as START_PATCHES_IN_IMAGE
from .server_start_patches import SOURCE as START_PATCHES
from .server_start_patches import build_script as start_patches_script
from .settings import CA_IN_IMAGE, VENV, PackSettings, env_value, notice, write_generated

LAB_OVERRIDES = json.dumps(
    {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
)
PIP_CACHE = "--mount=type=cache,target=/tmp/pip-cache,uid={uid},gid={uid}"
INFERRED_FILE = "inferred-requirements.txt"  # in the checkout's generated folder (imports.py)
# The inferred list kept in the image, where the lock probe reads it (lock.py).
INFERRED_IN_IMAGE = f"{VENV}/panbinder-inferred-requirements.txt"


class DebianPipBuildPack(BaseImage):
    """requirements.txt, setup.py/pyproject.toml, runtime.txt + apt.txt/postBuild/start (BaseImage)."""

    settings = PackSettings()
    build_log = None  # the build's logger, set by configured_packs(); notices go there

    def detect(self) -> bool:
        return True

    def _pip(self) -> str:
        return f"PIP_CACHE_DIR=/tmp/pip-cache {VENV}/bin/pip install --no-warn-script-location"

    # --- Python version -------------------------------------------------------------------

    def requested_pythons(self) -> list[tuple[str, str]]:
        """(version request, file that made it); subclasses add their own sources."""
        name, version = read_runtime(self)
        if name is None:
            return []
        if name != "python":
            raise PanbinderError(
                f"runtime.txt names '{name}', which this deployment cannot build. "
                f"Use 'python-{self.settings.python_version}' or remove runtime.txt.",
                reason="unsupported_runtime",
                status_code=422,
            )
        return [(version, self.binder_path("runtime.txt"))] if version else []

    @lru_cache
    def check_runtime(self) -> None:
        for requested, source in self.requested_pythons():
            message = check_python(requested, source, self.settings)
            if message:
                notice(self, message)

    # --- environment ----------------------------------------------------------------------

    @lru_cache
    def get_build_env(self) -> list[tuple[str, str]]:
        env = [*super().get_build_env(), ("VIRTUAL_ENV", VENV), ("PIP_DISABLE_PIP_VERSION_CHECK", "1")]
        if self.settings.ca_bundle:
            for name in (
                "PIP_CERT",
                "REQUESTS_CA_BUNDLE",
                "SSL_CERT_FILE",
                "NODE_EXTRA_CA_CERTS",
                "CURL_CA_BUNDLE",
            ):
                env.append((name, CA_IN_IMAGE))
        env += index_auth.build_env(self.settings)  # without the index credentials (a secret mount)
        env += installer.build_env(self.settings)
        return [(name, env_value(value)) for name, value in env + list(self.settings.extra_env)]

    @lru_cache
    def get_env(self) -> list[tuple[str, str]]:
        """repo2docker's variables for postBuild and the server (after the shared server layer;
        APP_BASE, REPO_DIR, USER, HOME and SHELL come from its template)."""
        return [
            *super().get_env(),
            ("NB_USER", "${NB_USER}"),
            ("NB_UID", "${NB_UID}"),
            ("NB_PYTHON_PREFIX", VENV),
            ("KERNEL_PYTHON_PREFIX", VENV),
            # npm install --global as the user (Node.js and npm are in the base image): into ~/.local,
            # whose bin is on PATH
            ("NPM_CONFIG_PREFIX", "${HOME}/.local"),
            ("NPM_DIR", "${HOME}/.local"),  # repo2docker's name for that prefix
        ]

    @lru_cache
    def get_path(self) -> list[str]:
        return [*super().get_path(), f"{VENV}/bin"]

    @lru_cache
    def get_build_script_files(self) -> dict[str, str]:
        files = dict(super().get_build_script_files())
        if self.settings.ca_bundle:
            files[os.path.abspath(self.settings.ca_bundle)] = CA_IN_IMAGE
        files[START_PATCHES] = START_PATCHES_IN_IMAGE  # the single-user server's start patches
        return files

    @lru_cache
    def get_build_scripts(self) -> list[tuple[str, str]]:
        self.check_runtime()
        server = " ".join(shlex.quote(r) for r in self.settings.server_requirements)
        drop = " ".join(shlex.quote(p) for p in self.settings.drop_packages)
        scripts = [
            ("root", f"install -d -o ${{NB_USER}} -g ${{NB_USER}} {VENV} {installer.UV_HOME}"),
            # the entrypoint runs a login shell, whose /etc/profile resets PATH
            (
                "root",
                "echo 'export PATH=\"${HOME}/.local/bin:${REPO_DIR}/.local/bin:"
                f"{VENV}/bin:${{PATH}}\"' > /etc/profile.d/00-panbinder-venv.sh",
            ),
            (
                "${NB_USER}",
                f"{installer.mounts(self.settings)} python3 -m venv {VENV} && {installer.setup(self.settings)} && "
                f"{installer.command(self.settings, server)}"
                + (f" && {VENV}/bin/pip uninstall -y -q {drop}" if drop else ""),
            ),
            # a server start without the Hub's database layer, aiohttp, yarn or npm (server_start_patches.py)
            ("${NB_USER}", start_patches_script(VENV)),
            # no calls home from JupyterLab: facility networks often forbid them
            (
                "${NB_USER}",
                f"mkdir -p {VENV}/share/jupyter/lab/settings && echo '{LAB_OVERRIDES}' "
                f"> {VENV}/share/jupyter/lab/settings/overrides.json",
            ),
        ]
        if desktop.wanted(self.settings, self):  # shared by every image that has it (desktop.py)
            scripts += desktop.build_scripts(self.settings)
        return [*super().get_build_scripts(), *scripts]

    # --- packages -------------------------------------------------------------------------

    def _requirements(self) -> str | None:
        """The requirements file to install (subclasses return a converted one)."""
        path = self.binder_path("requirements.txt")
        return path if os.path.exists(path) else None

    @lru_cache
    def is_python_package(self) -> bool:
        """repo2docker's rule: no binder folder, and setup.py or a buildable pyproject.toml."""
        if self.binder_dir:
            return False
        if os.path.exists("setup.py"):
            return True
        if os.path.exists("pyproject.toml"):
            try:
                with open("pyproject.toml", "rb") as f:
                    pyproject = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise PanbinderError(
                    f"pyproject.toml is not valid TOML ({e}). Fix it so the repository can be installed.",
                    reason="bad_pyproject",
                    status_code=422,
                ) from e
            return "project" in pyproject and "build-system" in pyproject
        return False

    def _requirements_are_local(self, path: str) -> bool:
        """A line refers to files of the repository (repo2docker's ``is_local_pip_requirement``,
        which ``PythonBuildPack._should_preassemble_pip`` asks: ``-r``/``-c``, ``-e .``, ``./pkg``,
        ``file://``); then the file is installed after the full copy."""
        with open(path, encoding="utf-8", errors="replace") as f:
            return any(is_local_pip_requirement(line) for line in f)

    def _preassemble_requirements(self) -> str | None:
        """The requirements file when it can be installed before the repository is copied."""
        req = self._requirements()
        if req and not self.is_python_package() and not self._requirements_are_local(req):
            return req
        return None

    def _install_requirements(self, path: str) -> str:
        """Install the requirements file ``path`` with uv or pip, as of its date (installer.py)."""
        drop = " ".join(shlex.quote(p) for p in self.settings.drop_packages)
        return installer.dated_install(self, path, options=self._install_options(path)) + (
            f" && ({VENV}/bin/pip uninstall -y -q {drop} || true)" if drop else ""
        )

    def _install_options(self, path: str) -> str:
        """More options for installing the requirements file ``path`` (subclasses)."""
        return ""

    def _install_package(self) -> str:
        """``pip install .`` as of the date of the last commit that changed the package's
        pyproject.toml (else setup.py), which the date search resolves."""
        source = "pyproject.toml" if os.path.exists("pyproject.toml") else "setup.py"
        return installer.dated_install(self, source, args=".")

    def uses_mirror(self) -> bool:
        """A conda environment is the kernel's (the environment.yml pack with the mirror says so)."""
        return False

    @lru_cache
    def _inferred_requirements(self) -> str | None:
        """A requirements file of what the code imports and nothing installs (imports.py), or None."""
        if not self.settings.infer_packages or self.uses_mirror():
            return None
        refused: list[str] = []
        installed = imports.requirements_file_names(self._requirements(), refused=refused)
        if refused:
            notice(
                self,
                f"not read, as it is outside the repository: {', '.join(sorted(set(refused)))} (an -r "
                "include); its packages may be inferred again. Keep included requirements files "
                "inside the repository.",
            )
        if self.is_python_package():
            installed |= imports.pyproject_names()
        imap = imports.load_map().extended(dict(self.settings.extra_import_map))
        inference = imports.infer(imports.scan(".", imap), installed, imap)
        if inference.install or inference.unknown:
            notice(self, inference.notice())
        return write_generated(INFERRED_FILE, inference.requirements()) if inference.install else None

    def _inferred_early(self) -> bool:
        """The inferred layer can come before the repository's files: its requirements do too."""
        return not self.is_python_package() and (
            self._requirements() is None or self._preassemble_requirements() is not None
        )

    def _install_inferred(self, path: str) -> str:
        return f"{self._install_requirements(path)} && cp {shlex.quote(path)} {INFERRED_IN_IMAGE}"

    @lru_cache
    def get_preassemble_script_files(self) -> dict[str, str]:
        files = {**super().get_preassemble_script_files(), **installer.script_files(self.settings)}
        req = self._preassemble_requirements()
        if req:
            files[req] = req
        inferred = self._inferred_requirements()
        if inferred and self._inferred_early():
            files[inferred] = inferred
        return files

    @lru_cache
    def get_preassemble_scripts(self) -> list[tuple[str, str]]:
        scripts = list(super().get_preassemble_scripts())
        req = self._preassemble_requirements()
        if req:
            scripts.append(("${NB_USER}", self._install_requirements(req)))
        inferred = self._inferred_requirements()
        if inferred and self._inferred_early():  # after the requirements, in a layer of its own
            scripts.append(("${NB_USER}", self._install_inferred(inferred)))
        return scripts

    @lru_cache
    def get_assemble_scripts(self) -> list[tuple[str, str]]:
        scripts = list(super().get_assemble_scripts())
        req = self._requirements()
        if req and not self._preassemble_requirements():
            scripts.append(("${NB_USER}", self._install_requirements(req)))
        if self.is_python_package():
            scripts.append(("${NB_USER}", self._install_package()))
        inferred = self._inferred_requirements()
        if inferred and not self._inferred_early():
            scripts.append(("${NB_USER}", self._install_inferred(inferred)))
        aliases = python_aliases()
        if aliases:  # after every install: the python3 kernelspec they copy is final
            notice(self, alias_notice(aliases, self.settings.python_version))
            scripts.append(("${NB_USER}", alias_script(sorted(aliases))))
        return scripts
