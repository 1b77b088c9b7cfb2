"""Pipfile.lock / Pipfile converted to a requirements file installed with pip."""

from __future__ import annotations

import json

import pytest

from panbinder.builder.buildpacks import PackSettings, PipfilePipBuildPack, configure
from panbinder.builder.buildpacks.pipfile import lock_to_requirements, pipfile_to_requirements
from panbinder.errors import PanbinderError

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}
LOCK = {
    "_meta": {"requires": {"python_version": "3.11"}},
    "default": {
        "tabulate": {"hashes": ["sha256:abc"], "version": "==0.9.0"},
        "requests": {"extras": ["socks"], "version": "==2.31.0", "markers": "python_version >= '3.8'"},
        "mylib": {"editable": True, "path": "."},
        "tool": {"git": "https://git.example.org/tool.git", "ref": "v1"},
    },
    "develop": {"pytest": {"version": "==8.0.0"}},
}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_lock_conversion():
    assert lock_to_requirements(LOCK) == [
        "-e .",
        'requests[socks]==2.31.0; python_version >= "3.8"',
        "tabulate==0.9.0",
        "tool @ git+https://git.example.org/tool.git@v1",
    ]


def test_pipfile_conversion():
    import tomllib

    pipfile = tomllib.loads(
        '[packages]\nnumpy = "*"\nscipy = ">=1.10"\nrich = {version = "==13.0", extras = ["jupyter"]}\n'
        '[dev-packages]\npytest = "*"\n'
    )
    assert pipfile_to_requirements(pipfile) == ["numpy", "scipy>=1.10", "rich[jupyter]==13.0"]


def render() -> str:
    return configure(PipfilePipBuildPack, PackSettings())(base_image="b").render(BUILD_ARGS)


def test_lock_wins_over_pipfile(repo):
    (repo / "Pipfile").write_text('[packages]\ntabulate = "*"\n')
    lock = {"default": {"tabulate": {"version": "==0.8.10"}}}
    (repo / "Pipfile.lock").write_text(json.dumps(lock))
    df = render()
    generated = ".panbinder/requirements-from-Pipfile.lock.txt"
    assert f"COPY --chown=1000:1000 src/{generated} ${{REPO_DIR}}/{generated}" in df
    assert f"-r {generated}" in df
    assert "tabulate==0.8.10" in (repo / generated).read_text()


def test_pipfile_without_lock(repo):
    (repo / "binder").mkdir()
    (repo / "binder" / "Pipfile").write_text('[packages]\ntabulate = "==0.9.0"\n')
    df = render()
    assert "-r .panbinder/requirements-from-Pipfile.txt" in df
    assert "tabulate==0.9.0" in (repo / ".panbinder/requirements-from-Pipfile.txt").read_text()


def test_local_path_in_lock_installs_after_the_full_copy(repo):
    (repo / "Pipfile.lock").write_text(json.dumps(LOCK))
    df = render()
    assert "src/.panbinder" not in df
    lines = df.splitlines()
    assert lines.index("COPY --chown=1000:1000 src/ ${REPO_DIR}/") < next(
        i for i, ln in enumerate(lines) if "-r .panbinder/requirements-from-Pipfile.lock.txt" in ln
    )


def test_broken_lock_is_a_clear_error(repo):
    (repo / "Pipfile.lock").write_text("{not json")
    with pytest.raises(PanbinderError) as e:
        render()
    assert "Pipfile.lock could not be read" in e.value.message and "pipenv lock" in e.value.message


HASHED = {
    "default": {
        "tabulate": {"hashes": ["sha256:aa", "sha256:bb"], "version": "==0.9.0"},
        "colorama": {"hashes": ["sha256:cc"], "version": "==0.4.6", "markers": "sys_platform == 'win32'"},
    }
}


def test_a_lock_whose_entries_all_have_hashes_requires_them(repo):
    (repo / "Pipfile.lock").write_text(json.dumps(HASHED))
    df = render()
    generated = ".panbinder/requirements-from-Pipfile.lock.txt"
    step = next(ln for ln in df.splitlines() if f"-r {generated}" in ln)
    assert f"--require-hashes -r {generated}" in step
    assert (repo / generated).read_text().splitlines()[1:] == [
        'colorama==0.4.6; sys_platform == "win32" --hash=sha256:cc',
        "tabulate==0.9.0 --hash=sha256:aa --hash=sha256:bb",
    ]


def test_a_lock_with_an_entry_without_hashes_leaves_them_out(repo):
    (repo / "Pipfile.lock").write_text(json.dumps(LOCK))
    df = render()
    assert "--require-hashes" not in df and "--hash=" not in df
    assert "--hash" not in (repo / ".panbinder/requirements-from-Pipfile.lock.txt").read_text()


