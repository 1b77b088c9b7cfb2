"""PaNET technique ids: normalisation, labels and the term hierarchy.

``panet_terms.json`` (next to this module) lists the 377 technique terms of PaNET v1.3.0,
the Photon and Neutron Experimental Techniques ontology by the ExPaNDS project and
contributors, licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). The file
is an adaptation of ``PaNET.owl``: labels, synonyms and direct superclasses of the technique
classes (see the catalogue test data README for how it was made). Labels are used with
whitespace collapsed; ids, parents and synonyms as given.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from panbinder.errors import PanbinderError

TERMS_FILE = Path(__file__).with_name("panet_terms.json")
_ID_RE = re.compile(r"^(?:https?://purl\.org/pan-science/PaNET/)?(PaNET\d{5,7})$", re.IGNORECASE)


@dataclass(frozen=True)
class Term:
    id: str
    label: str
    parents: tuple[str, ...]
    synonyms: tuple[str, ...]


@functools.cache
def terms() -> dict[str, Term]:
    with TERMS_FILE.open(encoding="utf-8") as f:
        raw = json.load(f)
    return {
        t["id"]: Term(t["id"], " ".join(t["label"].split()), tuple(t["parents"]), tuple(t["synonyms"]))
        for t in raw
    }


def normalise_id(value: str) -> str:
    """``PaNET01188`` from the bare id or its purl URL (http or https); PanbinderError otherwise."""
    m = _ID_RE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise PanbinderError(
            f"'{value}' is not a PaNET technique id; use e.g. PaNET01188 or "
            "http://purl.org/pan-science/PaNET/PaNET01188.",
            reason="bad_technique",
        )
    return "PaNET" + m.group(1)[5:]


def purl(panet_id: str) -> str:
    return f"http://purl.org/pan-science/PaNET/{normalise_id(panet_id)}"


def label(panet_id: str) -> str | None:
    """The PaNET label of a (normalised) id, or None for an id this PaNET version lacks."""
    term = terms().get(panet_id)
    return term.label if term else None


@functools.cache
def _names() -> dict[str, str | None]:
    """Lower-cased label or synonym -> id; None where two terms share a name."""
    out: dict[str, str | None] = {}
    for term in terms().values():
        for name in {term.label.lower(), *(s.lower() for s in term.synonyms)}:
            out[name] = term.id if out.get(name, term.id) == term.id else None
    return out


def lookup(text: str) -> str | None:
    """A PaNET id from an id, a purl, or an unambiguous label or synonym (e.g. "SANS")."""
    try:
        return normalise_id(text)
    except PanbinderError:
        pass
    return _names().get(" ".join(str(text).split()).lower()) if text else None


@functools.cache
def _children() -> dict[str, tuple[str, ...]]:
    kids: dict[str, list[str]] = {}
    for term in terms().values():
        for parent in term.parents:
            kids.setdefault(parent, []).append(term.id)
    return {k: tuple(sorted(v)) for k, v in kids.items()}


def with_descendants(panet_id: str) -> set[str]:
    """The term and every narrower term (the hierarchy is a DAG), for a technique facet."""
    seen = {panet_id}
    todo = [panet_id]
    while todo:
        for kid in _children().get(todo.pop(), ()):
            if kid not in seen:
                seen.add(kid)
                todo.append(kid)
    return seen
