"""Register files of a running server's workspace as a derived dataset (the core of
``POST /api/derived-datasets``, which ``panbinder-publish`` calls from inside the server).

The caller has identified the server's Hub user by its token. Here: the server's launch as the
Hub holds it, signature checked (``launcher/server_launch.py``: whose workspace it mounts, its
image, its datasets), the publication it was launched for (the DOI of its signed
``/data/MANIFEST.json``, else a publication pinned to the image's commit), the owner's mounted
workspace on this host, then the copy, hashes and registration (``data_mounts/derived_data.py``)
in the executor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import select

from .data_mounts.derived_data import DerivedData, Lineage, PublishRequest, publish
from .data_mounts.models import Publication
from .data_mounts.mounts import MANIFEST_PATH
from .errors import PanbinderError
from .executor import run_blocking
from .launcher.hub_api import HubLauncher
from .launcher.server_launch import signed_launch
from .launcher.signing import SignedFields
from .launcher.workspace_disk import WorkspaceDisk
from .launcher.workspaces import workspace_key
from .paths import confine
from .registry_cache.naming import parse_image, repo_slug


def signed_manifest(fields: SignedFields, manifest_dir: str) -> dict:
    """The launch's signed manifest mount, read ({} without one, or when unreadable)."""
    for m in fields.mounts:
        if m.container_path != MANIFEST_PATH:
            continue
        try:
            data = json.loads(confine(m.host_path, [manifest_dir]).read_text())
        except (PanbinderError, OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
    return {}


def manifest_pids(manifest: dict) -> tuple[str, ...]:
    """The PIDs of the datasets a manifest lists (none when malformed)."""
    datasets = manifest.get("datasets")
    if not isinstance(datasets, list):
        return ()
    return tuple(d["pid"] for d in datasets if isinstance(d, dict) and isinstance(d.get("pid"), str))


def image_doi(catalogue, image: str) -> str:
    """The DOI of the one publication pinned to the image's commit and repository ("" if none
    or several)."""
    ref = parse_image(image)
    with catalogue.session() as session:
        pubs = session.scalars(select(Publication).where(Publication.resolved_sha == ref.tag)).all()
        found = [p.doi for p in pubs if f"-{repo_slug(p.repo_url)}-" in ref.name]
    return found[0] if len(found) == 1 else ""


def workspace_mount(launcher: HubLauncher, owner: str) -> Path:
    """The owner's workspace as mounted on this host (a 409 when it is not mounted here)."""
    mount = WorkspaceDisk(launcher.workspaces).mount_dir(workspace_key(owner))
    if not os.path.ismount(mount):
        raise PanbinderError(
            "Your workspace is not reachable by the portal (it is not mounted on the portal's "
            "host); ask the operators to register derived data on this back-end.",
            reason="workspace_unreachable",
            status_code=409,
            log_message=f"workspace of {owner!r} not mounted at {mount}",
        )
    return mount


def _lineage(catalogue, fields: SignedFields, manifest_dir: str, groups: frozenset[str]) -> Lineage:
    manifest = signed_manifest(fields, manifest_dir)
    doi = str(manifest.get("doi") or "") or image_doi(catalogue, fields.image)
    paths = tuple(m.host_path for m in fields.mounts if m.container_path != MANIFEST_PATH)
    return Lineage(
        owner=fields.workspace,
        image=fields.image,
        source_paths=paths,
        doi=doi,
        source_pids=manifest_pids(manifest),
        groups=groups,
    )


async def owner_groups(groups_of: Callable[[str], Awaitable[frozenset[str]]], owner: str) -> frozenset[str]:
    """The owner's groups as the Hub knows them (their own rights to the source datasets)."""
    try:
        return frozenset(await groups_of(owner))
    except Exception as e:  # the Hub not answering
        raise PanbinderError(
            "Could not ask JupyterHub who you are; try again later.",
            reason="hub_unreachable",
            status_code=503,
            log_message=f"groups of {owner!r}: {e}",
        ) from e


async def register_from_server(
    *,
    hub_user: str,
    request: PublishRequest,
    launcher: object,
    catalogue,
    settings: DerivedData,
    manifest_dir: str,
    groups_of: Callable[[str], Awaitable[frozenset[str]]],
) -> dict:
    """Register ``request``'s files of ``hub_user``'s running server as a derived dataset;
    ``groups_of`` gives a portal user's groups (their own rights to the source datasets)."""
    if not settings.enabled or catalogue is None or not isinstance(launcher, HubLauncher):
        raise PanbinderError(
            "This service does not take derived datasets.", reason="no_derived_data", status_code=501
        )
    try:
        fields = await signed_launch(launcher.hub, signing_key=launcher.signing_key, hub_user=hub_user)
    except PanbinderError:
        raise
    except Exception as e:  # the Hub not answering
        raise PanbinderError(
            "Could not ask JupyterHub about your server; try again later.",
            reason="hub_unreachable",
            status_code=503,
            log_message=f"launch options of {hub_user!r}: {e}",
        ) from e

    groups = await owner_groups(groups_of, fields.workspace)

    def work() -> dict:
        mount = workspace_mount(launcher, fields.workspace)
        lineage = _lineage(catalogue, fields, manifest_dir, groups)
        return publish(
            catalogue,
            settings,
            mount=mount,
            container_root=launcher.workspaces.container_path,
            request=request,
            lineage=lineage,
        )

    with settings.slots.claim(fields.workspace):  # claimed before taking an executor thread
        result = await run_blocking(work)
    launcher.log.info(
        "registered derived dataset %s of %s (%d files) from %s",
        result["pid"],
        fields.workspace,
        len(result["files"]),
        fields.image,
    )
    return result