def test_pipfile_marker_keys_become_markers():
    import tomllib

    pipfile = tomllib.loads(
        '[packages]\npywin32 = {version = "*", sys_platform = "== \'win32\'"}\n'
        'numpy = {version = ">=1.20", markers = "python_version >= \'3.9\'", platform_machine = "!= \'arm64\'"}\n'
    )
    assert pipfile_to_requirements(pipfile) == [
        'pywin32; sys_platform == "win32"',
        'numpy>=1.20; python_version >= "3.9" and platform_machine != "arm64"',
    ]


@pytest.mark.parametrize(
    "entry", ['numpy = {version = "*", markers = "python_version >>> 3"}', 'numpy = "=>1.2"']
)
def test_a_bad_marker_or_version_is_a_clear_error(repo, entry):
    (repo / "Pipfile").write_text(f"[packages]\n{entry}\n")
    with pytest.raises(PanbinderError) as e:
        render()
    assert "Pipfile has an entry panbinder cannot convert" in e.value.message


SOURCES = """
[[source]]
url = "https://pypi.org/simple"
verify_ssl = true
name = "pypi"

[[source]]
url = "{url}"
verify_ssl = {verify}
name = "facility"

[packages]
tabulate = "*"
"""


def render_with(settings: PackSettings) -> str:
    return configure(PipfilePipBuildPack, settings)(base_image="b").render(BUILD_ARGS)


def test_pypi_source_means_the_deployments_index(repo):
    (repo / "Pipfile").write_text(
        '[[source]]\nurl = "https://pypi.org/simple"\nname = "pypi"\n[packages]\nx = "*"\n'
    )
    render_with(PackSettings(index_url="https://mirror.facility.eu/simple"))
    text = (repo / ".panbinder/requirements-from-Pipfile.txt").read_text()
    assert "--extra-index-url" not in text and "--index-url" not in text


def test_an_allowed_source_is_an_extra_index_with_its_verify_ssl(repo):
    url = "http://bot:t0k3n@pkgs.facility.eu:8080/simple"
    (repo / "Pipfile").write_text(SOURCES.format(url=url, verify="false"))
    settings = PackSettings(allowed_index_hosts=("*.facility.eu",))
    notices: list[str] = []
    pack = configure(PipfilePipBuildPack, settings)(base_image="b")
    pack.build_log = type("L", (), {"info": lambda self, m, **kw: notices.append(m)})()
    pack.render(BUILD_ARGS)
    lines = (repo / ".panbinder/requirements-from-Pipfile.txt").read_text().splitlines()
    assert lines[1:] == [f"--extra-index-url {url}", "--trusted-host pkgs.facility.eu:8080", "tabulate"]
    (message,) = [n for n in notices if "package indexes" in n]
    assert "pkgs.facility.eu:8080" in message and "verify_ssl = false" in message and "t0k3n" not in message


def test_the_deployments_own_index_host_is_allowed(repo):
    (repo / "Pipfile").write_text(SOURCES.format(url="https://mirror.facility.eu/simple", verify="true"))
    render_with(PackSettings(index_url="https://u:p@mirror.facility.eu/simple"))
    text = (repo / ".panbinder/requirements-from-Pipfile.txt").read_text()
    assert "--extra-index-url https://mirror.facility.eu/simple" in text and "--trusted-host" not in text


def test_a_source_on_another_host_fails_naming_host_and_setting(repo):
    (repo / "Pipfile").write_text(
        SOURCES.format(url="https://me:s3cret@evil.example.org/simple", verify="true")
    )
    with pytest.raises(PanbinderError) as e:
        render_with(PackSettings(allowed_index_hosts=("*.facility.eu",)))
    assert e.value.reason == "index_not_allowed"
    assert (
        "evil.example.org" in e.value.message and "Repo2DockerBuilder.allowed_index_hosts" in e.value.message
    )
    assert "s3cret" not in e.value.message


def test_lock_sources_are_read_too(repo):
    lock = {"_meta": {"sources": [{"name": "x", "url": "https://other.example/simple", "verify_ssl": True}]}}
    (repo / "Pipfile.lock").write_text(json.dumps({**lock, "default": {"tabulate": {"version": "==0.9.0"}}}))
    with pytest.raises(PanbinderError, match=r"other\.example"):
        render_with(PackSettings())


@pytest.mark.parametrize("url", ["https://${USER}:${PASS}@pkgs.facility.eu/simple", "file:///srv/index"])
def test_a_source_builds_cannot_use_is_a_clear_error(repo, url):
    (repo / "Pipfile").write_text(SOURCES.format(url=url, verify="true"))
    with pytest.raises(PanbinderError) as e:
        render_with(PackSettings(allowed_index_hosts=("*",)))
    assert e.value.reason == "pipfile_source" and "facility" in e.value.message
