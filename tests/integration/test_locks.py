"""Locks for real: a build records its lock in the catalogue and in the image's label; a frozen
rebuild reproduces it, from the catalogue or from the label."""

from __future__ import annotations

import json
import subprocess

import pytest

from panbinder.builder.buildpacks.settings import BASE_IMAGE
from panbinder.builder.lock import LABEL, image_lock
from panbinder.registry_cache.archive import Archive
from panbinder.registry_cache.naming import parse_image
from panbinder.registry_cache.transfer import RegistryClient
from tests.support import machine_build_engine

from .conftest import build_and_lock, catalogue_of, cli

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]
# the images are built, labelled and probed in the build engine
BUILD_ENGINE = machine_build_engine().command()

FILES = {
    "requirements.txt": "tabulate==0.9.0\n",
    "apt.txt": "jq\n",
    "analysis.py": "import tabulate\nprint(tabulate.__version__)\n",
}


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BUILD_ENGINE, *args], capture_output=True, text=True, timeout=600)


def inspect(image: str) -> dict:
    proc = docker("image", "inspect", "--format", "{{json .}}", image)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def registry_image(image: str) -> tuple[str, dict]:
    """The registry's current manifest digest for the image's tag, and its image config."""
    return Archive().registry_image(RegistryClient(f"http://{parse_image(image).registry}"), image)


def rebuild(portal, *args: str) -> subprocess.CompletedProcess:
    return cli(portal, "rebuild", *args, check=False, timeout=1200)


@pytest.fixture(scope="module")
def locked_image(portal, git_server, storage_root):
    sha = git_server.commit("locked", FILES, "locked")
    image, lock = build_and_lock(portal, storage_root, git_server.url("locked"))
    return image, sha, lock


def test_build_records_its_lock_in_the_catalogue(locked_image, git_server):
    image, sha, lock = locked_image
    assert lock is not None, "no lock recorded"
    assert lock["image"] == image and lock["repo"] == {"url": git_server.url("locked"), "commit": sha}
    assert lock["digest"].startswith("sha256:")
    assert lock["python"].startswith("3.")
    assert "tabulate==0.9.0" in lock["pip"] and any(p.startswith("jupyterlab==") for p in lock["pip"])
    assert "jq" in lock["dpkg"] and "bash" in lock["dpkg"]
    assert lock["base_image"]["name"] == BASE_IMAGE
    assert lock["base_image"]["id"].startswith("sha256:")
    assert lock["repo2docker"] and lock["panbinder"]


def test_the_built_image_carries_its_lock_as_a_label(locked_image):
    image, _, lock = locked_image
    labels = inspect(image)["Config"]["Labels"]
    assert LABEL in labels, sorted(labels)
    label = json.loads(labels[LABEL])
    assert "tabulate==0.9.0" in label["pip"] and "jq" in label["dpkg"]
    assert "digest" not in label
    assert label == {key: value for key, value in lock.items() if key != "digest"}
    assert labels[LABEL] == json.dumps(label, sort_keys=True, separators=(",", ":"))
    assert image_lock(image, docker_cli=BUILD_ENGINE) == lock


def test_the_catalogue_has_the_registry_digest_of_the_labelled_image(locked_image):
    image, _, lock = locked_image
    digest, config = registry_image(image)
    assert lock["digest"] == digest
    assert config["config"]["Labels"][LABEL] == inspect(image)["Config"]["Labels"][LABEL]
    assert f"{image.rsplit(':', 1)[0]}@{digest}" in inspect(image)["RepoDigests"]


def test_frozen_rebuild_uses_the_label_when_the_catalogue_has_no_lock(locked_image, portal, storage_root):
    image, _, _ = locked_image
    copy = image + "-copy"  # the catalogue knows no lock for this name; the registry has the image
    for args in (("tag", image, copy), ("push", copy), ("rmi", copy)):
        proc = docker(*args)
        assert proc.returncode == 0, proc.stderr
    proc = rebuild(portal, "--frozen", copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
    assert "lock: identical" in proc.stdout, proc.stdout
    assert docker("image", "inspect", copy).returncode == 0, "the image was not pulled"
    cat = catalogue_of(portal, storage_root)
    try:
        assert cat.get_lock(copy) is None
    finally:
        cat.close()


def test_frozen_rebuild_reports_an_identical_lock(locked_image, portal, storage_root):
    image, _, _ = locked_image
    proc = rebuild(portal, "--frozen", image)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
    assert "lock: identical" in proc.stdout, proc.stdout
    rebuilt = next(line for line in proc.stdout.splitlines() if line.startswith("frozen rebuild of"))
    frozen_image = rebuilt.rsplit(": ", 1)[1]
    assert frozen_image.startswith(image + "-frozen-")
    cat = catalogue_of(portal, storage_root)
    try:
        assert cat.get_lock(frozen_image) is not None
    finally:
        cat.close()


def test_fresh_rebuild_prints_the_differences(locked_image, portal):
    image, _, _ = locked_image
    proc = rebuild(portal, "--fresh", image)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
    assert f"fresh rebuild of {image}: {image}-fresh-" in proc.stdout
    assert "differences (recorded -> rebuilt):" in proc.stdout


def test_rebuild_without_a_lock_says_what_to_do(portal):
    proc = rebuild(portal, "--frozen", "127.0.0.1:5000/panbinder/v1-never-built:0000")
    assert proc.returncode == 2
    assert "No lock is recorded for 127.0.0.1:5000/panbinder/v1-never-built:0000" in proc.stderr
