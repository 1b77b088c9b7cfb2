"""What a repository forgot: distributions its notebooks and scripts import that nothing installs.

Repositories behind papers often list no dependencies at all, or forget one (studies of
notebooks from publications find ``ModuleNotFoundError`` behind about half of all failures).
So the build reads the code cells of every notebook and every ``.py`` script, collects the
top-level modules they import (``ast``, each cell on its own: IPython magics, shell escapes and
``%pip``/``!pip`` lines are blanked first, and a cell that still does not parse, e.g. Python 2
code, is read line by line), and leaves out:

- the standard library (``sys.stdlib_module_names``), relative imports and the repository's own
  modules and packages (every ``.py`` file name and folder holding Python files);
- imports inside a ``try`` whose ``except`` catches ImportError: the code copes without them;
- what the single-user server layer already has (``provided`` in ``import_map.json``) and the
  distributions the requirements file or ``pyproject.toml`` installs (compared by packaging's
  canonical names).

What is left is installed only when ``import_map.json`` names its distribution (``sklearn`` ->
``scikit-learn``, ``cv2`` -> ``opencv-python-headless``...): an import name is never guessed to
be a distribution name, which could install a typo-squatted package. Unknown imports are listed
in the notice instead. The map's ``optional`` rules add well-known optional dependencies when
the code shows their use (pandas' ``read_excel`` -> ``openpyxl``, ``%matplotlib widget`` ->
``ipympl``). The build pack installs the result in a layer of its own, after the repository's
own requirements (python_pip.py).
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .kernels import MAX_NOTEBOOK_BYTES, SKIP_DIRS, notebooks

MAP_FILE = Path(__file__).with_name("import_map.json")
MAX_SCRIPTS = 5000
MAX_SCRIPT_BYTES = 2 * 1024 * 1024
MAX_REQUIREMENT_FILES = 100  # requirements files read following -r
# Folders whose scripts are not the repository's analysis (their imports are not installed).
SCRIPT_SKIP_DIRS = {"docs", "doc", "tests", "test", "binder", "build", "dist"}
SCRIPT_SKIP_FILES = {"setup.py", "conftest.py", "noxfile.py", "tasks.py"}
# A line IPython handles, not Python: %magic, !shell, x = !shell, x = %magic, obj? help
MAGIC_LINE = re.compile(r"^(\s*)(?:[%!]|[\w.]+\s*=\s*[!%]|[\w.]+\?\??\s*$|\?)")
# Cell magics whose body is Python (run, timed or captured); other cell magics are not Python.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug", "python", "python3", "px"}
WRITEFILE = re.compile(r"^%%writefile\s+(?:-a\s+)?(\S+)\.py\s*$")
IMPORT_LINE = re.compile(r"^\s*import\s+([\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*)")
FROM_LINE = re.compile(r"^\s*from\s+(\w[\w.]*)\s+import\b")
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
SHOWN = 3  # files named per module in the notice


@dataclass(frozen=True)
class OptionalRule:
    """Install ``install`` when ``module`` is imported ("" : always) and ``pattern`` is in the code."""

    module: str
    pattern: re.Pattern[str]
    install: str
    why: str

    @property
    def magic(self) -> bool:
        """The rule reads IPython magics, which the Python source of a cell no longer has."""
        return self.pattern.pattern.startswith("^\\s*%")


@dataclass(frozen=True)
class ImportMap:
    modules: dict[str, str]  # import name -> distribution
    provided: frozenset[str]  # import names every image has
    optional: tuple[OptionalRule, ...] = ()

    def extended(self, extra: dict[str, str]) -> ImportMap:
        """This map with the deployment's own entries (its packages on its own index) added."""
        if not extra:
            return self
        return ImportMap({**self.modules, **extra}, self.provided - set(extra), self.optional)


