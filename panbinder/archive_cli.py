"""``panbinder archive``, ``panbinder restore`` and ``panbinder registry gc``.

``archive DOI|IMAGE`` writes one self-describing folder (see registry_cache/archive.py) that
lets a publication be launched again when its repository and its cached image are gone.
``restore ARCHIVE`` checks the archive (every blob it reads against its checksum while it
streams: nothing is tagged or put before all checked out), loads the image into the local
engine and, beside it, puts it back into the registry under the repository's name in today's
scheme (the one launches by URL and by DOI use) with its archived digest, keeps
the repository as a bare clone under ``Archive.repo_mirror_root`` and registers the publication
again if the catalogue lost it. ``restore --verify-only`` checks every byte and changes nothing.
Errors print ``error: <message>`` and exit with status 2.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from traitlets import Bool

from .catalogue_cli import CatalogueCommand, GroupCommand
from .command import PanbinderBase
from .data_mounts.catalogue import Catalogue
from .data_mounts.models import Publication
from .docker_engine import Docker
from .errors import PanbinderError
from .progress import terminal_progress
from .registry_cache import ImageRef, Registry, image_ref
from .registry_cache.archive import ARCHIVED_REF, Archive, ArchivedImage, ArchiveError, verify_bag
from .registry_cache.retention import GC_COMMAND, RegistryAdmin, Retention, select_removals
from .registry_cache.transfer import RegistryClient
from .restores import DATASET_FIELDS, DATE_FIELDS, Restorer, register_again


def publication_metadata(pub: Publication) -> dict:
    """The publication and its datasets' metadata as JSON-ready data (no data files)."""
    datasets = []
    for ds in pub.datasets:
        record = {f: getattr(ds, f) for f in DATASET_FIELDS}
        for f in DATE_FIELDS:
            record[f] = record[f].isoformat() if record[f] else None
        datasets.append(record)
    return {
        "doi": pub.doi,
        "title": pub.title,
        "authors": list(pub.authors or []),
        "year": pub.year,
        "repo_url": pub.repo_url,
        "ref": pub.ref,
        "resolved_sha": pub.resolved_sha,
        "datasets": datasets,
    }


class ArchiveCommand(CatalogueCommand):
    classes = [PanbinderBase, Catalogue, Archive, Registry, Docker]

    @cached_property
    def docker(self) -> Docker:
        """The run engine's one client for this command (the archive's and ``local``'s); the
        maintenance commands do not load the composition root (builder, portal)."""
        return Docker(parent=self, log=self.log)

    def make_archive(self) -> Archive:
        return Archive(parent=self, log=self.log, docker=self.docker)

    def client(self, registry: Registry) -> RegistryClient:
        return RegistryClient(registry, timeout=max(registry.timeout, 120))


