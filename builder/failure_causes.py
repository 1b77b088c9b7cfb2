"""Why a build failed, in one short message read from the failing step's log.

A failed ``RUN`` step ends with BuildKit's ``executor failed running [/bin/sh -c ...]: exit
code: N``, which names the command but not the cause. The cause is in the lines the command
printed just before (each prefixed by BuildKit with ``#<step> <seconds> ``): pip's
``Requires-Python`` report, a host name that did not resolve (pip, curl, wget, git, npm), apt's
``Unable to locate package``, a shell's ``command not found``. Each rule below reads those lines
and names the cause: the requirement, host, package or command, and what to change. The texts the
rules were written against come from real failing builds (kept as fixtures in
tests/test_failure_causes.py).

The message stays under ``MAX_MESSAGE`` characters and never quotes a traceback; the lines
themselves travel apart from it (the failed event's ``log_tail`` and the kept build log).
Memory, process and time limits are explained by the build manager, which knows them
(limits.py, manager.py); a step that ran out of memory with no limit watching (the kernel killed
it, or Node.js hit its own heap limit) and a full disk are named here, with the setting to look
at and, for the disk, the build engine's free space.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .buildpacks.settings import NOTICE_PREFIX

MAX_MESSAGE = 2000
# BuildKit's prefix of a step's output line: "#20 4.811 " (step number, seconds).
BUILDKIT_PREFIX = re.compile(r"^#\d+ \d+(?:\.\d+)? ")
RUNTIME_NOTICE = re.compile(r"(\S+) asks for Python (\S+), but this deployment only has Python ([\d.]+)")
FAILED_STEP = re.compile(r"executor failed running \[/bin/sh -c (.*)\]: exit code: (\d+)")
REQUIREMENT = re.compile(r"No matching distribution found for (\S+)")
OTHER_PYTHON = re.compile(r"Ignored the following versions that require a different python version: (.*)")
PACKAGE_NEEDS_PYTHON = re.compile(r"Package '([^']+)' requires a different Python: (\S+) not in '([^']+)'")
BUILD_FAILED = re.compile(
    r"(?:Failed building wheel for|Failed to build installable wheels for some pyproject.toml based "
    r"projects \(|Could not build wheels for) ([A-Za-z0-9._-]+)"
)
HOST_PATTERNS = [
    re.compile(p)
    for p in (
        r"Failed to connect to ([A-Za-z0-9.-]+) while fetching",  # pip
        r"HTTPS?Connection(?:Pool)?\(host='([^']+)'",  # pip / requests (urllib3)
        r"Failed to resolve '([^']+)'",  # urllib3 2
        r"Could not resolve host: ([A-Za-z0-9.-]+)",  # curl, git over https
        r"Failed to connect to ([A-Za-z0-9.-]+) port \d+",  # curl, git
        r"Could not resolve hostname ([A-Za-z0-9.-]+)",  # ssh (git@host:...)
        r"unable to resolve host address [‘'\"]([^’'\"]+)",  # wget
        r"Resolving ([A-Za-z0-9.-]+) \([^)]*\)\.\.\. failed",  # wget
        r"getaddrinfo (?:ENOTFOUND|EAI_AGAIN) ([A-Za-z0-9.-]+)",  # npm, node
    )
]
UNRESOLVED = re.compile(
    r"Temporary failure in name resolution|Name or service not known|Network is unreachable"
)
APT_MISSING = re.compile(
    r"E: (?:Unable to locate package (\S+)|Package '([^']+)' has no installation candidate|"
    r"Couldn't find any package by (?:glob|regex) '([^']+)')"
)
COMMAND_MISSING = [
    re.compile(p)
    for p in (
        r"^(\S*postBuild): line (\d+): (\S+): command not found",  # bash
        r"^(\S*postBuild): (\d+): (\S+): not found",  # dash (sh)
        r"^/usr/bin/env: [‘'](\S+?)[’']: No such file or directory",  # a missing interpreter
    )
]
CHECKOUT = re.compile(r"(Failed to check out ref .*|Failed to clone repository .*)")
INVALID_REQUIREMENT = re.compile(r"ERROR: Invalid requirement: (.*)")
NO_SPACE = re.compile(r"no space left on device|\bENOSPC\b|Disk quota exceeded", re.IGNORECASE)
NODE_HEAP = re.compile(r"JavaScript heap out of memory")
OUT_OF_MEMORY = re.compile(
    r"\bMemoryError\b|Cannot allocate memory|std::bad_alloc|out of memory allocating|"
    r"virtual memory exhausted|^Killed$|exit code: 137\b"
)
MEMORY_SETTING = "BuildManager.build_memory_limit"


@dataclass(frozen=True)
class FailedBuild:
    """What a failed build left: its last log lines, the error, the notices it logged."""

    lines: Sequence[str]
    error: str = ""
    notices: Sequence[str] = ()
    python_version: str = ""  # the image's Python
    disk: str = ""  # the build engine's disk, e.g. "0.2 GB free of 50 GB"

    @property
    def output(self) -> list[str]:
        """The log lines without BuildKit's step prefixes."""
        return [BUILDKIT_PREFIX.sub("", line.rstrip()) for line in self.lines]

    @property
    def step(self) -> str:
        """The kind of step that failed: "requirements", "postBuild", "apt", or ""."""
        for text in [self.error, *reversed(self.lines)]:
            m = FAILED_STEP.search(text)
            if m:
                command = m.group(1)
                if "postBuild" in command:
                    return "postBuild"
                if "apt-get" in command:
                    return "apt"
                if "pip install" in command or "conda_env_install" in command:
                    return "requirements"
                return ""
        return ""

    @property
    def runtime_request(self) -> tuple[str, str, str] | None:
        """(file, requested Python, available Python) when the build noticed a mismatch."""
        for notice in self.notices:
            m = RUNTIME_NOTICE.search(notice)
            if m:
                return m.group(1), m.group(2), m.group(3)
        return None


