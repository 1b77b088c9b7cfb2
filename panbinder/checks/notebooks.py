"""Which notebooks and commands a check runs: the repository's list, else every notebook with outputs.

A repository names what to check in ``binder/panbinder.yml``, ``.binder/panbinder.yml`` or
``.panbinder.yml`` (only one of them may exist; ``binder/`` wins in repo2docker's order, but two
files that could disagree are refused rather than one silently ignored)::

    check:
      notebooks:            # paths or glob patterns relative to the repository's root
        - figures/fig*.ipynb
        - analysis.ipynb
      commands:             # shell commands run in the repository's root, in this order
        - python make_table.py
      timeout: 600          # seconds, per notebook and per command

Every key is optional, but an unknown key is an error (a typo would otherwise silently check
less than the author meant), and every pattern must match at least one notebook. Without such a
file a check runs every notebook that has stored outputs: those are the results a reader
expects to see again; a notebook stored without outputs has nothing to compare with. A
notebook that cannot be read is reported in ``CheckPlan.unreadable`` and the others are still
checked.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from panbinder.errors import PanbinderError
from panbinder.paths import check_relative

PLAN_FILES = ("binder/panbinder.yml", ".binder/panbinder.yml", ".panbinder.yml")
TOP_KEYS = {"check"}
CHECK_KEYS = {"notebooks", "commands", "timeout"}
# folders never searched for notebooks: tools' copies, not the author's analysis
SKIPPED_FOLDERS = {".ipynb_checkpoints", ".git", "node_modules", "__pycache__"}


@dataclasses.dataclass(frozen=True)
class CheckPlan:
    """What a check runs. ``source`` is the plan file, or "" when notebooks were discovered."""

    notebooks: tuple[str, ...]
    commands: tuple[str, ...] = ()
    timeout: float = 600.0
    source: str = ""
    unreadable: tuple[tuple[str, str], ...] = ()  # (notebook, why) for discovered notebooks

    @property
    def empty(self) -> bool:
        return not self.notebooks and not self.commands


def _fail(file: str, key: str, problem: str) -> PanbinderError:
    return PanbinderError(
        f"{file}: {key} {problem} (expected: check: {{notebooks: [paths or globs], "
        "commands: [command lines], timeout: seconds}})",
        reason="bad_check_plan",
    )


def _inside(repo: Path, path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(repo.resolve())
    except OSError:
        return False


def _match(repo: Path, file: str, index: int, pattern: Any) -> list[str]:
    key = f"check.notebooks[{index}]"
    if not isinstance(pattern, str) or not pattern.strip():
        raise _fail(file, key, f"must be a notebook path or glob pattern, not {pattern!r}")
    try:
        check_relative(pattern)
    except PanbinderError as error:
        raise _fail(file, key, f"must be a relative path inside the repository, not {pattern!r}") from error
    if not pattern.endswith(".ipynb"):
        raise _fail(file, key, f"must name .ipynb files, not {pattern!r}")
    found = sorted(
        p.relative_to(repo).as_posix() for p in repo.glob(pattern) if p.is_file() and _inside(repo, p)
    )
    if not found:
        raise _fail(file, key, f"matches no notebook in the repository: {pattern!r}")
    return found


def _commands(file: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(file, "check.commands", f"must be a list of commands, not {value!r}")
    for index, command in enumerate(value):
        if not isinstance(command, str) or not command.strip():
            raise _fail(file, f"check.commands[{index}]", f"must be a command line, not {command!r}")
    return tuple(value)


def _timeout(file: str, value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _fail(file, "check.timeout", f"must be a positive number of seconds, not {value!r}")
    return float(value)


def _read_yaml(path: Path, name: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise PanbinderError(
            f"{name}: cannot be read as YAML ({error}); fix the file or remove it",
            reason="bad_check_plan",
        ) from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(name, "the top level", f"must be a mapping with a 'check' key, not {data!r}")
    return data


def parse_plan(repo: Path, name: str, data: dict[str, Any], *, default_timeout: float) -> CheckPlan:
    """Validate a plan file's content (``name`` is its path in the repository, for messages)."""
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise _fail(name, "the top level", f"has unknown keys {sorted(map(str, unknown))}")
    check = data.get("check") or {}
    if not isinstance(check, dict):
        raise _fail(name, "check", f"must be a mapping, not {check!r}")
    unknown = set(check) - CHECK_KEYS
    if unknown:
        keys = sorted(map(str, unknown))
        raise _fail(name, "check", f"has unknown keys {keys} (known: {sorted(CHECK_KEYS)})")
    patterns = check.get("notebooks", [])
    if not isinstance(patterns, list):
        raise _fail(name, "check.notebooks", f"must be a list of notebooks, not {patterns!r}")
    notebooks: list[str] = []
    for index, pattern in enumerate(patterns):
        notebooks += [n for n in _match(repo, name, index, pattern) if n not in notebooks]
    commands = _commands(name, check.get("commands", []))
    timeout = _timeout(name, check.get("timeout"), default_timeout)
    if not notebooks and not commands:
        raise _fail(name, "check", "names no notebooks and no commands: list at least one")
    return CheckPlan(tuple(notebooks), commands, timeout, source=name)


def has_outputs(notebook: dict[str, Any]) -> bool:
    """Whether a notebook (as JSON) has a code cell with stored outputs."""
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise ValueError("not a notebook: no list of cells")
    return any(isinstance(c, dict) and c.get("cell_type") == "code" and c.get("outputs") for c in cells)


def discover(repo: Path, *, default_timeout: float) -> CheckPlan:
    """Every notebook with stored outputs, sorted; unreadable ones are listed, not fatal."""
    notebooks, unreadable = [], []
    for path in sorted(repo.rglob("*.ipynb")):
        relative = path.relative_to(repo)
        if SKIPPED_FOLDERS & set(relative.parts[:-1]) or not path.is_file():
            continue
        if not _inside(repo, path):
            unreadable.append((relative.as_posix(), "a link to a file outside the repository"))
            continue
        try:
            with_outputs = has_outputs(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            unreadable.append((relative.as_posix(), str(error)))
            continue
        if with_outputs:
            notebooks.append(relative.as_posix())
    return CheckPlan(tuple(notebooks), timeout=default_timeout, unreadable=tuple(unreadable))


def load_plan(repo: Path, *, default_timeout: float = 600.0) -> CheckPlan:
    """The check plan of the repository checked out at ``repo``."""
    repo = Path(repo)
    present = [name for name in PLAN_FILES if (repo / name).is_file()]
    if len(present) > 1:
        raise PanbinderError(
            f"{' and '.join(present)} both exist; keep one of them so the check runs what you mean",
            reason="bad_check_plan",
        )
    if not present:
        return discover(repo, default_timeout=default_timeout)
    name = present[0]
    if not _inside(repo, repo / name):
        raise PanbinderError(f"{name}: a link to a file outside the repository", reason="bad_check_plan")
    data = _read_yaml(repo / name, name)
    return parse_plan(repo, name, data, default_timeout=default_timeout)
