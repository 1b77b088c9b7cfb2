"""Render the panbinder chart without a helm binary, lint it and validate every object.

`make chart-check` runs this; tests/test_chart.py runs the same functions. Rendering and linting
use helm-python-sdk, which binds Helm's Go SDK (a shared library inside its PyPI wheel) with
ctypes, so nothing but PyPI is needed. Each rendered object is validated with
kubernetes-validate, strictly (unknown fields fail), against every Kubernetes version in
KUBE_VERSIONS. The ServiceMonitor is a Prometheus Operator resource that those schemas do not
cover: its few fields are checked here instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

CHART = Path(__file__).resolve().parent / "panbinder"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSIONS = [f"1.{minor}.0" for minor in range(30, 38)]
RELEASE, NAMESPACE = "pb", "binder"


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart makes for these values (after checking them against the schema)."""
    chart = helm_python.Chart.load(CHART)
    try:
        chart.validate_schema(chart.merge_values(values))
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    finally:
        chart.close()
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


def lint(values: dict[str, Any]) -> list[str]:
    """helm lint, strict: warnings count as problems."""
    report = helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE)
    return [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2]


def _service_monitor_problems(obj: dict[str, Any]) -> list[str]:
    spec = obj.get("spec") or {}
    problems = []
    if not (spec.get("selector") or {}).get("matchLabels"):
        problems.append("spec.selector.matchLabels is missing")
    for endpoint in spec.get("endpoints") or [None]:
        if not isinstance(endpoint, dict) or not endpoint.get("port"):
            problems.append("every spec.endpoints entry needs a port")
    return problems


def validate(objects: list[dict[str, Any]], versions: list[str] = KUBE_VERSIONS) -> list[str]:
    """Problems, one line each, for objects that do not match the schemas of every version."""
    problems = []
    for obj in objects:
        what = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        if obj.get("apiVersion") == "monitoring.coreos.com/v1" and obj.get("kind") == "ServiceMonitor":
            problems += [f"{what}: {p}" for p in _service_monitor_problems(obj)]
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except ValidationError as e:
                problems.append(f"{what} (Kubernetes {version}): {e.message} at {'.'.join(map(str, e.path))}")
            except SchemaNotFoundError:
                problems.append(f"{what}: no schema for {obj.get('apiVersion')} in Kubernetes {version}")
    return problems


def check(path: Path) -> tuple[int, list[str]]:
    """Render, lint and validate with one values file: (objects rendered, problems)."""
    values = load_values(path)
    objects = render(values)
    return len(objects), lint(values) + validate(objects)


def main() -> int:
    failed = False
    print(f"helm SDK {helm_python.helm_sdk_version()}; Kubernetes {KUBE_VERSIONS[0]} to {KUBE_VERSIONS[-1]}")
    for path in VALUES_FILES:
        count, problems = check(path)
        print(f"{path.name}: {count} objects, {len(problems)} problems")
        for problem in problems:
            print(f"  {problem}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
