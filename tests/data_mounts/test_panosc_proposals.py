"""PaNOSC Documents of type "proposal", derived from the datasets' proposal ids, next to the
publications: the reference server's ESS store has the same proposal Documents with the same
datasets and members; the LoopBack filter works across both kinds; an anonymous reader sees a
proposal only through its open datasets. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Dataset, Publication
from panbinder.data_mounts.panosc import filters, search
from panbinder.data_mounts.panosc.importer import import_panosc
from panbinder.data_mounts.panosc.match import orcid_of
from tests.postgres import fresh_database

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "panosc"
ORCID = "0000-0001-2345-6789"
HIDDEN_ORCID = "0000-0009-9999-999X"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cat(request, tmp_path_factory):
    if request.param == "sqlite":
        url, done = f"sqlite:///{tmp_path_factory.mktemp('proposals')}/c.sqlite", None
    else:
        done = fresh_database(request.getfixturevalue("postgres_server"))
        url = done.__enter__()
    c = Catalogue(db_url=url)
    c.start()
    assert import_panosc(c, FIXTURES / "ess_datasets_response.json").failed == []
    later, earlier = NOW + timedelta(days=300), NOW - timedelta(days=3)
    with c.session() as s:
        rows = [
            ("p/open-1", "P-100", True, None, ["battery", "operando"], ["alice", ORCID]),
            ("p/closed-1", "P-100", False, later, ["secret"], ["bob", HIDDEN_ORCID]),
            ("p/closed-2", "P-200", False, later, ["secret"], [HIDDEN_ORCID]),
            ("p/released", "P-300", False, earlier, [], ["carol"]),
        ]
        for pid, proposal, public, release, keywords, owners in rows:
            s.add(
                Dataset(
                    pid=pid,
                    title=f"Cathode {pid}",
                    proposal_id=proposal,
                    is_public=public,
                    release_date=release,
                    keywords=keywords,
                    owners=owners,
                )
            )
        s.flush()
        s.add(
            Publication(
                doi="10.5555/zz",
                title="Batteries at work",
                repo_url="https://example.org/r.git",
                ref="main",
                resolved_sha="a" * 40,
                datasets=[c.get_dataset(s, "p/open-1")],
            )
        )
    yield c
    c.close()
    if done is not None:
        done.__exit__(None, None, None)


def find(cat, flt: dict, model: str = "Document", query: str = "") -> list[dict]:
    parsed = filters.parse_filter(model, flt, query=query)
    with cat.session() as session:
        return search.find(session, parsed, now=datetime.now(UTC), cap=100)


def pids(cat, flt: dict, model: str = "Document", query: str = "") -> list[str]:
    return [r["pid"] for r in find(cat, {**flt, "order": "pid ASC"}, model, query)]


def count(cat, where: dict) -> int:
    with cat.session() as session:
        return search.count(
            session, "Document", filters.parse_where("Document", where), now=datetime.now(UTC)
        )


def get(cat, pid: str, flt: dict | None = None) -> dict | None:
    parsed = filters.parse_filter("Document", flt or {})
    with cat.session() as session:
        return search.get(session, parsed, pid, now=datetime.now(UTC), cap=100)


ALL = ["10.5555/zz", "67JH32", "P-100", "P-300", "YC7SZ5"]


def test_the_ess_store_proposals_are_documents_with_their_datasets_and_members(cat):
    store = json.loads((FIXTURES / "ess_branch_db.json").read_text())["models"]
    docs = {k: json.loads(v) for k, v in store["Document"].items()}
    datasets = [json.loads(v) for v in store["Dataset"].values()]
    members = [json.loads(v) for v in store["Member"].values()]
    people = {str(p["id"]): p for p in map(json.loads, store["Person"].values())}
    want = {
        pid: (
            sorted(d["pid"] for d in datasets if d["documentId"] == pid),
            sorted(
                {orcid_of(people[str(m["personId"])]["ORCiD"]) for m in members if m["documentId"] == pid}
            ),
        )
        for pid, doc in docs.items()
        if doc["type"] == "proposal"
    }
    flt = {"where": {"type": "proposal", "pid": {"inq": sorted(want)}}, "include": ["datasets", "members"]}
    got = find(cat, flt)
    assert {
        d["pid"]: (sorted(x["pid"] for x in d["datasets"]), sorted(m["personId"] for m in d["members"]))
        for d in got
    } == want
    for d in got:
        ref = docs[d["pid"]]
        assert (d["type"], d["isPublic"]) == (ref["type"], ref["isPublic"])
        assert d["title"] == d["pid"]  # the catalogue keeps the id only ("Final prototype" is lost)
        assert all(x["documentId"] == d["pid"] for x in d["datasets"])


def test_both_kinds_are_listed_paged_and_counted(cat):
    got = find(cat, {"order": "pid ASC", "fields": ["pid", "type"]})
    assert [(d["pid"], d["type"]) for d in got] == [
        ("10.5555/zz", "publication"),
        ("67JH32", "proposal"),
        ("P-100", "proposal"),
        ("P-300", "proposal"),
        ("YC7SZ5", "proposal"),
    ]
    assert pids(cat, {"skip": 1, "limit": 2}) == ["67JH32", "P-100"]
    assert pids(cat, {"where": {"type": "publication"}}) == ["10.5555/zz"]
    assert pids(cat, {"where": {"type": {"neq": "publication"}}}) == ALL[1:]
    assert [d["pid"] for d in find(cat, {"order": "title DESC", "limit": 1})] == ["YC7SZ5"]
    assert count(cat, {}) == 5 and count(cat, {"type": "proposal"}) == 4
    assert count(cat, {"title": {"like": "P-%"}}) == 2


def test_a_proposal_shows_only_its_open_datasets(cat):
    doc = get(
        cat, "P-100", {"include": ["datasets", {"relation": "members", "scope": {"include": ["person"]}}]}
    )
    assert [d["pid"] for d in doc["datasets"]] == ["p/open-1"]
    assert doc["keywords"] == ["battery", "operando"]  # not the embargoed dataset's "secret"
    assert [m["person"] for m in doc["members"]] == [{"id": ORCID, "fullName": None, "orcid": ORCID}]
    assert doc["members"][0]["role"] == "owner"  # account names (alice, bob) are never members
    assert [d["pid"] for d in get(cat, "P-300", {"include": ["datasets"]})["datasets"]] == ["p/released"]
    # P-200's datasets are all embargoed: it is no Document, found by nothing
    assert get(cat, "P-200") is None
    assert "P-200" not in pids(cat, {}) and pids(cat, {"where": {"pid": "P-200"}}) == []
    assert pids(cat, {}, query="secret") == [] and pids(cat, {"where": {"keywords": "secret"}}) == []
    assert count(cat, {"pid": {"inq": ["P-100", "P-200"]}}) == 1
    hidden = {"include": [{"relation": "members", "scope": {"include": [person(HIDDEN_ORCID)]}}]}
    assert find(cat, hidden) == []


def person(orcid: str) -> dict:
    return {"relation": "person", "scope": {"where": {"orcid": orcid}}}


def test_where_on_pid_title_keywords_text_and_members(cat):
    assert pids(cat, {"where": {"keywords": "battery"}}) == ["P-100"]
    assert pids(cat, {"where": {"keywords": {"inq": ["operando", "x"]}}}) == ["P-100"]
    assert pids(cat, {"where": {"keywords": {"like": "atter"}}}) == ["P-100"]
    assert pids(cat, {"where": {"keywords": {"nin": ["battery"]}}}) == [p for p in ALL if p != "P-100"]
    assert pids(cat, {"where": {"keywords": {"gt": "a"}}}) == []
    assert pids(cat, {"where": {"or": [{"pid": "YC7SZ5"}, {"title": {"like": "%JH%"}}]}}) == [
        "67JH32",
        "YC7SZ5",
    ]
    assert pids(cat, {"where": {"text": "p-3"}}) == ["P-300"]
    assert pids(cat, {"where": {"summary": {"like": "x"}}}) == []  # no summaries kept
    assert pids(cat, {"where": {"summary": None}}) == ALL
    members = {
        "include": [{"relation": "members", "scope": {"include": [person(f"https://orcid.org/{ORCID}")]}}]
    }
    got = find(cat, members)
    assert [d["pid"] for d in got] == ["P-100"] and got[0]["members"][0]["person"]["orcid"] == ORCID
    assert find(cat, {"include": [{"relation": "members", "scope": {"include": [person("alice")]}}]}) == []
    ess = {"include": [{"relation": "members", "scope": {"include": [person("0000-0002-7774-8995")]}}]}
    assert [d["pid"] for d in find(cat, ess)] == ["67JH32", "YC7SZ5"]
    with pytest.raises(Exception, match="score"):
        find(cat, {"where": {"score": {"gt": 0}}})


def test_datasets_techniques_and_parameters_choose_proposals(cat):
    sans = {"relation": "techniques", "scope": {"where": {"name": "small angle scattering"}}}
    got = find(cat, {"include": [{"relation": "datasets", "scope": {"include": [sans]}}]})
    assert [d["pid"] for d in got] == ["67JH32"]
    assert [x["pid"] for x in got[0]["datasets"]] == ["20.500.12269/79e97997-b565-4ef7-9d2f-f26d69debda1"]
    kelvin = {"and": [{"name": "sample_temperature"}, {"value": {"lt": 293}}, {"unit": "K"}]}
    assert pids(cat, {"include": [{"relation": "parameters", "scope": {"where": kelvin}}]}) == ["YC7SZ5"]
    assert pids(cat, {"where": {"parameters": {"name": "sample_temperature"}}}) == ["67JH32", "YC7SZ5"]
    titled = {"relation": "datasets", "scope": {"where": {"title": {"like": "Cathode"}}}}
    assert pids(cat, {"include": [titled]}) == ["10.5555/zz", "P-100", "P-300"]


def test_datasets_name_their_listed_proposal(cat):
    got = {d["pid"]: d for d in find(cat, {"include": ["documents"]}, "Dataset")}
    assert got["p/open-1"]["documentId"] == "10.5555/zz"  # a publication comes first
    assert [(d["pid"], d["type"]) for d in got["p/open-1"]["documents"]] == [
        ("10.5555/zz", "publication"),
        ("P-100", "proposal"),
    ]
    assert got["p/closed-1"]["documentId"] == "P-100"  # embargoed, in a listed proposal
    assert got["p/closed-2"]["documentId"] is None and got["p/closed-2"]["documents"] == []
    assert pids(cat, {"where": {"documentId": "P-100"}}, "Dataset") == ["p/closed-1", "p/open-1"]
    assert pids(cat, {"where": {"documentId": "P-200"}}, "Dataset") == []
    no_document = pids(cat, {"where": {"documentId": None}}, "Dataset")
    assert no_document == ["20.500.12269/BRIGHTNESS/V200082", "p/closed-2"]
    proposal = {"relation": "document", "scope": {"where": {"type": "proposal", "keywords": "operando"}}}
    assert pids(cat, {"include": [proposal]}, "Dataset") == ["p/closed-1", "p/open-1"]
    assert (
        find(cat, {"where": {"pid": "p/open-1"}, "include": [proposal]}, "Dataset")[0]["document"]["pid"]
        == "P-100"
    )


def test_included_proposals_are_filtered_as_the_database_chooses_them(cat):
    for where, listed in [
        ({"keywords": {"nin": ["battery"]}}, []),
        ({"keywords": {"neq": "x"}}, ["P-100"]),
        ({"keywords": {"gt": "a"}}, []),
        ({"keywords": {"like": "oper"}}, ["P-100"]),
    ]:
        inc = {"relation": "documents", "scope": {"where": {"type": "proposal", **where}}}
        got = find(cat, {"where": {"pid": "p/open-1"}, "include": [inc]}, "Dataset")
        assert [d["pid"] for r in got for d in r["documents"]] == listed, where
