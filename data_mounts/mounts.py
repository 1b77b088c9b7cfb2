"""A publication's datasets as read-only mounts, plus /data/MANIFEST.json.

Refusals name the dataset (title and PID), never its folder on the host; the folder goes to
``log_message``. Nothing here touches the datasets' files at launch: locations are resolved (one stat per
dataset folder) and the manifest comes from the catalogue, written once per catalogue state
and reused, so launch time does not depend on dataset size or file count.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from panbinder.errors import PanbinderError
from panbinder.paths import confine

from . import MountSpec
from .access import Identity, embargo_text, may_access

DATA_ROOT = "/data"
MANIFEST_PATH = f"{DATA_ROOT}/MANIFEST.json"


@dataclass(frozen=True)
class MountPlan:
    mounts: tuple[MountSpec, ...]
    environment: tuple[tuple[str, str], ...]


def check_access(publication: Any, who: Identity, now: datetime | None = None) -> None:
    """403 naming the first dataset the user may not see (and its release date). A review grant
    opens the datasets it names, for the launch of the publication it names, and nothing else."""
    review = who.review
    for ds in publication.datasets:
        if not may_access(ds, who, now) and not (review and review.covers(publication.doi, ds.pid, now)):
            if review is not None:
                hint = "the review link does not cover it (it was added to the publication later)"
            elif who.anonymous:
                hint = "sign in as a member of its proposal or wait for the release"
            else:
                hint = f"user '{who.name}' is not in its proposal or groups"
            raise PanbinderError(
                f"{embargo_text(ds)}; {hint}. Nothing was launched.",
                reason="embargo",
                status_code=403,
            )


def _fingerprint(publication: Any) -> str:
    parts = [publication.doi, publication.resolved_sha]
    for ds in sorted(publication.datasets, key=lambda d: d.pid):
        parts += [ds.pid, ds.location or "", str(ds.size), str(ds.file_count)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def manifest(publication: Any) -> dict:
    return {
        "doi": publication.doi,
        "title": publication.title,
        "repository": publication.repo_url,
        "commit": publication.resolved_sha,
        "datasets": [
            {
                "pid": ds.pid,
                "title": ds.title,
                "path": f"{DATA_ROOT}/{ds.slug}",
                "size": ds.size,
                "file_count": ds.file_count,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in ds.files],
            }
            for ds in sorted(publication.datasets, key=lambda d: d.pid)
        ],
    }


def write_manifest(publication: Any, manifest_dir: Path) -> Path:
    """The manifest file for this catalogue state (written once, then reused)."""
    path = manifest_dir / f"{_fingerprint(publication)}.json"
    if path.exists():
        return path
    manifest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=manifest_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest(publication), f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def plan_mounts(
    publication: Any, who: Identity, *, roots: list[str], manifest_dir: Path, now: datetime | None = None
) -> MountPlan:
    check_access(publication, who, now)
    mounts = []
    for ds in sorted(publication.datasets, key=lambda d: d.pid):
        if not ds.location:
            raise PanbinderError(
                f"Dataset '{ds.title}' ({ds.pid}) has no storage location on this service; "
                "ask the facility to register where its files are.",
                reason="no_location",
                status_code=409,
            )
        try:
            host = confine(ds.location, roots)
        except PanbinderError as e:
            raise PanbinderError(
                f"The files of dataset '{ds.title}' ({ds.pid}) are missing or not where the catalogue "
                "says; tell the facility.",
                reason="dataset_missing",
                status_code=409,
                log_message=e.log_message,
            ) from e
        if host.is_dir():
            mounts.append(MountSpec(str(host), f"{DATA_ROOT}/{ds.slug}", True))
        elif host.is_file():  # a dataset of one file keeps its name inside its folder
            mounts.append(MountSpec(str(host), f"{DATA_ROOT}/{ds.slug}/{host.name}", True))
        else:
            raise PanbinderError(
                f"The files of dataset '{ds.title}' ({ds.pid}) are missing on disk; tell the facility.",
                reason="dataset_missing",
                status_code=409,
                log_message=f"{host} (dataset {ds.pid}) is neither a folder nor a file",
            )
    if publication.datasets:
        mounts.append(MountSpec(str(write_manifest(publication, manifest_dir)), MANIFEST_PATH, True))
    return MountPlan(tuple(mounts), (("PANBINDER_DATA", DATA_ROOT),))