def _last(lines: Sequence[str], pattern: re.Pattern[str]) -> re.Match[str] | None:
    for line in reversed(lines):
        m = pattern.search(line)
        if m:
            return m
    return None


def _runtime_hint(build: FailedBuild) -> str:
    runtime = build.runtime_request
    if runtime is None:
        return ""
    source, requested, available = runtime
    return (
        f" {source} asks for Python {requested} and this deployment only has Python {available}: "
        "that is the likely cause."
    )


def python_mismatch(build: FailedBuild) -> str:
    """A requirement whose matching releases all need another Python."""
    out = build.output
    m = _last(out, PACKAGE_NEEDS_PYTHON)
    if m:
        name, have, need = m.groups()
        return (
            f"The requirement {name} cannot be installed on this image's Python {have}: it requires "
            f"Python {need}.{_runtime_hint(build)} Use a release of {name} that supports Python {have}."
        )
    req, other = _last(out, REQUIREMENT), _last(out, OTHER_PYTHON)
    if req is None or other is None:
        return ""
    name = req.group(1)
    project, _, pinned = name.partition("==")
    ignored = [p.strip() for p in other.group(1).split(";") if p.strip()]
    needs = [p for p in ignored if pinned and p.startswith(pinned + " ")]
    if not needs and not _last(out, re.compile(re.escape(name) + r" \(from versions: none\)")):
        return ""  # other releases exist for this Python: the pin itself is wrong
    needs = needs or ignored[:3]
    python = build.python_version or "version"
    return (
        f"The requirement {name} cannot be installed on this image's Python {python}: the releases "
        f"that match it require another Python ({'; '.join(needs)[:300]}).{_runtime_hint(build)} "
        f"Loosen the pin of {project} in requirements.txt to a release that supports Python {python}."
    )


def unbuildable_requirement(build: FailedBuild) -> str:
    """A requirement pip had to compile and could not; likely too old for this Python."""
    m = _last(build.output, BUILD_FAILED)
    if m is None:
        return ""
    name = m.group(1).rstrip(")")
    hint = _runtime_hint(build) or " It may be too old for this Python (no wheel for it)."
    return (
        f"The requirement {name} could not be built from its source.{hint} Pin a newer release of "
        f"{name} that has a wheel for this Python."
    )


def unreachable_host(build: FailedBuild) -> str:
    """A requirement or postBuild command needs a network host the build cannot reach."""
    out = build.output
    host = ""
    for line in reversed(out):
        for pattern in HOST_PATTERNS:
            m = pattern.search(line)
            if m:
                host = m.group(1)
                break
        if host:
            break
    if not host and not _last(out, UNRESOLVED):
        return ""
    where = {"postBuild": "postBuild", "requirements": "A requirement", "apt": "apt.txt"}.get(
        build.step, "The build"
    )
    named = f"the network host {host}" if host else "a network host"
    return (
        f"{where} needs {named}, which builds on this service cannot reach (they reach only the "
        "package index and the Debian archive). Put the file in the repository or use a package "
        "from the index instead, or ask the operators to allow the host."
    )


def missing_apt_package(build: FailedBuild) -> str:
    m = _last(build.output, APT_MISSING)
    if m is None:
        return ""
    name = next(g for g in m.groups() if g)
    return (
        f"apt.txt names the package {name}, which the Debian archive of this image does not have. "
        "Check the name (packages.debian.org lists them) or remove it from apt.txt."
    )


def missing_command(build: FailedBuild) -> str:
    out = build.output
    for pattern in COMMAND_MISSING:
        m = _last(out, pattern)
        if m is None:
            continue
        if len(m.groups()) == 1:
            return (
                f"postBuild's first line asks for the interpreter {m.group(1)}, which the image does "
                f"not have. Change the #! line (python3 and bash are there) or install it in apt.txt."
            )
        _script, line, command = m.groups()
        return (
            f"postBuild runs the command {command} (line {line}), which the image does not have. "
            "Install it first (a Debian package in apt.txt or a Python package in requirements.txt) "
            "or remove that line."
        )
    return ""


