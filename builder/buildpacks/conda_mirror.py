"""environment.yml from a conda channel mirror (``conda_policy = "mirror"``), planned in panbinder.

No conda or mamba binary is reachable, so images get py-rattler (the rattler conda solver and
installer, from the package index) in a virtualenv of its own, in a layer before the
repository's files that every such image shares. ``conda_env_install.py`` (copied into the
build context) then runs in the image: it solves environment.yml's conda dependencies against
the mirror's channels and installs them into ``CONDA_PREFIX``. This module does the parts that
need no rattler: the channel URLs, the plan written into the build context, the shell steps
and the reading of a failed solve back from the build log. TLS: rattler trusts the
deployment's CA bundle (``Repo2DockerBuilder.ca_bundle``, in the image as ``SSL_CERT_FILE``),
so a mirror behind an internal CA needs that CA in the bundle; without one, its built-in roots.

Channels: a name in environment.yml (``conda-forge``, ``defaults``, ``bioconda``...) becomes
``<conda_channel_mirror>/<name>`` unless ``CondaMirror.channel_urls`` maps it to a URL of its
own. A channel URL is used when it lies under the mirror or a mapped URL; a
``https://conda.anaconda.org/<name>`` URL is read as ``<name>``. ``chan::pkg`` specs add
``chan`` to the channels. Without ``channels:``, ``CondaMirror.default_channels`` are used.

Python: when the solved environment contains python, ``ipykernel`` (and ``pip`` for a ``pip:``
section) join the solve, and the environment is registered as the ``python3`` kernel of the
server in ``/srv/venv``, so notebooks run in it. The server stays in ``/srv/venv``, first on
PATH; the environment's ``bin`` comes after it. The ``pip:`` section goes into the
environment's Python, or into ``/srv/venv`` when the environment has none.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, replace

from rattler import MatchSpec
from rattler.exceptions import InvalidMatchSpecError, InvalidVersionSpecError, PackageNameMatcherParseError
from traitlets import Dict, List, Unicode
from traitlets.config import Configurable

from panbinder.errors import PanbinderError

from . import index_auth
from .installer import UV
from .settings import VENV, PackSettings

CONDA_DIR = "/srv/conda"
CONDA_PREFIX = f"{CONDA_DIR}/envs/notebook"
RATTLER_VENV = f"{CONDA_DIR}/rattler"
RATTLER_CACHE_DIR = "/tmp/rattler-cache"
RATTLER_CACHE = "--mount=type=cache,target=" + RATTLER_CACHE_DIR + ",uid={uid},gid={uid}"
PIP_CACHE = "--mount=type=cache,target=/tmp/pip-cache,uid={uid},gid={uid}"
# conda_env_install.py prints this, then a JSON object, when the solve or the download fails.
ERROR_MARKER = "panbinder-conda-error: "
# PATH after the build scripts, in the order of the login shell's profile scripts: the server's
# virtualenv before the environment's bin, so the server and its jupyter commands stay in /srv/venv.
RUNTIME_PATH = f"${{HOME}}/.local/bin:${{REPO_DIR}}/.local/bin:{VENV}/bin:{CONDA_PREFIX}/bin:${{PATH}}"
# The login shell's activation of the environment, as conda's: CONDA_PREFIX, its bin on PATH and
# the packages' etc/conda/activate.d scripts. Sorted before 00-panbinder-venv.sh, which then puts
# /srv/venv/bin in front.
LOGIN_PROFILE = (
    f'export CONDA_PREFIX={CONDA_PREFIX} PATH="{CONDA_PREFIX}/bin:${{PATH}}"; '
    f'for f in {CONDA_PREFIX}/etc/conda/activate.d/*.sh; do [ -r "$f" ] && . "$f"; done; unset f'
)
KERNEL_NAME = "python3"
KERNEL_DISPLAY_NAME = "Python 3 (environment.yml)"
ANACONDA_ORG_RE = re.compile(r"^https?://conda\.anaconda\.org/(.+?)/*$")


class CondaMirror(Configurable):
    """How environment.yml's conda channels map onto the facility's conda channel mirror."""

    channel_urls = Dict(
        value_trait=Unicode(),
        help="Channel name -> URL, for channels whose place on the mirror is not "
        "<Repo2DockerBuilder.conda_channel_mirror>/<name> (e.g. {'defaults': "
        "'https://conda.example.org/pkgs/main'}). A mapped channel needs no conda_channel_mirror.",
    ).tag(config=True)
    default_channels = List(
        Unicode(),
        ["conda-forge"],
        help="Channels used when environment.yml names none.",
    ).tag(config=True)
    rattler_requirement = Unicode(
        "py-rattler==0.28.0",
        help="The pinned py-rattler (conda solver and installer) that images install with pip, "
        "from the package index, to build environment.yml against the mirror.",
    ).tag(config=True)

    def apply(self, settings: PackSettings) -> PackSettings:
        """``settings`` with these traits filled in (for Repo2DockerBuilder.pack_settings)."""
        return replace(
            settings,
            conda_channel_urls=tuple(sorted(self.channel_urls.items())),
            conda_default_channels=tuple(self.default_channels),
            rattler_requirement=self.rattler_requirement,
        )


class UnknownChannel(ValueError):
    """A channel that the deployment's mirror does not provide."""


