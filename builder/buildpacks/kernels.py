"""Kernel names that notebooks declare, served by the image's one Python kernel.

A notebook records the kernel it was last saved with (``metadata.kernelspec.name``): often
``python2``, ``conda-env-<env>-py`` (nb_conda_kernels) or a named virtualenv. An image has one
Python kernel, ``python3``; Jupyter cannot start a kernel by any other name (``NoSuchKernel``
in a headless run, a kernel picker in JupyterLab). So at build time the repository's notebooks
are read, and each Python kernel name they declare that the image lacks becomes a kernelspec
with the ``python3`` kernelspec's command (the venv's ipykernel, or the conda environment's when
one is installed), so the notebook starts under the name it declares, both in the server and in
a headless run. The build log says which names were mapped. Python 2 code is not made to run:
a ``python2`` notebook holding Python 3 code (common: the kernel name was never updated) runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator

from .settings import VENV

# Names worth mapping: Python-looking kernel names, or any name whose language is Python.
PYTHON_NAME = re.compile(r"^(py[\d.]*|ipykernel|conda-(?:env-.+-py|root-py)|.*python.*)$", re.I)
# What jupyter_client accepts as a kernel name.
VALID_NAME = re.compile(r"^[a-z0-9._-]{1,64}$", re.I)
SKIP_DIRS = {".git", ".ipynb_checkpoints", "node_modules", "__pycache__", ".panbinder"}
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024  # larger notebooks are not read (their outputs dominate)
MAX_NOTEBOOKS = 2000
KERNELS_DIR = f"{VENV}/share/jupyter/kernels"
# Run by the venv's Python in the image (one line: it becomes a Dockerfile RUN): copy the
# python3 kernelspec under each name given, with the name in its display name.
ALIAS_PROGRAM = "; ".join(
    [
        "import json, pathlib, shutil, sys",
        "from jupyter_client.kernelspec import KernelSpecManager",
        'base = KernelSpecManager().get_kernel_spec("python3")',
        "spec = base.to_dict()",
        'spec.setdefault("metadata", {})["panbinder_alias_of"] = "python3"',
        # ipykernel's own spec says "python": name this Python, as jupyter_client does for it
        'spec["argv"][:1] = [sys.executable] if spec["argv"][0] in ("python", "python3") else spec["argv"][:1]',
        "dirs = [pathlib.Path(%r, n) for n in sys.argv[1:]]",
        "[shutil.copytree(base.resource_dir, d, dirs_exist_ok=True) for d in dirs]",
        '[(d / "kernel.json").write_text(json.dumps({**spec, "display_name": '
        'f"{base.display_name} (as {d.name})"}, indent=1)) for d in dirs]',
    ]
)


def notebooks(root: str = ".") -> Iterator[str]:
    """Notebook paths under ``root`` (relative), hidden and tool folders left out."""
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".ipynb"):
                count += 1
                if count > MAX_NOTEBOOKS:
                    return
                yield os.path.relpath(os.path.join(folder, name), root)


def declared_kernel(path: str) -> tuple[str, str]:
    """(kernelspec name, language) a notebook declares; ("", "") when it cannot be read."""
    try:
        if os.path.getsize(path) > MAX_NOTEBOOK_BYTES or os.path.islink(path):
            return "", ""
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f).get("metadata", {})
        spec = metadata.get("kernelspec") or {}
        language = spec.get("language") or (metadata.get("language_info") or {}).get("name") or ""
        return str(spec.get("name") or ""), str(language)
    except (OSError, ValueError, AttributeError):
        return "", ""


def python_aliases(root: str = ".") -> dict[str, list[str]]:
    """Python kernel names other than python3 that notebooks declare -> the notebooks declaring them."""
    found: dict[str, list[str]] = {}
    for path in notebooks(root):
        name, language = declared_kernel(os.path.join(root, path))
        if not name or name == "python3" or not VALID_NAME.match(name):
            continue
        if language.lower() == "python" or (not language and PYTHON_NAME.match(name)):
            found.setdefault(name, []).append(path)
    return found


def alias_script(names: list[str]) -> str:
    """The build step that installs kernelspecs ``names`` as copies of python3."""
    program = ALIAS_PROGRAM % KERNELS_DIR
    return f"{VENV}/bin/python -c {shlex.quote(program)} " + " ".join(shlex.quote(n) for n in names)


def alias_notice(found: dict[str, list[str]], python_version: str) -> str:
    """The build log's notice for the mapped names."""
    parts = []
    for name, paths in sorted(found.items()):
        shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        parts.append(f"{name} ({shown})")
    notice = (
        f"notebooks declare the kernels {'; '.join(parts)}: they run on this image's Python "
        f"{python_version} kernel under those names."
    )
    if any(name.startswith("python2") or name in ("py2", "py27") for name in found):
        notice += " Code written for Python 2 will not run unchanged on Python 3."
    return notice