class ArchiveApp(ArchiveCommand):
    name = "panbinder-archive"
    description = "Archive a publication (DOI) or an image: image, repository bundle, lock, metadata."
    usage = "panbinder archive DOI|IMAGE [--to ROOT] [--tar]"
    tar = Bool(False, help="Write one tarball instead of a folder.").tag(config=True)
    aliases = {**CatalogueCommand.aliases, "to": "Archive.root"}
    flags = {**PanbinderBase.flags, "tar": ({"ArchiveApp": {"tar": True}}, "Write a tarball.")}

    def run(self) -> None:
        target = self.one_file()
        archive, registry, catalogue = (
            self.make_archive(),
            Registry(parent=self, log=self.log),
            self.make_catalogue(),
        )
        client = self.client(registry)
        with catalogue.session() as session:
            pub = catalogue.get_publication(session, target)
            metadata = publication_metadata(pub) if pub is not None else None
        if metadata is None and ("/" not in target or ":" not in target.rsplit("/", 1)[-1]):
            self.fail(f"{target} is neither a registered DOI nor an image name with a tag.")
        published = self.publication_image(registry, metadata) if metadata is not None else None
        name = published.image if published is not None else target
        try:  # one look at the image in the registry (pushed there first if only local)
            archive.ensure_in_registry(client, name)
            digest, config = archive.registry_image(client, name)
        except PanbinderError as e:
            self.fail(e.message)
        labels = (config.get("config") or {}).get("Labels") or {}
        image = published or self.labelled_image(labels, target)
        label = metadata["doi"] if metadata is not None else target
        lock = self.lock(catalogue, image.image) or label_lock(labels, digest)
        from .builder.archives import source_for  # the builder's package: not for restore and gc
        from .builder.archives.bundle import bundle_record

        source = source_for(image.repo_url, parent=self, log=self.log)
        bundle = (
            functools.partial(bundle_record, source, image.repo_url, image.sha, ref=ARCHIVED_REF)
            if source is not None
            else None
        )
        try:
            path = archive.create(
                client,
                label=label,
                image=image,
                metadata=metadata,
                lock=lock,
                tar=self.tar,
                progress=terminal_progress,
                bundle=bundle,
            )
        except PanbinderError as e:  # the archive record's files could not be fetched
            self.fail(e.message, detail=e.log_message)
        print(path)

    def publication_image(self, registry: Registry, pub: dict) -> ArchivedImage:
        """The publication's image: its repository's ``git`` name at the pinned commit (launches by
        DOI use it), else a ``doi`` name that earlier versions built."""
        from .builder.archives import archive_kind

        for provider in dict.fromkeys([archive_kind(pub["repo_url"]) or "git", "doi"]):
            ref = image_ref(
                registry=registry.host,
                prefix=self.image_prefix,
                provider=provider,
                repo_url=pub["repo_url"],
                ref=pub["resolved_sha"],
            )
            if asyncio.run(registry.exists(ref)) or self.local(ref.full):
                return ArchivedImage(provider, pub["repo_url"], pub["resolved_sha"], ref.full)
        self.fail(f"No image of {pub['doi']} is in the registry; launch it once to build it, then archive.")

    def local(self, image: str) -> bool:
        """Whether the run engine holds ``image`` (False when it does not answer)."""
        try:
            return self.docker.has_image(image)
        except Exception as e:  # the push that follows says what is wrong
            self.log.warning("the docker engine could not be asked for %s: %s", image, e)
            return False

    def labelled_image(self, labels: dict[str, str], image: str) -> ArchivedImage:
        """Provider, repository and commit from the labels of ``image``."""
        try:
            return ArchivedImage(
                labels["org.panbinder.provider"],
                labels["org.panbinder.repo"],
                labels["org.panbinder.ref"],
                image,
            )
        except KeyError:
            self.fail(f"{image} has no org.panbinder.* labels; archive images built by panbinder only.")

    def lock(self, catalogue, image: str) -> dict | None:
        """The lock the catalogue recorded for ``image`` (full name), if any."""
        try:
            return catalogue.get_lock(image)
        except Exception as e:  # a lock is a bonus; never fail the archive for it
            self.log.warning("no lock from the catalogue for %s: %s", image, e)
            return None


class RestoreApp(ArchiveCommand):
    name = "panbinder-restore"
    description = "Verify an archive, push its image, keep its repository and re-register its publication."
    usage = "panbinder restore ARCHIVE [--verify-only]"
    # Restorer: the same restore inside the portal (POST /api/archives/restore, panbinder/restores.py)
    classes = [*ArchiveCommand.classes, Restorer]
    verify_only = Bool(
        False, help="Check every byte of the archive against its manifest; restore nothing."
    ).tag(config=True)
    flags = {
        **PanbinderBase.flags,
        "verify-only": ({"RestoreApp": {"verify_only": True}}, "Only check the archive (fixity audit)."),
    }

    def run(self) -> None:
        path = Path(self.one_file())
        archive, registry = self.make_archive(), Registry(parent=self, log=self.log)
        client = self.client(registry)
        with tempfile.TemporaryDirectory(prefix="panbinder-restore-") as scratch:
            bag = archive.open(path, Path(scratch))
            if self.verify_only:
                verify_bag(bag, terminal_progress)
                print(f"{path}: every file matches its sha256 checksum")
                return
            archived = archive.describe(bag)
            targets = archived.names(registry=registry.host, prefix=self.image_prefix)
            manifest, plan = archive.prepare(bag, client, targets[0])  # nothing changed before this
            meta_path = bag / "data" / "publication.json"
            metadata = json.loads(meta_path.read_text()) if meta_path.exists() else None
            with ThreadPoolExecutor(max_workers=1) as pool:  # the repository once the image checked out
                repository = []
                archive.restore_image(
                    bag,
                    client,
                    manifest,
                    targets,
                    plan,
                    loaded=lambda: repository.append(
                        pool.submit(archive.restore_repository, bag, archived.repo_url)
                    ),
                    progress=terminal_progress,
                )
                mirror = repository[0].result()
            lock_path = bag / "data" / "lock.json"
            if lock_path.exists():
                self.record_lock(targets, manifest.digest, json.loads(lock_path.read_text()))
        for target in targets:
            print(f"image: {target.full}@{manifest.digest}")
        print(f"blobs: {plan.summary()}")
        print(f"repository: {mirror} (serve this folder, e.g. git daemon --base-path, for launches by URL)")
        if metadata is not None:
            print(f"publication: {metadata['doi']} ({self.restore_publication(metadata)})")

    def record_lock(self, targets: list[ImageRef], digest: str, lock: dict) -> None:
        """Record the archived lock for the pushed names (the digest is the archived one)."""
        record = self.make_catalogue().record_lock
        for target in targets:
            try:
                record(target.full, digest, lock)
            except Exception as e:  # the image is restored; the lock is a bonus
                self.log.warning("could not record the lock of %s: %s", target.full, e)

    def restore_publication(self, meta: dict) -> str:
        return register_again(self.make_catalogue(), meta)


