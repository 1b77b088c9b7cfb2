"""The restore's streams, without docker: the ``docker load`` tar made from an archive's image
layout (registry_cache/engine_load.py) and the upload body that checks a blob as it is sent
(registry_cache/transfer.py). A damaged blob ends either stream before it is complete."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from panbinder.registry_cache.engine_load import LoadError, diff_ids, docker_archive
from panbinder.registry_cache.transfer import Blob, DamagedBlob, _Verified, blob_path, read_layout
from tests.test_archive import image_manifest, write_layout

LAYERS = [b"base layer " * 1000, b"own layer " * 3000]


def layout_with_config(tmp_path, layers=LAYERS):
    ids = ["sha256:" + hashlib.sha256(b"diff " + layer).hexdigest() for layer in layers]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": ids}}).encode()
    blobs = {str(i): content for i, content in enumerate([config, *layers])}
    write_layout(tmp_path, image_manifest(config, layers), blobs)
    return read_layout(tmp_path), ids


def members(stream) -> tuple[list[str], tarfile.TarFile]:
    tf = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
    return tf.getnames(), tf


def test_load_stream_names_config_layers_and_tags_last(tmp_path):
    manifest, ids = layout_with_config(tmp_path)
    config, base, own = manifest.blobs()
    names, tf = members(docker_archive(tmp_path, manifest, ["r/img:1", "r/other:1"]))
    assert names == [f"{config.hex}.json", f"{base.hex}/layer.tar", f"{own.hex}/layer.tar", "manifest.json"]
    described = json.load(tf.extractfile("manifest.json"))
    assert described == [
        {
            "Config": f"{config.hex}.json",
            "RepoTags": ["r/img:1", "r/other:1"],
            "Layers": [f"{base.hex}/layer.tar", f"{own.hex}/layer.tar"],
        }
    ]
    assert tf.extractfile(f"{own.hex}/layer.tar").read() == LAYERS[1]  # the compressed blob as it is
    assert diff_ids(tmp_path, manifest) == ids


def test_layers_the_engine_holds_are_left_out_but_still_named(tmp_path):
    manifest, _ = layout_with_config(tmp_path)
    config, base, own = manifest.blobs()
    names, tf = members(docker_archive(tmp_path, manifest, ["r/img:1"], held=1))
    assert names == [f"{config.hex}.json", f"{own.hex}/layer.tar", "manifest.json"]
    assert json.load(tf.extractfile("manifest.json"))[0]["Layers"][0] == f"{base.hex}/layer.tar"


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_damaged_blob_ends_the_stream_before_the_tags(tmp_path, which):
    manifest, _ = layout_with_config(tmp_path)
    path = blob_path(tmp_path, manifest.blobs()[which])
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    sent = []
    with pytest.raises(DamagedBlob) as caught:
        for chunk in docker_archive(tmp_path, manifest, ["r/img:1"]):
            sent.append(chunk)
    assert caught.value.path == path
    assert b"manifest.json" not in b"".join(sent)


def test_a_blob_of_another_size_is_damaged_before_a_byte_is_sent(tmp_path):
    manifest, _ = layout_with_config(tmp_path)
    path = blob_path(tmp_path, manifest.blobs()[2])
    path.write_bytes(path.read_bytes() + b"x")
    stream = docker_archive(tmp_path, manifest, ["r/img:1"])
    with pytest.raises(DamagedBlob):
        for _ in stream:
            pass


def test_a_configuration_without_layers_is_refused(tmp_path):
    config = b'{"config": {}}'
    write_layout(tmp_path, image_manifest(config, [b"x"]), {"c": config, "x": b"x"})
    with pytest.raises(LoadError, match="names no layers"):
        diff_ids(tmp_path, read_layout(tmp_path))


def test_upload_body_checks_the_blob_while_it_is_read(tmp_path):
    content = b"layer bytes " * 50_000
    path = tmp_path / "blob"
    path.write_bytes(content)
    blob = Blob("sha256:" + hashlib.sha256(content).hexdigest(), len(content), "")
    body = _Verified(path, blob)
    assert b"".join(iter(lambda: body.read(65536), b"")) == content
    body.close()

    path.write_bytes(content[:-1] + b"X")
    body = _Verified(path, blob)
    with pytest.raises(DamagedBlob):
        while body.read(65536):
            pass
    body.close()
