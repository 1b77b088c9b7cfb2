"""A build pack that needs no conda: Python from Debian in a virtualenv, packages from pip.

Derived from repo2docker's ``BaseImage``, which already handles apt.txt, postBuild and start.
The single-user server (jupyterhub + jupyterlab) is installed before the repository's files
arrive, so that layer is shared by every image; requirements.txt is copied and installed on
its own, so a commit that changes only code or notebooks rebuilds in seconds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from functools import lru_cache

from repo2docker.buildpacks.base import BaseImage

VENV = "/srv/venv"
CA_IN_IMAGE = "/etc/panbinder/ca-bundle.crt"
LAB_OVERRIDES = json.dumps(
    {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
)
PIP_CACHE = "--mount=type=cache,target=/tmp/pip-cache,uid={uid},gid={uid}"
# Lines that make pip read other files of the repository: install after the full copy.
LOCAL_REFERENCE_RE = re.compile(r"^\s*(-e\s|--editable|-r\s|-c\s|--requirement|\.|/|file:)")


def env_value(value: str) -> str:
    """Quote a value for repo2docker's ``ENV name=value`` lines when Docker would split it."""
    if re.search(r'[\s"\\]', value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


@dataclass(frozen=True)
class PackSettings:
    """What the deployment decides for every image (filled from Repo2DockerBuilder's traits)."""

    server_requirements: tuple[str, ...] = ("jupyterhub==6.1.1", "jupyterlab==4.6.6")
    # Packages that slow every server start and that no Jupyter schema needs (see README).
    drop_packages: tuple[str, ...] = ("rfc3987-syntax", "lark")
    ca_bundle: str = ""
    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    uid: int = 1000
    extra_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)


class DebianPipBuildPack(BaseImage):
    """requirements.txt (root, binder/ or .binder/) + apt.txt/postBuild/start from BaseImage."""

    settings = PackSettings()

    def detect(self) -> bool:
        return True

    def _pip(self) -> str:
        return f"PIP_CACHE_DIR=/tmp/pip-cache {VENV}/bin/pip install --no-warn-script-location"

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
        if self.settings.index_url:
            env.append(("PIP_INDEX_URL", self.settings.index_url))
        if self.settings.extra_index_urls:
            env.append(("PIP_EXTRA_INDEX_URL", " ".join(self.settings.extra_index_urls)))
        return [(name, env_value(value)) for name, value in env + list(self.settings.extra_env)]

    @lru_cache
    def get_path(self) -> list[str]:
        return [*super().get_path(), f"{VENV}/bin"]

    @lru_cache
    def get_build_script_files(self) -> dict[str, str]:
        files = dict(super().get_build_script_files())
        if self.settings.ca_bundle:
            files[os.path.abspath(self.settings.ca_bundle)] = CA_IN_IMAGE
        return files

    @lru_cache
    def get_build_scripts(self) -> list[tuple[str, str]]:
        server = " ".join(shlex.quote(r) for r in self.settings.server_requirements)
        drop = " ".join(shlex.quote(p) for p in self.settings.drop_packages)
        cache = PIP_CACHE.format(uid=self.settings.uid)
        scripts = [
            ("root", f"install -d -o ${{NB_USER}} -g ${{NB_USER}} {VENV}"),
            # the entrypoint runs a login shell, whose /etc/profile resets PATH
            (
                "root",
                "echo 'export PATH=\"${HOME}/.local/bin:${REPO_DIR}/.local/bin:"
                f"{VENV}/bin:${{PATH}}\"' > /etc/profile.d/00-panbinder-venv.sh",
            ),
            (
                "${NB_USER}",
                f"{cache} python3 -m venv {VENV} && {self._pip()} --upgrade pip && "
                f"{self._pip()} {server}" + (f" && {VENV}/bin/pip uninstall -y -q {drop}" if drop else ""),
            ),
            # no calls home from JupyterLab: facility networks often forbid them
            (
                "${NB_USER}",
                f"mkdir -p {VENV}/share/jupyter/lab/settings && echo '{LAB_OVERRIDES}' "
                f"> {VENV}/share/jupyter/lab/settings/overrides.json",
            ),
        ]
        return [*super().get_build_scripts(), *scripts]

    def _requirements(self) -> str | None:
        path = self.binder_path("requirements.txt")
        return path if os.path.exists(path) else None

    def _requirements_are_local(self, path: str) -> bool:
        with open(path, encoding="utf-8", errors="replace") as f:
            return any(LOCAL_REFERENCE_RE.match(line) for line in f)

    def _install_requirements(self, path: str) -> str:
        cache = PIP_CACHE.format(uid=self.settings.uid)
        drop = " ".join(shlex.quote(p) for p in self.settings.drop_packages)
        quoted = shlex.quote(path)
        return f"{cache} {self._pip()} -r {quoted}" + (
            f" && ({VENV}/bin/pip uninstall -y -q {drop} || true)" if drop else ""
        )

    @lru_cache
    def get_preassemble_script_files(self) -> dict[str, str]:
        files = dict(super().get_preassemble_script_files())
        req = self._requirements()
        if req and not self._requirements_are_local(req):
            files[req] = req
        return files

    @lru_cache
    def get_preassemble_scripts(self) -> list[tuple[str, str]]:
        scripts = list(super().get_preassemble_scripts())
        req = self._requirements()
        if req and not self._requirements_are_local(req):
            scripts.append(("${NB_USER}", self._install_requirements(req)))
        return scripts

    @lru_cache
    def get_assemble_scripts(self) -> list[tuple[str, str]]:
        scripts = list(super().get_assemble_scripts())
        req = self._requirements()
        if req and self._requirements_are_local(req):
            scripts.append(("${NB_USER}", self._install_requirements(req)))
        return scripts


def configured_pack(settings: PackSettings) -> type[DebianPipBuildPack]:
    """A subclass carrying this deployment's settings (repo2docker instantiates packs itself)."""
    return type("DebianPipBuildPack", (DebianPipBuildPack,), {"settings": settings})
