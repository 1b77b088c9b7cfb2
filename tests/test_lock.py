"""Environment locks: parsing, diffs, derived tags, the frozen pack's inputs, catalogue storage,
the image label."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess

import pytest
from repo2docker.engine import BuildError

from panbinder.builder import lock as lock_module
from panbinder.builder.base import BuildRequest
from panbinder.builder.buildpacks.frozen import FROZEN_IN_IMAGE, apt_pins, frozen_pack, frozen_requirements
from panbinder.builder.buildpacks.settings import BASE_IMAGE, PackSettings
from panbinder.builder.cancel import BuildCancelled
from panbinder.builder.labelling import label_and_push, label_build_args
from panbinder.builder.lock import (
    LABEL,
    PROBE,
    SEPARATOR,
    LockCapture,
    diff_locks,
    format_diff,
    image_lock,
    is_empty,
    lock_from_inspect,
    lock_label,
    parse_freeze,
    parse_lock_label,
    parse_probe,
    pushed_digest,
)
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.errors import PanbinderError
from panbinder.registry_cache import ImageRef
from panbinder.registry_cache.naming import derived_ref, parse_image
from tests.support import machine_build_engine

DIGEST = "sha256:" + "ab" * 32
# images are built, labelled and probed in the build engine, never in the one that runs servers
DOCKER = machine_build_engine().command()


def lock(pip: list[str], dpkg: dict[str, str], **extra) -> dict:
    return {
        "lock_version": 1,
        "image": "127.0.0.1:5000/x:1",
        "digest": DIGEST,
        "created": "2026-01-01T00:00:00+00:00",
        "python": "3.11.2",
        "pip": pip,
        "dpkg": dpkg,
        "base_image": {"name": "panbinder-base:bookworm-1", "id": "sha256:base"},
        **extra,
    }


def test_parse_probe_splits_the_three_sections():
    out = (
        f"3.11.2\n{SEPARATOR}\ntabulate==0.9.0\nJinja2==3.1.6\n{SEPARATOR}\nbash=5.2.15-2+b2\nlibc6=2.36-9\n"
    )
    parsed = parse_probe(out)
    assert parsed == {
        "python": "3.11.2",
        "pip": ["Jinja2==3.1.6", "tabulate==0.9.0"],
        "dpkg": {"bash": "5.2.15-2+b2", "libc6": "2.36-9"},
    }


def test_a_direct_url_with_credentials_is_locked_without_them():
    out = f"3.11.2\n{SEPARATOR}\nmine @ https://alice:s3cr3t@pkgs.example.org/mine-1.0.whl\n{SEPARATOR}\n"
    assert parse_probe(out)["pip"] == ["mine @ https://alice:[secret]@pkgs.example.org/mine-1.0.whl"]


CONDA_META = {
    "panbinder-probe": ["1.0", "0", "http://m.example/conda-forge/", "noarch", ""],
    "numpy": [
        "2.1.0",
        "py311h1_0",
        "",
        "",
        "http://m.example/conda-forge/linux-64/numpy-2.1.0-py311h1_0.conda",
    ],
}


def test_parse_probe_reads_the_conda_sections():
    out = (
        f"3.11.2\n{SEPARATOR}\ntabulate==0.9.0\n{SEPARATOR}\nbash=5.2\n{SEPARATOR}\n{json.dumps(CONDA_META)}\n"
        f"{SEPARATOR}\npip==25.0\nNumPy==2.1.0\n"
    )
    parsed = parse_probe(out)
    assert parsed["conda"] == {
        "numpy": "2.1.0=py311h1_0 http://m.example/conda-forge/linux-64",
        "panbinder-probe": "1.0=0 http://m.example/conda-forge/noarch",
    }
    assert parsed["conda_pip"] == ["NumPy==2.1.0", "pip==25.0"]
    assert parsed["pip"] == ["tabulate==0.9.0"] and parsed["dpkg"] == {"bash": "5.2"}


def test_parse_probe_without_a_conda_environment_has_no_conda_sections():
    out = f"3.11.2\n{SEPARATOR}\ntabulate==0.9.0\n{SEPARATOR}\nbash=5.2\n{SEPARATOR}\n{SEPARATOR}\n"
    assert sorted(parse_probe(out)) == ["dpkg", "pip", "python"]
    no_python = out.replace(f"{SEPARATOR}\n{SEPARATOR}", f"{SEPARATOR}\n{{}}\n{SEPARATOR}")
    assert parse_probe(no_python)["conda"] == {} and "conda_pip" not in parse_probe(no_python)


def test_bad_as_of_lines_are_skipped_and_logged(caplog):
    """The repository's build code can write the as-of record: a bad line costs only that line."""
    good = {"file": "requirements.txt", "requested": "2019-03-04T09:00:00Z", "used": "2019-03-04T09:00:00Z"}
    lines = [
        "{not json",
        json.dumps({"file": "a.txt", "used": "2019-01-01 --index-url=https://evil.example"}),
        json.dumps({"file": ["not a name"], "used": None}),
        json.dumps(good),
        json.dumps({"file": "b.txt", "used": None}),
    ]
    out = f"3.11.2\n{SEPARATOR}\n{SEPARATOR}\n{SEPARATOR}\n{SEPARATOR}\n{SEPARATOR}\n{SEPARATOR}\n"
    with caplog.at_level(logging.WARNING, logger="panbinder.lock"):
        parsed = parse_probe(out + "\n".join(lines) + "\n")
    assert parsed["resolved_as_of"] == [good, {"file": "b.txt", "used": None}]
    assert sum("skipped a bad line" in r.getMessage() for r in caplog.records) == 3


