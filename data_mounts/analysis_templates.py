"""Analysis templates: notebook repositories pinned like publications, matched to datasets.

A template is tagged with PaNET techniques and, optionally, formats: NeXus application
definitions (``NXmx``) and file suffixes (``.nxs``). It fits a dataset that has one of its
techniques or a narrower term (a template for "scattering" fits a SAXS dataset) and, when it
names formats, also one of its application definitions (stored per dataset by the scan), a file
with one of its suffixes, or a technique its application definitions stand for. The terms are expanded once, at registration, into ``template_terms``, so the card
list, the search facet and its counts are plain SQL on every database.

A launch ("Analyse with") mounts the chosen datasets read-only at ``/data/<slug>/`` with the
same access checks, manifest and signed options as a launch by DOI (``mounts.plan_mounts``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from panbinder.errors import PanbinderError

from . import nexus_techniques, panet
from .models import Dataset, DatasetFile, Technique, dataset_definitions, dataset_techniques
from .template_models import AnalysisTemplate, template_terms

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SUFFIX_RE = re.compile(r"^\.[a-z0-9][a-z0-9.-]{0,30}$")
Resolver = Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True)
class TemplateRecord:
    """A template as the operator gives it; ``terms()`` are what it fits."""

    name: str
    title: str
    repo_url: str
    ref: str
    techniques: tuple[str, ...]
    formats: tuple[str, ...] = ()
    notebook: str = ""

    def terms(self) -> set[tuple[str, str]]:
        out = {("technique", t) for tech in self.techniques for t in panet.with_descendants(tech)}
        for f in self.formats:
            if f.startswith("."):
                out.add(("suffix", f))
            else:  # the definition itself (a scan stores each dataset's), and its techniques
                out.add(("definition", f.strip().lower()))
                term = nexus_techniques.from_definition(f)
                out |= {("format", t) for t in panet.with_descendants(term or "")}
        return out


def name_from(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:63].rstrip("-")


def _technique(value: str) -> str:
    term = panet.lookup(value)
    if term is None or panet.label(term) is None:
        raise PanbinderError(
            f"'{value}' is not a PaNET technique; give an id like PaNET01188, its purl or its label.",
            reason="bad_technique",
        )
    return term


def _format(value: str) -> str:
    text = value.strip()
    if text.startswith("."):
        if not SUFFIX_RE.match(text.lower()):
            raise PanbinderError(
                f"'{value}' is not a file suffix; use letters, digits, '.' and '-', like .nxs or .h5.",
                reason="bad_format",
            )
        return text.lower()
    if nexus_techniques.from_definition(text) is None:
        raise PanbinderError(
            f"'{value}' is neither a file suffix (like .nxs) nor a NeXus application definition "
            "this service maps to a technique (like NXmx or NXcanSAS).",
            reason="bad_format",
        )
    return text


def _notebook(value: str) -> str:
    path = value.strip()
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "\\" in path or re.search(r"[\x00-\x1f\x7f]", path):
        raise PanbinderError(
            f"The notebook '{value}' must be a path inside the repository, like analysis.ipynb.",
            reason="bad_notebook",
        )
    return path


def _has_credentials(url: str) -> bool:
    """A password, or a user name on http(s) (where it is a token); ssh's ``git@`` is neither."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.password) or (parts.scheme in ("http", "https") and bool(parts.username))


def make_record(
    *,
    repo_url: str,
    ref: str,
    title: str,
    techniques: Iterable[str],
    formats: Iterable[str] = (),
    name: str = "",
    notebook: str = "",
) -> TemplateRecord:
    """A checked record; every message says which option to change."""
    if not repo_url.strip() or not title.strip():
        raise PanbinderError("A template needs --repo URL and --title TITLE.", reason="bad_template")
    if _has_credentials(repo_url.strip()):
        raise PanbinderError(
            "The --repo URL holds a user name or password, and templates are listed publicly: "
            "give the repository's URL without them.",
            reason="bad_template",
        )
    name = name.strip() or name_from(title)
    if not NAME_RE.match(name):
        raise PanbinderError(
            f"The template name '{name}' must be 1-63 lower-case letters, digits and '-'; "
            "give one with --name.",
            reason="bad_template",
        )
    techs = tuple(dict.fromkeys(_technique(t) for t in techniques))
    if not techs:
        raise PanbinderError(
            "Tag the template with at least one --technique PaNET id.", reason="bad_template"
        )
    return TemplateRecord(
        name=name,
        title=" ".join(title.split()),
        repo_url=repo_url.strip(),
        ref=ref.strip() or "HEAD",
        techniques=techs,
        formats=tuple(dict.fromkeys(_format(f) for f in formats)),
        notebook=_notebook(notebook),
    )


async def register(catalogue: Any, record: TemplateRecord, *, resolve: Resolver) -> str:
    """Pin ``record``'s ref (resolved once, never again) and write it; the same registration
    again is a no-op, a different one under a registered name is refused (409)."""
    from panbinder.executor import run_blocking

    from .catalogue import SHA_RE  # a commit sha or an archive record's version, as publications pin

    existing = await run_blocking(_existing_sha, catalogue, record)
    sha = existing or (await resolve(record.repo_url, record.ref)).strip().lower()
    if not SHA_RE.match(sha):
        raise PanbinderError(
            f"The ref '{record.ref}' of {record.repo_url} did not resolve to a commit sha or record version."
        )
    if not existing:
        await run_blocking(_write, catalogue, record, sha)
    return sha


def get_template(session: Session, name: str) -> AnalysisTemplate | None:
    return session.scalar(select(AnalysisTemplate).where(AnalysisTemplate.name == name))