def mirror_description(settings: PackSettings) -> str:
    """The mirror as messages name it."""
    if settings.conda_channel_mirror:
        return settings.conda_channel_mirror.rstrip("/")
    return ", ".join(url for _, url in settings.conda_channel_urls) or "(none configured)"


def channel_url(channel: str, settings: PackSettings) -> str:
    """The URL on the mirror of an environment.yml channel (a name or a URL)."""
    channel = channel.strip().rstrip("/")
    urls = dict(settings.conda_channel_urls)
    if channel in urls:
        return urls[channel].rstrip("/")
    mirror = settings.conda_channel_mirror.rstrip("/")
    if "://" in channel:
        for base in [*urls.values(), mirror]:
            base = base.rstrip("/")
            if base and (channel == base or channel.startswith(base + "/")):
                return channel
        upstream = ANACONDA_ORG_RE.match(channel)
        if upstream:
            return channel_url(upstream.group(1), settings)
        raise UnknownChannel(channel)
    if not mirror:
        raise UnknownChannel(channel)
    return f"{mirror}/{channel}"


def match_spec(spec: str) -> MatchSpec:
    """``spec`` read by py-rattler's ``MatchSpec`` (conda's own rules: ``numpy=1.26`` is
    ``1.26.*``, ``numpy 1.26`` and ``numpy=1.26=py_0`` are exactly 1.26); ValueError naming the
    spec and what is wrong with it."""
    try:
        return MatchSpec(spec.strip())
    except (InvalidMatchSpecError, InvalidVersionSpecError, PackageNameMatcherParseError) as e:
        raise ValueError(f"'{spec}' is not a conda package spec ({e})") from None


def split_spec(spec: str) -> tuple[str | None, str, str]:
    """(channel or None, name, the match spec without its channel) for ``[chan::]name[ version]``,
    checked with ``MatchSpec`` (ValueError for a spec it refuses)."""
    parsed = match_spec(spec)
    if parsed.name is None:
        raise ValueError(f"'{spec}' names no package")
    channel, sep, rest = spec.strip().partition("::")
    if not sep:
        channel, rest = "", channel
    return channel or None, parsed.name.as_package_name().source, rest.strip()