class RegistryGcApp(ArchiveCommand):
    name = "panbinder-registry-gc"
    description = "Remove idle cached images from the registry (dry run unless --apply)."
    usage = "panbinder registry gc [--apply]"
    classes = [PanbinderBase, Catalogue, Retention, Registry]
    apply = Bool(False, help="Delete the selected manifests (default: only list them).").tag(config=True)
    flags = {**PanbinderBase.flags, "apply": ({"RegistryGcApp": {"apply": True}}, "Really delete.")}
    aliases = {**CatalogueCommand.aliases, "max-idle-days": "Retention.max_idle_days"}

    def run(self) -> None:
        asyncio.run(self.gc())

    def pinned(self, registry: Registry) -> set[str]:
        catalogue, pinned = self.make_catalogue(), set()
        with catalogue.session() as session:
            for pub in catalogue.list_publications(session, limit=10**9):
                for provider in ("doi", "git"):
                    ref = image_ref(
                        registry=registry.host,
                        prefix=self.image_prefix,
                        provider=provider,
                        repo_url=pub.repo_url,
                        ref=pub.resolved_sha,
                    )
                    pinned.add(f"{ref.name}:{ref.tag}")
        return pinned

    async def gc(self) -> None:
        from .builder.manager import BuildManager

        registry, retention = Registry(parent=self, log=self.log), Retention(parent=self, log=self.log)
        log_dir = Path(BuildManager(parent=self, log=self.log).log_dir or self.state / "build-logs")
        admin = RegistryAdmin(registry)
        images = await retention.inventory(admin, self.image_prefix, log_dir)
        pinned = self.pinned(registry)
        removals = select_removals(
            images, pinned, now=datetime.now(UTC), max_idle_days=retention.max_idle_days
        )
        for image in images:
            state = "remove" if image in removals else "pinned" if image.key in pinned else "keep"
            when = image.last_used.isoformat(timespec="seconds") if image.last_used else "-"
            print(f"{state:7} {image.key}  last used {when} ({image.source})")
        if not self.apply:
            print(f"dry run: {len(removals)} image(s) would be removed; add --apply to remove them.")
            return
        for image in removals:
            await admin.delete(image.name, image.digest)
        print(f"removed {len(removals)} manifest(s). Reclaim their blobs with: {GC_COMMAND}")


class RegistryApp(GroupCommand):
    name = "panbinder-registry"
    description = "Registry maintenance: gc."
    subcommands = {"gc": (RegistryGcApp, RegistryGcApp.description)}
    classes = [PanbinderBase, Retention, RegistryGcApp]


def label_lock(labels: dict[str, str], digest: str) -> dict | None:
    """The lock in an image's ``org.panbinder.lock`` label, with the image's registry digest."""
    from .builder.lock import LABEL, parse_lock_label  # the builder loads only when needed

    lock = parse_lock_label(labels.get(LABEL))
    return {**lock, "digest": digest} if lock is not None else None


__all__ = ["ArchiveApp", "ArchiveError", "RegistryApp", "RestoreApp"]
