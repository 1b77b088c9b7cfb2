"""Copy an image between a registry and an OCI image layout folder, blob for blob.

Archives keep an image exactly as the registry stores it: the manifest bytes, the configuration
and the compressed layers, each named by its sha256 digest (OCI image layout 1.0.0). Copying it
back uploads only the blobs the registry lacks and puts the very same manifest bytes: a restored
image has the digest it was published with, and nothing is recompressed.

The calls here block (``Registry.request``); callers run them in a CLI or through ``run_blocking``.
Blob transfers stream in chunks and check sha256 and size on the way.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from urllib.parse import urlencode, urljoin

from panbinder.errors import PanbinderError
from panbinder.progress import Progress, no_progress

from .naming import ImageRef
from .registry import Registry

CHUNK = 1024 * 1024
LAYOUT_FILE = {"imageLayoutVersion": "1.0.0"}
MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
REF_NAME = "org.opencontainers.image.ref.name"


class TransferError(PanbinderError):
    pass


class DamagedBlob(TransferError):
    """A blob of a layout whose bytes do not match its digest (found while it was sent)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path.name} does not match its sha256 digest")
        self.path = path


class _Verified:
    """A blob file read as a request body: sha256 and size are checked as the bytes go out, and
    ``read`` raises DamagedBlob at the end of a damaged file, before the request is complete."""

    def __init__(self, path: Path, blob: Blob) -> None:
        self.path, self.blob = path, blob
        self.file = path.open("rb")
        self.hash = hashlib.sha256()
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.hash.update(chunk)
        self.sent += len(chunk)
        if not chunk and (self.sent != self.blob.size or self.hash.hexdigest() != self.blob.hex):
            raise DamagedBlob(self.path)
        return chunk

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    media_type: str

    @property
    def hex(self) -> str:
        algorithm, _, hexdigest = self.digest.partition(":")
        if (
            algorithm != "sha256"
            or len(hexdigest) != 64
            or not all(c in "0123456789abcdef" for c in hexdigest)
        ):
            raise TransferError(f"unsupported or malformed blob digest {self.digest!r}")
        return hexdigest


@dataclass(frozen=True)
class Manifest:
    body: bytes  # the exact bytes the registry served (their sha256 is the image digest)
    media_type: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.body).hexdigest()

    @property
    def blob(self) -> Blob:
        """The manifest itself as a blob of the layout."""
        return Blob(self.digest, len(self.body), self.media_type)

    def blobs(self) -> list[Blob]:
        """The configuration first, then the layers."""
        data = json.loads(self.body)
        if self.media_type not in MANIFEST_MEDIA_TYPES or "config" not in data:
            raise TransferError(
                f"only single-platform image manifests can be archived (got {self.media_type})"
            )
        parts = [data["config"], *data.get("layers", [])]
        return [Blob(p["digest"], int(p["size"]), p.get("mediaType", "")) for p in parts]


def blob_path(layout: Path, blob: Blob | str) -> Path:
    digest = blob if isinstance(blob, str) else blob.digest
    return layout / "blobs" / "sha256" / Blob(digest, 0, "").hex