@dataclass(frozen=True)
class CondaPlan:
    """What the image's installer is told to do for one environment.yml."""

    source: str
    channels: tuple[tuple[str, str], ...]  # (as written, URL on the mirror)
    specs: tuple[str, ...]
    pip: tuple[str, ...]
    mirror: str
    pinned: bool = False  # the specs are a lock's exact packages (a frozen rebuild)

    @property
    def with_python(self) -> tuple[str, ...]:
        """Specs added when the solved environment has python (a kernel, and pip for 'pip:')."""
        extra = ["ipykernel"] + (["pip"] if self.pip else [])
        names = {split_spec(s)[1].lower() for s in self.specs}
        return tuple(e for e in extra if e not in names)

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "mirror": self.mirror,
                "channels": [url for _, url in self.channels],
                "specs": list(self.specs),
                "with_python": list(self.with_python),
                "prefix": CONDA_PREFIX,
                "cache": RATTLER_CACHE_DIR,
                "pinned": self.pinned,
            },
            indent=1,
        )


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def conda_plan(env: dict, source: str, settings: PackSettings) -> CondaPlan:
    """The plan for a parsed environment.yml; PanbinderError for a channel the mirror lacks."""
    specs: list[str] = []
    pip: list[str] = []
    named = [str(c) for c in env.get("channels") or []] or list(settings.conda_default_channels)
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            pip.extend(str(p) for p in dep.get("pip") or [])
            continue
        channel, _, spec = split_spec(str(dep))
        specs.append(spec)
        if channel:
            named.append(channel)
    named = _unique(named)
    try:
        channels = tuple((c, channel_url(c, settings)) for c in named)
    except UnknownChannel as e:
        known = sorted(dict(settings.conda_channel_urls))
        raise PanbinderError(
            f"{source} asks for the conda channel '{e}', which the conda channel mirror of this "
            f"deployment ({mirror_description(settings)}) does not provide. "
            + (
                f"Use one of: {', '.join(known)}, or "
                if known
                else "Use a channel name such as conda-forge, or "
            )
            + "contact the operators.",
            reason="conda_channel_unknown",
            status_code=422,
        ) from e
    return CondaPlan(source, channels, tuple(_unique(specs)), tuple(pip), mirror_description(settings))


def rattler_build_scripts(settings: PackSettings) -> list[tuple[str, str]]:
    """Steps before the repository's files: the prefix's parent, the login activation, py-rattler."""
    cache = " ".join(filter(None, [PIP_CACHE.format(uid=settings.uid), index_auth.secret_mount(settings)]))
    requirement = shlex.quote(settings.rattler_requirement)
    return [
        (
            "root",
            f"install -d -o ${{NB_USER}} -g ${{NB_USER}} {CONDA_DIR} {CONDA_DIR}/envs && "
            f"echo {shlex.quote(LOGIN_PROFILE)} > /etc/profile.d/00-panbinder-conda.sh",
        ),
        (
            "${NB_USER}",
            f"{cache} python3 -m venv {RATTLER_VENV} && PIP_CACHE_DIR=/tmp/pip-cache "
            f"{RATTLER_VENV}/bin/pip install --no-warn-script-location -q {requirement}",
        ),
    ]


def install_script(installer_path: str, plan_path: str, uid: int) -> str:
    """Solve and install the plan's conda packages, then register the kernel if there is python."""
    python = f"{CONDA_PREFIX}/bin/python"
    register = (
        f"{python} -m ipykernel install --prefix {VENV} --name {KERNEL_NAME} "
        f"--display-name {shlex.quote(KERNEL_DISPLAY_NAME)}"
    )
    return (
        f"{RATTLER_CACHE.format(uid=uid)} {RATTLER_VENV}/bin/python {shlex.quote(installer_path)} "
        f"{shlex.quote(plan_path)} && if [ -x {python} ]; then {register}; fi"
    )


def pip_script(requirements_path: str, uid: int, drop: Iterable[str] = (), secret: str = "") -> str:
    """Install the ``pip:`` section into the environment's Python, or /srv/venv without one.
    ``secret``: the index credentials' mount (index_auth.secret_mount), if any."""
    python = f"{CONDA_PREFIX}/bin/python"
    quoted = shlex.quote(requirements_path)
    pip = "PIP_CACHE_DIR=/tmp/pip-cache {} -m pip install --no-warn-script-location -r " + quoted
    venv = pip.format(f"{VENV}/bin/python")
    dropped = " ".join(shlex.quote(p) for p in drop)
    if dropped:
        venv += f" && ({VENV}/bin/pip uninstall -y -q {dropped} || true)"
    mounts = " ".join(filter(None, [PIP_CACHE.format(uid=uid), secret]))
    return f"{mounts} if [ -x {python} ]; then {pip.format(python)}; else {venv}; fi"


