"""An archived image straight into the run engine: a ``docker load`` stream made from the
archive's OCI image layout, each blob checked against its digest while it streams.

Restoring through the registry (upload every missing blob, then ``docker pull``) reads the image
three times and waits for the upload before the engine gets anything. ``docker load`` takes the
compressed layers as they are (the engine decompresses them and checks each layer's ``diff_id``
from the configuration), so the archive's bytes go to the engine once, and the registry upload
can run beside it.

The stream is the engine's ``docker save`` format (``manifest.json`` naming the configuration,
the layers and the tags) as a tar written on the fly. Integrity: every blob's sha256 and size is
checked while it is sent, and ``manifest.json``, the one member that makes the engine register
and tag the image, comes last, only after every blob checked out. A damaged blob ends the
stream early: the engine sees a truncated archive, tags nothing, and the caller gets
``DamagedBlob`` naming the blob. Leading layers the engine holds already (the base image's) are
left out of the stream unless the registry lacks them too (then they are read, and checked,
for the upload anyway).

Measured on 2 cores under a test suite's load (load average 9), an image of a 160 MB base layer
and 86 MB of its own: ``docker pull`` from the registry 9.4-11.7 s, this load 9.4 s, of which
1.4 s sending and the rest the engine decompressing and unpacking the layers, as a pull does.
The gain is elsewhere: no upload before the engine gets the image, and one read of the blobs.

The call to docker blocks; callers run it through ``run_blocking``.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from panbinder.docker_engine import Docker
from panbinder.errors import PanbinderError

from .transfer import CHUNK, Blob, DamagedBlob, Manifest, blob_path

BLOCK = 512


class LoadError(PanbinderError):
    """The engine refused the stream (a blob's damage is ``DamagedBlob``)."""


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _verified_blob(layout: Path, blob: Blob, name: str) -> Iterator[bytes]:
    """The tar member ``name`` holding ``blob``; raises LoadError (ending the stream) when its
    size or sha256 differs from the digest the manifest names."""
    path = blob_path(layout, blob)
    size = path.stat().st_size
    if size != blob.size:
        raise DamagedBlob(path)
    yield _header(name, size)
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            yield chunk
    if h.hexdigest() != blob.hex:
        raise DamagedBlob(path)
    yield _padding(size)


def docker_archive(layout: Path, manifest: Manifest, tags: list[str], held: int = 0) -> Iterator[bytes]:
    """The ``docker load`` stream of the image in ``layout`` (see the module docstring). The
    first ``held`` layers are left out: the engine has them (``held_layers``) and reads none."""
    config, *layers = manifest.blobs()
    members = [(config, f"{config.hex}.json")] + [(b, f"{b.hex}/layer.tar") for b in layers]
    for i, (blob, name) in enumerate(members):
        if i == 0 or i > held:
            yield from _verified_blob(layout, blob, name)
    described = [{"Config": members[0][1], "RepoTags": tags, "Layers": [n for _, n in members[1:]]}]
    body = json.dumps(described).encode()
    yield _header("manifest.json", len(body)) + body + _padding(len(body))
    yield b"\0" * (2 * BLOCK)


def diff_ids(layout: Path, manifest: Manifest) -> list[str]:
    """The layers' ``diff_id`` (digest of the uncompressed layer) from the image configuration,
    checked against its digest first."""
    config = manifest.blobs()[0]
    path = blob_path(layout, config)
    body = path.read_bytes()
    if "sha256:" + hashlib.sha256(body).hexdigest() != config.digest:
        raise DamagedBlob(path)
    try:
        return list(json.loads(body)["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError) as e:
        raise LoadError(f"the image configuration {config.hex} names no layers: {e}") from None


def held_layers(docker: Docker, layers: list[str], workers: int = 8) -> int:
    """How many leading layers of ``layers`` (diff IDs) the engine holds already: the longest
    prefix one of its images starts with (the engine keeps layers by that chain)."""
    api = docker.client.api
    ids = [image["Id"] for image in api.images()]

    def rootfs(image_id: str) -> list[str]:
        try:
            return list(api.inspect_image(image_id).get("RootFS", {}).get("Layers") or [])
        except Exception:  # removed meanwhile: it holds nothing
            return []

    with ThreadPoolExecutor(max_workers=workers) as pool:
        held = 0
        for have in pool.map(rootfs, ids):
            same = 0
            while same < min(len(have), len(layers)) and have[same] == layers[same]:
                same += 1
            held = max(held, same)
    return held


def load_image(
    docker: Docker, layout: Path, manifest: Manifest, tags: list[str], read: set[str] = frozenset()
) -> None:
    """``docker load`` the image of ``layout`` into ``docker``'s engine under ``tags`` (see the
    module docstring). ``read``: digests of blobs that are streamed even if the engine holds
    their layer (they are checked here). Raises DamagedBlob when a blob is damaged, LoadError
    when the engine refuses the image or holds another one under a tag afterwards."""
    layers = diff_ids(layout, manifest)
    blobs = manifest.blobs()[1:]
    if len(layers) != len(blobs):
        raise LoadError(f"the image configuration names {len(layers)} layers, its manifest {len(blobs)}")
    try:
        held = held_layers(docker, layers)
        held = next((i for i, b in enumerate(blobs[:held]) if b.digest in read), held)
        answers = list(docker.client.api.load_image(docker_archive(layout, manifest, tags, held)))
    except (DamagedBlob, LoadError):
        raise
    except Exception as e:  # the engine's own error (requests/docker-py), or a broken upload
        raise LoadError(f"docker load failed: {e}") from None
    errors = [a.get("error") or a.get("message") for a in answers if isinstance(a, dict)]
    if any(errors):
        raise LoadError(f"docker load failed: {next(e for e in errors if e)}")
    expected = manifest.blobs()[0].digest
    for tag in tags:
        if (docker.inspect_image(tag) or {}).get("Id") != expected:
            raise LoadError(f"docker load left {tag} with another image than the archived {expected}")


__all__ = ["LoadError", "docker_archive", "load_image"]
