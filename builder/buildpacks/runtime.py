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
    if satisfies(requested, "2.7"):  # running Python 2 code on Python 3 silently would be wrong
        raise PanbinderError(
            f"{source} asks for Python {requested}. Python 2 is not available on this deployment "
            f"(it reached its end of life in 2020), and Python 2 code does not run unchanged on Python "
            f"{available}. Port the code to Python 3 and ask for Python {available} in {source}, or "
            "remove the Python version from it. Notebooks that only declare a python2 kernel need no "
            "change: they run on the image's Python 3 kernel.",
            reason="python2_unavailable",
            status_code=422,
        )
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
