"""What every build pack shares: the deployment's settings, image paths and build-log notices."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from panbinder.errors import PanbinderError

# The image every build starts FROM, made offline by scripts/setup.sh (whose BASE_IMAGE matches):
# Debian bookworm, its python3, Node.js and npm. The number changes with its contents.
BASE_IMAGE = "panbinder-base:bookworm-2"
VENV = "/srv/venv"
CA_IN_IMAGE = "/etc/panbinder/ca-bundle.crt"
DEFAULT_INDEX = "https://pypi.org/simple/"
# Files panbinder writes into the checkout (and so into the build context), e.g. a requirements
# file converted from Pipfile.lock or environment.yml.
GENERATED_DIR = ".panbinder"
# Build-log lines that start with this are notices for the reader (the launch page shows them).
NOTICE_PREFIX = "panbinder notice: "


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
    allowed_index_hosts: tuple[str, ...] = ()  # hosts a Pipfile's [[source]] may name (pipfile.py)
    index_timeout: float = 20.0  # seconds for one package look-up on the index
    index_threads: int = 8  # look-ups at once
    uid: int = 1000
    extra_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # Python of the base image (Debian bookworm's python3).
    python_version: str = "3.11"
    runtime_policy: str = "notice"  # "notice" | "refuse"
    # Filled from the ``PackageInstaller`` traits (installer.py); these defaults render plain pip.
    installer: str = "pip"  # "uv" | "pip"
    uv_requirement: str = "uv==0.13.9"
    pip_requirement: str = "pip==26.3"
    as_of: str = "off"  # "requirements" | "commit" | "off" | "locked" (a frozen rebuild)
    as_of_locked: tuple[tuple[str, str], ...] = ()  # (file, date) a lock recorded
    conda_policy: str = "pip"  # "pip" | "refuse" | "mirror"
    conda_channel_mirror: str = ""
    # Filled from the ``CondaMirror`` traits (conda_mirror.py): channel name -> URL overrides,
    # channels used when environment.yml names none, and the pinned py-rattler for the image.
    conda_channel_urls: tuple[tuple[str, str], ...] = ()
    conda_default_channels: tuple[str, ...] = ("conda-forge",)
    rattler_requirement: str = "py-rattler==0.28.0"
    allowed_base_images: tuple[str, ...] = (BASE_IMAGE,)
    infer_packages: bool = True  # install what notebooks import and nothing installs (imports.py)
    extra_import_map: tuple[tuple[str, str], ...] = ()  # import name -> distribution, added to the map
    # Filled from the ``Desktop`` traits (desktop.py): which images get the desktop layer, and its packages.
    desktop: str = "on_request"  # "off" | "on_request" | "always"
    desktop_requirements: tuple[str, ...] = ()
    desktop_apt_packages: tuple[str, ...] = ()

    @property
    def lookup_index(self) -> str:
        """The simple-API index that package names are checked against."""
        return (self.index_url or DEFAULT_INDEX).rstrip("/") + "/"


def notice(pack: Any, message: str) -> None:
    """Log ``message`` once per build pack instance, to the build's log when the pack has one."""
    seen = pack.__dict__.setdefault("_panbinder_notices", set())
    if message in seen:
        return
    seen.add(message)
    log = getattr(pack, "build_log", None) or logging.getLogger("panbinder.buildpacks")
    log.info(NOTICE_PREFIX + message + "\n", extra={"phase": "building"})


def write_generated(filename: str, text: str) -> str:
    """Write a converted file into the checkout (the build context); returns its relative path."""
    os.makedirs(GENERATED_DIR, exist_ok=True)
    path = os.path.join(GENERATED_DIR, filename)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


T = TypeVar("T")


def parse_environment(source: str, use: Callable[[dict[str, Any]], T]) -> T:
    """``use`` applied to the mapping in the environment.yml ``source``. A file that is not YAML,
    not a mapping, or that ``use`` rejects with ValueError becomes one error asking to fix it."""
    try:
        with open(source, encoding="utf-8") as f:
            env = yaml.safe_load(f) or {}
        if not isinstance(env, dict):
            raise ValueError("the top level is not a mapping")
        return use(env)
    except (yaml.YAMLError, ValueError) as e:
        raise PanbinderError(
            f"{source} could not be read ({e}). Fix the file.",
            reason="bad_environment_yml",
            status_code=422,
        ) from e
