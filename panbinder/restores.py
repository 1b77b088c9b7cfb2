"""Restores inside the running service: an archive under ``Archive.root`` becomes launchable
again without a new interpreter (``POST /api/archives/restore``, operators only).

``panbinder restore ARCHIVE`` pays for an interpreter and its imports before the first byte
moves (2.9 s on a loaded 2-core machine, more than a cached launch), then, before this change,
read every blob to verify it, uploaded the missing ones, and pulled the image back from the
registry. Here the archive is opened in the portal's process, its blobs are checked while they
stream (``Archive.restore_image``: a ``docker load`` into the run engine beside the registry
upload), and the request answers as soon as the engine holds the image. While the upload
finishes in the background, ``Registry.digest`` answers with the archived digest for the
restored names (``Registry.restoring``), so a launch starts from the engine's copy instead of
building. A damaged archive fails the request naming the file; nothing is tagged or put.
``Restorer.launch_before_upload`` False waits for the upload (servers on other engines, such
as Swarm or Kubernetes nodes, pull from the registry).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from traitlets import Bool, Instance
from traitlets.config import LoggingConfigurable

from .errors import PanbinderError
from .executor import log_task_exception, run_blocking
from .paths import safe_join
from .registry_cache import Registry
from .registry_cache.archive import Archive, ArchiveError
from .registry_cache.transfer import RegistryClient

DATASET_FIELDS = (
    "pid title facility instrument scientific_field data_type proposal_id owners groups "
    "creation_date release_date is_public location size file_count"
).split()
DATE_FIELDS = ("creation_date", "release_date")


@dataclass
class Restored:
    """What one restore did (``to_dict`` is the API's answer)."""

    images: list[str]
    digest: str
    blobs: str
    repository: str = ""
    publication: str = ""
    upload: str = "done"  # or "in progress": the engine has the image, the registry gets it
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def register_again(catalogue: Any, meta: dict) -> str:
    """Register the archived publication ``meta`` (publication.json) unless the catalogue has it;
    returns what happened, for the operator."""
    from .data_mounts.models import Dataset, Publication

    with catalogue.session() as session:
        existing = catalogue.get_publication(session, meta["doi"])
        if existing is not None and existing.resolved_sha != meta["resolved_sha"]:
            return f"registered here with commit {existing.resolved_sha}; left as it is"
        if existing is not None:
            return "already registered"
        datasets = []
        for record in meta["datasets"]:
            ds = catalogue.get_dataset(session, record["pid"])
            if ds is None:
                values = {f: record.get(f) for f in DATASET_FIELDS if record.get(f) is not None}
                for f in DATE_FIELDS:
                    if values.get(f):
                        values[f] = datetime.fromisoformat(values[f])
                ds = Dataset(**values)
                session.add(ds)
            datasets.append(ds)
        fields = ("doi", "title", "authors", "year", "repo_url", "ref", "resolved_sha")
        session.add(Publication(**{f: meta[f] for f in fields}, datasets=datasets))
    return "registered again from the archive"


class Restorer(LoggingConfigurable):
    launch_before_upload = Bool(
        True,
        help="Answer a restore (and let launches start) as soon as the run engine holds the "
        "image, while the upload to the registry finishes. Set False when servers start on other "
        "engines that pull from the registry (Swarm or Kubernetes nodes).",
    ).tag(config=True)

    archive = Instance(Archive, help="Where archives are and how they are restored (composition root).")
    registry = Instance(Registry, help="The registry launches look images up in (composition root).")

    def __init__(self, *, image_prefix: str, catalogue: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_prefix = image_prefix
        self.catalogue = catalogue
        self.tasks: set[asyncio.Task] = set()

    def archive_path(self, name: str) -> Path:
        """The archive ``name`` (a folder or tarball) under ``Archive.root``; 404 when absent."""
        path = safe_join(self.archive.root, name)
        if not path.exists():
            raise PanbinderError(
                f"There is no archive {name!r} in the archive folder; give the name "
                "'panbinder archive' printed (a folder or .tar).",
                reason="no_archive",
                status_code=404,
            )
        return path

    async def restore(self, name: str) -> Restored:
        """Restore the archive ``name``; answers once the image is launchable (see the module
        docstring). ArchiveError when the archive is damaged or the registry refuses it."""
        path = self.archive_path(name)
        loop = asyncio.get_running_loop()
        launchable: asyncio.Future[Restored] = loop.create_future()
        scratch = Path(tempfile.mkdtemp(prefix="panbinder-restore-"))

        def ready(result: Restored) -> None:  # from the restore's thread: the engine has it
            loop.call_soon_threadsafe(lambda: launchable.done() or launchable.set_result(result))

        job = asyncio.ensure_future(run_blocking(self.run, path, scratch, ready))
        job.add_done_callback(lambda _: shutil.rmtree(scratch, ignore_errors=True))
        await asyncio.wait([launchable, job], return_when=asyncio.FIRST_COMPLETED)
        if not launchable.done():  # failed before the engine had the image, or finished
            result = job.result()
            return result
        result = launchable.result()
        if job.done():
            job.result()  # the upload's error, if it failed already
            result.upload = "done"
            return result
        self.tasks.add(job)
        job.add_done_callback(self.tasks.discard)
        job.add_done_callback(lambda t: log_task_exception(t, self.log))
        job.add_done_callback(lambda _: self.forget(result.images))
        for image in result.images:
            self.registry.restoring[image] = result.digest
        return result

    def forget(self, images: list[str]) -> None:
        for image in images:
            self.registry.restoring.pop(image, None)

    def run(self, path: Path, scratch: Path, ready: Any) -> Restored:
        """The blocking restore: check, load and upload, the repository, the lock, the
        publication; ``ready(result)`` once the engine holds the image (before the upload ends
        when ``launch_before_upload``)."""
        archive, registry = self.archive, self.registry
        client = RegistryClient(registry, timeout=max(registry.timeout, 120))
        bag = archive.open(path, scratch)
        archived = archive.describe(bag)
        targets = archived.names(registry=registry.host, prefix=self.image_prefix)
        manifest, plan = archive.prepare(bag, client, targets[0])  # nothing changed before this
        result = Restored([t.full for t in targets], manifest.digest, plan.summary(), upload="in progress")

        def loaded() -> None:
            result.repository = str(archive.restore_repository(bag, archived.repo_url))
            result.publication = self.register(bag, result)
            if self.launch_before_upload:
                ready(result)

        archive.restore_image(bag, client, manifest, targets, plan, loaded=loaded)
        result.upload = "done"
        self.record_lock(bag, result)
        self.log.info("restored %s@%s from %s", targets[0].full, manifest.digest, path.name)
        return result

    def register(self, bag: Path, result: Restored) -> str:
        meta_path = bag / "data" / "publication.json"
        if self.catalogue is None or not meta_path.exists():
            return ""
        meta = json.loads(meta_path.read_text())
        try:
            return f"{meta['doi']} ({register_again(self.catalogue, meta)})"
        except Exception as e:  # the image is restored; the registration is reported
            self.log.warning("could not register %s again: %s", meta.get("doi"), e)
            result.notes.append(f"the publication {meta.get('doi')} could not be registered again")
            return ""

    def record_lock(self, bag: Path, result: Restored) -> None:
        lock_path = bag / "data" / "lock.json"
        if self.catalogue is None or not lock_path.exists():
            return
        lock = json.loads(lock_path.read_text())
        for image in result.images:
            try:
                self.catalogue.record_lock(image, result.digest, lock)
            except Exception as e:  # the image is restored; the lock is a bonus
                self.log.warning("could not record the lock of %s: %s", image, e)

    async def stop(self) -> None:
        """Let uploads in flight finish (the registry would otherwise miss restored images)."""
        if self.tasks:
            await asyncio.wait(list(self.tasks))


__all__ = ["ArchiveError", "Restored", "Restorer", "register_again"]
