"""Archive manifests (write, verify, tampering named) and retention selection, without docker."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from panbinder.registry_cache.archive import ArchiveError, verify_bag, write_bag
from panbinder.registry_cache.retention import CachedImage, log_mtime, select_removals


def make_bag(tmp_path):
    bag = tmp_path / "bag"
    (bag / "data" / "sub").mkdir(parents=True)
    (bag / "data" / "image.tar").write_bytes(b"x" * (3 * 1024 * 1024 + 7))
    (bag / "data" / "sub" / "publication.json").write_text('{"doi": "10.5555/x"}\n')
    write_bag(bag, {"External-Identifier": "10.5555/x"})
    return bag


def test_manifest_lists_every_payload_file_with_its_sha256(tmp_path):
    bag = make_bag(tmp_path)
    lines = (bag / "manifest-sha256.txt").read_text().splitlines()
    expected = hashlib.sha256((bag / "data" / "image.tar").read_bytes()).hexdigest()
    pub = hashlib.sha256((bag / "data" / "sub" / "publication.json").read_bytes()).hexdigest()
    assert lines == [f"{expected}  data/image.tar", f"{pub}  data/sub/publication.json"]
    assert (bag / "bagit.txt").read_text().startswith("BagIt-Version: 1.0\n")
    info = (bag / "bag-info.txt").read_text()
    assert f"Payload-Oxum: {3 * 1024 * 1024 + 7 + 21}.2\n" in info
    assert "External-Identifier: 10.5555/x\n" in info
    verify_bag(bag)


def test_tampered_file_is_named(tmp_path):
    bag = make_bag(tmp_path)
    with (bag / "data" / "sub" / "publication.json").open("a") as f:
        f.write(" ")
    with pytest.raises(ArchiveError, match=r"data/sub/publication\.json .*does not match"):
        verify_bag(bag)


def test_missing_and_extra_files_are_named(tmp_path):
    bag = make_bag(tmp_path)
    (bag / "data" / "extra.txt").write_text("smuggled")
    with pytest.raises(ArchiveError, match=r"data/extra\.txt is in the archive .* not in its manifest"):
        verify_bag(bag)
    (bag / "data" / "extra.txt").unlink()
    (bag / "data" / "image.tar").unlink()
    with pytest.raises(ArchiveError, match=r"data/image\.tar is missing"):
        verify_bag(bag)


def test_not_an_archive_and_bad_manifest_lines(tmp_path):
    with pytest.raises(ArchiveError, match="not a panbinder archive"):
        verify_bag(tmp_path)
    bag = make_bag(tmp_path)
    (bag / "manifest-sha256.txt").write_text(f"{'0' * 64}  ../../etc/passwd\n")
    with pytest.raises(ArchiveError, match="bad line"):
        verify_bag(bag)


NOW = datetime(2026, 11, 26, tzinfo=UTC)


def image(name: str, tag: str, digest: str, days_ago: float | None) -> CachedImage:
    when = None if days_ago is None else NOW - timedelta(days=days_ago)
    return CachedImage(name, tag, digest, when, "build log" if when else "unknown")


def test_retention_removes_only_idle_unpinned_images():
    images = [
        image("p/v1-git-a", "old", "sha256:1", 200),
        image("p/v1-git-a", "new", "sha256:2", 3),
        image("p/v1-doi-b", "pinned", "sha256:3", 900),
        image("p/v1-git-c", "unknown", "sha256:4", None),
    ]
    removed = select_removals(images, {"p/v1-doi-b:pinned"}, now=NOW, max_idle_days=90)
    assert [i.key for i in removed] == ["p/v1-git-a:old"]


def test_retention_never_deletes_a_digest_shared_with_a_pinned_or_kept_tag():
    images = [
        image("p/v1-doi-b", "idle-alias", "sha256:3", 900),
        image("p/v1-doi-b", "pinned", "sha256:3", 900),
        image("p/v1-git-a", "idle", "sha256:5", 500),
        image("p/v1-git-a", "fresh-alias", "sha256:5", 1),
        image("p/v1-git-z", "idle", "sha256:3", 500),  # same digest, other repository: its own manifest
    ]
    removed = select_removals(images, {"p/v1-doi-b:pinned"}, now=NOW, max_idle_days=90)
    assert [i.key for i in removed] == ["p/v1-git-z:idle"]
    assert select_removals(images, {i.key for i in images}, now=NOW, max_idle_days=0) == []


def test_idle_time_comes_from_the_build_log_file(tmp_path):
    log = tmp_path / "panbinder_v1-git-a@abc.log"
    log.write_text("[built]\n")
    assert log_mtime(tmp_path, "panbinder/v1-git-a", "abc") is not None
    assert log_mtime(tmp_path, "panbinder/v1-git-a", "other") is None


# OCI layout and restore selection (registry_cache/transfer.py, archive.py) ------------------------


def write_layout(layout, manifest_body: bytes, blobs: dict[str, bytes]):
    from panbinder.registry_cache.transfer import Manifest, blob_path

    manifest = Manifest(manifest_body, "application/vnd.docker.distribution.manifest.v2+json")
    for content in [*blobs.values(), manifest_body]:
        path = blob_path(layout, "sha256:" + hashlib.sha256(content).hexdigest())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    entry = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest_body)}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return manifest


def image_manifest(config: bytes, layers: list[bytes]) -> bytes:
    def desc(content: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        return {"mediaType": media_type, "digest": digest, "size": len(content)}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": desc(config, "application/vnd.docker.container.image.v1+json"),
            "layers": [desc(layer, "application/vnd.docker.image.rootfs.diff.tar.gzip") for layer in layers],
        }
    ).encode()


def test_layout_roundtrip_lists_config_then_layers(tmp_path):
    from panbinder.registry_cache.transfer import read_layout

    config, layers = b'{"config": {}}', [b"layer one", b"layer two"]
    written = write_layout(
        tmp_path, image_manifest(config, layers), {"c": config, "a": layers[0], "b": layers[1]}
    )
    manifest = read_layout(tmp_path)
    assert manifest.digest == written.digest
    assert [b.size for b in manifest.blobs()] == [len(config), len(layers[0]), len(layers[1])]
    assert manifest.blobs()[1].digest == "sha256:" + hashlib.sha256(b"layer one").hexdigest()


def test_layout_with_a_changed_manifest_is_refused(tmp_path):
    from panbinder.registry_cache.transfer import TransferError, read_layout

    config = b"{}"
    manifest = write_layout(tmp_path, image_manifest(config, [b"x"]), {"c": config, "x": b"x"})
    path = tmp_path / "blobs" / "sha256" / manifest.digest[7:]
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion": 2 '))
    with pytest.raises(TransferError, match="does not match its digest"):
        read_layout(tmp_path)


def test_index_manifests_and_bad_digests_are_refused():
    from panbinder.registry_cache.transfer import Blob, Manifest, TransferError

    index = Manifest(b'{"manifests": []}', "application/vnd.oci.image.index.v1+json")
    with pytest.raises(TransferError, match="single-platform"):
        index.blobs()
    with pytest.raises(TransferError, match="malformed"):
        _ = Blob("sha256:../../etc/passwd", 1, "").hex


def test_check_bag_reads_nothing_and_verify_files_names_the_file(tmp_path):
    from panbinder.registry_cache.archive import check_bag, verify_files

    bag = make_bag(tmp_path)
    (bag / "data" / "image.tar").write_bytes(b"y" * 10)  # changed, but check_bag does not read it
    entries = check_bag(bag)
    verify_files(bag, entries, ["data/sub/publication.json"])
    with pytest.raises(ArchiveError, match=r"data/image\.tar .*does not match"):
        verify_files(bag, entries, entries)


def test_restored_names_are_todays_git_name_and_the_archived_provider():
    from panbinder.registry_cache.archive import ArchivedImage

    sha = "a" * 40
    archived = ArchivedImage("doi", "https://example.org/r.git", sha, "old/name:tag", "sha256:" + "b" * 64)
    names = archived.names(registry="reg:5000", prefix="panbinder/v1-")
    assert [n.name.split("/")[1].split("-")[1] for n in names] == ["git", "doi"]
    assert {n.tag for n in names} == {sha}
    assert (
        ArchivedImage("git", "https://example.org/r.git", sha, "x:y").names(registry="r", prefix="p/")[0].tag
        == sha
    )


class HeldBlobs:
    """A registry stand-in that only answers which repository holds which blob (pure planning)."""

    def __init__(self, held: dict[str, set[str]]) -> None:
        self.held = held

    def has_blob(self, name, blob) -> bool:
        return blob.digest in self.held.get(name, set())


def test_import_plan_links_what_other_repositories_hold_and_uploads_the_rest():
    from panbinder.registry_cache.transfer import Manifest, plan_import

    config, layers = b"{}", [b"base", b"server", b"numpy", b"code"]
    manifest = Manifest(
        image_manifest(config, layers), "application/vnd.docker.distribution.manifest.v2+json"
    )
    base, numpy = manifest.blobs()[1].digest, manifest.blobs()[3].digest
    server, code = manifest.blobs()[2].digest, manifest.blobs()[4].digest
    client = HeldBlobs({"p/target": {base}, "p/sibling": {base, server}, "p/other": {numpy}})
    plan = plan_import(client, "p/target", manifest, ["p/target", "p/sibling", "p/other", "p/none"])
    assert [b.digest for b in plan.present] == [base]
    assert [(b.digest, src) for b, src in plan.mounts] == [(server, "p/sibling"), (numpy, "p/other")]
    assert [b.digest for b in plan.uploads] == [manifest.blobs()[0].digest, code]
    assert plan.summary() == "1 already in the repository, 2 linked from other repositories, 2 uploaded"
    assert plan_import(client, "p/target", manifest, [], max_sources=0).mounts == []
