"""Publication records from DataCite JSON and SciCat PublishedData (pure: no database, no files).

DataCite comes as REST ``{"data": {"attributes": ...}}`` or bare attributes. Also here: DOI
normalisation, and spotting a git repository (and ref) among a record's URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from panbinder.errors import PanbinderError

from .record_fields import Fields, record_label

DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:")
LINK_RELATIONS = ("IsSupplementTo", "IsDerivedFrom", "References")
GIT_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "gitee.com", "git.sr.ht")
FLAT_GIT_HOSTS = ("github.com", "bitbucket.org", "codeberg.org", "gitee.com")  # owner/repo, no subgroups
GIT_HOST_PREFIXES = ("git.", "gitlab.", "github.", "gitea.", "codebase.", "forgejo.")


@dataclass(frozen=True)
class PublicationRecord:
    """``dataset_pids`` must all exist; ``related_ids`` are candidates (papers are ignored)."""

    doi: str
    title: str = ""
    authors: tuple[str, ...] = ()
    year: int | None = None
    repo_url: str = ""
    ref: str = ""
    dataset_pids: tuple[str, ...] = ()
    related_ids: tuple[str, ...] = ()
    shape: str = ""


def normalise_doi(doi: str) -> str:
    """Lower case, without ``https://doi.org/`` or ``doi:``; PanbinderError if it is no DOI."""
    value = doi.strip() if isinstance(doi, str) else ""
    for prefix in DOI_PREFIXES:
        if value.lower().startswith(prefix):
            value = value[len(prefix) :].strip()
    value = value.lower()
    if not DOI_RE.match(value):
        raise PanbinderError(
            f"'{doi}' is not a DOI; expected something like 10.5281/zenodo.1234567.", reason="bad_doi"
        )
    return value


def split_repo_url(url: str) -> tuple[str, str | None] | None:
    """``(repository URL, ref or None)`` if ``url`` looks like a git repository, else None.

    A ref may follow as ``#ref``, ``@ref`` or a ``/tree/<ref>`` path (GitHub, GitLab).
    """
    try:
        parts = urlsplit(url.strip())
    except (AttributeError, ValueError):
        return None
    if parts.scheme not in ("http", "https", "git", "ssh") or not parts.hostname:
        return None
    path, ref = parts.path, unquote(parts.fragment) or None
    m = re.match(r"^(/.+?)(?:\.git)?/(?:-/)?tree/(.+)$", path)
    if m:
        path, ref = m.group(1), unquote(m.group(2))
    m = re.match(r"^(/[^@]+)@([^/@]+)$", path)
    if m:
        path, ref = m.group(1), unquote(m.group(2))
    host = parts.hostname.lower()
    segments = [s for s in path.split("/") if s]
    known_host = host in GIT_HOSTS or host.startswith(GIT_HOST_PREFIXES)
    looks_git = path.endswith(".git") or parts.scheme in ("git", "ssh") or ref is not None
    if not segments or not (looks_git or (known_host and len(segments) >= 2)):
        return None
    if host in FLAT_GIT_HOSTS and len(segments) > 2 and not path.endswith(".git"):
        path = "/" + "/".join(segments[:2])  # github.com/org/repo/blob/... -> the repository
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", "")), ref


def _datacite(where: str, data: dict) -> PublicationRecord:
    top = Fields(where, data)
    attrs = top.get("data.attributes") or top.get("attributes") or data
    rec = Fields(where, attrs)
    titles = rec.objects("titles")
    main = next((t for t in titles if not t.get("titleType")), titles[0] if titles else {})
    authors = []
    for i, creator in enumerate(rec.objects("creators")):
        name = creator.get("name") or " ".join(
            str(creator.get(k)) for k in ("givenName", "familyName") if creator.get(k)
        )
        if not isinstance(name, str) or not name.strip():
            rec.fail(f"creators[{i}].name", "is missing")
        authors.append(name.strip())
    repo, ref, related = "", "", []
    for i, item in enumerate(rec.objects("relatedIdentifiers")):
        if item.get("relationType") not in LINK_RELATIONS:
            continue
        ident = item.get("relatedIdentifier")
        if not isinstance(ident, str) or not ident.strip():
            rec.fail(f"relatedIdentifiers[{i}].relatedIdentifier", "must be a string")
        split = split_repo_url(ident) if item.get("relatedIdentifierType") == "URL" else None
        if split and not repo:
            repo, ref = split[0], split[1] or ""
        elif not split:
            related.append(ident.strip())
    if repo and not ref:
        for desc in rec.objects("descriptions"):
            m = re.search(r"(?i)\b(?:git\s+)?ref(?:erence)?\s*[:=]\s*(\S+)", str(desc.get("description", "")))
            if m:
                ref = m.group(1).rstrip(".,;")
                break
    doi = rec.text("doi") or top.text("data.id", required=True)
    try:
        doi = normalise_doi(doi)
    except PanbinderError as e:
        rec.fail("doi", e.message.rstrip("."))
    return PublicationRecord(
        doi=doi,
        title=str(main.get("title") or "").strip(),
        authors=tuple(authors),
        year=rec.count("publicationYear"),
        repo_url=repo,
        ref=ref,
        related_ids=tuple(dict.fromkeys(related)),
        shape="datacite",
    )


def _published_data(where: str, data: dict) -> PublicationRecord:
    rec = Fields(where, data)
    raw = rec.text("doi") or rec.text("_id", required=True)
    try:
        doi = normalise_doi(raw)
    except PanbinderError as e:
        rec.fail("doi", e.message.rstrip("."))
    repo, ref = "", ""
    for field in ("url", "downloadLink"):
        split = split_repo_url(rec.text(field))
        if split:
            repo, ref = split[0], split[1] or ""
            break
    return PublicationRecord(
        doi=doi,
        title=rec.text("title"),
        authors=rec.texts("creator"),
        year=rec.count("publicationYear"),
        repo_url=repo,
        ref=ref,
        dataset_pids=rec.texts("pidArray"),
        shape="scicat-published",
    )


def parse_publications(data: Any) -> list[PublicationRecord]:
    """Publication records: DataCite JSON (one, or a REST list) or SciCat PublishedData."""
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        where = record_label("record", i, item)
        if isinstance(item, dict) and ("pidArray" in item or ("creator" in item and "creators" not in item)):
            out.append(_published_data(where, item))
        elif isinstance(item, dict) and any(
            k in item for k in ("data", "attributes", "titles", "creators", "relatedIdentifiers")
        ):
            out.append(_datacite(where, item))
        else:
            Fields(where, item).fail(
                "",
                "is neither a DataCite record (doi, titles, creators, relatedIdentifiers) "
                "nor a SciCat PublishedData record (doi, title, creator, pidArray)",
            )
    return out
