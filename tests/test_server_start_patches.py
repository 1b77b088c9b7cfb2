"""The single-user server's start patches (builder/buildpacks/server_start_patches.py): the lazy Hub
imports applied to a copy of the JupyterHub this project pins (the one images install), and the
JupyterLab and jupyter-lsp patches applied to stand-ins of the lines they change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jupyterhub
import pytest

from panbinder.builder.buildpacks import server_start_patches
from tests.test_buildpack import render

HUB_ONLY = ("sqlalchemy.engine", "sqlalchemy.orm", "alembic", "jupyterhub.orm", "aiohttp")


@pytest.fixture(scope="module")
def patched_copy(tmp_path_factory) -> Path:
    """A folder whose ``jupyterhub`` package is a patched copy of the installed one."""
    root = tmp_path_factory.mktemp("hub")
    shutil.copytree(Path(jupyterhub.__file__).parent, root / "jupyterhub")
    out = run(root, str(Path(server_start_patches.SOURCE)))
    assert "lazy Hub imports applied to 9 files" in out, out
    return root


def run(root: Path, *args: str) -> str:
    """``python ARGS`` with ``root`` first on the path (its jupyterhub package is the one used)."""
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def loaded_after(root: Path, statement: str) -> dict[str, bool]:
    """Which Hub-only modules ``statement`` really executes (a lazy module not yet used is not)."""
    code = (
        "import json, sys\n"
        f"{statement}\n"
        "def executed(name):\n"
        "    m = sys.modules.get(name)\n"
        "    return m is not None and type(m).__name__ != '_LazyModule'\n"
        f"print(json.dumps({{n: executed(n) for n in {list(HUB_ONLY)!r}}}))\n"
    )
    return json.loads(run(root, "-c", code).strip().splitlines()[-1])


def test_the_single_user_extension_loads_without_the_hub_database_and_aiohttp(patched_copy):
    statement = "import jupyter_server.serverapp\nfrom jupyterhub.singleuser import main\nmain.__name__"
    assert loaded_after(patched_copy, statement) == dict.fromkeys(HUB_ONLY, False)


def test_the_stock_package_loads_them(tmp_path):
    """The check above can fail: unpatched, the same import executes every Hub-only module."""
    shutil.copytree(Path(jupyterhub.__file__).parent, tmp_path / "jupyterhub")
    statement = "import jupyter_server.serverapp\nfrom jupyterhub.singleuser import main"
    assert loaded_after(tmp_path, statement) == dict.fromkeys(HUB_ONLY, True)


def test_hub_side_modules_still_work_when_patched(patched_copy):
    """The Hub's own modules load the lazy ones on first use; the legacy mixins still import."""
    statement = (
        "import jupyterhub.app, jupyterhub.scopes as s, jupyterhub.metrics as m\n"
        "from jupyterhub.singleuser import make_singleuser_app, HubAuthenticatedHandler\n"
        "assert s.orm.User.__name__ == 'User' and s.roles.get_roles_for and m.orm.Base\n"
        "from jupyterhub.log import _is_health_check\n"
        "from jupyterhub.handlers.pages import HealthCheckHandler\n"
        "assert _is_health_check(HealthCheckHandler.__new__(HealthCheckHandler))"
    )
    assert loaded_after(patched_copy, statement)["jupyterhub.orm"]


def test_applying_twice_changes_nothing(patched_copy):
    before = {p: p.read_text() for p in patched_copy.rglob("*.py")}
    out = run(patched_copy, str(Path(server_start_patches.SOURCE)))
    assert "not applied" in out
    assert {p: p.read_text() for p in patched_copy.rglob("*.py")} == before


def test_another_jupyterhub_is_left_as_it_is(tmp_path):
    """A version the hunks do not match: nothing changes, the server starts as before."""
    shutil.copytree(Path(jupyterhub.__file__).parent, tmp_path / "jupyterhub")
    log = tmp_path / "jupyterhub" / "log.py"
    log.write_text(log.read_text().replace("from .handlers.pages import", "from .handlers import"))
    before = {p: p.read_text() for p in tmp_path.rglob("*.py")}
    assert "not applied (log.py" in run(tmp_path, str(Path(server_start_patches.SOURCE)))
    assert {p: p.read_text() for p in tmp_path.rglob("*.py")} == before


def test_diff_for_upstream(tmp_path):
    shutil.copytree(Path(jupyterhub.__file__).parent, tmp_path / "jupyterhub")
    diff = run(tmp_path, str(Path(server_start_patches.SOURCE)), "--diff")
    assert "+++ b/jupyterhub/_lazy.py" in diff and "-from .handlers.pages import HealthCheckHandler" in diff
    assert not (tmp_path / "jupyterhub" / "_lazy.py").exists()  # --diff only prints


def test_every_image_applies_it_after_the_server_install():
    lines = render().splitlines()
    copy = [i for i, ln in enumerate(lines) if ln.startswith("COPY") and server_start_patches.IN_IMAGE in ln]
    install = [i for i, ln in enumerate(lines) if "jupyterhub==" in ln and ln.startswith("RUN")]
    patch = [i for i, ln in enumerate(lines) if server_start_patches.build_script("/srv/venv") in ln]
    assert len(copy) == len(install) == len(patch) == 1
    assert copy[0] < install[0] < patch[0]


