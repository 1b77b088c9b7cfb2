"""Self-describing archives of a launchable image: the image, the repository and the metadata.

An archive is a BagIt-like folder (RFC 8493 layout, without tag manifests)::

    bagit.txt  bag-info.txt  manifest-sha256.txt
    data/archive.json      provider, repository URL, pinned commit, original image name
    data/image.tar         ``docker save`` of the image
    data/repo.bundle       ``git bundle`` of the repository: the pinned commit (ref
                           refs/panbinder/archived) plus HEAD, branches and tags of the time
    data/publication.json  the publication and its datasets' metadata (no data files), if any
    data/lock.json         the environment lock, if one exists

Checksums are computed streaming. ``verify_bag`` is run before anything is restored. The calls
to docker and git here block; callers run them in a CLI or through ``run_blocking``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError

from .naming import ImageRef, image_ref, repo_slug

ARCHIVED_REF = "refs/panbinder/archived"
LOCK_PATH_IN_IMAGE = "/srv/panbinder/lock.json"
CHUNK = 1024 * 1024


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


def write_bag(bag: Path, info: dict[str, str]) -> None:
    """Write ``bagit.txt``, ``manifest-sha256.txt`` and ``bag-info.txt`` for ``bag/data``."""
    lines, total = [], 0
    for rel in payload_files(bag):
        path = bag / rel
        total += path.stat().st_size
        lines.append(f"{sha256_file(path)}  {rel}\n")
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


def verify_bag(bag: Path) -> None:
    """Raise ArchiveError naming the first file that is missing, extra or does not match."""
    entries = read_manifest(bag)
    extra = sorted(set(payload_files(bag)) - set(entries))
    if extra:
        raise ArchiveError(
            f"{extra[0]} is in the archive {bag} but not in its manifest; nothing was restored."
        )
    for rel, digest in entries.items():
        path = bag / rel
        if not path.is_file():
            raise ArchiveError(f"{rel} is missing from the archive {bag}; nothing was restored.")
        if sha256_file(path) != digest:
            raise ArchiveError(
                f"{rel} in the archive {bag} does not match its sha256 checksum; the archive is "
                "damaged or was changed. Nothing was restored; use another copy of the archive."
            )


# archive description ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchivedImage:
    provider: str  # provider the image was named for ("doi" or "git")
    repo_url: str
    sha: str
    image: str  # the full name the image had when it was archived

    def names(
        self, *, registry: str, prefix: str, providers: Iterable[str] = ("doi", "git")
    ) -> list[ImageRef]:
        """Names under which the image is launchable (by DOI and by URL), in today's scheme."""
        wanted = list(dict.fromkeys([self.provider, *providers]))
        return [
            image_ref(registry=registry, prefix=prefix, provider=p, repo_url=self.repo_url, ref=self.sha)
            for p in wanted
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


# the configurable ------------------------------------------------------------------------------


class Archive(LoggingConfigurable):
    root = Unicode("", help="Folder where archives are written (empty: <state_dir>/archives).").tag(
        config=True
    )
    repo_mirror_root = Unicode(
        "",
        help="Folder where restored repositories are kept as bare repositories <slug>.git "
        "(empty: <state_dir>/repo-mirrors). Serve it (e.g. git daemon --base-path) for launches "
        "by URL, or use file:// URLs when GitProvider.allow_local is set.",
    ).tag(config=True)
    docker = Unicode("docker", help="The docker command.").tag(config=True)

    # writing

    def ensure_local(self, image: str) -> None:
        """Pull ``image`` from its registry unless the local engine has it."""
        if subprocess.run([self.docker, "image", "inspect", image], capture_output=True).returncode != 0:
            _run(self.docker, "pull", "-q", image, what=f"docker pull {image}")

    def read_lock_from_image(self, image: str) -> dict | None:
        """The lock file inside the image, or None (never fails on a missing lock)."""
        proc = subprocess.run([self.docker, "create", image], capture_output=True, text=True)
        if proc.returncode != 0:
            return None
        cid = proc.stdout.strip()
        try:
            out = subprocess.run([self.docker, "cp", f"{cid}:{LOCK_PATH_IN_IMAGE}", "-"], capture_output=True)
            if out.returncode != 0:
                return None
            with tempfile.TemporaryFile() as f:
                f.write(out.stdout)
                f.seek(0)
                with tarfile.open(fileobj=f) as tar:
                    member = tar.next()
                    data = tar.extractfile(member) if member else None
                    return json.loads(data.read()) if data else None
        except (OSError, ValueError, tarfile.TarError):
            return None
        finally:
            subprocess.run([self.docker, "rm", "-f", cid], capture_output=True)

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
                _run(
                    "git",
                    "-C",
                    str(bare),
                    "fetch",
                    "--quiet",
                    str(mirror),
                    "+refs/*:refs/*",
                    what="git fetch",
                )
            git = ("git", "-C", str(bare))
            _run(*git, "cat-file", "-e", f"{sha}^{{commit}}", what=f"finding commit {sha} in {repo_url}")
            _run(*git, "update-ref", ARCHIVED_REF, sha, what="git update-ref")
            _run(
                *git,
                "bundle",
                "create",
                "--quiet",
                str(dest),
                ARCHIVED_REF,
                "HEAD",
                "--branches",
                "--tags",
                what="git bundle create",
            )

    def create(
        self,
        *,
        label: str,
        image: ArchivedImage,
        metadata: dict | None,
        lock: dict | None,
        tar: bool = False,
    ) -> Path:
        """Write the archive for ``image`` into ``root`` and return its folder (or tarball)."""
        root = Path(self.root)
        root.mkdir(parents=True, exist_ok=True)
        final = root / archive_name(label, image.sha)
        if final.exists() or final.with_suffix(".tar").exists():
            raise ArchiveError(f"{final} exists already; move it away or choose another --to folder.")
        work = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
        try:
            data = work / "data"
            data.mkdir()
            self.ensure_local(image.image)
            _run(
                self.docker,
                "save",
                "-o",
                str(data / "image.tar"),
                image.image,
                what=f"docker save {image.image}",
            )
            self.bundle_repository(image.repo_url, image.sha, data / "repo.bundle")
            if lock is None:
                lock = self.read_lock_from_image(image.image)
            if lock is not None:
                _write_json(data / "lock.json", lock)
            if metadata is not None:
                _write_json(data / "publication.json", metadata)
            _write_json(data / "archive.json", {"format": 1, "label": label, **image.__dict__})
            write_bag(
                work,
                {
                    "Source-Organization": "panbinder",
                    "External-Identifier": label,
                    "External-Description": f"{image.repo_url} at {image.sha}; image {image.image}",
                },
            )
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
        info = json.loads((bag / "data" / "archive.json").read_text())
        return ArchivedImage(info["provider"], info["repo_url"], info["sha"], info["image"])

    def load_and_push(self, bag: Path, targets: list[ImageRef]) -> None:
        archived = self.describe(bag)
        _run(self.docker, "load", "-q", "-i", str(bag / "data" / "image.tar"), what="docker load")
        for target in targets:
            _run(self.docker, "tag", archived.image, target.full, what=f"docker tag {target.full}")
            _run(self.docker, "push", "-q", target.full, what=f"docker push {target.full}")
            self.log.info("pushed %s", target.full)

    def restore_repository(self, bag: Path) -> Path:
        """Clone the bundle into ``repo_mirror_root/<slug>.git`` (fetch into it if it exists)."""
        archived = self.describe(bag)
        root = Path(self.repo_mirror_root)
        root.mkdir(parents=True, exist_ok=True)
        dest = self.mirror_path(archived.repo_url)
        bundle = str(bag / "data" / "repo.bundle")
        if dest.exists():
            _run(
                "git", "-C", str(dest), "fetch", "--quiet", bundle, "+refs/*:refs/*", what="git fetch bundle"
            )
        else:
            _run("git", "clone", "--bare", "--quiet", bundle, str(dest), what="git clone bundle")
            _run(
                "git", "-C", str(dest), "fetch", "--quiet", bundle, "+refs/*:refs/*", what="git fetch bundle"
            )
        return dest


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
