"""The Dockerfile rendered by the Debian + pip build pack (builder/buildpack.py)."""

from __future__ import annotations

import shlex

import pytest

from panbinder.builder.buildpack import CA_IN_IMAGE, VENV, PackSettings, configured_pack

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}
FULL_COPY = "COPY --chown=1000:1000 src/ ${REPO_DIR}/"
CA_VARS = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """An empty repository checkout as the current directory (repo2docker reads files from cwd)."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "analysis.ipynb").write_text("{}")
    monkeypatch.chdir(root)
    return root


def render(**settings) -> str:
    return configured_pack(PackSettings(**settings))(base_image="base:1").render(BUILD_ARGS)


def install_line(dockerfile: str, path: str) -> int:
    """Index of the RUN line that pip-installs ``path``."""
    lines = dockerfile.splitlines()
    matches = [
        i
        for i, ln in enumerate(lines)
        if ln.startswith("RUN ") and f"pip install --no-warn-script-location -r {path}" in ln
    ]
    assert len(matches) == 1, f"expected one install of {path}, got {matches}"
    return matches[0]


def line_of(dockerfile: str, text: str) -> int:
    lines = dockerfile.splitlines()
    matches = [i for i, ln in enumerate(lines) if ln == text]
    assert len(matches) == 1, f"expected one line {text!r}, got {matches}"
    return matches[0]


def test_from_base_image(repo):
    df = render()
    assert "\nFROM base:1\n" in df


def test_configured_pack_carries_settings_without_touching_the_base_class():
    from panbinder.builder.buildpack import DebianPipBuildPack

    settings = PackSettings(index_url="https://pypi.example.org/simple")
    pack = configured_pack(settings)
    assert issubclass(pack, DebianPipBuildPack)
    assert pack.settings is settings
    assert DebianPipBuildPack.settings == PackSettings()


def test_plain_requirements_installed_before_the_repository_is_copied(repo):
    (repo / "requirements.txt").write_text("numpy==2.0\n# a comment\nscipy>=1.10\n")
    df = render()
    copy_req = line_of(df, "COPY --chown=1000:1000 src/requirements.txt ${REPO_DIR}/requirements.txt")
    install = install_line(df, "requirements.txt")
    full_copy = line_of(df, FULL_COPY)
    assert copy_req < install < full_copy


@pytest.mark.parametrize(
    "local_line",
    [
        "-e .",
        "--editable .",
        "--editable=./subpkg",
        ".",
        "./subpkg",
        "-r other.txt",
        "-rother.txt",
        "-c constraints.txt",
        "--constraint=constraints.txt",
        "subpkg @ file:///home/jovyan/subpkg",
    ],
)
def test_requirements_referring_to_the_repository_installed_after_the_full_copy(repo, local_line):
    (repo / "requirements.txt").write_text(f"numpy==2.0\n{local_line}\n")
    df = render()
    assert "src/requirements.txt" not in df
    assert install_line(df, "requirements.txt") > line_of(df, FULL_COPY)


@pytest.mark.parametrize(
    "line",
    [
        "-e git+https://github.com/org/pkg.git#egg=pkg",
        "--pre",
        "# -r other.txt, a comment",
        "--extra-index-url https://pypi.example.org/simple",
        "pkg @ https://example.org/pkg-1.0.tar.gz",
    ],
)
def test_requirements_that_refer_to_no_local_file_keep_their_own_layer(repo, line):
    """repo2docker's is_local_pip_requirement decides, as in its PythonBuildPack."""
    (repo / "requirements.txt").write_text(f"numpy==2.0\n{line}\n")
    df = render()
    assert install_line(df, "requirements.txt") < line_of(df, FULL_COPY)


def test_binder_requirements_win_over_root(repo):
    (repo / "requirements.txt").write_text("rootonly==1\n")
    (repo / "binder").mkdir()
    (repo / "binder" / "requirements.txt").write_text("numpy==2.0\n")
    df = render()
    assert "-r requirements.txt" not in df
    copy_req = line_of(
        df, "COPY --chown=1000:1000 src/binder/requirements.txt ${REPO_DIR}/binder/requirements.txt"
    )
    assert copy_req < install_line(df, "binder/requirements.txt") < line_of(df, FULL_COPY)