# JupyterLab's handler as 4.6 has it, down to the lines the patch changes; the default registry
# stands for the run of yarn it costs
FAKE_LAB_COMMANDS = '''\
yarn_runs = []


class AppOptions:
    logger = kill_event = None

    def __init__(self):
        self._registry = None

    @property
    def registry(self):
        if self._registry is None:
            yarn_runs.append(1)
            self._registry = "https://registry.yarnpkg.com"
        return self._registry

    @registry.setter
    def registry(self, value):
        self._registry = value


class _AppHandler:
    def __init__(self, options):
        """Create a new _AppHandler object"""
        options = options or AppOptions()
        self._options = options
        self.kill_event = options.kill_event
        self.registry = options.registry
        self.info = {"version": "4.6.6"}
'''


def fake_lab(root: Path) -> Path:
    (root / "jupyterlab").mkdir()
    (root / "jupyterlab" / "__init__.py").write_text('__version__ = "4.6.6"\n')
    (root / "jupyterlab" / "commands.py").write_text(FAKE_LAB_COMMANDS)
    (root / "jupyterhub").mkdir()  # not the installed one, which the script would patch
    (root / "jupyterhub" / "__init__.py").write_text('__version__ = "0"\n')
    return root


def test_jupyterlab_reads_the_npm_registry_on_first_use(tmp_path):
    root = fake_lab(tmp_path)
    probe = (
        "from jupyterlab import commands as c\n"
        "h = c._AppHandler(None)\nmade = len(c.yarn_runs)\n"
        "first = h.registry\nh.registry = 'https://npm.example.org'\n"
        "print(made, len(c.yarn_runs), first, h._options.registry)"
    )
    unpatched = run(root, "-c", probe).split()
    assert unpatched == ["1", "1", "https://registry.yarnpkg.com", "https://registry.yarnpkg.com"]
    out = run(root, str(Path(server_start_patches.SOURCE)))
    assert "jupyterlab 4.6.6: lazy npm registry applied to 1 files" in out, out
    assert "jupyterhub 0: lazy Hub imports not applied" in out  # each package on its own terms
    assert run(root, "-c", probe).split() == [
        "0",
        "1",
        "https://registry.yarnpkg.com",
        "https://npm.example.org",
    ]
    assert "lazy npm registry not applied" in run(root, str(Path(server_start_patches.SOURCE)))


# jupyter-lsp 2.3's npm prefix look-up, down to the lines the patch changes; the run of npm is
# counted instead of made
FAKE_LSP_TYPES = """\
import json
import pathlib
from functools import lru_cache

Text = str
npm_runs = []


class LanguageServerManagerAPI:
    @lru_cache(maxsize=1)
    def _npm_prefix(self, npm: Text):
        try:
            npm_runs.append(npm)
            return "/usr/local"
        except Exception:
            return None
"""


@pytest.mark.parametrize("variable", ["NPM_CONFIG_PREFIX", "npm_config_prefix"])
def test_jupyter_lsp_reads_npm_s_prefix_from_the_environment(tmp_path, variable):
    (tmp_path / "jupyter_lsp").mkdir()
    (tmp_path / "jupyter_lsp" / "__init__.py").write_text('__version__ = "2.3.1"\n')
    (tmp_path / "jupyter_lsp" / "types.py").write_text(FAKE_LSP_TYPES)
    (tmp_path / "lab").mkdir()
    fake_lab(tmp_path / "lab")  # a stand-in Hub beside it, never the installed one
    probe = (
        "import os\nfrom jupyter_lsp import types as t\n"
        f"os.environ[{variable!r}] = os.environ['PREFIX_GIVEN']\n"
        "print(t.LanguageServerManagerAPI()._npm_prefix('npm'), len(t.npm_runs))"
    )
    out = run_with(tmp_path, probe, PREFIX_GIVEN="/home/jovyan/.local")
    assert out.split() == ["/usr/local", "1"]  # unpatched: npm runs
    applied = run_with(tmp_path, str(Path(server_start_patches.SOURCE)))
    assert "jupyter_lsp 2.3.1: npm prefix from the environment applied to 1 files" in applied, applied
    assert run_with(tmp_path, probe, PREFIX_GIVEN="/home/jovyan/.local").split() == [
        "/home/jovyan/.local",
        "0",
    ]
    without = probe.replace(f"os.environ[{variable!r}] = os.environ['PREFIX_GIVEN']\n", "")
    assert run_with(tmp_path, without).split() == ["/usr/local", "1"]  # no variable: npm, as before


def run_with(root: Path, code_or_script: str, **env: str) -> str:
    args = [code_or_script] if code_or_script.endswith(".py") else ["-c", code_or_script]
    environment = {"PYTHONPATH": f"{root}:{root / 'lab'}", "PATH": "/usr/bin:/bin", **env}
    proc = subprocess.run(
        [sys.executable, *args], env=environment, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
