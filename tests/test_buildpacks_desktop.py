"""The desktop layer (builder/buildpacks/desktop.py): who asks for it, where it goes in the
Dockerfile, and the 'Desktop' buttons' setting."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from panbinder.builder.buildpack import PackSettings, configured_pack
from panbinder.builder.buildpacks.desktop import Desktop, requested

from .test_buildpack import BUILD_ARGS, FULL_COPY

LAYER = ("jupyter-remote-desktop-proxy==3.0.1", "jupyter-server-proxy==4.6.0")
APT = ("tigervnc-standalone-server", "xfce4", "dbus-x11", "xterm")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "analysis.ipynb").write_text("{}")
    monkeypatch.chdir(root)
    return root


def render(mode: str = "on_request", **settings) -> str:
    settings = PackSettings(
        desktop=mode, desktop_requirements=LAYER, desktop_apt_packages=APT, installer="pip", **settings
    )
    return configured_pack(settings)(base_image="base:1").render(BUILD_ARGS)


def has_layer(dockerfile: str) -> bool:
    return "tigervnc-standalone-server" in dockerfile and "jupyter-remote-desktop-proxy==3.0.1" in dockerfile


@pytest.mark.parametrize(
    "files",
    [
        {"binder/desktop": ""},
        {".binder/desktop": "yes\n"},
        {"requirements.txt": "numpy\njupyter-remote-desktop-proxy\n"},
        {"requirements.txt": "Jupyter_Remote.Desktop-Proxy>=3  # the desktop\n"},
        {"binder/requirements.txt": "jupyter-remote-desktop-proxy==3.0.1\n"},
    ],
)
def test_a_repository_asks_with_a_file_or_its_requirements(repo, files):
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    assert has_layer(render("on_request"))
    assert not has_layer(render("off"))


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"requirements.txt": "numpy\n# jupyter-remote-desktop-proxy\njupyter-server-proxy\n"},
        {"desktop/README.md": "a folder named desktop at the root\n"},
        {"binder/desktop/README.md": "a folder, not the request file\n"},
    ],
)
def test_other_repositories_get_no_desktop_unless_the_deployment_says_always(repo, files):
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    assert not has_layer(render("on_request"))
    assert has_layer(render("always"))


def test_the_layer_follows_the_server_layer_and_precedes_the_repository(repo):
    (repo / "requirements.txt").write_text("tabulate==0.9.0\njupyter-remote-desktop-proxy\n")
    lines = render("on_request").splitlines()
    server = next(i for i, ln in enumerate(lines) if "jupyterlab==" in ln)
    apt = next(i for i, ln in enumerate(lines) if "tigervnc-standalone-server" in ln)
    proxy = next(i for i, ln in enumerate(lines) if "jupyter-remote-desktop-proxy==3.0.1" in ln)
    requirements = next(i for i, ln in enumerate(lines) if "-r requirements.txt" in ln)
    assert server < apt < proxy < requirements < lines.index(FULL_COPY)
    assert lines[apt - 1] == "USER root" and "apt-get -qq install --yes --no-install-recommends" in lines[apt]
    assert lines[proxy - 1] == "USER ${NB_USER}"  # the venv and the desktop link are the user's
    assert "ln -sfn /data ${HOME}/Desktop/data" in lines[proxy]


def test_without_the_layer_the_dockerfile_is_unchanged(repo):
    """Off, or not asked for: exactly the Dockerfile of a build without the feature, so the code-only
    rebuild and every cached layer stay as they were."""
    assert render("off") == render("on_request")
    plain = configured_pack(PackSettings(installer="pip"))(base_image="base:1").render(BUILD_ARGS)
    assert render("on_request") == plain


def test_the_buttons_follow_the_mode_unless_set():
    assert not Desktop().show_buttons
    assert Desktop(config=Config({"Desktop": {"mode": "always"}})).show_buttons
    assert Desktop(config=Config({"Desktop": {"show_buttons": True}})).show_buttons
    on_request = Desktop(config=Config({"Desktop": {"mode": "always", "show_buttons": False}}))
    assert not on_request.show_buttons


def test_apply_fills_the_pack_settings():
    settings = Desktop(config=Config({"Desktop": {"mode": "always", "apt_packages": ["x"]}})).apply(
        PackSettings()
    )
    assert settings.desktop == "always" and settings.desktop_apt_packages == ("x",)
    assert settings.desktop_requirements[0].startswith("jupyter-remote-desktop-proxy==")


def test_requested_reads_no_missing_file(tmp_path):
    assert not requested("", str(tmp_path / "requirements.txt"))
    assert not requested(str(tmp_path), None)