def out_of_memory(build: FailedBuild) -> str:
    """A step that ran out of memory without the step limits noticing (limits.py names those)."""
    out = build.output
    if _last(out, NODE_HEAP):
        return (
            "Node.js ran out of memory in the build (JavaScript heap out of memory): its own heap "
            "limit was reached. Raise it in postBuild (export NODE_OPTIONS=--max-old-space-size=2048) "
            f"within the memory each build step may use ({MEMORY_SETTING}), or build less at once."
        )
    m = _last(out, OUT_OF_MEMORY) or _last([build.error], OUT_OF_MEMORY)
    if m is None:
        return ""
    where = {"postBuild": "postBuild", "requirements": "Installing the requirements", "apt": "apt.txt"}
    sign = "killed, exit code 137" if "137" in m.group(0) or m.group(0) == "Killed" else m.group(0)
    return (
        f"{where.get(build.step, 'A build step')} ran out of memory ({sign}). Each build step may use "
        f"at most the memory this service allows ({MEMORY_SETTING}) and what the build machine has "
        "free. Reduce what the step needs at once (fewer parallel jobs, smaller data in postBuild) "
        "or ask the operators to raise the limit."
    )


def out_of_disk(build: FailedBuild) -> str:
    m = _last(build.output, NO_SPACE) or _last([build.error], NO_SPACE)
    if m is None:
        return ""
    disk = f" on the build engine's disk (BuildEngine.data_root: {build.disk})" if build.disk else ""
    return (
        f"The build ran out of disk space ({m.group(0).lower()}){disk}. Make the image smaller (fewer or "
        "lighter dependencies, no large downloads in postBuild), or ask the operators to free space "
        "for the build engine or to move BuildEngine.data_root to a larger disk."
    )


def simple(pattern: re.Pattern[str], template: str) -> Callable[[FailedBuild], str]:
    def rule(build: FailedBuild) -> str:
        m = _last(build.output, pattern)
        return template.format(*m.groups(), m.group(0)) if m else ""

    return rule


# Tried in order; the first that explains the failure wins.
RULES: list[Callable[[FailedBuild], str]] = [
    out_of_disk,  # a full disk makes every tool fail in its own way: it comes first
    python_mismatch,
    unreachable_host,
    unbuildable_requirement,
    missing_apt_package,
    missing_command,
    simple(
        REQUIREMENT,
        "pip could not install the requirements: no release of {0} is on the package index. Check "
        "the package names and versions in requirements.txt.",
    ),
    simple(
        INVALID_REQUIREMENT,
        "requirements.txt has a line pip does not understand: {0}. Fix that line.",
    ),
    simple(CHECKOUT, "{0} Check the repository URL and the ref."),
    out_of_memory,
]


def fallback(build: FailedBuild) -> str:
    """The failing step and its last error line, when no rule knows the cause."""
    step = {"postBuild": "postBuild", "requirements": "Installing the requirements", "apt": "apt.txt"}
    m = FAILED_STEP.search(build.error) or _last(build.lines, FAILED_STEP)
    if m:
        errors = [ln for ln in build.output if re.match(r"(ERROR|Error|error|E|fatal):? ", ln.strip())]
        said = f": {errors[-1].strip()[:300]}" if errors and "executor failed" not in errors[-1] else ""
        what = step.get(build.step, "A build step")
        return f"{what} failed (exit code {m.group(2)}){said}. The build log shows the step's output."
    last = next((ln.strip() for ln in reversed(build.error.splitlines()) if ln.strip()), "")
    if not last:
        return "The build failed; the build log shows the failing step."
    return f"The build failed: {last[:300]}. The build log shows the failing step."


def explain(build: FailedBuild) -> str:
    """One message saying why ``build`` failed, at most MAX_MESSAGE characters."""
    for rule in RULES:
        message = rule(build)
        if message:
            break
    else:
        message = fallback(build)
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


# A line printed by a build step comes with BuildKit's step number and seconds: "#12 3.456 text".
_BUILDKIT_PREFIX = re.compile(r"#\d+ \d+(?:\.\d+)? ")


def notice_line(line: str) -> str | None:
    """The notice a build log line carries, as the builder prints it (``NOTICE_PREFIX`` + text,
    without BuildKit's step prefix when a build step printed it), or None."""
    text = line.strip()
    if not text.startswith(NOTICE_PREFIX):
        prefix = _BUILDKIT_PREFIX.match(text)
        if prefix is None or not text.startswith(NOTICE_PREFIX, prefix.end()):
            return None
        text = text[prefix.end() :]
    return text


def is_notice(line: str) -> bool:
    return notice_line(line) is not None


__all__ = ["MAX_MESSAGE", "RULES", "FailedBuild", "explain", "is_notice", "notice_line"]
