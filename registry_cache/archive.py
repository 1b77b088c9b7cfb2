"""Self-describing archives of a launchable image: the image, the repository and the metadata.

An archive is a BagIt-like folder (RFC 8493 layout, without tag manifests)::

    bagit.txt  bag-info.txt  manifest-sha256.txt
    data/archive.json      format 2: provider, repository URL, pinned commit, image name and digest
    data/image/            the image as the registry stores it, an OCI image layout: oci-layout,
                           index.json and blobs/sha256/<digest> (manifest, configuration,
                           compressed layers: restored byte for byte, so the digest stays the same)
    data/repo.bundle       ``git bundle`` of the repository: the pinned commit (ref
                           refs/panbinder/archived) plus HEAD, branches and tags of the time
    data/publication.json  the publication and its datasets' metadata (no data files), if any
    data/lock.json         the environment lock, if one exists (from the catalogue or the label)

Checksums are computed streaming. Before anything is restored, the bag is checked against the
manifest (``check_bag``: none missing, none extra) and its small files are verified; every blob
the restore reads is verified while it streams into the run engine (``docker load``; the blobs
the registry lacks always go through it), and nothing is tagged, sent or put before all of them
checked out; the upload to the registry checks each blob again as it sends it. An image layer the registry already
holds under its digest is not read at all (the digest is the content's checksum). ``verify_bag`` checks every byte (fixity audits).
The calls to docker (the run engine, ``Docker`` settings), git and the registry here block; callers run them in a CLI or through
``run_blocking``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from traitlets import Instance, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from panbinder.docker_engine import Docker
from panbinder.errors import PanbinderError
from panbinder.paths import safe_join
from panbinder.progress import Progress, no_progress
from panbinder.state import state_dir

from .engine_load import LoadError, load_image
from .naming import ImageRef, image_ref, parse_image, repo_slug
from .transfer import (
    CHUNK,
    DamagedBlob,
    ImportPlan,
    Manifest,
    RegistryClient,
    TransferError,
    blob_path,
    export_image,
    import_image,
    plan_import,
    read_layout,
)

ARCHIVED_REF = "refs/panbinder/archived"
FORMAT = 2
IMAGE_DIR = "data/image"


class ArchiveError(PanbinderError):
    pass


# bag: manifest writing and verification --------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def payload_files(bag: Path) -> list[str]:
    """Relative POSIX paths of every file under ``bag/data``, sorted."""
    data = bag / "data"
    return sorted(p.relative_to(bag).as_posix() for p in data.rglob("*") if p.is_file())


def write_bag(bag: Path, info: dict[str, str], known: dict[str, str] | None = None) -> None:
    """Write ``bagit.txt``, ``manifest-sha256.txt`` and ``bag-info.txt`` for ``bag/data``.

    ``known`` maps paths to checksums already verified on the way in (content-addressed blobs).
    """
    known = known or {}
    lines, total = [], 0
    for rel in payload_files(bag):
        path = bag / rel
        total += path.stat().st_size
        lines.append(f"{known.get(rel) or sha256_file(path)}  {rel}\n")
    (bag / "manifest-sha256.txt").write_text("".join(lines))
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    fields = {**info, "Payload-Oxum": f"{total}.{len(lines)}", "Bagging-Date": _today()}
    (bag / "bag-info.txt").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))


def read_manifest(bag: Path) -> dict[str, str]:
    manifest = bag / "manifest-sha256.txt"
    if not manifest.is_file() or not (bag / "bagit.txt").is_file():
        raise ArchiveError(f"{bag} is not a panbinder archive (no bagit.txt or manifest-sha256.txt).")
    entries = {}
    for line in manifest.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        if not rel or len(digest) != 64 or rel.startswith("/") or ".." in rel.split("/"):
            raise ArchiveError(f"manifest-sha256.txt of {bag} has a bad line: {line!r}")
        entries[rel] = digest
    return entries


def check_bag(bag: Path) -> dict[str, str]:
    """The manifest entries, after checking that no file is missing or extra (no file is read)."""
    entries = read_manifest(bag)
    extra = sorted(set(payload_files(bag)) - set(entries))
    if extra:
        raise ArchiveError(
            f"{extra[0]} is in the archive {bag} but not in its manifest; nothing was restored."
        )
    for rel in entries:
        if not (bag / rel).is_file():
            raise ArchiveError(f"{rel} is missing from the archive {bag}; nothing was restored.")
    return entries


def verify_files(
    bag: Path, entries: dict[str, str], paths: Iterable[str], progress: Progress = no_progress
) -> None:
    """Raise ArchiveError naming the first of ``paths`` whose sha256 differs from the manifest."""
    for rel in progress(paths, desc="files checked"):
        if sha256_file(bag / rel) != entries[rel]:
            raise ArchiveError(
                f"{rel} in the archive {bag} does not match its sha256 checksum; the archive is "
                "damaged or was changed. Nothing was restored; use another copy of the archive."
            )


def damaged(bag: Path, error: DamagedBlob) -> ArchiveError:
    """The restore's error for a blob found damaged while it streamed (named as in the bag)."""
    rel = f"{IMAGE_DIR}/blobs/sha256/{error.path.name}"
    return ArchiveError(
        f"{rel} in the archive {bag} does not match its sha256 checksum; the archive is damaged or "
        "was changed. Nothing was restored; use another copy of the archive."
    )


