"""The desktop layer: a Linux desktop in the browser, at ``/desktop`` of the launched server.

Many facility tools are GUI programs (silx view, PyMca, NeXpy, DAWN). An image with this layer
runs TigerVNC's ``vncserver`` with a light desktop (Xfce) from Debian, and
``jupyter-remote-desktop-proxy`` (with ``jupyter-server-proxy``, from the package index) serves
noVNC at ``/desktop`` and the VNC stream over a Unix socket (no TCP port is opened); its start
script runs ``dbus-launch xfce4-session``. The X server and the desktop run as the image's
user, so the launched container keeps its hardening.
A link on the desktop, ``data``, opens ``/data``, where a launch mounts the datasets.

Who gets it (``Desktop.mode``): every image ("always"), images whose repository asks for it
("on_request", the default: a file ``binder/desktop`` or ``.binder/desktop``, or
``jupyter-remote-desktop-proxy`` in its requirements), or none ("off"). The layer comes right
after the shared server layer and before anything of the repository, so every image that has it
shares it and an image without it is built exactly as before (the code-only rebuild of such an
image is unchanged). Measured here (2 cores): the layer adds 433 MB (Xvnc pulls in Mesa and
its LLVM) and is built once per build cache, its Debian packages in 73 s on a quiet machine
(about 10 minutes at load average 20, dpkg waiting on the disk); the running desktop is 14
processes and 44 threads, well inside the launch limits.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import replace
from typing import Any

from traitlets import Bool, Enum, List, Unicode, default
from traitlets.config import Configurable

from . import installer
from .settings import PackSettings

REQUEST_FILE = "desktop"  # in binder/ or .binder/
PROXY = "jupyter-remote-desktop-proxy"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class Desktop(Configurable):
    """The desktop layer of images and the 'Desktop' buttons of the portal."""

    mode = Enum(
        ["off", "on_request", "always"],
        "on_request",
        help="Which images get the desktop layer (served at /desktop in the launched server): "
        "'always' every image; 'on_request' images whose repository has a file binder/desktop "
        "(or .binder/desktop) or lists jupyter-remote-desktop-proxy in its requirements; 'off' none.",
    ).tag(config=True)
    requirements = List(
        Unicode(),
        ["jupyter-remote-desktop-proxy==3.0.1", "jupyter-server-proxy==4.6.0"],
        help="Python packages of the desktop layer, installed from the build's package index.",
    ).tag(config=True)
    apt_packages = List(
        Unicode(),
        ["tigervnc-standalone-server", "xfce4", "dbus-x11", "xterm", "xfonts-base"],
        help="Debian packages of the desktop layer: a VNC server with a 'vncserver' command, the "
        "desktop its start script runs (xfce4-session) and the programs on it.",
    ).tag(config=True)
    show_buttons = Bool(
        help="Show 'Desktop' buttons on the launch page and on dataset and publication cards (they "
        "open /desktop in the launched server). Default: on when every image has the desktop "
        "(mode 'always'); turn it on with 'on_request' when the repositories launched here ask for it.",
    ).tag(config=True)

    @default("show_buttons")
    def _show_buttons_default(self) -> bool:
        return self.mode == "always"

    def apply(self, settings: PackSettings) -> PackSettings:
        """``settings`` with these traits filled in (for Repo2DockerBuilder.pack_settings)."""
        return replace(
            settings,
            desktop=self.mode,
            desktop_requirements=tuple(self.requirements),
            desktop_apt_packages=tuple(self.apt_packages),
        )


def _names(path: str) -> set[str]:
    """Normalised distribution names in a requirements file (comments and options skipped)."""
    names = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            match = _NAME.match(line.split("#", 1)[0])
            if match:
                names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def requested(binder_dir: str, requirements: str | None) -> bool:
    """Whether the repository asks for the desktop: ``<binder dir>/desktop`` is a file, or the
    requirements file names jupyter-remote-desktop-proxy."""
    if binder_dir and os.path.isfile(os.path.join(binder_dir, REQUEST_FILE)):
        return True
    return bool(requirements) and os.path.isfile(requirements) and PROXY in _names(requirements)


def wanted(settings: PackSettings, pack: Any) -> bool:
    """Whether the image of ``pack`` (a DebianPipBuildPack) gets the desktop layer."""
    if settings.desktop == "always":
        return True
    if settings.desktop == "off":
        return False
    return requested(pack.binder_dir, pack._requirements())


def build_scripts(settings: PackSettings) -> list[tuple[str, str]]:
    """The layer's steps: Debian's packages (root), then the proxy in the venv and the user's
    desktop (a link to /data; the panel's default layout, so no first-start dialog covers it)."""
    apt = " ".join(shlex.quote(p) for p in settings.desktop_apt_packages)
    python = " ".join(shlex.quote(r) for r in settings.desktop_requirements)
    panel = "${HOME}/.config/xfce4/xfconf/xfce-perchannel-xml"
    return [
        (
            "root",
            "export DEBIAN_FRONTEND=noninteractive && apt-get -qq update && "
            f"apt-get -qq install --yes --no-install-recommends {apt} > /dev/null && "
            "apt-get -qq clean && rm -rf /var/lib/apt/lists/*",
        ),
        (
            "${NB_USER}",
            f"{installer.install(settings, python, what='the desktop proxy')} && "
            "mkdir -p ${HOME}/Desktop && ln -sfn /data ${HOME}/Desktop/data && "
            f"if [ -f /etc/xdg/xfce4/panel/default.xml ]; then mkdir -p {panel} && "
            f"cp /etc/xdg/xfce4/panel/default.xml {panel}/xfce4-panel.xml; fi",
        ),
    ]
