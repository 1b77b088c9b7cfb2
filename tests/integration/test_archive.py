"""Archive a publication, lose its image, repository and registration, restore, launch by DOI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import delete
from tornado.httpclient import AsyncHTTPClient

from panbinder.data_mounts.models import ImageLock
from panbinder.registry_cache import ImageRef, Registry, image_ref
from panbinder.registry_cache.transfer import RegistryClient
from tests.support import eventually, read_stream, run_code
from tests.support import forget_image as forget

from .conftest import catalogue_of, cli, write_scan

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

DOI = "10.5555/panbinder.archived"
REPO = "archived-paper"
READ = (
    "import h5py, json, os\n"
    "m = json.load(open('/data/MANIFEST.json'))\n"
    "ds = m['datasets'][0]\n"
    "with h5py.File(os.path.join(ds['path'], 'scan.nxs')) as f:\n"
    "    print(int(f['/entry/data/counts'][7]), ds['pid'])\n"
)


@pytest.fixture(scope="module")
def archived_publication(portal, git_server, storage_root, publications):
    """A publication of its own (repository, dataset), built once, so that it can be destroyed."""
    write_scan(storage_root / "archived-scan", 11)
    cli(portal, "datasets", "scan", str(storage_root))
    cat = catalogue_of(portal, storage_root)
    with cat.session() as s:
        cat.get_dataset(s, "local:archived-scan").is_public = True
    sha = git_server.commit(
        REPO,
        {"requirements.txt": "h5py==3.16.0\n", "figure.ipynb": "{}", "README.md": "archived paper\n"},
        "paper",
    )
    repo = git_server.url(REPO)
    cli(
        portal,
        "publications",
        "add",
        f"--doi={DOI}",
        f"--repo={repo}",
        "--ref=main",
        "--dataset=local:archived-scan",
    )
    cli(portal, "build", repo, sha)  # its git name, the one launches by DOI use
    return cat, repo, sha


def run(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True).stdout


def names(repo: str, sha: str):
    registry = Registry()
    return registry, [
        image_ref(registry=registry.host, prefix="panbinder/v1-", provider=p, repo_url=repo, ref=sha)
        for p in ("doi", "git")
    ]


async def forget_image(repo: str, sha: str) -> None:
    """As after a registry wipe: the manifests, the blobs of the repositories and the local image."""
    registry, refs = names(repo, sha)
    for ref in refs:
        forget(ref.full, blobs=True)
        assert await registry.digest(ref) is None


async def test_archive_restore_launch_by_doi(portal, git_server, archived_publication, tmp_path):
    cat, repo, sha = archived_publication
    out = cli(portal, "archive", DOI, f"--to={tmp_path}").stdout.strip().splitlines()[-1]
    bag = tmp_path / out.rsplit("/", 1)[-1]
    assert bag.is_dir(), out
    files = (bag / "manifest-sha256.txt").read_text()
    for name in ("data/image/oci-layout", "data/image/index.json", "data/repo.bundle"):
        assert name in files
    for name in ("data/publication.json", "data/archive.json", "data/lock.json"):
        assert name in files
    registry, refs = names(repo, sha)
    published = await registry.digest(refs[1])
    assert json.loads((bag / "data" / "archive.json").read_text())["digest"] == published

    # everything is lost: image (registry and engine), repository, registration
    await forget_image(repo, sha)
    shutil.rmtree(git_server.base / REPO)
    with cat.session() as s:
        s.delete(cat.get_publication(s, DOI))

    # a tampered archive is refused before anything is restored: metadata, or an image layer
    pub_json = bag / "data" / "publication.json"
    original = pub_json.read_bytes()
    pub_json.write_bytes(original.replace(b"archived-scan", b"embargoed-scan"))
    proc = cli(portal, "restore", str(bag), check=False)
    assert proc.returncode == 2
    assert "data/publication.json" in proc.stderr and "does not match" in proc.stderr
    pub_json.write_bytes(original)
    index = json.loads((bag / "data" / "image" / "index.json").read_text())
    manifest = json.loads(
        (bag / "data" / "image" / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text()
    )
    layer = bag / "data" / "image" / "blobs" / "sha256" / manifest["layers"][-1]["digest"][7:]
    kept = layer.read_bytes()
    layer.write_bytes(kept[:-1] + bytes([kept[-1] ^ 1]))
    proc = cli(portal, "restore", str(bag), check=False)
    assert proc.returncode == 2
    assert f"data/image/blobs/sha256/{layer.name}" in proc.stderr and "does not match" in proc.stderr
    assert [await registry.digest(r) for r in refs] == [None, None]
    assert not list((portal.state / "repo-mirrors").glob(f"*{REPO}*"))
    layer.write_bytes(kept)

    restored = cli(portal, "restore", str(bag)).stdout
    assert "registered again from the archive" in restored
    assert await registry.digest(refs[1]) == published, restored  # byte for byte: the same digest
    # the repository had no blob left: the base layers are linked from other images, the rest sent
    blobs = re.search(
        r"blobs: 0 already in the repository, (\d+) linked from other repositories, (\d+) uploaded", restored
    )
    assert blobs, restored
    assert int(blobs[1]) + int(blobs[2]) == len(manifest["layers"]) + 1 and int(blobs[2]) >= 1
    assert (
        run("docker", "image", "inspect", "--format", "{{.Id}}", refs[1].full).strip()
        == manifest["config"]["digest"]
    )
    mirror = next(line.split()[1] for line in restored.splitlines() if line.startswith("repository:"))
    assert run("git", "ls-remote", f"file://{mirror}", "main").split()[0] == sha

    s = await read_stream(f"{portal.url}/build/doi/{DOI}")
    assert s.last["phase"] == "ready", s.log()
    assert "building" not in s.phases
    out = await run_code(s.last["url"], s.last["token"], READ)
    assert out.split() == ["77", "local:archived-scan"]


async def test_archive_tarball_roundtrip_verifies(portal, archived_publication, tmp_path):
    cat, repo, sha = archived_publication
    registry, refs = names(repo, sha)
    digest = await registry.digest(refs[1])
    if not digest:
        pytest.fail("the image of the archived publication is missing")
    with cat.session() as s:  # the catalogue forgot the lock: the image's label still has it
        s.execute(delete(ImageLock).where(ImageLock.image == refs[1].full))
    out = cli(portal, "archive", DOI, f"--to={tmp_path}", "--tar").stdout.strip().splitlines()[-1]
    assert out.endswith(".tar")
    with tarfile.open(out) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("/data/lock.json"))
        lock = json.load(tf.extractfile(member))
    assert lock["digest"] == digest and "h5py==3.16.0" in lock["pip"], lock
    audit = cli(portal, "restore", "--verify-only", out).stdout
    assert "every file matches its sha256 checksum" in audit
    restored = cli(portal, "restore", out).stdout
    assert "already registered" in restored
    assert "0 linked from other repositories, 0 uploaded" in restored  # nothing read or sent


def remove_servers_of(image_id: str) -> None:
    """Remove the containers (this module's servers) running the image ``image_id``."""
    import docker

    client = docker.from_env()
    try:
        for c in client.containers.list(all=True, filters={"ancestor": image_id}):
            c.remove(force=True)
    finally:
        client.close()


async def restore_in_portal(portal, archive: str, token: str | None = None) -> tuple[int, dict]:
    """POST /api/archives/restore (with the portal's service token unless ``token`` is given)."""
    token = portal.service_token if token is None else token
    resp = await AsyncHTTPClient().fetch(
        f"{portal.url}/api/archives/restore",
        method="POST",
        body=json.dumps({"archive": archive}),
        headers={"Authorization": f"token {token}"} if token else {},
        request_timeout=600,
        raise_error=False,
    )
    return resp.code, json.loads(resp.body)


async def test_restore_inside_the_portal_launches_from_the_engine(portal, archived_publication):
    """The restore in the running portal: operators only, names confined to Archive.root, a
    damaged archive refused naming the file with nothing restored; then the image is launchable
    as soon as the engine has it, by DOI without a build, and reaches the registry unchanged."""
    _cat, repo, sha = archived_publication
    registry, refs = names(repo, sha)
    published = await registry.digest(refs[1])
    assert published, "the image of the archived publication is missing"
    bag = Path(cli(portal, "archive", DOI).stdout.strip().splitlines()[-1])  # into Archive.root
    try:
        assert (await restore_in_portal(portal, bag.name, token=""))[0] == 403
        assert (await restore_in_portal(portal, bag.name, token="not-a-token"))[0] == 403
        status, body = await restore_in_portal(portal, "no-such-archive")
        assert status == 404 and "no-such-archive" in body["message"], body
        assert (await restore_in_portal(portal, "../secrets"))[0] in (400, 403, 404)

        index = json.loads((bag / "data" / "image" / "index.json").read_text())
        blobs = bag / "data" / "image" / "blobs" / "sha256"
        manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
        remove_servers_of(manifest["config"]["digest"])  # else the engine keeps the image
        await forget_image(repo, sha)
        layer = blobs / manifest["layers"][-1]["digest"][7:]
        kept = layer.read_bytes()
        layer.write_bytes(kept[:-1] + bytes([kept[-1] ^ 1]))
        status, body = await restore_in_portal(portal, bag.name)
        layer.write_bytes(kept)
        assert status == 400, body
        assert f"data/image/blobs/sha256/{layer.name}" in body["message"], body
        assert "does not match" in body["message"], body
        assert [await registry.digest(r) for r in refs] == [None, None]
        assert not run("docker", "image", "inspect", "--format", "{{.Id}}", refs[1].full).strip()

        status, body = await restore_in_portal(portal, bag.name)
        assert status == 200, body
        assert body["digest"] == published and refs[1].full in body["images"], body
        assert body["upload"] in ("in progress", "done"), body
        s = await read_stream(f"{portal.url}/build/doi/{DOI}")
        assert s.last["phase"] == "ready", s.log()
        assert "building" not in s.phases
        assert (
            run("docker", "image", "inspect", "--format", "{{.Id}}", refs[1].full).strip()
            == (manifest["config"]["digest"])
        )

        async def uploaded() -> bool:
            return await Registry().digest(refs[1]) == published

        await eventually(uploaded, timeout=300, what="the restored image in the registry")
    finally:
        shutil.rmtree(bag, ignore_errors=True)


def test_registry_gc_dry_run_pins_publications(portal, archived_publication):
    _cat, repo, sha = archived_publication
    _registry, refs = names(repo, sha)
    out = cli(portal, "registry", "gc", "--max-idle-days=0").stdout
    lines = out.splitlines()
    assert f"pinned  {refs[1].name}:{refs[1].tag}" in "\n".join(lines)
    assert lines[-1].startswith("dry run:"), out


async def test_registry_gc_apply_removes_only_idle_unpinned_images(portal, archived_publication):
    """Under a prefix of its own (the registry is shared): a pinned and an unpinned copy."""
    _cat, repo, sha = archived_publication
    registry, refs = names(repo, sha)
    client = RegistryClient(registry.url)
    source = refs[1]
    manifest = client.get_manifest(source)
    prefix = f"panbinder-gc{os.getpid()}/v1-"
    pinned = image_ref(registry=registry.host, prefix=prefix, provider="git", repo_url=repo, ref=sha)
    idle = ImageRef(registry.host, f"{prefix}git-unpublished-0123456789", sha)
    for ref in (pinned, idle):
        for blob in manifest.blobs():
            assert client.mount_blob(ref.name, blob, source.name)
        client.put_manifest(ref, manifest)

    out = cli(
        portal, "registry", "gc", "--max-idle-days=0", f"--PanbinderBase.image_prefix={prefix}", "--apply"
    ).stdout
    assert f"pinned  {pinned.name}:{pinned.tag}" in out, out
    assert f"remove  {idle.name}:{idle.tag}" in out, out
    assert "removed 1 manifest(s)" in out, out
    assert await registry.digest(idle) is None
    assert await registry.digest(pinned) == manifest.digest
