"""The PaNOSC search API builds a bounded number of records per request: nested includes
(Document -> datasets -> documents -> datasets) multiply, so related lists are cut while they are
built and every record counts against ``Catalogue.panosc_max_records``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Publication
from panbinder.data_mounts.panosc import filters, search, shapes
from panbinder.data_mounts.panosc.importer import import_panosc
from panbinder.errors import PanbinderError

ESS = Path(__file__).resolve().parents[1] / "fixtures" / "panosc" / "ess_datasets_response.json"
DOIS = ("10.5555/a", "10.5555/b", "10.5555/c")


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    """Three publications that each link all three ESS datasets (and no proposals: the
    datasets' proposal ids are cleared, so the only documents are the three publications)."""
    c = Catalogue(db_url=f"sqlite:///{tmp_path_factory.mktemp('budget')}/c.sqlite")
    c.start()
    assert import_panosc(c, ESS).failed == []
    pids = [d["pid"] for d in json.loads(ESS.read_text())]
    with c.session() as session:
        datasets = [c.get_dataset(session, pid) for pid in pids]
        for ds in datasets:
            ds.proposal_id = None
        for doi in DOIS:
            session.add(
                Publication(
                    doi=doi,
                    title=doi,
                    repo_url="https://example.org/r.git",
                    ref="main",
                    resolved_sha="a" * 40,
                    datasets=datasets,
                )
            )
    yield c
    c.close()


def nested(limit: int | None = None) -> dict:
    scope = {"limit": limit} if limit else {}
    inner = {"relation": "datasets", "scope": dict(scope)}
    middle = {"relation": "documents", "scope": {**scope, "include": [inner]}}
    return {"include": [{"relation": "datasets", "scope": {**scope, "include": [middle]}}]}


def find(cat: Catalogue, flt: dict, most: int) -> list[dict]:
    parsed = filters.parse_filter("Document", flt)
    with cat.session() as session:
        return search.find(session, parsed, now=datetime.now(UTC), cap=100, max_records=most)


def test_nested_includes_past_the_budget_are_a_400(cat):
    # 3 documents x 3 datasets x 3 documents x 3 datasets: 3 + 9 + 27 + 81 records
    docs = find(cat, nested(), most=120)
    assert len(docs) == 3 and len(docs[0]["datasets"][0]["documents"][0]["datasets"]) == 3
    with pytest.raises(PanbinderError) as e:
        find(cat, nested(), most=119)
    assert e.value.status_code == 400 and e.value.reason == "bad_filter"
    assert "narrow the include" in e.value.message and "lower the limit" in e.value.message


def test_related_lists_are_cut_before_their_records_are_built(cat):
    docs = find(cat, nested(limit=1), most=12)  # one record per level and document: 3 x 4
    assert [len(d["datasets"]) for d in docs] == [1, 1, 1]
    assert len(docs[0]["datasets"][0]["documents"]) == 1


def test_listed_builds_only_what_it_lists():
    built = []
    ctx = shapes.Context(now=datetime.now(UTC), cap=5, instrument_datasets=lambda *a: [])
    inc = filters.Include(relation="datasets", model="Dataset", limit=2, skip=1)
    got = shapes.listed(inc, range(10**6), lambda i: built.append(i) or {"pid": str(i)}, ctx)
    assert got == [{"pid": "1"}, {"pid": "2"}] and built == [0, 1, 2]
    assert ctx.budget.used == 3


def test_includes_nest_at_most_three_levels():
    deeper = nested()
    deeper["include"][0]["scope"]["include"][0]["scope"]["include"][0]["scope"]["include"] = ["documents"]
    with pytest.raises(PanbinderError, match="nested more than 3 levels"):
        filters.parse_filter("Document", deeper)
    filters.parse_filter("Document", nested())  # three levels: as deep as the PaNOSC portal goes
