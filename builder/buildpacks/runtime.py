"""runtime.txt and other Python version requests against the one Python the base image has."""

from __future__ import annotations

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from panbinder.errors import PanbinderError

from .settings import PackSettings


def read_runtime(pack) -> tuple[str | None, str | None]:
    """(name, version) from the pack's runtime.txt (repo2docker's parser), or (None, None)."""
    try:
        name, version, _date = pack.runtime
    except ValueError as e:
        raise PanbinderError(
            f"{e}. runtime.txt must read like 'python-3.11'.", reason="bad_runtime_txt"
        ) from e
    return name, version


def satisfies(requested: str, available: str) -> bool:
    """Whether ``available`` ("3.11") meets ``requested``: "3", "3.11", "3.11.4", "=3.9", ">=3.9"."""
    spec = requested.strip().replace(".*", "")
    if spec.startswith("==") or (spec.startswith("=") and not spec.startswith("==")):
        spec = spec.lstrip("=")  # "==3.9" and conda's "=3.9" mean 3.9.*
    if spec[:1] in ("<", ">", "!", "~"):
        try:
            return Version(available) in SpecifierSet(spec)
        except InvalidSpecifier:
            return False
    # "3.11.4" is met by the base image's 3.11 (the patch level is Debian's)
    parts = spec.split(".")[:2]
    return parts == available.split(".")[: len(parts)]


def check_python(requested: str, source: str, settings: PackSettings) -> str | None:
    """None when the base Python fits; else a notice to log, or PanbinderError under "refuse"."""
    available = settings.python_version
    if satisfies(requested, available):
        return None
    if settings.runtime_policy == "refuse":
        raise PanbinderError(
            f"{source} asks for Python {requested}, but this deployment only has Python {available}. "
            f"Change {source} to ask for Python {available}, or remove the Python version from it.",
            reason="python_version_unavailable",
            status_code=422,
        )
    return (
        f"{source} asks for Python {requested}, but this deployment only has Python {available}: "
        f"building with Python {available}. Code written for Python {requested} may behave differently."
    )
