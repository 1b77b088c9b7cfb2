"""The dataset catalogue: settings, sessions, queries, imports, scans and publications.

``Catalogue.start()`` runs the migrations and creates the engine. Reads take a session from
``session()``; writes (import, scan, publication registration) are each one transaction, so
a bad record or an unknown dataset leaves the database as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker
from traitlets import Bool, Float, Int, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking
from panbinder.paths import confine, resolved_roots, safe_join, slug
from panbinder.progress import Progress, no_progress
from panbinder.state import state_dir

from . import db, facet_index, importers, panet, review_models, template_models  # noqa: F401 (their tables)
from .importers import DatasetRecord, PublicationRecord, normalise_doi
from .locks import LockStore
from .models import Dataset, Publication, Technique
from .scan import ScanReport, run_scan, sync_files
from .search import FacetCache

Resolver = Callable[[str, str], Awaitable[str]]
# a commit sha, or an archive record's version (builder/archives: a record id, a version number,
# major.minor; a Software Heritage directory hash is a sha)
SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64}|\d{1,20}(?:\.\d{1,9})?)$")

__all__ = ["Catalogue", "Resolver", "ScanReport", "normalise_doi"]


class Catalogue(LockStore, LoggingConfigurable):
    db_url = Unicode(
        "",
        help="SQLAlchemy URL of the catalogue database, e.g. postgresql://user@host/panbinder. "
        "Default (and empty): an SQLite file catalogue.sqlite in the state directory.",
    ).tag(config=True)
    sqlite_wal = Bool(
        True,
        help="Write-ahead logging for an SQLite catalogue (commits wait for no disk sync; readers "
        "never wait for a writer). Turn off when the state directory is on a network file system, "
        "where SQLite's write-ahead log does not work.",
    ).tag(config=True)
    storage_roots = List(
        Unicode(),
        help="Absolute paths of the facility storage holding datasets. A dataset whose location "
        "(symlinks resolved) is outside all of them is refused.",
    ).tag(config=True, multiplicity="append")
    panosc_max_limit = Int(
        100,
        help="Most records one PaNOSC search API request (/api/Datasets, /api/Documents, "
        "/api/Instruments) returns, and most related records listed under one include; a larger "
        "or missing limit gets this many.",
    ).tag(config=True)
    panosc_max_records = Int(
        5000,
        help="Most records one PaNOSC search API request may build, the records it returns and "
        "every record listed under their includes, at any depth (includes such as "
        "datasets -> documents -> datasets multiply). A request needing more is refused (400) "
        "with a message to narrow the include or lower the limit.",
    ).tag(config=True)

    search_cache_seconds = Float(
        30.0,
        help="Seconds the totals and facet counts of a search, and a text's ranked matches, are "
        "kept and reused at most (0: never). Counting and ranking a broad search over a large "
        "catalogue are the expensive parts; cards are always read fresh, and any write a search "
        "reads (whoever makes it) or an embargo's end drops what was kept at once.",
    ).tag(config=True)

    search_scores_mib = Int(
        128,
        help="MiB per catalogue for the kept ranks of search terms (each term's matches with "
        "the rank the database gives them, kept until the next write a search reads, least "
        "recently used dropped first): a search made of kept terms is matched and ranked without "
        "asking the database to score every match. 100,000 datasets take about 40 MiB once the "
        "frequent terms are scored. 0 keeps nothing: every search is ranked by the database.",
    ).tag(config=True)
    search_warm_share = Float(
        0.02,
        help="Terms found in at least this share of the datasets are ranked in the background "
        "after each write a search reads (at the lowest priority; searches never wait for it), "
        "and so is a search's term that matched as many: the first search of a broad word then "
        "does not pay for scoring every match. 0 ranks nothing in advance.",
    ).tag(config=True)

    @validate("search_scores_mib")
    def _check_scores_mib(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TraitError("Catalogue.search_scores_mib is 0 (keep nothing) or more MiB")
        return proposal["value"]

    @validate("search_warm_share")
    def _check_warm_share(self, proposal: Any) -> float:
        if not 0 <= proposal["value"] <= 1:
            raise TraitError("Catalogue.search_warm_share is a share of the datasets, from 0 to 1")
        return proposal["value"]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._facet_cache: FacetCache | None = None
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._lock = threading.Lock()

    @default("db_url")
    def _db_url_default(self) -> str:
        return db.default_url(state_dir(self))

    @property
    def url(self) -> str:
        return self.db_url or db.default_url(state_dir(self))

    def start(self) -> None:
        """Run the migrations (upgrade to head) and create the engine; idempotent."""
        with self._lock:  # handlers may open their first sessions from several threads
            if self._engine is not None:
                return
            engine = db.make_engine(self.url, wal=self.sqlite_wal)
            db.upgrade(engine)
            budget = self.search_scores_mib * 2**20
            facet_index.configure(engine, budget=budget, warm_share=self.search_warm_share)
            self._engine, self._sessions = engine, db.session_factory(engine)
        self.log.info(
            "catalogue database %s at revision %s", db.redact(self.url), db.current_revision(engine)
        )

    @property
    def facet_cache(self) -> FacetCache:
        """The search counts cache (``search_cache_seconds``), one per catalogue."""
        if self._facet_cache is None:
            self._facet_cache = FacetCache(self.search_cache_seconds)
        return self._facet_cache

    def close(self) -> None:
        if self._engine is not None:
            facet_index.forget(self._engine)
            self._engine.dispose()
        self._engine = self._sessions = None

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        self.start()
        assert self._sessions is not None
        with self._sessions() as session, session.begin():
            yield session

    # queries -------------------------------------------------------------------------------

    def get_dataset(self, session: Session, pid: str) -> Dataset | None:
        return session.scalar(select(Dataset).where(Dataset.pid == pid))

    def get_publication(self, session: Session, doi: str) -> Publication | None:
        try:
            doi = normalise_doi(doi)
        except PanbinderError:
            return None
        return session.scalar(select(Publication).where(Publication.doi == doi))

    def list_datasets(
        self,
        session: Session,
        *,
        q: str = "",
        technique: str = "",
        instrument: str = "",
        facility: str = "",
        limit: int = 100,
        offset: int = 0,
    ) -> list[Dataset]:
        """Datasets by PID; ``technique`` (id, purl, label or synonym) matches narrower terms too."""
        query = select(Dataset).options(selectinload(Dataset.techniques))
        if q:
            query = query.where(
                or_(*(col.icontains(q, autoescape=True) for col in (Dataset.pid, Dataset.title)))
            )
        if technique:
            found = panet.lookup(technique)
            ids = panet.with_descendants(found) if found else {technique}
            query = query.where(Dataset.techniques.any(Technique.panet_id.in_(sorted(ids))))
        if instrument:
            query = query.where(func.lower(Dataset.instrument) == instrument.lower())
        if facility:
            query = query.where(func.lower(Dataset.facility) == facility.lower())
        query = query.order_by(Dataset.pid).limit(max(0, limit)).offset(max(0, offset))
        return list(session.scalars(query))

    def list_publications(
        self, session: Session, *, q: str = "", limit: int = 100, offset: int = 0
    ) -> list[Publication]:
        query = select(Publication)
        if q:
            query = query.where(
                or_(*(col.icontains(q, autoescape=True) for col in (Publication.doi, Publication.title)))
            )
        query = query.order_by(Publication.doi).limit(max(0, limit)).offset(max(0, offset))
        return list(session.scalars(query))

    # datasets --------------------------------------------------------------------------------

    def import_datasets(
        self, records_json: object, *, root: str | None = None, progress: Progress = no_progress
    ) -> list[str]:
        """Import dataset records (any supported shape) in one transaction; returns their PIDs.

        With ``root`` (a folder under a storage root), each dataset's location becomes
        ``root/<slug>``; without it, new datasets have no location (not mountable).
        """
        records = importers.parse_datasets(records_json)
        base = confine(root, self.storage_roots) if root else None
        if base is not None and not base.is_dir():
            raise PanbinderError(f"{root} is not a folder; give the folder that holds the datasets.")
        with self.session() as session:
            techniques: dict[str, Technique] = {}
            for rec in progress(records, desc="datasets"):
                location = None
                if base is not None:
                    location = str(
                        confine(safe_join(base, slug(rec.pid)), self.storage_roots, must_exist=False)
                    )
                self._upsert(session, rec, location, techniques)
        self.log.info("imported %d datasets", len(records))
        return [r.pid for r in records]

    def _technique(
        self, session: Session, ref: importers.TechniqueRef, cache: dict[str, Technique]
    ) -> Technique:
        tech = cache.get(ref.panet_id) or session.scalar(
            select(Technique).where(Technique.panet_id == ref.panet_id)
        )
        if tech is None:
            tech = Technique(panet_id=ref.panet_id, label=ref.label)
            session.add(tech)
        tech.label = ref.label or tech.label
        cache[ref.panet_id] = tech
        return tech

    def _upsert(self, session: Session, rec: DatasetRecord, location: str | None, cache: dict) -> Dataset:
        ds = self.get_dataset(session, rec.pid)
        if ds is None:
            ds = Dataset(pid=rec.pid)
            session.add(ds)
        scanned = any(f.sha256 for f in ds.files)
        for key in ("title", "facility", "instrument", "scientific_field", "data_type", "proposal_id"):
            setattr(ds, key, getattr(rec, key))
        ds.owners, ds.groups = list(rec.owners), list(rec.groups)
        ds.creation_date, ds.release_date, ds.is_public = rec.creation_date, rec.release_date, rec.is_public
        ds.techniques = [self._technique(session, t, cache) for t in rec.techniques]
        if location is not None and not ds.location:
            ds.location = location
        if not scanned:  # a scan's manifest (with checksums) is the truth about files on disk
            sync_files(ds, list(rec.files))
            ds.size, ds.file_count = rec.size, max(rec.file_count, len(rec.files))
        session.flush()
        return ds

    def scan(self, root: str, progress: Progress = no_progress, *, public: bool = False) -> ScanReport:
        """Register the HDF5/NeXus files under ``root`` (see ``scan.py``); one transaction.

        ``public``: the scanned datasets are open data (``is_public``), e.g. a facility's
        open-access archive; without it their access stays as it was (new ones: embargoed)."""
        path = confine(root, self.storage_roots)
        if not path.is_dir():
            raise PanbinderError(f"{root} is not a folder; give a folder under a storage root to scan.")
        try:
            return run_scan(
                self.session, path, resolved_roots(self.storage_roots), self.log, progress, public
            )
        except OSError as e:  # unreadable folder, a file removed while scanning
            raise PanbinderError(
                f"The scan of {root} stopped at {e.filename or root}: {e.strerror or e}; "
                "fix the permissions or wait for writes to finish, then scan again. Nothing was written.",
                reason="scan_failed",
            ) from None

    # publications ----------------------------------------------------------------------------

    async def add_publication(
        self,
        *,
        doi: str,
        repo_url: str,
        ref: str,
        dataset_pids: Iterable[str],
        title: str = "",
        authors: Iterable[str] = (),
        year: int | None = None,
        resolve: Resolver,
    ) -> str:
        """Register a publication; ``ref`` is resolved once with ``resolve`` and pinned."""
        record = PublicationRecord(
            doi=normalise_doi(doi),
            title=title,
            authors=tuple(authors),
            year=year,
            repo_url=repo_url.strip(),
            ref=ref.strip() or "HEAD",
            dataset_pids=tuple(dataset_pids),
            shape="cli",
        )
        return (await self.register_publications([record], resolve=resolve))[0]

    async def import_publication(
        self, record_json: object, *, resolve: Resolver, repo_url: str = "", ref: str = ""
    ) -> str:
        """Register one DataCite or SciCat PublishedData record (``repo_url``/``ref`` override it)."""
        records = importers.parse_publications(record_json)
        if len(records) != 1:
            raise PanbinderError(
                f"Expected one publication record, found {len(records)}; pick one with --doi."
            )
        return (await self.import_publications(records, resolve=resolve, repo_url=repo_url, ref=ref))[0]

    async def import_publications(
        self,
        records: object,
        *,
        resolve: Resolver,
        repo_url: str = "",
        ref: str = "",
        doi: str = "",
    ) -> list[str]:
        """Register publication records (parsed or raw JSON), optionally only the one with ``doi``."""
        parsed = records if _all_records(records) else importers.parse_publications(records)
        if doi:
            wanted = normalise_doi(doi)
            parsed = [r for r in parsed if r.doi == wanted]
            if not parsed:
                raise PanbinderError(
                    f"The file has no record with DOI {wanted}; check the DOI.", reason="unknown_doi"
                )
        out = []
        for r in parsed:
            repo = repo_url.strip() or r.repo_url
            if not repo:
                raise PanbinderError(
                    f"The record for {r.doi} names no git repository; give one with --repo URL --ref REF.",
                    reason="no_repository",
                )
            out.append(dataclasses.replace(r, repo_url=repo, ref=ref.strip() or r.ref or "HEAD"))
        return await self.register_publications(out, resolve=resolve)

    async def register_publications(
        self, records: list[PublicationRecord], *, resolve: Resolver
    ) -> list[str]:
        """Check datasets, resolve each ref once, then write everything in one transaction."""
        plans = await run_blocking(self._plan_publications, records)
        shas = []
        for rec, plan in zip(records, plans, strict=True):
            if plan["existing_sha"]:
                shas.append(plan["existing_sha"])  # same registration again: never re-resolved
                continue
            sha = (await resolve(rec.repo_url, rec.ref)).strip().lower()
            if not SHA_RE.match(sha):
                raise PanbinderError(
                    f"The ref '{rec.ref}' of {rec.repo_url} did not resolve to a commit sha."
                )
            shas.append(sha)
        await run_blocking(self._write_publications, records, plans, shas)
        return [r.doi for r in records]

    def _plan_publications(self, records: list[PublicationRecord]) -> list[dict]:
        plans, seen = [], set()
        with self.session() as session:
            for rec in records:
                if rec.doi in seen:
                    raise PanbinderError(f"The DOI {rec.doi} appears twice; keep one record.")
                seen.add(rec.doi)
                pids = [self._require(session, pid, rec.doi) for pid in rec.dataset_pids]
                pids += [p for p in (self._match(session, i) for i in rec.related_ids) if p]
                if rec.shape == "datacite" and not pids:
                    raise PanbinderError(
                        f"None of the related identifiers of {rec.doi} is a dataset in this catalogue; "
                        "import the datasets first (panbinder datasets import).",
                        reason="unknown_dataset",
                    )
                pub = self.get_publication(session, rec.doi)
                existing_sha = ""
                if pub is not None:
                    same = (pub.repo_url, pub.ref, sorted(d.pid for d in pub.datasets)) == (
                        rec.repo_url,
                        rec.ref,
                        sorted(set(pids)),
                    )
                    if not same:
                        raise PanbinderError(
                            f"{rec.doi} is already registered (repository {pub.repo_url} at "
                            f"{pub.resolved_sha[:12]}); a registration is pinned for good, register "
                            "a new version DOI instead.",
                            reason="doi_registered",
                            status_code=409,
                        )
                    existing_sha = pub.resolved_sha
                plans.append({"pids": list(dict.fromkeys(pids)), "existing_sha": existing_sha})
        return plans

    def _require(self, session: Session, pid: str, doi: str) -> str:
        if self.get_dataset(session, pid) is None:
            raise PanbinderError(
                f"No dataset with PID '{pid}' is in the catalogue (needed by {doi}); "
                "check the PID or import the dataset first. Nothing was registered.",
                reason="unknown_dataset",
                status_code=404,
            )
        return pid

    def _match(self, session: Session, identifier: str) -> str | None:
        """A related identifier that names a dataset: exact PID, or the same DOI/handle in any case."""
        candidates = {identifier.strip()}
        for prefix in (*importers.DOI_PREFIXES, "hdl:", "https://hdl.handle.net/", "http://hdl.handle.net/"):
            if identifier.lower().startswith(prefix):
                candidates.add(identifier[len(prefix) :].strip())
        for cand in candidates:
            if self.get_dataset(session, cand) is not None:
                return cand
        lowered = sorted({c.lower() for c in candidates})
        return session.scalar(select(Dataset.pid).where(func.lower(Dataset.pid).in_(lowered)).limit(1))

    def _write_publications(
        self, records: list[PublicationRecord], plans: list[dict], shas: list[str]
    ) -> None:
        with self.session() as session:
            for rec, plan, sha in zip(records, plans, shas, strict=True):
                if plan["existing_sha"]:
                    continue
                if self.get_publication(session, rec.doi) is not None:
                    raise PanbinderError(
                        f"{rec.doi} was registered meanwhile; nothing was written.", status_code=409
                    )
                datasets = [self.get_dataset(session, pid) for pid in plan["pids"]]
                if any(d is None for d in datasets):
                    raise PanbinderError(
                        f"A dataset of {rec.doi} was removed meanwhile; nothing was written."
                    )
                session.add(
                    Publication(
                        doi=rec.doi,
                        title=rec.title,
                        authors=list(rec.authors),
                        year=rec.year,
                        repo_url=rec.repo_url,
                        ref=rec.ref,
                        resolved_sha=sha,
                        datasets=datasets,
                    )
                )
                self.log.info("registered %s: %s at %s (%s)", rec.doi, rec.repo_url, sha, rec.ref)


def _all_records(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, PublicationRecord) for v in value) and bool(value)


def load(path: str | Path) -> Any:
    """JSON from a file, with a PanbinderError that names the file."""
    return importers.load_json(path)
