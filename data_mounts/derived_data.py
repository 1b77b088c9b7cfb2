"""Derived datasets: files of a signed-in user's workspace registered back into the catalogue.

``panbinder-publish PATH... --title T`` inside a server sends the paths (as the server sees
them, under ``Workspaces.container_path``) to the portal. Here, on the portal's host, each path
is confined to the owner's mounted workspace (``workspace_files``: resolved, symbolic links
leading out refused, devices, pipes and sockets refused), the files are copied into a new
folder under ``DerivedData.root`` while they are hashed (sha256, one read per file, opened
without following links and checked again once open), and the folder is renamed into place
and registered in one transaction: a ``Dataset`` with ``data_type`` "derived", the user as its
only owner, closed (not public, no release date), with its lineage (``derived_models.py``). A
failure at any step removes the copy, so no dataset is half written. Blocking: the portal runs
``publish`` in its executor.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import secrets
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError
from traitlets import Bool, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError
from panbinder.paths import confine, slug
from panbinder.state import state_dir

from .access import Identity, may_access
from .derived_limits import INCOMING, PublishSlots, check_free_space
from .derived_models import DERIVED, DatasetOrigin, DatasetSource
from .models import Dataset, DatasetFile

CHUNK = 2**20
MAX_TITLE = 500
MAX_DESCRIPTION = 20000
MAX_PATHS = 100


class DerivedData(LoggingConfigurable):
    """Settings of derived datasets (``panbinder-publish`` in signed-in users' servers)."""

    enabled = Bool(
        True,
        help="Offer panbinder-publish in servers with a workspace, and take its registrations.",
    ).tag(config=True)
    root = Unicode(
        help="Folder the files of derived datasets are copied to (default: <state>/derived). "
        "panbinder serve adds it to Catalogue.storage_roots, so derived datasets can be mounted "
        "and previewed like the others."
    ).tag(config=True)
    max_bytes = Int(
        10 * 2**30, help="Most bytes one derived dataset may hold; larger registrations are refused."
    ).tag(config=True)
    max_files = Int(10000, help="Most files one derived dataset may hold.").tag(config=True)
    max_concurrent = Int(
        2,
        help="Most registrations copied at once (each takes a thread of the portal's shared "
        "executor); more are refused with 429 (try again shortly). One per owner at a time.",
    ).tag(config=True)
    free_space_margin = Int(
        512 * 2**20,
        help="Bytes that must stay free under DerivedData.root after a registration's copy; a "
        "registration that would leave less is refused (507) before anything is copied.",
    ).tag(config=True)
    pid_prefix = Unicode(
        "derived:", help="Start of the PIDs of derived datasets (a random part follows)."
    ).tag(config=True)
    internal_port = Int(
        0,
        help="Port of the portal's second listener, on the address servers reach the Hub at "
        "(the docker bridge's gateway): it serves only the registration of derived datasets "
        "(0: any free port; servers are told which).",
    ).tag(config=True)
    api_url = Unicode(
        "",
        help="URL of the registration endpoint as servers reach it, given to them as "
        "PANBINDER_API_URL (default: http://<Hub connect address>:<internal_port><base_url>"
        "api/derived-datasets). Set it where servers reach the portal otherwise (Swarm, "
        "Kubernetes, Slurm): any URL that leads to that path of the portal.",
    ).tag(config=True)

    @default("root")
    def _root_default(self) -> str:
        return str(state_dir(self) / "derived")

    @property
    def slots(self) -> PublishSlots:
        """The registrations under way (``max_concurrent``, one per owner)."""
        if getattr(self, "_slots", None) is None or self._slots.limit != max(1, self.max_concurrent):
            self._slots = PublishSlots(self.max_concurrent)
        return self._slots


@dataclass(frozen=True)
class PublishRequest:
    paths: tuple[str, ...]
    title: str
    description: str = ""


@dataclass(frozen=True)
class PlannedFile:
    name: str  # POSIX path inside the derived dataset
    source: Path  # resolved, inside the workspace
    shown: str  # the path as the server sees it
    size: int = 0  # bytes when planned


@dataclass(frozen=True)
class CopiedFile:
    name: str
    size: int
    sha256: str
    mtime_ns: int


@dataclass(frozen=True)
class Lineage:
    """What the registering server was: its image, its mounted datasets' host paths (as the
    launch signed them: resolved), the PIDs its signed manifest lists, the publication it was
    launched for (DOI, "" when none), the workspace's owner and the owner's groups."""

    owner: str
    image: str = ""
    source_paths: tuple[str, ...] = ()
    doi: str = ""
    source_pids: tuple[str, ...] = ()
    groups: frozenset[str] = frozenset()


def _bad(message: str, reason: str = "bad_request", status_code: int = 400) -> PanbinderError:
    return PanbinderError(message, reason=reason, status_code=status_code)


USAGE = 'Send JSON like {"paths": ["/home/jovyan/work/result.h5"], "title": "...", "description": "..."}.'


def parse_request(body: bytes) -> PublishRequest:
    """The checked request body; a 400 that says what to change otherwise."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise _bad(USAGE, "bad_body")
    paths, title, description = data.get("paths"), data.get("title", ""), data.get("description", "")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise _bad(USAGE, "bad_body")
    if not isinstance(title, str) or not isinstance(description, str):
        raise _bad(USAGE, "bad_body")
    if not paths:
        raise _bad("Name at least one file or folder of your workspace to register.", "no_paths")
    if len(paths) > MAX_PATHS:
        raise _bad(f"Give at most {MAX_PATHS} paths; put the files in a folder and give the folder.")
    title = " ".join(title.split())
    if not title:
        raise _bad('Give the dataset a title: --title "What these files are".', "no_title")
    if len(title) > MAX_TITLE or len(description) > MAX_DESCRIPTION:
        raise _bad(
            f"Keep the title under {MAX_TITLE} and the description under {MAX_DESCRIPTION} characters."
        )
    return PublishRequest(tuple(paths), title, description.strip())


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _kind_refused(shown: str, mode: int) -> PanbinderError | None:
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return _bad(
        f"'{shown}' is not a regular file (a device, pipe or socket); only files and folders "
        "can be registered.",
        "not_a_file",
    )


def _escape(shown: str) -> PanbinderError:
    return _bad(
        f"'{shown}' leads outside your workspace (through a symbolic link); copy the file itself "
        "into your workspace and register the copy.",
        "outside_workspace",
    )


def workspace_files(mount: Path, container_root: str, given: str, limit: int = 0) -> list[PlannedFile]:
    """The files ``given`` (a path as the server sees it) names in the workspace mounted at
    ``mount`` on this host, which servers see at ``container_root``: one file, or every file
    under a folder (named after the folder). Refused (400): a path outside ``container_root``,
    a link leading out of the workspace, a device, pipe or socket, a missing path. ``limit``
    (0: none): a folder's walk stops once it has found that many files."""
    if not isinstance(given, str) or "\0" in given or not given.startswith("/"):
        raise _bad(f"'{given}' is not an absolute path; give the full path, e.g. {container_root}/result.h5.")
    normal, root = posixpath.normpath(given), posixpath.normpath(container_root)
    if not _inside(normal, root):
        raise _bad(
            f"'{given}' is outside your workspace {root}; copy it into {root} and register the copy "
            "(only files of your workspace can be registered).",
            "outside_workspace",
        )
    base = Path(os.path.realpath(mount))
    relative = posixpath.relpath(normal, root)
    host = base if relative == "." else base.joinpath(*relative.split("/"))
    real = Path(os.path.realpath(host))
    if not real.is_relative_to(base):
        raise _escape(given)
    try:
        st = real.lstat()
    except OSError:
        raise _bad(f"'{given}' does not exist in your workspace; check the path.", "missing") from None
    refused = _kind_refused(given, st.st_mode)
    if refused is not None:
        raise refused
    if stat.S_ISREG(st.st_mode):
        return [PlannedFile(posixpath.basename(normal) if relative != "." else "workspace", real, given)]
    top = posixpath.basename(normal) if relative != "." else "workspace"
    return _folder_files(base, real, top, normal, limit)


def _folder_files(base: Path, folder: Path, top: str, shown_root: str, limit: int = 0) -> list[PlannedFile]:
    """Every file under ``folder`` (hidden ones too: the user named the folder); links are
    followed only to files inside the workspace, links to folders are skipped. With ``limit``,
    the walk stops at ``limit`` files (the caller asks for one more than it allows)."""
    out: list[PlannedFile] = []
    for current, dirs, files in os.walk(folder, followlinks=False):
        if limit and len(out) >= limit:
            break
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(current, d))]:
            path = Path(current, name)
            inner = path.relative_to(folder).as_posix()
            shown = f"{shown_root}/{inner}"
            real = Path(os.path.realpath(path))
            if not real.is_relative_to(base):
                raise _escape(shown)
            try:
                st = real.lstat()
            except OSError:
                continue  # a dangling link inside the workspace: nothing to copy
            if stat.S_ISDIR(st.st_mode):
                continue  # a link to a folder of the workspace: register that folder itself
            refused = _kind_refused(shown, st.st_mode)
            if refused is not None:
                raise refused
            out.append(PlannedFile(f"{top}/{inner}", real, shown))
            if limit and len(out) >= limit:
                break
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(current, d))]
    return out