@lru_cache
def load_map(path: str = str(MAP_FILE)) -> ImportMap:
    """The shipped import-name -> distribution map (``import_map.json``)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    rules = tuple(
        OptionalRule(r["module"], re.compile(r["pattern"], re.MULTILINE), r["install"], r["why"])
        for r in data.get("optional", [])
    )
    return ImportMap(dict(data["map"]), frozenset(data.get("provided", [])), rules)


# --- reading code ---------------------------------------------------------------------------


def python_source(cell: str) -> tuple[str, str]:
    """(Python source of a code cell with IPython syntax blanked, module a %%writefile makes)."""
    lines = cell.splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    written = ""
    if first.startswith("%%"):
        m = WRITEFILE.match(first)
        written = m.group(1).replace("\\", "/").rsplit("/", 1)[-1] if m else ""
        if not m and first[2:].split(" ")[0] not in PYTHON_CELL_MAGICS:
            return "", ""  # %%bash, %%html, ...: not Python
        lines = lines[lines.index(next(ln for ln in lines if ln.strip())) + 1 :]
    kept = []
    for line in lines:
        m = MAGIC_LINE.match(line)
        kept.append(m.group(1) + "pass" if m else line)
    return "\n".join(kept), written


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type
    if kinds is None:
        return True
    names = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
    return any(isinstance(n, ast.Name) and n.id in IMPORT_ERRORS for n in names)


def imports_in(source: str) -> set[str]:
    """Top-level modules that ``source`` imports, absolutely and unguarded."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return _imports_by_line(source)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try | ast.TryStar) and any(_catches_import_error(h) for h in node.handlers):
            guarded.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _imports_by_line(source: str) -> set[str]:
    """Imports of code that does not parse (Python 2, a broken cell), one line at a time."""
    found: set[str] = set()
    for line in source.splitlines():
        m = FROM_LINE.match(line)
        if m:
            found.add(m.group(1).split(".")[0])
            continue
        m = IMPORT_LINE.match(line)
        if m:
            found.update(part.split()[0].split(".")[0] for part in m.group(1).split(","))
    return found


def notebook_cells(path: str) -> list[str]:
    """The code cells of a notebook ([] when it cannot be read)."""
    try:
        if os.path.getsize(path) > MAX_NOTEBOOK_BYTES or os.path.islink(path):
            return []
        with open(path, encoding="utf-8") as f:
            cells = json.load(f).get("cells", [])
        out = []
        for cell in cells:
            if isinstance(cell, dict) and cell.get("cell_type") == "code":
                source = cell.get("source", "")
                out.append("".join(source) if isinstance(source, list) else str(source))
        return out
    except (OSError, ValueError, AttributeError, TypeError):
        return []


def _walk(root: str) -> Iterator[tuple[str, list[str], list[str]]]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        yield folder, dirs, sorted(files)


@dataclass
class Scan:
    """What a repository's code imports, defines and visibly uses."""

    imports: dict[str, list[str]] = field(default_factory=dict)  # module -> files importing it
    own: set[str] = field(default_factory=set)  # the repository's own module names
    uses: dict[OptionalRule, list[str]] = field(default_factory=dict)  # optional rule -> files

    def add(self, path: str, source: str, rules: Iterable[OptionalRule], *, imports: bool = True) -> None:
        for module in imports_in(source) if imports else ():
            files = self.imports.setdefault(module, [])
            if path not in files:
                files.append(path)
        for rule in rules:
            if rule.pattern.search(source) and path not in self.uses.setdefault(rule, []):
                self.uses[rule].append(path)


def scan(root: str = ".", imap: ImportMap | None = None) -> Scan:
    """Imports of every notebook's code cells and every analysis script under ``root``."""
    imap = imap or load_map()
    found = Scan()
    scripts = 0
    for folder, _dirs, files in _walk(root):
        rel = os.path.relpath(folder, root)
        parts = [] if rel == "." else rel.split(os.sep)
        if any(name.endswith((".py", ".so", ".pyd")) for name in files) and parts:
            found.own.add(parts[-1])  # a package or a folder put on sys.path
        for name in files:
            if name.endswith((".py", ".so", ".pyd")):
                found.own.add(name.split(".")[0])
            if not name.endswith(".py") or name in SCRIPT_SKIP_FILES or SCRIPT_SKIP_DIRS & set(parts):
                continue
            path = os.path.join(folder, name)
            scripts += 1
            if scripts > MAX_SCRIPTS or os.path.islink(path) or os.path.getsize(path) > MAX_SCRIPT_BYTES:
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                found.add(os.path.relpath(path, root), f.read(), imap.optional)
    for path in notebooks(root):
        for cell in notebook_cells(os.path.join(root, path)):
            source, written = python_source(cell)
            if written:
                found.own.add(written)
            found.add(path, source, [r for r in imap.optional if not r.magic])
            found.add(path, cell, [r for r in imap.optional if r.magic], imports=False)
    return found


# --- what is installed already --------------------------------------------------------------


