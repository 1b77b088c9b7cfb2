"""Every setting is listed: each trait tagged config=True, on every Configurable class of the package,
appears in ``panbinder --generate-config`` and ``panbinder --help-all``.

The classes are found by importing every module of the installed package, so a class added
anywhere (a new component, a new command) fails here until an application lists it in its
``classes``. Classes that run inside JupyterHub are the Hub's settings (set through
``HubProcess.extra_config``), not panbinder's, and are left out on purpose.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from traitlets.config import Configurable

ROOT = Path(__file__).resolve().parent.parent
# Not modules to import: a JupyterHub config file (it reads the Hub's settings at import) and
# Alembic's migration scripts (they need a migration context).
NOT_MODULES = ("panbinder.launcher.hub_config", "panbinder.data_mounts.migrations")
# Configured by the Hub's own configuration (launcher/hub_config.py), not by panbinder_config.py.
HUB_SIDE = {
    "panbinder.launcher.spawner.PanbinderSpawner",
    "panbinder.launcher.swarm.PanbinderSwarmSpawner",
    "panbinder.launcher.slurm_spawner.PanbinderSlurmSpawner",
    "panbinder.launcher.hub_app.PanbinderHub",
    "panbinder.launcher.kube.PanbinderKubeSpawner",
    "panbinder.launcher.launch_options.SignedLaunch",
}


def package_modules() -> list[str]:
    """Every module of the installed package: panbinder and the packages mapped into it."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    names = set()
    for package in mapping:
        names.add(package)
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, f"{package}."):
            names.add(info.name)
    return sorted(n for n in names if not n.startswith(NOT_MODULES) and not n.endswith("__main__"))


def configurable_classes() -> list[type[Configurable]]:
    found: dict[str, type[Configurable]] = {}
    for name in package_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            path = f"{cls.__module__}.{cls.__qualname__}"
            if (
                issubclass(cls, Configurable)
                and cls.__module__.startswith("panbinder.")
                and path not in HUB_SIDE
            ):
                found[path] = cls
    return sorted(found.values(), key=lambda c: (c.__module__, c.__qualname__))


def config_options() -> list[str]:
    """``Class.trait`` of every trait tagged config=True, on the class that declares it."""
    return sorted(
        f"{cls.__name__}.{name}"
        for cls in configurable_classes()
        for name in cls.class_own_traits(config=True)
    )