def dated_pip_script(requirements_path: str, search: str, mounts: str, drop: Iterable[str] = ()) -> str:
    """``pip_script`` as of the date ``search`` (installer.as_of_search for "$PY") prints: uv
    installs into the environment's Python (or /srv/venv without one), with ``--exclude-newer``;
    when uv cannot, pip installs without a date (the environment's pip may predate
    ``--uploaded-prior-to``). ``mounts``: the step's cache mounts (installer.mounts)."""
    quoted = shlex.quote(requirements_path)
    find = f'PY={CONDA_PREFIX}/bin/python; [ -x "$PY" ] || PY={VENV}/bin/python'
    uv = (
        f'UV_CACHE_DIR=/tmp/uv-cache {UV} pip install --python "$PY" ${{D:+"--exclude-newer=$D"}} -r {quoted}'
    )
    pip = f'PIP_CACHE_DIR=/tmp/pip-cache "$PY" -m pip install --no-warn-script-location -r {quoted}'
    fallback = shlex.quote(f"panbinder: uv could not install {requirements_path}; trying pip")
    step = f"{mounts} {find}; D={search} && {{ {uv} || {{ echo {fallback} && {pip}; }}; }}"
    dropped = " ".join(shlex.quote(p) for p in drop)
    if dropped:
        step += (
            f' && {{ [ "$PY" != {VENV}/bin/python ] || {VENV}/bin/pip uninstall -y -q {dropped} || true; }}'
        )
    return step


def error_report(line: str) -> dict | None:
    """The JSON object of a build-log line carrying ERROR_MARKER, else None."""
    start = line.find(ERROR_MARKER)
    if start < 0:
        return None
    try:
        report = json.loads(line[start + len(ERROR_MARKER) :].strip())
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def _missing_error(missing: list[str], plan: CondaPlan, detail: str) -> PanbinderError:
    channels = ", ".join(name for name, _ in plan.channels)
    if plan.pinned:
        message = (
            f"The environment lock pins conda packages that the conda channel mirror {plan.mirror} no "
            f"longer has in the channels {channels}: {', '.join(missing) or detail}. Ask the operators to "
            f"restore them on the mirror, or rebuild with --fresh to solve {plan.source} anew."
        )
    elif missing and set(missing) <= set(plan.with_python):
        message = (
            f"The environment of {plan.source} has python, and panbinder adds {', '.join(missing)} to "
            f"run notebooks in it, but the conda channel mirror {plan.mirror} does not have "
            f"{'them' if len(missing) > 1 else 'it'} in the channels {channels}. Add a channel that "
            "has it to environment.yml, or ask the operators to add it to the mirror."
        )
    else:
        message = (
            f"{plan.source} lists conda packages that the conda channel mirror {plan.mirror} does not "
            f"have in the channels {channels}: {', '.join(missing)}. Check the names, move them to the "
            "'pip:' section, or ask the operators to add them to the mirror."
        )
    return PanbinderError(message, reason="conda_packages_missing", log_message=detail, status_code=422)


def failure_error(report: dict, plan: CondaPlan) -> PanbinderError:
    """The failed event's message for a report of conda_env_install.py."""
    channels = ", ".join(name for name, _ in plan.channels)
    detail = str(report.get("detail", "")).strip()[:500]
    kind = report.get("kind")
    if kind == "missing":
        return _missing_error([str(m) for m in report.get("missing") or []], plan, detail)
    if kind == "unsolvable":
        return PanbinderError(
            f"The conda packages of {plan.source} cannot be installed together from the conda channel "
            f"mirror {plan.mirror} (channels {channels}): {detail}. Loosen the version pins.",
            reason="conda_unsolvable",
            status_code=422,
        )
    return PanbinderError(
        f"The conda channel mirror {plan.mirror} could not provide the channels {channels} of "
        f"{plan.source}: {detail}. Try again later or contact the operators.",
        reason="conda_mirror_unavailable",
        status_code=503,
    )