class RegistryClient:
    """The blob and manifest half of the distribution v2 API, through ``Registry.request``
    (blocking: one HTTP(S) connection per call, run in threads)."""

    def __init__(self, registry: Registry | str, timeout: float = 120) -> None:
        self.registry = registry if isinstance(registry, Registry) else Registry(url=registry)
        self.url = self.registry.base
        self.timeout = timeout

    def _request(
        self,
        method: str,
        url: str,
        *,
        body: object = None,
        headers: dict[str, str] | None = None,
        sink: Callable[[bytes], None] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """(status, headers, body); with ``sink`` the body is streamed to it. Follows redirects."""
        try:
            return self.registry.request(
                method, url, body=body, headers=headers, sink=sink, timeout=self.timeout
            )
        except OSError as e:
            raise TransferError(
                f"The registry at {self.url} cannot be reached ({e}); check Registry.url."
            ) from None

    def _fail(self, what: str, status: int, body: bytes) -> TransferError:
        detail = body.decode("utf-8", "replace").strip()[:300]
        return TransferError(f"The registry at {self.url} refused {what} (HTTP {status}): {detail}")

    def repositories(self, limit: int = 1000) -> list[str]:
        """The first ``limit`` repository names of the registry's catalogue ([] if it is closed)."""
        status, _, body = self._request("GET", f"{self.url}/v2/_catalog?n={limit}")
        try:
            return list(json.loads(body).get("repositories") or []) if status == 200 else []
        except ValueError:
            return []

    def get_manifest(self, image: ImageRef) -> Manifest:
        accept = ", ".join(MANIFEST_MEDIA_TYPES)
        url = f"{self.url}/v2/{image.name}/manifests/{image.tag}"
        status, headers, body = self._request("GET", url, headers={"Accept": accept})
        if status == 404:
            raise TransferError(f"{image.full} is not in the registry.")
        if status != 200:
            raise self._fail(f"the manifest of {image.full}", status, body)
        return Manifest(body, (headers.get("Content-Type") or "").split(";")[0].strip())

    def put_manifest(self, image: ImageRef, manifest: Manifest) -> str:
        url = f"{self.url}/v2/{image.name}/manifests/{image.tag}"
        headers = {"Content-Type": manifest.media_type}
        status, _, body = self._request("PUT", url, body=manifest.body, headers=headers)
        if status not in (200, 201):
            raise self._fail(f"the manifest of {image.full}", status, body)
        return manifest.digest

    def has_blob(self, name: str, blob: Blob) -> bool:
        status, _, _ = self._request("HEAD", f"{self.url}/v2/{name}/blobs/{blob.digest}")
        return status == 200

    def download_blob(self, name: str, blob: Blob, dest: Path) -> None:
        """Stream ``blob`` into ``dest`` (written under a temporary name, renamed when it checks out)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:

                def sink(chunk: bytes) -> None:
                    h.update(chunk)
                    out.write(chunk)

                status, _, body = self._request("GET", f"{self.url}/v2/{name}/blobs/{blob.digest}", sink=sink)
            if status != 200:
                raise self._fail(f"blob {blob.digest} of {name}", status, body)
            if "sha256:" + h.hexdigest() != blob.digest:
                raise TransferError(f"blob {blob.digest} of {name} arrived damaged (checksum differs)")
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def mount_blob(self, name: str, blob: Blob, source: str) -> bool:
        """Link ``blob`` from repository ``source`` into ``name`` without sending it; False when the
        registry does not have it there (the upload it opened instead is cancelled)."""
        query = urlencode({"mount": blob.digest, "from": source})
        status, headers, body = self._request(
            "POST", f"{self.url}/v2/{name}/blobs/uploads/?{query}", body=b""
        )
        if status == 201:
            return True
        if status != 202:
            raise self._fail(f"mounting {blob.digest} into {name}", status, body)
        self._request("DELETE", urljoin(self.url + "/", headers.get("Location", "")))
        return False

    def upload_blob(self, name: str, blob: Blob, path: Path) -> None:
        """Put ``blob`` (the file ``path``) into repository ``name`` in one streamed PUT, its
        sha256 checked on the way (DamagedBlob: the upload is broken off, nothing is linked)."""
        status, headers, body = self._request("POST", f"{self.url}/v2/{name}/blobs/uploads/", body=b"")
        if status != 202:
            raise self._fail(f"an upload to {name}", status, body)
        location = urljoin(self.url + "/", headers.get("Location", ""))
        location += ("&" if "?" in location else "?") + urlencode({"digest": blob.digest})
        size = path.stat().st_size
        if size != blob.size:
            raise DamagedBlob(path)
        body_file = _Verified(path, blob)
        try:
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            status, _, body = self._request("PUT", location, body=body_file, headers=headers)
        finally:
            body_file.close()
        if body_file.sent != size or body_file.hash.hexdigest() != blob.hex:
            raise DamagedBlob(path)
        if status not in (201, 204):
            raise self._fail(f"blob {blob.digest} for {name}", status, body)


# layouts -----------------------------------------------------------------------------------------


def export_image(
    client: RegistryClient,
    image: ImageRef,
    layout: Path,
    *,
    workers: int = 4,
    progress: Progress = no_progress,
) -> Manifest:
    """Write ``image`` from the registry into the OCI image layout folder ``layout``."""
    manifest = client.get_manifest(image)
    blobs = manifest.blobs()
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps(LAYOUT_FILE) + "\n")
    blob_path(layout, manifest.digest).parent.mkdir(parents=True, exist_ok=True)
    blob_path(layout, manifest.digest).write_bytes(manifest.body)
    downloads = [lambda b=b: client.download_blob(image.name, b, blob_path(layout, b)) for b in blobs]
    _parallel(workers, downloads, progress)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": manifest.media_type,
                "digest": manifest.digest,
                "size": len(manifest.body),
                "annotations": {REF_NAME: image.tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return manifest


def read_layout(layout: Path) -> Manifest:
    """The one image manifest of an OCI image layout folder."""
    try:
        index = json.loads((layout / "index.json").read_text())
        (entry,) = index["manifests"]
        body = blob_path(layout, entry["digest"]).read_bytes()
    except (OSError, ValueError, KeyError) as e:
        raise TransferError(f"{layout} is not a one-image OCI layout: {e}") from None
    manifest = Manifest(body, entry.get("mediaType", ""))
    if manifest.digest != entry["digest"]:
        raise TransferError(f"the manifest in {layout} does not match its digest {entry['digest']}")
    return manifest


@dataclass(frozen=True)
class ImportPlan:
    """How each blob of an image gets into a repository."""

    present: list[Blob]  # the repository has it
    mounts: list[tuple[Blob, str]]  # another repository of the registry has it: linked, not sent
    uploads: list[Blob]  # sent from the layout

    def summary(self) -> str:
        return (
            f"{len(self.present)} already in the repository, {len(self.mounts)} linked from other "
            f"repositories, {len(self.uploads)} uploaded"
        )


def missing_blobs(client: RegistryClient, name: str, manifest: Manifest) -> list[Blob]:
    """The blobs of ``manifest`` that repository ``name`` does not have."""
    blobs = manifest.blobs()
    return [b for b, ok in zip(blobs, _held(client, name, blobs), strict=True) if not ok]


def plan_import(
    client: RegistryClient, name: str, manifest: Manifest, sources: Iterable[str] = (), max_sources: int = 5
) -> ImportPlan:
    """Which blobs repository ``name`` has, which ``sources`` (other repositories of the same
    registry, e.g. images sharing the base layers) can lend, and which must be uploaded."""
    missing = missing_blobs(client, name, manifest)
    missing_digests = {b.digest for b in missing}
    present = [b for b in manifest.blobs() if b.digest not in missing_digests]
    mounts: list[tuple[Blob, str]] = []
    for source in islice((s for s in sources if s != name), max_sources):
        if not missing:
            break
        held = _held(client, source, missing)
        mounts += [(b, source) for b, ok in zip(missing, held, strict=True) if ok]
        missing = [b for b, ok in zip(missing, held, strict=True) if not ok]
    return ImportPlan(present, mounts, missing)


def import_image(
    client: RegistryClient,
    layout: Path,
    manifest: Manifest,
    image: ImageRef,
    plan: ImportPlan,
    *,
    workers: int = 4,
    progress: Progress = no_progress,
) -> str:
    """Link and upload the blobs as ``plan`` says (a link that fails is uploaded), then put the
    manifest; returns the digest."""

    def mount(item: tuple[Blob, str]) -> None:
        blob, source = item
        if not client.mount_blob(image.name, blob, source):
            client.upload_blob(image.name, blob, blob_path(layout, blob))

    calls = [lambda i=i: mount(i) for i in plan.mounts]
    calls += [lambda b=b: client.upload_blob(image.name, b, blob_path(layout, b)) for b in plan.uploads]
    _parallel(workers, calls, progress)
    return client.put_manifest(image, manifest)


def _held(client: RegistryClient, name: str, blobs: list[Blob]) -> list[bool]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda b: client.has_blob(name, b), blobs))


def _parallel(workers: int, calls: Iterable[Callable[[], None]], progress: Progress = no_progress) -> None:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(call) for call in calls]
        for future in progress(futures, desc="blobs"):
            future.result()


__all__ = [
    "Blob",
    "DamagedBlob",
    "ImportPlan",
    "Manifest",
    "RegistryClient",
    "TransferError",
    "blob_path",
    "export_image",
    "import_image",
    "missing_blobs",
    "plan_import",
    "read_layout",
]