def run_panbinder(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PANBINDER_STATE": str(cwd / "state")}
    return subprocess.run(
        [sys.executable, "-m", "panbinder", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("generated")
    out = run_panbinder("--generate-config", cwd=folder)
    assert out.returncode == 0, out.stderr
    return (folder / "panbinder_config.py").read_text()


@pytest.fixture(scope="module")
def help_all(tmp_path_factory) -> str:
    out = run_panbinder("--help-all", cwd=tmp_path_factory.mktemp("help"))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_walk_finds_the_components():
    names = {cls.__name__ for cls in configurable_classes()}
    assert {
        "Archive",
        "Retention",
        "BuildKitEngine",
        "Repo2DockerBuilder",
        "HubLauncher",
        "ServeApp",
    } <= names
    assert len(config_options()) > 150


def test_no_two_configurable_classes_share_a_name():
    """Configuration is keyed by class name: two classes of one name would share their settings."""
    seen: dict[str, str] = {}
    for cls in configurable_classes():
        path = f"{cls.__module__}.{cls.__qualname__}"
        assert seen.setdefault(cls.__name__, path) == path, f"{path} and {seen[cls.__name__]}"


def test_every_setting_is_in_the_generated_config(generated):
    missing = [option for option in config_options() if f"# c.{option} = " not in generated]
    assert not missing, f"not in panbinder --generate-config: {missing}"


def test_every_setting_is_in_help_all(help_all):
    missing = [option for option in config_options() if f"--{option}=" not in help_all]
    assert not missing, f"not in panbinder --help-all: {missing}"


def test_every_setting_has_help():
    bare = [
        f"{cls.__name__}.{name}"
        for cls in configurable_classes()
        for name, trait in cls.class_own_traits(config=True).items()
        if not (trait.help or "").strip()
    ]
    assert not bare, f"settings without help: {bare}"


def test_subcommand_generate_config_writes_the_file_and_exits(tmp_path):
    """``panbinder serve --generate-config`` used to ignore the flag and start serving."""
    out = run_panbinder("serve", "--generate-config", cwd=tmp_path, timeout=30)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "panbinder_config.py").read_text()
    assert "# c.ServeApp.port = " in text
    assert "# c.Archive.root = " in text


def test_generate_config_refuses_to_overwrite(tmp_path):
    (tmp_path / "panbinder_config.py").write_text("# mine\n")
    out = run_panbinder("--generate-config", cwd=tmp_path)
    assert out.returncode == 1
    assert "exists" in out.stderr
    assert (tmp_path / "panbinder_config.py").read_text() == "# mine\n"


@pytest.mark.parametrize(
    "argv",
    [("datasets", "import", "missing.json"), ("publications", "import", "missing.json")],
    ids=["datasets", "publications"],
)
def test_a_config_file_with_a_syntax_error_stops_every_command(tmp_path, argv):
    (tmp_path / "panbinder_config.py").write_text('c.Registry.url = "http://a:5000"\nc.ServeApp.port = = 1\n')
    out = run_panbinder(*argv, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{tmp_path / 'panbinder_config.py'}, line 2" in out.stderr


def test_serve_refuses_to_start_with_a_broken_config_file(tmp_path):
    (tmp_path / "panbinder_config.py").write_text("c.ServeApp.port = undefined_name\n")
    out = run_panbinder("serve", cwd=tmp_path, timeout=30)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{tmp_path / 'panbinder_config.py'}, line 1" in out.stderr
    assert "undefined_name" in out.stderr
    assert not (tmp_path / "state" / "run").exists()  # nothing was started


# -- one meaning --------------------------------------------------------------------------------


def test_state_dir_option_reaches_every_state_default(tmp_path, monkeypatch):
    """--state-dir wins over $PANBINDER_STATE for every path under the state folder (the build
    engine's folder used to follow the environment only)."""
    from panbinder.builder.build_engine import BuildEngine
    from panbinder.builder.manager import BuildManager
    from panbinder.data_mounts.catalogue import Catalogue
    from panbinder.launcher.hub_process import HubProcess
    from panbinder.rebuild import RebuildApp
    from panbinder.registry_cache.archive import Archive

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PANBINDER_STATE", str(tmp_path / "from-env"))
    chosen = tmp_path / "chosen"
    (chosen / "node" / "bin").mkdir(parents=True)
    (chosen / "node" / "bin" / "configurable-http-proxy").touch()
    app = RebuildApp()
    app.initialize([f"--state-dir={chosen}"])
    assert BuildEngine(parent=app).state_dir == str(chosen / "build-engine")
    assert Catalogue(parent=app).url == f"sqlite:///{chosen / 'catalogue.sqlite'}"
    assert Archive(parent=app).root == str(chosen / "archives")
    assert Archive(parent=app).repo_mirror_root == str(chosen / "repo-mirrors")
    assert HubProcess(parent=app).proxy_command == [str(chosen / "node" / "bin" / "configurable-http-proxy")]
    assert BuildManager(parent=app).log_dir == str(chosen / "build-logs")
    assert BuildManager().log_dir == ""  # outside a command (tests): no logs kept anywhere


def test_a_configured_state_path_wins_over_the_state_folder(tmp_path, monkeypatch):
    from panbinder.builder.build_engine import BuildEngine
    from panbinder.rebuild import RebuildApp

    monkeypatch.chdir(tmp_path)
    app = RebuildApp()
    app.initialize([f"--state-dir={tmp_path}", "--BuildEngine.state_dir=/srv/engine"])
    assert BuildEngine(parent=app).state_dir == "/srv/engine"


def test_hub_url_set_by_the_user_is_kept(tmp_path, monkeypatch):
    """HubLauncher.hub_url used to be overwritten with the local Hub's address."""
    from panbinder.launcher.hub_api import HubLauncher
    from panbinder.service_cli import LaunchApp

    monkeypatch.chdir(tmp_path)
    app = LaunchApp()
    app.initialize([f"--state-dir={tmp_path}", "--HubLauncher.hub_url=https://hub.example.org"])
    launcher = HubLauncher(parent=app)
    launcher.use_secrets(app.secret)
    assert launcher.hub_url == "https://hub.example.org"
    assert launcher.api_token  # the service token is still filled in

    app = LaunchApp()
    app.initialize([f"--state-dir={tmp_path}", "--HubProcess.port=8123"])
    assert HubLauncher(parent=app).hub_url == "http://127.0.0.1:8123"  # default: the Hub serve runs


def test_buildkit_engine_settings_reach_the_engine_repo2docker_makes():
    """repo2docker makes its engine from its own config: the deployment's BuildKitEngine settings
    are passed on, and the build engine's client and host fill in only what is not set."""
    import logging

    from traitlets.config import Config

    from panbinder.builder.base import BuildRequest
    from panbinder.builder.r2d import Repo2DockerBuilder
    from panbinder.registry_cache import image_ref

    sha = "a" * 40
    image = image_ref(
        registry="127.0.0.1:5000", prefix="p/", provider="git", repo_url="https://x/y.git", ref=sha
    )
    request = BuildRequest(
        build_id="1",
        provider="git",
        repo_url="https://x/y.git",
        resolved_ref=sha,
        unresolved_ref=sha,
        image=image,
    )
    config = Config()
    config.BuildKitEngine.no_cache = True
    builder = Repo2DockerBuilder(config=config)
    engine = builder._engine(builder._make_r2d(request, logging.getLogger("test"), "/nonexistent"))
    assert engine.no_cache is True
    assert engine.docker_host == builder.build_engine.host
    config.BuildKitEngine.docker_host = "unix:///run/elsewhere.sock"
    builder = Repo2DockerBuilder(config=config)
    engine = builder._engine(builder._make_r2d(request, logging.getLogger("test"), "/nonexistent"))
    assert engine.docker_host == "unix:///run/elsewhere.sock"


# -- command lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (("restore", "-h"), "panbinder restore ARCHIVE [--verify-only]"),
        (("datasets", "scan", "-h"), "panbinder datasets scan ROOT"),
        (("rebuild", "-h"), "panbinder rebuild --frozen|--fresh IMAGE_OR_DOI"),
    ],
)
def test_help_starts_with_the_positional_usage(tmp_path, argv, usage):
    out = run_panbinder(*argv, cwd=tmp_path)
    assert out.stdout.startswith(f"Usage: {usage}\n"), out.stdout[:200]


def test_progress_bars_only_on_a_terminal(capsys):
    from panbinder.progress import terminal_progress

    items = [1, 2, 3]
    assert terminal_progress(items, desc="x") is items  # stderr is captured here: no bar
    assert capsys.readouterr().err == ""


def test_progress_bar_on_a_terminal(monkeypatch):
    import fcntl
    import pty
    import struct
    import termios

    from panbinder.progress import terminal_progress

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal's size
    tty = os.fdopen(slave, "w")
    monkeypatch.setattr(sys, "stderr", tty)
    try:
        assert list(terminal_progress(range(3), desc="datasets")) == [0, 1, 2]
        tty.flush()
        drawn = os.read(master, 65536).decode()
    finally:
        tty.close()
        os.close(master)
    assert "datasets:" in drawn and "/3" in drawn


# -- dependencies -------------------------------------------------------------------------------

# Imported only where they are installed on purpose: inside built images (the conda mirror's
# installer runs there with the pinned py-rattler), or optionally (HDF5 filter plugins).
NOT_DEPENDENCIES = {
    "rattler": "runs inside the image",
    "hdf5plugin": "optional, imported if present",
    "jupyter_server": "runs inside launched servers (launcher/server_changes.py)",
}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the package modules that import it (lazy imports included)."""
    found: dict[str, set[str]] = {}
    for name in package_modules():
        spec = importlib.util.find_spec(name)
        tree = ast.parse(Path(spec.origin).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in sys.stdlib_module_names and top != "panbinder" and top != "__future__":
                    found.setdefault(top, set()).add(name)
    return found


def test_every_imported_package_is_a_declared_dependency():
    declared = {
        re.split(r"[=<>!~ \[;]", d)[0].lower().replace("_", "-")
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    distributions = importlib.metadata.packages_distributions()
    undeclared = {
        module: sorted(users)
        for module, users in third_party_imports().items()
        if module not in NOT_DEPENDENCIES
        and not {d.lower().replace("_", "-") for d in distributions.get(module, [module])} & declared
    }
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"


def test_every_subpackage_is_shipped():
    """A package folder missing from pyproject.toml's list works in the editable install and is
    absent from the wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(setuptools["packages"])
    found = set(setuptools["package-dir"])
    for package in setuptools["package-dir"]:
        path = importlib.import_module(package).__path__
        found |= {i.name for i in pkgutil.walk_packages(path, f"{package}.") if i.ispkg}
    assert found <= packages, f"not in [tool.setuptools] packages: {sorted(found - packages)}"