def _existing_sha(catalogue: Any, record: TemplateRecord) -> str:
    with catalogue.session() as session:
        found = get_template(session, record.name)
        if found is None:
            return ""
        given = (record.repo_url, record.ref, record.title, list(record.techniques), list(record.formats))
        kept = (found.repo_url, found.ref, found.title, list(found.techniques), list(found.formats))
        if given != kept or record.notebook != found.notebook:
            raise PanbinderError(
                f"A template named '{record.name}' is already registered ({found.repo_url} at "
                f"{found.resolved_sha[:12]}); a registration is pinned for good, register the new "
                "version under another --name.",
                reason="template_registered",
                status_code=409,
            )
        return found.resolved_sha


def _write(catalogue: Any, record: TemplateRecord, sha: str) -> None:
    with catalogue.session() as session:
        tpl = AnalysisTemplate(
            name=record.name,
            title=record.title,
            repo_url=record.repo_url,
            ref=record.ref,
            resolved_sha=sha,
            notebook=record.notebook,
            techniques=list(record.techniques),
            formats=list(record.formats),
        )
        session.add(tpl)
        session.flush()
        rows = [{"template_id": tpl.id, "kind": k, "term": t} for k, t in sorted(record.terms())]
        session.execute(template_terms.insert(), rows)
        catalogue.log.info(
            "registered template %s: %s at %s (%s)", record.name, record.repo_url, sha, record.ref
        )


def list_templates(session: Session) -> list[AnalysisTemplate]:
    return list(session.scalars(select(AnalysisTemplate).order_by(func.lower(AnalysisTemplate.title))))


# matching ------------------------------------------------------------------------------------


def _terms(template_id: Any, kinds: tuple[str, ...]):
    return select(template_terms.c.term).where(
        template_terms.c.template_id == template_id, template_terms.c.kind.in_(kinds)
    )


def _with_term(dataset_id: ColumnElement, template_id: Any, kind: str) -> ColumnElement:
    tagged = (
        select(dataset_techniques.c.dataset_id)
        .join(Technique, Technique.id == dataset_techniques.c.technique_id)
        .where(Technique.panet_id.in_(_terms(template_id, (kind,))))
    )
    return dataset_id.in_(tagged)


def fits_clause(dataset_id: ColumnElement, template_id: Any) -> ColumnElement:
    """SQL: the dataset ``dataset_id`` fits the template ``template_id`` (see the module doc)."""
    suffix = template_terms.alias("suffix")
    with_file = exists(
        select(literal(1))
        .select_from(DatasetFile)
        .join(suffix, suffix.c.template_id == template_id)
        .where(
            DatasetFile.dataset_id == dataset_id,
            suffix.c.kind == "suffix",
            func.lower(DatasetFile.path).like(literal("%") + suffix.c.term),
        )
    )
    with_definition = dataset_id.in_(
        select(dataset_definitions.c.dataset_id).where(
            func.lower(dataset_definitions.c.definition).in_(_terms(template_id, ("definition",)))
        )
    )
    any_format = exists(_terms(template_id, ("format", "suffix", "definition")))
    return and_(
        _with_term(dataset_id, template_id, "technique"),
        or_(~any_format, with_definition, _with_term(dataset_id, template_id, "format"), with_file),
    )


def named_clause(dataset_id: ColumnElement, names: Iterable[str]) -> ColumnElement:
    """SQL: the dataset fits one of the templates ``names`` (the search's template facet)."""
    ids = [select(AnalysisTemplate.id).where(AnalysisTemplate.name == n).scalar_subquery() for n in names]
    return or_(*(fits_clause(dataset_id, tid) for tid in ids))


def fitting(session: Session, dataset_ids: list[int]) -> dict[int, list[AnalysisTemplate]]:
    """The templates that fit each of ``dataset_ids`` (one statement for a page of cards)."""
    templates = list_templates(session)
    if not dataset_ids or not templates:
        return {}
    out: dict[int, list[AnalysisTemplate]] = {}
    by_id = {t.id: t for t in templates}
    for tpl in templates:
        rows = session.scalars(
            select(Dataset.id).where(Dataset.id.in_(dataset_ids), fits_clause(Dataset.id, tpl.id))
        )
        for ds_id in rows:
            out.setdefault(ds_id, []).append(by_id[tpl.id])
    return out


# launches ------------------------------------------------------------------------------------


@dataclass
class Selection:
    """A template with the datasets chosen for one launch, shaped as ``mounts.plan_mounts`` reads
    a publication (``doi`` stays empty: the manifest names the template's repository and commit)."""

    template: AnalysisTemplate
    datasets: list[Dataset] = field(default_factory=list)
    doi: str = ""

    @property
    def title(self) -> str:
        return self.template.title

    @property
    def repo_url(self) -> str:
        return self.template.repo_url

    @property
    def resolved_sha(self) -> str:
        return self.template.resolved_sha


def select_datasets(session: Session, name: str, pids: list[str]) -> Selection:
    """The template ``name`` and the datasets ``pids``; 404 naming what is unknown."""
    tpl = get_template(session, name)
    if tpl is None:
        raise PanbinderError(
            f"No analysis template named '{name}' is registered here; pick one from a dataset card.",
            reason="unknown_template",
            status_code=404,
        )
    datasets = []
    for pid in dict.fromkeys(pids):
        ds = session.scalar(select(Dataset).where(Dataset.pid == pid))
        if ds is None:
            raise PanbinderError(
                f"No dataset with PID '{pid}' is in the catalogue; remove it from the basket and try again.",
                reason="unknown_dataset",
                status_code=404,
            )
        datasets.append(ds)
    return Selection(tpl, datasets)
