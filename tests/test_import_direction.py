"""Imports point one way: every module's imports (function-level ones included) follow the rules
written in the README's Architecture section.

Each of ``builder``, ``launcher``, ``registry_cache``, ``data_mounts``, ``web`` and ``providers``
counts as one node; each module of the core package (``panbinder/*.py``) is a node of its own.
A node may import only the nodes its rule lists, and the graph of all nodes has no cycle.
"""

from __future__ import annotations

import ast
import importlib.util
from collections import defaultdict
from pathlib import Path

PACKAGES = [
    "panbinder",
    "panbinder.builder",
    "panbinder.launcher",
    "panbinder.registry_cache",
    "panbinder.data_mounts",
    "panbinder.web",
]
LAYERS = ("builder", "launcher", "registry_cache", "data_mounts", "web", "providers")

# Shared helpers every layer may use: they import no other part of panbinder.
SHARED = {
    "panbinder",
    "panbinder._version",
    "panbinder.errors",
    "panbinder.events",
    "panbinder.executor",
    "panbinder.logs",
    "panbinder.processes",
    "panbinder.lifeline",
    "panbinder.paths",
    "panbinder.state",
    "panbinder.progress",
    "panbinder.docker_engine",
    "panbinder.command",
    "panbinder.metrics",
}
ALLOWED = {
    "registry_cache": {"registry_cache"},
    "data_mounts": {"data_mounts"},
    "builder": {"builder", "registry_cache"},
    "launcher": {"launcher", "registry_cache", "data_mounts"},
    "providers": {"providers", "builder", "registry_cache", "data_mounts"},
}
# The one module that may import web: the serve command, which starts the portal.
PORTAL_ENTRY = "panbinder.serve"


def package_files() -> dict[str, Path]:
    """Module name -> file, for every module of the installed package mapping."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, package
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            parts = [*package.split("."), *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def node(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return ".".join(parts[:2])


def imported(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """The panbinder modules ``module`` imports, with line numbers (anywhere in the file)."""
    is_package = path.name == "__init__.py"
    found = []
    for item in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(item, ast.Import):
            found += [(alias.name, item.lineno) for alias in item.names]
        elif isinstance(item, ast.ImportFrom):
            if item.level:
                base = module.split(".")[: None if is_package else -1]
                base = base[: len(base) - item.level + 1]
                target = ".".join([*base, *([item.module] if item.module else [])])
            else:
                target = item.module or ""
            for alias in item.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in known else target, item.lineno))
    return [(name, line) for name, line in found if name == "panbinder" or name.startswith("panbinder.")]


def import_edges() -> list[tuple[str, str, str, int]]:
    """(importing module, imported module, file, line) for every import between two nodes."""
    modules = package_files()
    edges = []
    for module, path in modules.items():
        for target, line in imported(module, path, set(modules)):
            if node(module) != node(target):
                edges.append((module, target, str(path), line))
    return edges


def violation(source: str, target: str) -> str | None:
    a, b = node(source), node(target)
    if b == "web" and a != PORTAL_ENTRY:
        return f"only {PORTAL_ENTRY} (the portal's entry point) imports web"
    if a in SHARED and b not in SHARED:
        return "shared helpers import only other shared helpers"
    if a in ALLOWED and b not in ALLOWED[a] and b not in SHARED:
        return f"{a} may import only {', '.join(sorted(ALLOWED[a]))} and the shared helpers"
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_every_package_is_read():
    modules = package_files()
    assert {node(m) for m in modules} >= {"builder", "launcher", "registry_cache", "data_mounts", "web"}
    assert "panbinder.pipeline" in modules and PORTAL_ENTRY in modules


def test_imports_follow_the_documented_direction():
    wrong = [
        f"{file}:{line}: {source} imports {target}: {why}"
        for source, target, file, line in import_edges()
        if (why := violation(source, target))
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target, _, _ in import_edges():
        graph[node(source)].add(node(target))
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checks_can_fail():
    """The rules catch the imports they forbid (a test that cannot fail proves nothing)."""
    assert violation("panbinder.builder.manager", "panbinder.launcher.base")
    assert violation("panbinder.builder.build_logs", "panbinder.data_mounts.paths")
    assert violation("panbinder.launcher.hub_api", "panbinder.builder.base")
    assert violation("panbinder.data_mounts.cli", "panbinder.providers.git")
    assert violation("panbinder.pipeline", "panbinder.web.app")
    assert violation("panbinder.errors", "panbinder.data_mounts.catalogue")
    assert violation(PORTAL_ENTRY, "panbinder.web.app") is None
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