def requirement_names(lines: Iterable[str]) -> set[str]:
    """Canonical names of the distributions requirement lines name (options and bad lines skipped)."""
    names = set()
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        egg = re.search(r"[#&]egg=([A-Za-z0-9._-]+)", line)
        if egg:
            names.add(canonicalize_name(egg.group(1)))
            continue
        if not line or line.startswith(("#", "-", ".", "/")):
            continue
        try:
            names.add(canonicalize_name(Requirement(line).name))
        except InvalidRequirement:
            continue
    return names


def requirements_file_names(
    path: str | None, *, root: str = ".", refused: list[str] | None = None
) -> set[str]:
    """Distributions a requirements file installs, following ``-r`` files (relative to the file
    naming them). Each file is read once (``-r`` loops end), and only inside the checkout
    ``root`` (symlinks resolved): a file outside it is not read, and its name goes to ``refused``."""
    checkout = Path(root).resolve()
    names: set[str] = set()
    seen: set[Path] = set()
    pending = [Path(root, path)] if path else []
    while pending and len(seen) < MAX_REQUIREMENT_FILES:
        candidate = pending.pop()
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            real = None
        if real is not None and real in seen:
            continue
        if real is None or not real.is_relative_to(checkout):
            if refused is not None:
                refused.append(os.path.relpath(candidate, root))
            continue
        seen.add(real)
        if not real.is_file() or real.stat().st_size > MAX_SCRIPT_BYTES:
            continue
        lines = real.read_text(encoding="utf-8", errors="replace").splitlines()
        names |= requirement_names(lines)
        for line in lines:
            m = re.match(r"^\s*(?:-r|--requirement)[\s=]+(\S+)", line)
            if m:
                pending.append(candidate.parent / m.group(1))
    return names


def pyproject_names(path: str = "pyproject.toml") -> set[str]:
    """The project itself and every dependency (optional ones too) that pyproject.toml declares."""
    try:
        with open(path, "rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return set()
    lines = [project.get("name", ""), *project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return requirement_names(str(line) for line in lines)


# --- the inference ----------------------------------------------------------------------------


def _files(paths: list[str]) -> str:
    return ", ".join(paths[:SHOWN]) + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")


@dataclass(frozen=True)
class Inference:
    install: dict[str, str]  # distribution -> why ("import sklearn in a.ipynb")
    unknown: dict[str, str]  # module -> where it is imported

    def requirements(self) -> str:
        return "".join(f"{name}\n" for name in sorted(self.install, key=str.lower))

    def notice(self) -> str:
        parts = []
        if self.install:
            listed = "; ".join(f"{name} ({why})" for name, why in sorted(self.install.items()))
            parts.append(
                "the notebooks and scripts use packages that no requirements file installs; "
                f"installing them in a layer of their own: {listed}. List them in requirements.txt "
                "to choose their versions."
            )
        if self.unknown:
            listed = "; ".join(f"{name} ({where})" for name, where in sorted(self.unknown.items()))
            parts.append(
                f"not installed, as no known package provides them: {listed}. Add the packages "
                "that provide them to requirements.txt."
            )
        return " ".join(parts)


def infer(found: Scan, installed: set[str], imap: ImportMap | None = None) -> Inference:
    """What to install for ``found`` when ``installed`` (canonical names) is installed already."""
    imap = imap or load_map()
    install: dict[str, str] = {}
    unknown: dict[str, str] = {}
    skip = set(sys.stdlib_module_names) | {"__future__", "__main__"} | found.own | imap.provided
    for module, paths in sorted(found.imports.items()):
        if module in skip or not module.isidentifier():
            continue
        dist = imap.modules.get(module)
        if dist is None:
            unknown[module] = _files(paths)
        elif canonicalize_name(dist) not in installed:
            install.setdefault(dist, f"import {module} in {_files(paths)}")
    needed = installed | {canonicalize_name(d) for d in install}
    for rule, paths in found.uses.items():
        if not paths:
            continue
        if rule.module and rule.module not in found.imports:
            continue
        if rule.module and canonicalize_name(imap.modules.get(rule.module, rule.module)) not in needed:
            if rule.module not in imap.provided:
                continue  # the module itself is not installed: its optional use does not matter
        if canonicalize_name(rule.install) not in needed:
            install.setdefault(rule.install, f"{rule.why} in {_files(paths)}")
            needed.add(canonicalize_name(rule.install))
    return Inference(install, unknown)


__all__ = [
    "ImportMap",
    "Inference",
    "Scan",
    "imports_in",
    "infer",
    "load_map",
    "pyproject_names",
    "python_source",
    "requirement_names",
    "requirements_file_names",
    "scan",
]