def test_unreadable_conda_meta_fails_the_lock():
    out = f"3.11.2\n{SEPARATOR}\n{SEPARATOR}\n{SEPARATOR}\nunreadable\n{SEPARATOR}\n"
    with pytest.raises(PanbinderError, match="conda-meta"):
        parse_probe(out)


@pytest.mark.docker
def test_the_probe_reads_conda_meta_in_an_image():
    record = {
        "name": "panbinder-probe",
        "version": "1.0",
        "build": "0",
        "channel": "http://m/cf/",
        "subdir": "noarch",
    }
    meta = "/srv/conda/envs/notebook/conda-meta"
    setup = f"mkdir -p {meta} && echo '{json.dumps(record)}' > {meta}/panbinder-probe-1.0-0.json; "
    proc = subprocess.run(
        [
            *DOCKER,
            "run",
            "--rm",
            "--network=none",
            "--user=root",
            "--entrypoint=/bin/sh",
            BASE_IMAGE,
            "-c",
            setup + PROBE,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    parsed = parse_probe(proc.stdout)  # the base image has no /srv/venv: its pip section is empty
    assert parsed["conda"] == {"panbinder-probe": "1.0=0 http://m/cf/noarch"}, proc.stderr
    assert "conda_pip" not in parsed and parsed["dpkg"]["bash"]


def test_parse_probe_refuses_other_output():
    with pytest.raises(PanbinderError, match="did not report its package versions"):
        parse_probe("sh: 1: /srv/venv/bin/python: not found\n")


def test_parse_freeze_normalises_names_and_keeps_local_lines():
    found = parse_freeze(["Jinja2==3.1.6", "zope.interface==6.0", "mypkg @ file:///home/jovyan", "", "# c"])
    assert found == {"jinja2": "3.1.6", "zope-interface": "6.0", "mypkg": "@ file:///home/jovyan"}


def test_diff_locks_reports_added_removed_changed():
    a = lock(["numpy==1.26.4", "tabulate==0.9.0", "six==1.16.0"], {"curl": "7.88.1-10", "vim": "2:9.0"})
    b = lock(
        ["numpy==2.0.0", "tabulate==0.9.0", "h5py==3.16.0"],
        {"curl": "7.88.1-10+deb12u5", "less": "590-2"},
        digest="sha256:other",
        created="2030-01-01T00:00:00+00:00",
    )
    diff = diff_locks(a, b)
    assert diff["pip"] == {
        "added": {"h5py": "3.16.0"},
        "removed": {"six": "1.16.0"},
        "changed": {"numpy": ["1.26.4", "2.0.0"]},
    }
    assert diff["dpkg"] == {
        "added": {"less": "590-2"},
        "removed": {"vim": "2:9.0"},
        "changed": {"curl": ["7.88.1-10", "7.88.1-10+deb12u5"]},
    }
    assert not is_empty(diff)
    text = format_diff(diff)
    assert "pip: ~ numpy 1.26.4 -> 2.0.0" in text and "dpkg: + less 590-2" in text
    assert "pip: - six 1.16.0" in text


def test_identical_environments_ignore_names_digests_and_times():
    a = lock(["tabulate==0.9.0"], {"bash": "5.2"})
    b = lock(["tabulate==0.9.0"], {"bash": "5.2"}, image="y:frozen", digest="sha256:x", created="later")
    diff = diff_locks(a, b)
    assert is_empty(diff) and format_diff(diff) == ""


def test_conda_changes_are_diffed_without_the_mirror_address():
    conda = {
        "pp": "1.0=0 http://m1.example/mirror/conda-forge/noarch",
        "gone": "2=0 http://m1.example/cf/noarch",
    }
    a = lock([], {}, conda=conda, conda_pip=["pip==25.0", "tabulate==0.9.0"])
    moved = {name: entry.replace("http://m1.example", "https://m2.example") for name, entry in conda.items()}
    assert is_empty(diff_locks(a, lock([], {}, conda=moved, conda_pip=["tabulate==0.9.0", "pip==25.0"])))
    b = lock(
        [],
        {},
        conda={
            "pp": "1.1=0 http://m1.example/mirror/conda-forge/noarch",
            "new": "3=h1_0 http://m1.example/cf/linux-64",
        },
        conda_pip=["pip==25.0", "tabulate==0.9.1"],
    )
    diff = diff_locks(a, b)
    assert diff["conda"] == {
        "added": {"new": "3=h1_0 cf/linux-64"},
        "removed": {"gone": "2=0 cf/noarch"},
        "changed": {"pp": ["1.0=0 conda-forge/noarch", "1.1=0 conda-forge/noarch"]},
    }
    text = format_diff(diff)
    assert "conda: ~ pp 1.0=0 conda-forge/noarch -> 1.1=0 conda-forge/noarch" in text
    assert "conda: + new 3=h1_0 cf/linux-64" in text and "conda: - gone 2=0 cf/noarch" in text
    assert "conda_pip: ~ tabulate 0.9.0 -> 0.9.1" in text
    assert not is_empty(diff_locks(a, lock([], {}, conda={**conda, "pp": conda["pp"].replace("=0", "=1")})))


def test_locks_without_conda_sections_still_compare():
    old = lock(["tabulate==0.9.0"], {"bash": "5.2"})
    assert is_empty(diff_locks(old, lock(["tabulate==0.9.0"], {"bash": "5.2"}, conda={})))
    added = diff_locks(
        old, lock(["tabulate==0.9.0"], {"bash": "5.2"}, conda={"pp": "1.0=0 http://m/cf/noarch"})
    )
    assert format_diff(added) == "conda: + pp 1.0=0 cf/noarch"


def test_python_and_base_image_changes_count():
    a = lock([], {})
    b = lock([], {}, python="3.12.1", base_image={"name": "panbinder-base:bookworm-2", "id": "sha256:new"})
    diff = diff_locks(a, b)
    assert diff["python"] == ["3.11.2", "3.12.1"] and diff["base_image"] == ["sha256:base", "sha256:new"]
    assert not is_empty(diff)


def test_pushed_digest_takes_the_last_one():
    lines = ["abc: Pushed\n", f"f13: digest: {DIGEST} size: 2203\n", "done\n"]
    assert pushed_digest(lines) == DIGEST
    assert pushed_digest(["nothing\n"]) == ""


def test_derived_ref_keeps_name_and_prefixes_the_tag():
    image = ImageRef(registry="127.0.0.1:5000", name="panbinder/v1-git-x-0123456789", tag="a" * 40)
    frozen = derived_ref(image, "frozen", "20260101T120000Z")
    assert frozen == ImageRef(
        registry="127.0.0.1:5000",
        name="panbinder/v1-git-x-0123456789",
        tag="a" * 40 + "-frozen-20260101t120000z",
    )
    long = derived_ref(ImageRef("", "n", "b" * 128), "fresh", "20260101T120000Z")
    assert len(long.tag) == 128 and long.tag.endswith("-fresh-20260101t120000z")


@pytest.mark.parametrize(
    ("full", "expected"),
    [
        ("127.0.0.1:5000/panbinder/v1-git-x:abc", ImageRef("127.0.0.1:5000", "panbinder/v1-git-x", "abc")),
        ("panbinder-base:bookworm-1", ImageRef("", "panbinder-base", "bookworm-1")),
        ("localhost/a/b", ImageRef("localhost", "a/b", "latest")),
        ("registry.example.org/a", ImageRef("registry.example.org", "a", "latest")),
    ],
)
def test_parse_image_round_trips(full, expected):
    assert parse_image(full) == expected
    if ":" in full.rsplit("/", 1)[-1]:
        assert parse_image(full).full == full


def test_frozen_requirements_leave_out_the_repository_itself():
    text = frozen_requirements(["pip==25.0", "mypkg @ file:///home/jovyan", "-e git+x#egg=y", "six==1.16.0"])
    assert text == "pip==25.0\nsix==1.16.0\n"


def test_apt_pins_are_the_packages_the_base_image_lacks_in_that_version():
    image = {"bash": "5.2", "curl": "7.88.1-10", "libc6": "2.36-9+deb12u1"}
    base = {"bash": "5.2", "libc6": "2.36-9"}
    assert apt_pins(image, base) == ["curl=7.88.1-10", "libc6=2.36-9+deb12u1"]


def test_frozen_pack_installs_the_lock_instead_of_the_server_requirements(tmp_path):
    req = tmp_path / "frozen.txt"
    req.write_text("six==1.16.0\n")
    pack_class = frozen_pack(PackSettings(ca_bundle=""), requirements_file=str(req), pins=["curl=7.88.1-10"])
    pack = pack_class(base_image="panbinder-base:bookworm-1")
    scripts = pack.get_build_scripts()
    assert (
        scripts[0][0] == "root" and "apt-get install" in scripts[0][1] and "curl=7.88.1-10" in scripts[0][1]
    )
    server = next(s for _, s in scripts if "python3 -m venv" in s)
    assert f"-r {FROZEN_IN_IMAGE}" in server and "jupyterlab==" not in server
    assert pack.get_build_script_files()[str(req)] == FROZEN_IN_IMAGE


def test_catalogue_records_and_replaces_locks(tmp_path):
    cat = Catalogue(db_url=f"sqlite:///{tmp_path}/catalogue.sqlite")
    cat.start()
    try:
        assert cat.get_lock("r/x:1") is None
        cat.record_lock("r/x:1", DIGEST, lock(["six==1.16.0"], {}))
        assert cat.get_lock("r/x:1")["pip"] == ["six==1.16.0"]
        cat.record_lock("r/x:1", "sha256:new", lock(["six==1.17.0"], {}))
        assert cat.get_lock("r/x:1")["pip"] == ["six==1.17.0"]
        assert cat.get_lock("r/x:2") is None
    finally:
        cat.close()


class FakeBuilder:
    base_image = "panbinder-base:bookworm-1"

    def __init__(self, on_built) -> None:
        self.on_built = on_built
        self.log = logging.getLogger("test-lock-capture")


def request_for(image: str) -> BuildRequest:
    return BuildRequest("b1", "git", "git://h/r", "a" * 40, "main", parse_image(image))


def test_lock_capture_hands_the_lock_and_pushed_digest_on(monkeypatch):
    seen = []
    monkeypatch.setattr(lock_module, "capture_lock", lambda image, **kw: {"image": image, **kw})
    capture = LockCapture(FakeBuilder(lambda *a: seen.append(a)), request_for("r/x:1"), "docker")
    capture.finish([f"1: digest: {DIGEST} size: 1\n"])
    [(image, digest, got)] = seen
    assert image == "r/x:1" and digest == DIGEST and got["digest"] == DIGEST
    assert got["commit"] == "a" * 40 and got["repo_url"] == "git://h/r"


def test_a_failed_lock_capture_is_only_a_warning(caplog):
    seen = []
    capture = LockCapture(FakeBuilder(lambda *a: seen.append(a)), request_for("r/x:1"), "/bin/false")
    capture.finish([])  # does not raise
    assert seen == [] and "could not record the environment lock of r/x:1" in caplog.text
    LockCapture(FakeBuilder(None), request_for("r/x:1"), "/bin/false").finish([])  # no callback: nothing


def test_lock_label_is_compact_sorted_json_without_the_digest():
    text = lock_label(lock(["six==1.16.0"], {"bash": "5.2"}, repo={"url": "git://h/r", "commit": "c"}))
    assert text.startswith('{"base_image":{"id":"sha256:base","name":"panbinder-base:bookworm-1"},')
    assert '"digest"' not in text and " " not in text.replace("bookworm-1", "")
    assert json.loads(text)["pip"] == ["six==1.16.0"] and list(json.loads(text)) == sorted(json.loads(text))


AWKWARD = 'tool @ file:///home/jovyan/"quoted" \\back $HOME ${X:-y} `id` é中\nnext'


def large_awkward_lock() -> dict:
    dpkg = {f"lib-{i}": f"1:{i}.0-2+deb12u{i}" for i in range(700)}
    return lock(["six==1.16.0", AWKWARD], dpkg, repo={"url": "git://h/r?a=b&c='d'", "commit": "c"})


def test_a_large_lock_with_awkward_text_round_trips_through_its_label():
    full = large_awkward_lock()
    text = lock_label(full)
    assert len(text) > 20_000 and text.isascii() and "\n" not in text
    expected = {k: v for k, v in full.items() if k != "digest"}
    assert parse_lock_label(text) == expected


@pytest.mark.parametrize("text", [None, "", "{", "[1]", '{"pip": []}', '{"lock_version": "1"}', "null"])
def test_parse_lock_label_refuses_what_is_not_a_lock(text):
    assert parse_lock_label(text) is None


def test_lock_from_inspect_adds_the_registry_digest_of_that_name():
    label = lock_label(lock(["six==1.16.0"], {}))
    info = {
        "Config": {"Labels": {LABEL: label, "other": "x"}},
        "RepoDigests": ["127.0.0.1:5000/other@sha256:other", f"127.0.0.1:5000/x@{DIGEST}"],
    }
    found = lock_from_inspect("127.0.0.1:5000/x:1", info)
    assert found == lock(["six==1.16.0"], {})
    assert lock_from_inspect("127.0.0.1:5000/x:1", {**info, "RepoDigests": []})["digest"] == ""
    assert lock_from_inspect("127.0.0.1:5000/x@sha256:pinned", info)["digest"] == "sha256:pinned"
    assert lock_from_inspect("127.0.0.1:5000/x:1", {"Config": {"Labels": None}}) is None
    assert lock_from_inspect("127.0.0.1:5000/x:1", {"Config": {"Labels": {LABEL: "not json"}}}) is None


@pytest.mark.parametrize("cli", ["/bin/false", "/nonexistent/docker", "/bin/echo"])
def test_image_lock_never_raises(cli):
    assert image_lock("127.0.0.1:5000/x:1", docker_cli=cli) is None


def test_the_label_build_passes_the_value_as_one_argument():
    value = lock_label(lock(["a b==1"], {"c": "d e"}))
    args = label_build_args("r/x:1", {LABEL: value}, docker_cli="docker")
    assert args[:2] == ["docker", "build"] and args[-3:] == ["--tag", "r/x:1", "-"]
    assert args[args.index("--label") + 1] == f"{LABEL}={value}"


class Labeller:
    def __init__(self, result: str | BaseException) -> None:
        self.result, self.calls = result, []

    def __call__(self, image: str, labels: dict[str, str]) -> str:
        self.calls.append((image, labels))
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def fake_capture(monkeypatch) -> None:
    monkeypatch.setattr(lock_module, "capture_lock", lambda image, **kw: {"lock_version": 1, "image": image})


def test_lock_capture_labels_the_image_and_records_the_labelled_digest(monkeypatch):
    fake_capture(monkeypatch)
    seen, emitted, labeller = [], [], Labeller("sha256:" + "cd" * 32)
    capture = LockCapture(
        FakeBuilder(lambda *a: seen.append(a)), request_for("r/x:1"), "docker", label=labeller
    )
    capture.finish([f"1: digest: {DIGEST} size: 1\n"], emit=emitted.append)
    assert labeller.calls == [("r/x:1", {LABEL: '{"image":"r/x:1","lock_version":1}'})]
    [(_, digest, got)] = seen
    assert digest == got["digest"] == "sha256:" + "cd" * 32
    assert emitted and LABEL in emitted[0]


def test_a_failed_labelling_is_only_a_warning_and_keeps_the_first_push(monkeypatch, caplog):
    fake_capture(monkeypatch)
    seen = []
    labeller = Labeller(RuntimeError("push exited with 1"))
    capture = LockCapture(
        FakeBuilder(lambda *a: seen.append(a)), request_for("r/x:1"), "docker", label=labeller
    )
    capture.finish([f"1: digest: {DIGEST} size: 1\n"])
    assert "could not write the environment lock into the labels of r/x:1: push exited with 1" in caplog.text
    [(_, digest, got)] = seen
    assert digest == got["digest"] == DIGEST


def test_a_cancelled_build_stays_cancelled_while_labelling(monkeypatch):
    fake_capture(monkeypatch)
    labeller = Labeller(BuildCancelled("the build was cancelled"))
    capture = LockCapture(FakeBuilder(lambda *a: None), request_for("r/x:1"), "docker", label=labeller)
    with pytest.raises(BuildCancelled):
        capture.finish([])


def test_labelling_alone_still_captures_the_lock(monkeypatch):
    fake_capture(monkeypatch)
    labeller = Labeller(DIGEST)
    LockCapture(FakeBuilder(None), request_for("r/x:1"), "docker", label=labeller).finish([])
    assert [image for image, _ in labeller.calls] == ["r/x:1"]


def docker_id(image: str) -> str:
    proc = subprocess.run(
        [*DOCKER, "image", "inspect", "-f", "{{.Id}}", image], capture_output=True, text=True
    )
    return proc.stdout.strip()


@pytest.mark.docker
def test_a_failed_push_of_the_labelled_image_restores_the_unlabelled_one():
    image = f"127.0.0.1:1/panbinder-test-label:{secrets.token_hex(4)}"  # nothing listens there
    subprocess.run([*DOCKER, "tag", BASE_IMAGE, image], check=True)
    try:
        with pytest.raises(BuildError, match="push exited"):
            label_and_push(image, {LABEL: lock_label(lock([], {}))}, docker_cli=DOCKER)
        assert docker_id(image) == docker_id(BASE_IMAGE)
        assert image_lock(image, docker_cli=DOCKER) is None
        dangling = subprocess.run(
            [
                *DOCKER,
                "images",
                "-q",
                "--no-trunc",
                "--filter",
                "dangling=true",
                "--filter",
                f"label={LABEL}",
            ],
            capture_output=True,
            text=True,
        )
        assert dangling.stdout.strip() == "", "the labelled image was left behind"
    finally:
        subprocess.run([*DOCKER, "rmi", image], capture_output=True)


@pytest.mark.docker
def test_the_label_build_keeps_a_large_awkward_lock_byte_for_byte():
    full = large_awkward_lock()
    image = f"panbinder-test-label:{secrets.token_hex(4)}"
    args = label_build_args(image, {LABEL: lock_label(full)}, docker_cli=DOCKER)
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    proc = subprocess.run(args, input=f"FROM {BASE_IMAGE}\n".encode(), capture_output=True, env=env)
    try:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert image_lock(image, docker_cli=DOCKER) == {**full, "digest": ""}
        assert image_lock(BASE_IMAGE, docker_cli=DOCKER) is None  # no label
        assert image_lock(image + "-missing", docker_cli=DOCKER) is None
    finally:
        subprocess.run([*DOCKER, "rmi", image], capture_output=True)