def plan_files(
    mount: Path, container_root: str, paths: tuple[str, ...], *, max_bytes: int, max_files: int
) -> list[PlannedFile]:
    """All files of the request, checked: unique names, within the file and size limits."""
    planned: list[PlannedFile] = []
    for given in paths:
        planned += workspace_files(mount, container_root, given, limit=max_files + 1 - len(planned))
        if len(planned) > max_files:
            break
    if not planned:
        raise _bad("The folders given hold no files; name files or folders with files in them.", "no_files")
    if len(planned) > max_files:
        raise _bad(
            f"More than {max_files} files: more than a derived dataset may hold; "
            "register fewer files, or pack them into an archive or an HDF5 file.",
            "too_many_files",
            413,
        )
    _check_names(planned)
    planned = [_sized(f) for f in planned]
    total = sum(f.size for f in planned)
    if total > max_bytes:
        raise _bad(
            f"The files come to {total} bytes, more than a derived dataset may hold ({max_bytes} "
            "bytes); register fewer or smaller files.",
            "too_large",
            413,
        )
    return planned


def _check_names(planned: list[PlannedFile]) -> None:
    """400 when two files would have the same name in the dataset, or a file the name of a
    folder of another (``results`` and ``results/a.csv``)."""
    seen: dict[str, str] = {}
    for f in planned:
        if f.name in seen:
            raise _duplicate(seen[f.name], f.shown, f.name)
        seen[f.name] = f.shown
    for f in planned:
        parts = f.name.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in seen:
                raise _duplicate(seen[folder], f.shown, folder)