def test_no_requirements_no_install(repo):
    df = render()
    assert " -r " not in df
    assert "requirements.txt" not in df


def test_ca_bundle_absent_by_default(repo):
    df = render()
    for name in CA_VARS:
        assert name not in df
    assert CA_IN_IMAGE not in df


def test_ca_bundle_copied_and_named_when_set(repo, tmp_path):
    bundle = tmp_path / "corp-ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    df = render(ca_bundle=str(bundle))
    for name in CA_VARS:
        assert f"ENV {name}={CA_IN_IMAGE}" in df
    copies = [ln for ln in df.splitlines() if ln.startswith("COPY") and ln.endswith(f" {CA_IN_IMAGE}")]
    assert len(copies) == 1
    assert copies[0].startswith("COPY --chown=1000:1000 build_script_files/")
    # the certificate is in place before the server requirements are installed
    venv_step = next(i for i, ln in enumerate(df.splitlines()) if "python3 -m venv" in ln)
    assert df.splitlines().index(copies[0]) < venv_step


def env_values(dockerfile: str) -> dict[str, str]:
    """The ENV instructions as Docker reads them (``ENV a=1 b="x y"``: shell-like words)."""
    values: dict[str, str] = {}
    for line in dockerfile.splitlines():
        if line.startswith("ENV ") and "\\" not in line:
            for word in shlex.split(line[4:]):
                assert "=" in word, f"Docker rejects {line!r}: {word!r} is not name=value"
                name, _, value = word.partition("=")
                values[name] = value
    return values


def test_index_url(repo):
    df = render(index_url="https://pypi.example.org/simple", extra_index_urls=("https://a/simple",))
    env = env_values(df)
    assert env["PIP_INDEX_URL"] == "https://pypi.example.org/simple"
    assert env["PIP_EXTRA_INDEX_URL"] == "https://a/simple"


def test_several_extra_index_urls_render_as_one_valid_env(repo):
    df = render(extra_index_urls=("https://a/simple", "https://b/simple"))
    assert env_values(df)["PIP_EXTRA_INDEX_URL"] == "https://a/simple https://b/simple"


def test_no_index_url_by_default(repo):
    df = render()
    assert "PIP_INDEX_URL" not in df
    assert "PIP_EXTRA_INDEX_URL" not in df


def test_server_requirements_in_the_venv_build_step(repo):
    df = render(server_requirements=("jupyterhub==9.9.9", "jupyterlab==1.2.3"), drop_packages=("lark",))
    venv_steps = [ln for ln in df.splitlines() if ln.startswith("RUN ") and f"python3 -m venv {VENV}" in ln]
    assert len(venv_steps) == 1
    step = venv_steps[0]
    assert "pip install --no-warn-script-location jupyterhub==9.9.9 jupyterlab==1.2.3" in step
    assert step.endswith(f"{VENV}/bin/pip uninstall -y -q lark")
    assert "--mount=type=cache,target=/tmp/pip-cache,uid=1000,gid=1000" in step


def test_venv_built_as_the_user_and_before_the_repository(repo):
    (repo / "requirements.txt").write_text("numpy==2.0\n")
    lines = render().splitlines()
    venv_step = next(i for i, ln in enumerate(lines) if "python3 -m venv" in ln)
    assert "USER ${NB_USER}" in lines[:venv_step]
    last_user = [ln for ln in lines[:venv_step] if ln.startswith("USER ")][-1]
    assert last_user == "USER ${NB_USER}"
    assert venv_step < install_line("\n".join(lines), "requirements.txt")


def test_profile_d_puts_the_venv_on_path(repo):
    df = render()
    assert (
        "RUN echo 'export PATH=\"${HOME}/.local/bin:${REPO_DIR}/.local/bin:/srv/venv/bin:${PATH}\"' "
        "> /etc/profile.d/00-panbinder-venv.sh"
    ) in df
    assert f"ENV VIRTUAL_ENV={VENV}" in df
    assert f"ENV PATH={VENV}/bin:${{PATH}}" in df


def test_uid_setting_used_for_the_pip_cache_mount(repo):
    (repo / "requirements.txt").write_text("numpy==2.0\n")
    df = render(uid=4242)
    line = df.splitlines()[install_line(df, "requirements.txt")]
    assert "--mount=type=cache,target=/tmp/pip-cache,uid=4242,gid=4242" in line
