"""The deployment's package index credentials: a BuildKit secret, never in the Dockerfile."""

from __future__ import annotations

import os
import subprocess
import urllib.request

import pytest

from panbinder.builder.buildpack import PackSettings, configured_pack
from panbinder.builder.buildpacks import environment_yml, index_auth
from panbinder.builder.engine import BuildKitEngine
from panbinder.errors import PanbinderError

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}
TOKEN = "t0ps3cret-index"
PRIVATE = f"https://reader:{TOKEN}@pypi.facility.example:8443/simple/"
EXTRA = "https://bot:p%40ss@extra.example/simple"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text("numpy\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_split_credentials_keeps_host_port_and_path():
    public, creds = index_auth.split_credentials(PRIVATE)
    assert public == "https://pypi.facility.example:8443/simple/"
    assert creds == index_auth.IndexCredentials("pypi.facility.example:8443", "reader", TOKEN)
    assert TOKEN not in repr(creds)
    assert index_auth.split_credentials("https://pypi.org/simple") == ("https://pypi.org/simple", None)
    assert index_auth.split_credentials(EXTRA)[1].password == "p@ss"


def test_netrc_names_each_host_once_without_its_port():
    settings = PackSettings(index_url=PRIVATE, extra_index_urls=(EXTRA, "https://open.example/simple"))
    creds = index_auth.credentials_of(settings)
    assert index_auth.netrc_text(creds) == (
        f"machine pypi.facility.example login reader password {TOKEN}\n"
        "machine extra.example login bot password p@ss\n"
    )


def test_a_credential_with_white_space_is_an_operator_error(tmp_path):
    creds = (index_auth.IndexCredentials("h", "a b", "c"),)
    with pytest.raises(PanbinderError) as e:
        index_auth.write_netrc(creds, str(tmp_path))
    assert "index_url" in e.value.log_message and "a b" not in e.value.message


def test_written_netrc_is_readable_by_its_owner_only(tmp_path):
    path = index_auth.write_netrc(index_auth.credentials_of(PackSettings(index_url=PRIVATE)), str(tmp_path))
    assert os.stat(path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_the_dockerfile_names_the_index_without_credentials_and_mounts_the_secret(repo, installer):
    settings = PackSettings(index_url=PRIVATE, extra_index_urls=(EXTRA,), installer=installer, as_of="off")
    df = configured_pack(settings)(base_image="base:1").render(BUILD_ARGS)
    assert TOKEN not in df and "p%40ss" not in df and "p@ss" not in df
    assert "ENV PIP_INDEX_URL=https://pypi.facility.example:8443/simple/" in df
    assert "ENV PIP_EXTRA_INDEX_URL=https://extra.example/simple" in df
    assert f"ENV NETRC={index_auth.SECRET_TARGET}" in df
    mount = f"--mount=type=secret,id={index_auth.SECRET_ID},target={index_auth.SECRET_TARGET},uid=1000"
    installs = [ln for ln in df.splitlines() if ln.startswith("RUN ") and "pip install" in ln]
    assert installs and all(mount in ln for ln in installs), installs


def test_without_credentials_nothing_changes(repo):
    df = configured_pack(PackSettings(index_url="https://pypi.org/simple"))(base_image="base:1").render(
        BUILD_ARGS
    )
    assert "type=secret" not in df and "NETRC" not in df


def test_the_engine_passes_its_secrets_to_docker_build(monkeypatch):
    seen = []
    monkeypatch.setattr(
        "panbinder.builder.engine.run_streaming", lambda args, **kw: seen.append(args) or iter(())
    )
    engine = BuildKitEngine.__new__(BuildKitEngine)  # no docker client: only the command line matters
    monkeypatch.setattr(BuildKitEngine, "command", ["docker"])
    engine.secrets = {index_auth.SECRET_ID: "/tmp/x/index.netrc"}
    list(engine.build(tag="t:1", path="."))
    assert f"id={index_auth.SECRET_ID},src=/tmp/x/index.netrc" in seen[0]
    assert seen[0][seen[0].index(f"id={index_auth.SECRET_ID},src=/tmp/x/index.netrc") - 1] == "--secret"


def test_index_look_ups_send_the_credentials_as_a_header(monkeypatch):
    sent = []

    class Answer:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(request, **kw):
        sent.append(request)
        return Answer()

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert environment_yml.exists_on_index("numpy", PackSettings(index_url=PRIVATE))
    (request,) = sent
    assert request.full_url == "https://pypi.facility.example:8443/simple/numpy/"
    assert request.unredirected_hdrs["Authorization"].startswith("Basic ")