def verify_bag(bag: Path, progress: Progress = no_progress) -> None:
    """Check every file of the bag, byte for byte; raise ArchiveError naming the first bad one."""
    entries = check_bag(bag)
    verify_files(bag, entries, list(entries), progress)


# archive description ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchivedImage:
    provider: str  # provider the image was named for ("git", or an archive's: "zenodo"...)
    repo_url: str
    sha: str
    image: str  # the full name the image had when it was archived
    digest: str = ""  # its manifest digest in the registry

    def names(self, *, registry: str, prefix: str) -> list[ImageRef]:
        """Names under which the image is launchable again, in today's scheme: the repository's
        ``git`` name (used by launches by URL and by DOI) and its own provider's name."""
        return [
            image_ref(registry=registry, prefix=prefix, provider=p, repo_url=self.repo_url, ref=self.sha)
            for p in dict.fromkeys(["git", self.provider])
        ]


def archive_name(label: str, sha: str) -> str:
    return f"{repo_slug(label, 60)}-{sha[:12]}"


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _run(*args: str, what: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ArchiveError(f"{what} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _docker(call: Callable[..., object], *args: str, what: str) -> None:
    """An SDK call whose failure the archive command reports."""
    try:
        call(*args)
    except PanbinderError as e:
        raise ArchiveError(f"{what} failed: {e.message}") from None
    except Exception as e:  # the engine's own error (requests/docker-py)
        raise ArchiveError(f"{what} failed: {e}") from None


# the configurable ------------------------------------------------------------------------------


class Archive(LoggingConfigurable):
    root = Unicode(help="Folder where archives are written (default: <state_dir>/archives).").tag(config=True)
    repo_mirror_root = Unicode(
        help="Folder where restored repositories are kept as bare repositories <slug>.git "
        "(default: <state_dir>/repo-mirrors). Serve it (e.g. git daemon --base-path) for launches "
        "by URL, or use file:// URLs when GitProvider.allow_local is set.",
    ).tag(config=True)
    transfers = Int(4, help="Blobs copied at the same time between the registry and an archive.").tag(
        config=True
    )

    @default("root")
    def _root_default(self) -> str:
        return str(state_dir(self) / "archives")

    @default("repo_mirror_root")
    def _repo_mirror_root_default(self) -> str:
        return str(state_dir(self) / "repo-mirrors")

    docker = Instance(
        Docker,
        help="The run engine: images are pushed from and pulled into it (given by the composition root).",
    )

    # writing

    def ensure_in_registry(self, client: RegistryClient, image: str) -> None:
        """Push ``image`` from the local engine when the registry does not have it."""
        try:
            client.get_manifest(parse_image(image))
        except TransferError:
            if not self.docker.has_image(image):
                raise ArchiveError(
                    f"{image} is neither in the registry nor in the local engine; launch it once to "
                    "build it, then archive it."
                ) from None
            _docker(self.docker.push, image, what=f"docker push {image}")

    def registry_image(self, client: RegistryClient, image: str) -> tuple[str, dict]:
        """The manifest digest of ``image`` in the registry and its configuration (labels...)."""
        ref = parse_image(image)
        manifest = client.get_manifest(ref)
        with tempfile.TemporaryDirectory(prefix="panbinder-config-") as tmp:
            path = Path(tmp) / "config.json"
            client.download_blob(ref.name, manifest.blobs()[0], path)
            return manifest.digest, json.loads(path.read_text())

    def mirror_path(self, repo_url: str) -> Path:
        """Where ``restore`` keeps the repository of ``repo_url``."""
        return Path(self.repo_mirror_root) / f"{repo_slug(repo_url, 80)}.git"

    def bundle_repository(self, repo_url: str, sha: str, dest: Path) -> None:
        """Bundle the repository from its URL, else from a mirror a restore left (the URL may be gone)."""
        with tempfile.TemporaryDirectory(prefix="panbinder-archive-") as tmp:
            bare = Path(tmp) / "repo.git"
            try:
                _run("git", "clone", "--bare", "--quiet", repo_url, str(bare), what=f"git clone {repo_url}")
            except ArchiveError:
                mirror = self.mirror_path(repo_url)
                if not mirror.is_dir():
                    raise
                self.log.warning("%s cannot be cloned; bundling the restored mirror %s", repo_url, mirror)
                _run("git", "clone", "--bare", "--quiet", str(mirror), str(bare), what=f"git clone {mirror}")
                _run(*_git(bare), "fetch", "--quiet", str(mirror), "+refs/*:refs/*", what="git fetch")
            git = _git(bare)
            _run(*git, "cat-file", "-e", f"{sha}^{{commit}}", what=f"finding commit {sha} in {repo_url}")
            _run(*git, "update-ref", ARCHIVED_REF, sha, what="git update-ref")
            bundle = ("bundle", "create", "--quiet", str(dest), ARCHIVED_REF, "HEAD", "--branches", "--tags")
            _run(*git, *bundle, what="git bundle create")

    def create(
        self,
        client: RegistryClient,
        *,
        label: str,
        image: ArchivedImage,
        metadata: dict | None,
        lock: dict | None,
        tar: bool = False,
        progress: Progress = no_progress,
        bundle: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write the archive for ``image`` (in the registry: see ``ensure_in_registry``) into
        ``root`` and return its folder (or tarball). ``bundle`` writes ``data/repo.bundle`` for
        code that is no git repository (an archive record); default: ``bundle_repository``."""
        root = Path(self.root)
        root.mkdir(parents=True, exist_ok=True)
        final = root / archive_name(label, image.sha)
        if final.exists() or final.with_suffix(".tar").exists():
            raise ArchiveError(f"{final} exists already; move it away or choose another --to folder.")
        work = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
        try:
            data = work / "data"
            data.mkdir()
            try:
                manifest = export_image(
                    client,
                    parse_image(image.image),
                    work / IMAGE_DIR,
                    workers=self.transfers,
                    progress=progress,
                )
            except TransferError as e:
                raise ArchiveError(f"Copying {image.image} from the registry failed: {e.message}") from None
            if bundle is not None:  # code that is no git repository (an archive record)
                bundle(data / "repo.bundle")
            else:
                self.bundle_repository(image.repo_url, image.sha, data / "repo.bundle")
            if lock is not None:
                _write_json(data / "lock.json", lock)
            if metadata is not None:
                _write_json(data / "publication.json", metadata)
            described = {**image.__dict__, "digest": manifest.digest}
            _write_json(data / "archive.json", {"format": FORMAT, "label": label, **described})
            known = {  # blobs are named by their sha256 and were checked on download
                f"{IMAGE_DIR}/blobs/sha256/{b.hex}": b.hex for b in [*manifest.blobs(), manifest.blob]
            }
            info = {
                "Source-Organization": "panbinder",
                "External-Identifier": label,
                "External-Description": f"{image.repo_url} at {image.sha}; image {image.image}@{manifest.digest}",
            }
            write_bag(work, info, known)
            if tar:
                out = final.with_name(final.name + ".tar")
                with tarfile.open(out, "w") as tf:
                    tf.add(work, arcname=final.name)
                return out
            os.replace(work, final)
            return final
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # restoring

    def open(self, path: Path, scratch: Path) -> Path:
        """The bag folder of ``path`` (a folder, or a tarball unpacked into ``scratch``)."""
        if path.is_dir():
            return path
        if not path.is_file():
            raise ArchiveError(f"{path} does not exist; give an archive folder or tarball.")
        try:
            with tarfile.open(path) as tf:
                tf.extractall(scratch, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise ArchiveError(f"{path} is not a readable archive tarball: {e}") from None
        folders = [p for p in scratch.iterdir() if p.is_dir()]
        if len(folders) != 1:
            raise ArchiveError(f"{path} should hold exactly one archive folder.")
        return folders[0]

    def describe(self, bag: Path) -> ArchivedImage:
        try:
            info = json.loads((bag / "data" / "archive.json").read_text())
        except (OSError, ValueError) as e:
            raise ArchiveError(f"{bag}/data/archive.json is unreadable: {e}") from None
        if info.get("format") != FORMAT:
            raise ArchiveError(
                f"{bag} is an archive of format {info.get('format')!r}; this panbinder restores format "
                f"{FORMAT}. Restore it with the panbinder version that wrote it."
            )
        return ArchivedImage(info["provider"], info["repo_url"], info["sha"], info["image"], info["digest"])

    def prepare(self, bag: Path, client: RegistryClient, target: ImageRef) -> tuple[Manifest, ImportPlan]:
        """Check the bag before anything changes: no file missing or extra, every file except the
        image blobs verified, each blob named by its own digest. The blobs themselves are
        verified while they stream (``push``, ``restore_image``): those the registry holds under
        their digest, in ``target``'s repository or another, are not read. Returns the image
        manifest and how its blobs get into the registry."""
        entries = check_bag(bag)
        blobs_dir = f"{IMAGE_DIR}/blobs/sha256/"
        named = {rel for rel, d in entries.items() if rel.startswith(blobs_dir) and rel.endswith("/" + d)}
        verify_files(bag, entries, [rel for rel in entries if rel not in named])
        try:
            manifest = read_layout(bag / IMAGE_DIR)
            plan = plan_import(client, target.name, manifest, self.mount_sources(client, target))
        except TransferError as e:
            raise ArchiveError(f"{e.message} Nothing was restored.") from None
        for blob in manifest.blobs():
            rel = blob_path(bag / IMAGE_DIR, blob).relative_to(bag).as_posix()
            if entries.get(rel) != blob.hex:  # named by its digest, and the manifest agrees
                raise ArchiveError(f"{rel} is not listed with its own digest in the manifest of {bag}.")
        return manifest, plan

    def mount_sources(self, client: RegistryClient, target: ImageRef) -> list[str]:
        """Repositories that may hold blobs of ``target`` (images under the same prefix share the
        base layers), closest names first."""
        prefix = target.name.split("/", 1)[0] + "/"
        names = [n for n in client.repositories() if n.startswith(prefix) and n != target.name]
        return sorted(names, key=lambda n: -_shared_start(n, target.name))

    def push(
        self,
        bag: Path,
        client: RegistryClient,
        manifest: Manifest,
        targets: list[ImageRef],
        plan: ImportPlan,
        progress: Progress = no_progress,
    ) -> None:
        """Link and upload the blobs as planned (each checked while it streams) and put the
        archived manifest under every target: nothing when a blob is damaged."""
        self.send_blobs(bag, client, manifest, targets[0], plan, progress)
        self.put_manifests(bag, client, manifest, targets)

    def send_blobs(
        self,
        bag: Path,
        client: RegistryClient,
        manifest: Manifest,
        target: ImageRef,
        plan: ImportPlan,
        progress: Progress = no_progress,
    ) -> None:
        """The blobs of ``plan`` into ``target``'s repository (no manifest yet: no image)."""
        try:
            import_image(
                client, bag / IMAGE_DIR, manifest, target, plan, workers=self.transfers, progress=progress
            )
        except DamagedBlob as e:
            raise damaged(bag, e) from None
        except TransferError as e:
            raise ArchiveError(f"Pushing the archived image failed: {e.message}") from None

    def put_manifests(
        self, bag: Path, client: RegistryClient, manifest: Manifest, targets: list[ImageRef]
    ) -> None:
        """The archived manifest under every target (its blobs are in the first one's repository)."""
        first = targets[0]
        try:
            client.put_manifest(first, manifest)
            for target in targets[1:]:
                more = plan_import(client, target.name, manifest, [first.name])
                import_image(client, bag / IMAGE_DIR, manifest, target, more, workers=self.transfers)
        except DamagedBlob as e:
            raise damaged(bag, e) from None
        except TransferError as e:
            raise ArchiveError(f"Pushing the archived image failed: {e.message}") from None
        for target in targets:
            self.log.info("pushed %s@%s", target.full, manifest.digest)

    def restore_image(
        self,
        bag: Path,
        client: RegistryClient,
        manifest: Manifest,
        targets: list[ImageRef],
        plan: ImportPlan,
        *,
        loaded: Callable[[], None] = lambda: None,
        progress: Progress = no_progress,
    ) -> None:
        """The archived image into the run engine (``docker load`` of the archive's blobs, each
        checked as it streams), then its missing blobs into the registry and the manifests.
        ``loaded`` is called as soon as the engine holds the image under every target, before
        the upload (the engine gets the machine first: a launch can start from its copy). A
        damaged blob raises ArchiveError before anything is tagged, sent or put; an engine that
        refuses the load gets the image by a pull after the push."""
        image_id = manifest.blobs()[0].digest
        if self.docker.has_image(image_id):  # only the upload reads blobs: first, then the tags
            self.send_blobs(bag, client, manifest, targets[0], plan, progress)
            self.tag(image_id, targets)
            loaded()
            self.put_manifests(bag, client, manifest, targets)
            return
        in_engine = self.load_archived(bag, manifest, targets, plan)
        if in_engine:
            loaded()
        self.send_blobs(bag, client, manifest, targets[0], plan, progress)
        self.put_manifests(bag, client, manifest, targets)
        if not in_engine:
            self.load(targets[0], manifest)
            self.tag(targets[0].full, targets[1:])
            loaded()

    def tag(self, source: str, targets: list[ImageRef]) -> None:
        for target in targets:
            _docker(self.docker.tag, source, target.full, what=f"docker tag {target.full}")

    def load_archived(self, bag: Path, manifest: Manifest, targets: list[ImageRef], plan: ImportPlan) -> bool:
        """``docker load`` the archived image: True when the engine holds it; False when the
        engine refused it (another way is needed); ArchiveError when a blob is damaged."""
        uploads = {b.digest for b in plan.uploads}
        try:
            load_image(self.docker, bag / IMAGE_DIR, manifest, [t.full for t in targets], uploads)
        except DamagedBlob as e:
            raise damaged(bag, e) from None
        except LoadError as e:
            self.log.warning("docker load of %s failed (pulling it instead): %s", targets[0].full, e.message)
            return False
        return True

    def load(self, target: ImageRef, manifest: Manifest) -> None:
        """Make the local engine hold ``target`` (a pull of what it lacks; a tag if it has the image)."""
        image_id = manifest.blobs()[0].digest
        if self.docker.has_image(image_id):
            _docker(self.docker.tag, image_id, target.full, what=f"docker tag {target.full}")
            return
        _docker(self.docker.pull, target.full, what=f"docker pull {target.full}")

    def restore_repository(self, bag: Path, repo_url: str) -> Path:
        """Clone the bundle into ``repo_mirror_root/<slug>.git`` (fetch into it if it exists)."""
        root = Path(self.repo_mirror_root)
        root.mkdir(parents=True, exist_ok=True)
        dest = self.mirror_path(repo_url)
        bundle = str(bag / "data" / "repo.bundle")
        if not dest.exists():
            _run("git", "clone", "--bare", "--quiet", bundle, str(dest), what="git clone bundle")
        _run(*_git(dest), "fetch", "--quiet", bundle, "+refs/*:refs/*", what="git fetch bundle")
        return dest


def repository_bundle(bag: Path) -> Path:
    """The ``data/repo.bundle`` of the opened archive ``bag``, resolved: a regular file inside the
    bag (a symbolic link leading out of it is refused); ArchiveError otherwise."""
    try:
        path = safe_join(bag, "data/repo.bundle")
    except PanbinderError as e:
        raise ArchiveError(
            f"The repository bundle of {bag.name} leads outside the archive: {e.message}"
        ) from None
    if not path.is_file():
        raise ArchiveError(f"{bag.name} has no repository bundle (data/repo.bundle); archive it again.")
    return path


def _git(repo: Path) -> tuple[str, ...]:
    return ("git", "-C", str(repo))


def _shared_start(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` share."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