def _duplicate(one: str, other: str, name: str) -> PanbinderError:
    return _bad(
        f"'{one}' and '{other}' would both be '{name}' in the dataset; rename one, "
        "or register their folder instead.",
        "duplicate_name",
    )


def _sized(f: PlannedFile) -> PlannedFile:
    try:
        size = f.source.stat().st_size
    except OSError as e:  # removed or replaced since it was found
        raise _bad(
            f"'{f.shown}' changed or could not be read while it was registered ({e.strerror}); try again.",
            "changed",
            409,
        ) from None
    return PlannedFile(f.name, f.source, f.shown, size)


def copy_file(source: Path, target: Path, base: Path, budget: list[int]) -> CopiedFile:
    """Copy ``source`` (opened without following a link, checked again to be a regular file
    inside ``base``) to the new ``target`` while hashing it. ``budget``: bytes still allowed."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:  # replaced by a link (ELOOP), removed, unreadable since it was planned
        raise _bad(
            f"'{source.name}' changed or could not be read while it was registered ({e.strerror}); try again.",
            "changed",
            409,
        ) from None
    try:
        st = os.fstat(fd)
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not stat.S_ISREG(st.st_mode) or not opened.is_relative_to(base):
            raise _bad(f"'{source.name}' changed while it was registered; try again.", "changed", 409)
        digest = hashlib.sha256()
        size = 0
        target.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.dup(fd), "rb") as src, open(target, "xb") as dst:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if size > budget[0]:
                    raise _bad(
                        "The files grew past the size limit while they were copied; try again.",
                        "too_large",
                        413,
                    )
                digest.update(chunk)
                dst.write(chunk)
        budget[0] -= size
        target.chmod(0o644)
        return CopiedFile(target.name, size, digest.hexdigest(), st.st_mtime_ns)
    finally:
        os.close(fd)


def copy_files(planned: list[PlannedFile], folder: Path, base: Path, max_bytes: int) -> list[CopiedFile]:
    """Copy every planned file into ``folder`` (made here), hashing; the files as registered."""
    folder.mkdir(mode=0o755)
    budget = [max_bytes]
    out = []
    for f in planned:
        target = folder.joinpath(*f.name.split("/"))
        copied = copy_file(f.source, target, base, budget)
        out.append(CopiedFile(f.name, copied.size, copied.sha256, copied.mtime_ns))
    for current, dirs, _ in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(current, d), 0o755)
    return out


def new_pid(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(8)}"


def publish(
    catalogue,
    settings: DerivedData,
    *,
    mount: Path,
    container_root: str,
    request: PublishRequest,
    lineage: Lineage,
) -> dict:
    """Copy, hash and register; returns the new dataset's PID, files and lineage. Blocking."""
    planned = plan_files(
        mount, container_root, request.paths, max_bytes=settings.max_bytes, max_files=settings.max_files
    )
    root = Path(settings.root)
    _check_root(root, catalogue.storage_roots)
    pid = new_pid(settings.pid_prefix)
    incoming = root / INCOMING
    tmp = incoming / slug(pid)
    final = root / slug(pid)
    try:
        root.mkdir(parents=True, exist_ok=True)
        incoming.mkdir(mode=0o700, exist_ok=True)
        check_free_space(root, sum(f.size for f in planned), settings.free_space_margin)
        files = copy_files(planned, tmp, Path(os.path.realpath(mount)), settings.max_bytes)
        os.rename(tmp, final)
    except OSError as e:  # the portal's side: a full disk, an unwritable root
        shutil.rmtree(tmp, ignore_errors=True)
        raise _store_failed(f"derived dataset {pid}: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        with catalogue.session() as session:
            return register(session, catalogue, pid, final, request, files, lineage)
    except SQLAlchemyError as e:  # the catalogue refused the rows, or their commit
        shutil.rmtree(final, ignore_errors=True)
        raise PanbinderError(
            "The portal could not record the dataset in its catalogue, so nothing was registered; "
            "try again later, or tell the operators if it keeps failing.",
            reason="catalogue_failed",
            status_code=503,
            log_message=f"derived dataset {pid}: {e}",
        ) from None
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise


def _store_failed(log_message: str) -> PanbinderError:
    return PanbinderError(
        "The portal could not store the files; try again later, or tell the operators if it keeps failing.",
        reason="store_failed",
        status_code=503,
        log_message=log_message,
    )


def _check_root(path: Path, storage_roots) -> None:
    """503 (the detail in the log only) when ``path`` is not within the storage roots: the
    operators' configuration, nothing the user can change."""
    try:
        confine(path, storage_roots, must_exist=False)
    except PanbinderError as e:
        raise PanbinderError(
            "The portal cannot take derived datasets right now (its storage is not set up for "
            "them); tell the operators.",
            reason="derived_root_misconfigured",
            status_code=503,
            log_message=f"DerivedData.root: {path} is not within Catalogue.storage_roots "
            f"({e.log_message or e.message})",
        ) from None


def register(session, catalogue, pid: str, location: Path, request: PublishRequest, files, lineage) -> dict:
    """The dataset row, its files and its lineage, in the caller's transaction. 403 when the
    owner may not see one of the source datasets by their own rights (the server held it
    through someone else's grant, such as a review link)."""
    from .models import Publication
    from .publication_records import normalise_doi

    _check_root(location, catalogue.storage_roots)  # the root must be a storage root (serve adds it)
    location = location.resolve()  # stored as launches sign mounts (resolved), for later lineage
    sources = _sources(session, catalogue.storage_roots, lineage.source_paths, lineage.source_pids)
    owner = Identity(lineage.owner, frozenset(lineage.groups))
    for source in sources:
        if not may_access(source, owner):
            raise PanbinderError(
                f"This server holds dataset '{source.title}' ({source.pid}), which you may not see "
                "by your own rights (it is under embargo and was opened to this server by another "
                "grant, such as a review link); results made from it cannot be registered.",
                reason="source_not_yours",
                status_code=403,
            )
    publication = None
    if lineage.doi:
        publication = session.scalar(select(Publication).where(Publication.doi == normalise_doi(lineage.doi)))
    facilities = {s.facility for s in sources}
    ds = Dataset(
        pid=pid,
        title=request.title,
        description=request.description,
        data_type=DERIVED,
        facility=facilities.pop() if len(facilities) == 1 else "",
        owners=[lineage.owner],
        groups=[],
        creation_date=datetime.now(UTC),
        release_date=None,
        is_public=False,
        location=str(location),
        size=sum(f.size for f in files),
        file_count=len(files),
    )
    ds.files = [DatasetFile(path=f.name, size=f.size, sha256=f.sha256, mtime_ns=f.mtime_ns) for f in files]
    session.add(ds)
    session.flush()
    for source in sources:
        session.add(DatasetSource(dataset_id=ds.id, source_id=source.id))
    session.add(
        DatasetOrigin(
            dataset_id=ds.id,
            image=lineage.image,
            publication_id=publication.id if publication is not None else None,
            registered_by=lineage.owner,
        )
    )
    session.flush()
    return {
        "pid": pid,
        "title": ds.title,
        "files": [{"path": f.name, "size": f.size, "sha256": f.sha256} for f in files],
        "sources": [s.pid for s in sources],
        "publication": publication.doi if publication is not None else None,
        "image": lineage.image,
    }


def _sources(session, roots, paths: tuple[str, ...], pids: tuple[str, ...] = ()) -> list[Dataset]:
    """The datasets whose locations were mounted. The launch signs resolved paths (``confine``)
    while a catalogue location may name the same folder through a linked storage root, so
    candidates are found by location in either spelling or by the PIDs of the launch's signed
    manifest, and kept only when their location resolves to a signed path."""
    signed = {os.path.normpath(p) for p in paths}
    if not signed:
        return []
    spellings = set(signed)
    for root in roots:
        given, real = os.path.normpath(root), os.path.realpath(root)
        if given != real:
            spellings |= {given + p[len(real) :] for p in signed if _inside(p, real)}
    match = Dataset.location.in_(sorted(spellings))
    if pids:
        match = or_(match, Dataset.pid.in_(list(pids)))
    found = session.scalars(select(Dataset).where(match).order_by(Dataset.pid))
    return [ds for ds in found if ds.location and os.path.realpath(ds.location) in signed]
