"""Configuration of the ``panbinder`` application (panbinder/cli.py, serve.py, service_cli.py, components.py)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from panbinder.builder.manager import BuildManager
from panbinder.builder.r2d import Repo2DockerBuilder
from panbinder.cli import PanbinderApp
from panbinder.launcher.hub_api import HubLauncher
from panbinder.launcher.hub_process import HubProcess
from panbinder.providers.git import GitProvider
from panbinder.registry_cache import Registry
from panbinder.serve import ServeApp
from panbinder.service_cli import BuildApp

DOCUMENTED_TRAITS = [
    (Registry, "Registry.url"),
    (Repo2DockerBuilder, "Repo2DockerBuilder.ca_bundle"),
    (Repo2DockerBuilder, "Repo2DockerBuilder.index_url"),
    (Repo2DockerBuilder, "Repo2DockerBuilder.server_requirements"),
    (HubProcess, "HubProcess.mem_limit"),
    (ServeApp, "ServeApp.cors_allow_origin"),
    (GitProvider, "GitProvider.allow_local"),
    (HubLauncher, "HubLauncher.launch_timeout"),
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No stray panbinder_config.py from the caller; undo the 'panbinder' logger changes."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PANBINDER_STATE", str(tmp_path / "state"))
    log = logging.getLogger("panbinder")
    handlers, propagate, level = list(log.handlers), log.propagate, log.level
    yield
    log.handlers[:] = handlers
    log.propagate = propagate
    log.setLevel(level)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "site" / "panbinder_config.py"
    path.parent.mkdir()
    path.write_text(
        'c.Registry.url = "https://registry.example.org:5443"\n'
        'c.HubProcess.mem_limit = "4G"\n'
        'c.Repo2DockerBuilder.index_url = "https://pypi.example.org/simple"\n'
        'c.PanbinderBase.image_prefix = "site/v1-"\n'
    )
    return path


@pytest.mark.parametrize(("cls", "option"), DOCUMENTED_TRAITS, ids=[o for _, o in DOCUMENTED_TRAITS])
def test_trait_is_documented_in_its_config_section(cls, option):
    section = cls.class_config_section()
    name = option.split(".", 1)[1]
    assert f"# c.{option} = " in section
    assert cls.class_traits(config=True)[name].help.split()[0] in section


def test_help_all_lists_the_component_options():
    out = subprocess.run(
        [sys.executable, "-m", "panbinder", "--help-all"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for _, option in DOCUMENTED_TRAITS:
        assert f"--{option}=" in out.stdout


def test_generated_config_lists_the_component_options():
    text = PanbinderApp().generate_config_file()
    for _, option in DOCUMENTED_TRAITS:
        assert f"# c.{option} = " in text


def test_help_all_runs_and_lists_the_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "panbinder", "--help-all"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "serve\n    Run the portal and JupyterHub in the foreground." in out.stdout
    assert "--PanbinderBase.image_prefix=" in out.stdout


def test_config_file_is_applied_to_components(config_file):
    app = BuildApp()
    app.initialize(["--config", str(config_file)])
    assert app.config.Registry.url == "https://registry.example.org:5443"
    registry = Registry(parent=app)
    assert registry.url == "https://registry.example.org:5443"
    assert registry.host == "registry.example.org:5443"
    assert HubProcess(parent=app).mem_limit == "4G"
    assert Repo2DockerBuilder(parent=app).index_url == "https://pypi.example.org/simple"
    assert app.image_prefix == "site/v1-"


def test_config_file_is_applied_through_the_subcommand(config_file):
    app = PanbinderApp()
    app.initialize(["build", "--config", str(config_file), "https://example.org/repo.git", "main"])
    assert isinstance(app.subapp, BuildApp)
    assert app.subapp.extra_args == ["https://example.org/repo.git", "main"]
    assert Registry(parent=app.subapp).url == "https://registry.example.org:5443"


def test_command_line_wins_over_config_file(config_file):
    app = BuildApp()
    app.initialize(["--config", str(config_file), "--Registry.url=http://cli.example.org:5000"])
    assert Registry(parent=app).url == "http://cli.example.org:5000"
    assert HubProcess(parent=app).mem_limit == "4G"


def test_config_file_in_the_working_directory_is_read_by_default(tmp_path):
    (tmp_path / "panbinder_config.py").write_text('c.Registry.url = "http://cwd.example.org:5000"\n')
    app = BuildApp()
    app.initialize([])
    assert Registry(parent=app).url == "http://cwd.example.org:5000"


def test_defaults_without_config_file():
    app = BuildApp()
    app.initialize([])
    assert Registry(parent=app).url == "http://127.0.0.1:5000"
    assert app.image_prefix == "panbinder/v1-"


def test_missing_explicit_config_file_exits(tmp_path):
    app = BuildApp()
    with pytest.raises(SystemExit) as info:
        app.initialize(["--config", str(tmp_path / "missing.py")])
    assert info.value.code == 1


def test_state_dir_from_environment(tmp_path):
    app = BuildApp()
    app.initialize([])
    assert app.state_dir == str(tmp_path / "state")


def test_components_use_the_configured_classes(config_file):
    app = BuildApp()
    app.initialize(["--config", str(config_file)])
    ctx = app.components.pipeline
    assert isinstance(ctx.registry, Registry)
    assert ctx.registry.url == "https://registry.example.org:5443"
    assert isinstance(ctx.manager, BuildManager)
    assert isinstance(ctx.manager.builder, Repo2DockerBuilder)
    assert ctx.manager.builder.index_url == "https://pypi.example.org/simple"
    assert isinstance(ctx.launcher, HubLauncher)
    assert ctx.image_prefix == "site/v1-"


def test_maintenance_commands_do_not_load_the_builder_or_the_portal():
    code = (
        "import sys; from panbinder.cli import main\n"
        "try:\n    main(['restore', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('repo2docker', 'panbinder.serve', 'panbinder.components', 'panbinder.web.app', 'jupyterhub')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
