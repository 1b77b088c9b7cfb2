"""The PaNOSC search API over a catalogue that imported the PaNOSC reference server's responses
(ESRF, ESS), its ESS store and SciCatLive's datasets: the reference server's own filters give
the same datasets and fields, and the PaNOSC portal's filters find what they should.

Known gap, checked here so a change shows: the catalogue keeps no instrument PIDs (see the
module docstring of data_mounts/panosc/sql.py). Proposals are Documents derived from the
datasets' proposal ids (test_panosc_proposals.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url

from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.importers import PublicationRecord
from panbinder.data_mounts.panosc import filters, search
from panbinder.data_mounts.panosc.importer import import_panosc

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "panosc"
FILTERS = json.loads((FIXTURES / "filters.json").read_text())
SHA = "a" * 40
SCICAT = [
    *(
        f"PID.SAMPLE.PREFIX/{p}"
        for p in ("desy_ds1", "desy_ds2", "desy_ds3", "dls_ds1", "dls_ds2", "hzdr_ds1")
    ),
    *(f"PID.SAMPLE.PREFIX/{p}" for p in ("maxiv_ds1", "maxiv_ds2", "psi_ds1", "psi_ds2", "psi_ds3")),
    *(f"PID.SAMPLE.PREFIX/{p}" for p in ("soleil_ds1", "soleil_ds2", "ukri_ds1", "ukri_ds2", "ukri_ds3")),
    *(f"PID.SAMPLE.PREFIX/{p}" for p in ("ukri_ds4", "ukri_ds5", "ukri_ds6")),
]


def new_catalogue(folder: Path) -> Catalogue:
    """SQLite; with PANBINDER_TEST_DB_URL (a PostgreSQL server) a new database there."""
    url = os.environ.get("PANBINDER_TEST_DB_URL", "")
    if url:
        name = f"panosc_{uuid.uuid4().hex[:12]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        url = make_url(url).set(database=name).render_as_string(hide_password=False)
    c = Catalogue(db_url=url or f"sqlite:///{folder}/c.sqlite")
    c.start()
    return c


def expected(name: str) -> list[dict]:
    return json.loads((FIXTURES / f"{name}_datasets_response.json").read_text())


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    c = new_catalogue(tmp_path_factory.mktemp("panosc"))
    report = import_panosc(c, FIXTURES)
    assert report.failed == []
    assert [name for name, _ in report.skipped] == ["filters.json"]
    pids = [d["pid"] for d in expected("esrf") + expected("ess")]
    assert sorted(set(report.imported)) == sorted(pids + SCICAT)
    assert report.files == 19  # SciCat's OrigDatablocks: one file each

    async def resolve(url: str, ref: str) -> str:
        return SHA  # no git here: the pinned commit is not what these tests look at

    paper = PublicationRecord(
        doi="10.5555/v20.paper",
        title="Neutron imaging at V20",
        authors=("Tobias Richter", "Ada Lovelace"),
        repo_url="https://example.org/v20.git",
        ref="main",
        dataset_pids=("20.500.12269/BRIGHTNESS/V200082", "PID.SAMPLE.PREFIX/ukri_ds1"),
    )
    asyncio.run(c.register_publications([paper], resolve=resolve))
    yield c
    c.close()


def find(cat, model: str, flt: dict | str, query: str = "", cap: int = 100) -> list[dict]:
    raw = flt if isinstance(flt, dict) else filters.decode(flt)
    parsed = filters.parse_filter(model, raw, query=query)
    with cat.session() as session:
        return search.find(session, parsed, now=datetime.now(UTC), cap=cap)


def compared(record: dict) -> dict:
    """The fields the catalogue keeps, as the reference server writes them."""
    instrument = record.get("instrument") or {}
    return {
        "pid": str(record["pid"]),
        "title": record["title"],
        "isPublic": record["isPublic"],
        "creationDate": record["creationDate"],
        "instrument": (instrument.get("name"), instrument.get("facility")),
        "files": sorted((f["name"], f.get("size") or 0) for f in record.get("files") or []),
        "samples": [s["name"] for s in record.get("samples") or []][:1],
        "parameters": sorted(
            (p["name"], p["value"], _unit(p.get("unit", p.get("units"))))
            for p in record.get("parameters") or []
        ),
    }


def _unit(unit: str | None) -> str:
    return "" if unit in (None, "NA", "None") else unit


@pytest.mark.parametrize("name", ["esrf", "ess"])
def test_reference_filters_give_the_reference_datasets(cat, name):
    got = find(cat, "Dataset", FILTERS[name])
    want = expected(name)
    if name == "ess":  # the filter has no where: the other imported datasets are found too
        got = [r for r in got if r["pid"].startswith("20.500.12269/")]
    assert sorted(map(compared, got), key=str) == sorted(map(compared, want), key=str)
    assert sum(len(r["parameters"]) for r in got) == sum(len(r["parameters"]) for r in want) > 0
    # a dataset's document is its publication (the one registered here), else its proposal,
    # which is a Document of type proposal with the reference server's PID
    for r in got:
        ref = next(w for w in want if str(w["pid"]) == r["pid"])
        if r["documentId"] == "10.5555/v20.paper":
            assert r["document"]["type"] == "publication"
            continue
        ref_doc = ref.get("document") or {}
        assert r["documentId"] == ref_doc.get("pid"), r["pid"]
        assert (r["document"] or {}).get("type") == ref_doc.get("type")
        assert (r["document"] or {}).get("pid") == ref_doc.get("pid")
    assert sum(r["documentId"] is not None for r in got) == len(got) - (name == "esrf")
    # the reference server has no techniques; an ESS "technique" parameter gives one here
    assert all(r["techniques"] == [] for r in want)
    derived = {r["pid"]: [t["name"] for t in r["techniques"]] for r in got if r["techniques"]}
    ess = {
        "20.500.12269/79e97997-b565-4ef7-9d2f-f26d69debda1": ["small angle neutron scattering"],
        "20.500.12269/BRIGHTNESS/V200082": ["reflectometry"],
    }
    assert derived == (ess if name == "ess" else {})


def test_technique_query_finds_narrower_terms(cat):
    # the search API's example filter, with a PaNET parent term: SAXS (PaNET01188) and SANS
    # datasets are "small angle scattering" (PaNET01124) too
    flt = {"include": [{"relation": "techniques", "scope": {"where": {"name": "small angle scattering"}}}]}
    got = find(cat, "Dataset", flt)
    assert sorted(r["pid"] for r in got) == [
        "20.500.12269/79e97997-b565-4ef7-9d2f-f26d69debda1",
        "PID.SAMPLE.PREFIX/soleil_ds1",
        "PID.SAMPLE.PREFIX/soleil_ds2",
        "PID.SAMPLE.PREFIX/ukri_ds1",
        "PID.SAMPLE.PREFIX/ukri_ds2",
        "PID.SAMPLE.PREFIX/ukri_ds3",
    ]
    assert {t["panetId"] for r in got for t in r["techniques"]} <= {"PaNET01188", "PaNET01124", "PaNET01189"}
    by_purl = find(
        cat,
        "Dataset",
        {
            "include": [
                {
                    "relation": "techniques",
                    "scope": {"where": {"pid": "http://purl.org/pan-science/PaNET/PaNET01188"}},
                }
            ]
        },
    )
    assert [r["pid"] for r in by_purl] == ["PID.SAMPLE.PREFIX/soleil_ds1", "PID.SAMPLE.PREFIX/soleil_ds2"]


def test_portal_document_search(cat):
    """What panosc-eu/searchui sends for "technique = small angle scattering", with members."""
    flt = {
        "include": [
            {
                "relation": "members",
                "scope": {"include": [{"relation": "affiliation"}, {"relation": "person"}]},
            },
            {
                "relation": "datasets",
                "scope": {
                    "include": [
                        {"relation": "techniques", "scope": {"where": {"name": "small angle scattering"}}}
                    ]
                },
            },
        ],
        "limit": 50,
    }
    docs = find(cat, "Document", flt)
    # the publication, and ESS's proposal 67JH32 of the SANS dataset (a Document of its own)
    assert [d["pid"] for d in docs] == ["10.5555/v20.paper", "67JH32"]
    assert docs[1]["type"] == "proposal" and [d["pid"] for d in docs[1]["datasets"]] == [V20_254]
    assert [m["person"]["orcid"] for m in docs[1]["members"]] == ["0000-0002-7774-8995"]
    doc = docs[0]
    assert doc["type"] == "publication" and doc["title"] == "Neutron imaging at V20"
    assert [m["person"]["fullName"] for m in doc["members"]] == ["Tobias Richter", "Ada Lovelace"]
    assert all(m["role"] == "author" and m["affiliation"] is None for m in doc["members"])
    # only the dataset with such a technique is listed under the document
    assert [d["pid"] for d in doc["datasets"]] == ["PID.SAMPLE.PREFIX/ukri_ds1"]
    tomography = {"relation": "techniques", "scope": {"where": {"name": "tomography"}}}
    found = find(cat, "Document", {"include": [{"relation": "datasets", "scope": {"include": [tomography]}}]})
    # no publication; PSI's tomography datasets belong to SciCat's proposal psi_proposal1
    assert [(d["pid"], d["type"]) for d in found] == [("psi_proposal1", "proposal")]
    assert {d["pid"] for d in found[0]["datasets"]} <= {f"PID.SAMPLE.PREFIX/psi_ds{i}" for i in (1, 2, 3)}
    person = {
        "include": [
            {
                "relation": "members",
                "scope": {
                    "include": [{"relation": "person", "scope": {"where": {"fullName": "Ada Lovelace"}}}]
                },
            }
        ]
    }
    assert [d["pid"] for d in find(cat, "Document", person)] == ["10.5555/v20.paper"]
    person["include"][0]["scope"]["include"][0]["scope"]["where"]["fullName"] = "Ada"
    assert find(cat, "Document", person) == []


def parameters(*conds: dict) -> dict:
    """The include the PaNOSC portal sends for a parameter query."""
    return {"include": [{"relation": "parameters", "scope": {"where": {"and": list(conds)}}}]}


V20_2483 = "20.500.12269/2483nicos_00002483.hdf"  # sample_temperature 292.982 kelvin
V20_254 = "20.500.12269/79e97997-b565-4ef7-9d2f-f26d69debda1"  # sample_temperature 20 celsius


@pytest.mark.parametrize(
    ("value", "unit", "pids"),
    [
        ({"lt": 300}, "kelvin", [V20_2483, V20_254]),  # 20 celsius is 293.15 K
        ({"lt": 20}, "celsius", [V20_2483]),  # 292.982 K is 19.83 celsius
        ({"between": [293000, 293200]}, "mK", [V20_254]),
        ({"gt": 66}, "degF", [V20_2483, V20_254]),
        ({"gt": 300}, "K", []),
        ({"lt": 300}, "m", []),  # another dimension: no match
    ],
)
def test_parameter_queries_convert_units(cat, value, unit, pids):
    flt = parameters({"name": "sample_temperature"}, {"value": value}, {"unit": unit})
    got = find(cat, "Dataset", flt)
    assert sorted(r["pid"] for r in got) == sorted(pids)
    for r in got:  # the parameters listed are the matching ones, as stored
        assert [p["name"] for p in r["parameters"]] == ["sample_temperature"]
        assert r["parameters"][0]["unit"] in ("kelvin", "celsius")


def test_parameter_queries_in_other_shapes(cat):
    by_name = parameters({"name": "sample_chemical_formula"}, {"value": "H2O"})
    assert [r["pid"] for r in find(cat, "Dataset", by_name)] == [V20_254]
    # the search API documentation's shape, alone, under "query" and joined with and
    doc = {"variable": "elapsed_time", "operator": "gt", "value": 10, "unit": "h"}
    assert [r["pid"] for r in find(cat, "Dataset", {"where": doc})] == [V20_2483]  # 39605 s
    assert [r["pid"] for r in find(cat, "Dataset", {"where": {"query": doc}})] == [V20_2483]
    both = {"and": [doc, {**doc, "operator": "lt", "value": 12}]}
    assert [r["pid"] for r in find(cat, "Dataset", {"where": both})] == [V20_2483]
    assert find(cat, "Dataset", {"where": {**doc, "value": 12}}) == []
    # {"parameters": {...}} in a where; ESRF's unit-less scan parameters
    where = {"parameters": {"name": "scanType", "value": "holonfpscan"}}
    assert sorted(r["pid"] for r in find(cat, "Dataset", {"where": where})) == ["164215699", "164234242"]
    assert find(cat, "Dataset", {"where": {"parameters": {"name": "scanType", "value": "none"}}}) == []
    # documents: of datasets with such a parameter, listing their datasets' parameters
    docs = find(
        cat,
        "Document",
        {
            "include": [
                {
                    "relation": "datasets",
                    "scope": {"include": [parameters({"name": "technique"})["include"][0]]},
                }
            ]
        },
    )
    assert [d["pid"] for d in docs] == ["10.5555/v20.paper", "67JH32"]
    reflectometry = {"where": {"parameters": {"name": "technique", "value": "reflectometry"}}}
    assert [d["pid"] for d in find(cat, "Document", reflectometry)] == ["10.5555/v20.paper"]
    sans = {"where": {"parameters": {"name": "technique", "value": "SANS"}}}
    assert [d["pid"] for d in find(cat, "Document", sans)] == ["67JH32"]  # the proposal's dataset


def test_query_words_score_and_rank(cat):
    got = find(cat, "Dataset", {"limit": 3}, query="V20 82")
    assert got[0]["pid"] == "20.500.12269/BRIGHTNESS/V200082"  # "Sample Data from V20 82": both words
    assert all(0 < r["score"] < 1 for r in got)
    assert got[0]["score"] >= got[-1]["score"]
    assert all(r["score"] == 0 for r in find(cat, "Dataset", {"limit": 3}))


def test_where_paging_order_fields_and_count(cat):
    where = {
        "and": [
            {"creationDate": {"between": ["2018-12-05T00:00:00Z", "2018-12-06T00:00:00Z"]}},
            {"instrumentId": "ESRF/ID16A-NI"},
        ]
    }
    got = find(
        cat, "Dataset", {"where": where, "order": "creationDate DESC", "fields": ["pid", "creationDate"]}
    )
    assert got == [
        {"pid": "162359384", "creationDate": "2018-12-05T16:25:21.000Z"},
        {"pid": "162279268", "creationDate": "2018-12-05T14:23:24.000Z"},
        {"pid": "162249330", "creationDate": "2018-12-05T12:00:00.000Z"},
    ]
    page = find(cat, "Dataset", {"where": where, "order": "creationDate DESC", "skip": 1, "limit": 1})
    assert [r["pid"] for r in page] == ["162279268"]
    with cat.session() as session:
        count = search.count(session, "Dataset", filters.parse_where("Dataset", where), now=datetime.now(UTC))
    assert count == 3
    assert len(find(cat, "Dataset", {}, cap=5)) == 5  # the cap bounds a missing limit
    assert len(find(cat, "Dataset", {"limit": 1000}, cap=7)) == 7


def test_instruments(cat):
    got = find(
        cat,
        "Instrument",
        {
            "where": {"facility": "ESRF"},
            "include": [{"relation": "datasets", "scope": {"where": {"title": "PRIVATE"}, "limit": 2}}],
        },
    )
    assert [(i["pid"], len(i["datasets"])) for i in got] == [("ESRF/ID16A-NI", 2), ("ESRF/PUBLISHER", 1)]


@pytest.mark.parametrize(("skip", "limit"), [(1, 2), (2, 0), (0, 1), (3, 5)])
def test_an_instrument_s_included_datasets_are_skipped_once(cat, skip, limit):
    def listed(scope: dict) -> list[str]:
        flt = {"where": {"pid": "ESRF/ID16A-NI"}, "include": [{"relation": "datasets", "scope": scope}]}
        (instrument,) = find(cat, "Instrument", flt)
        return [d["pid"] for d in instrument["datasets"]]

    every = listed({})
    assert len(every) >= 4
    scope = {"skip": skip, **({"limit": limit} if limit else {})}
    assert listed(scope) == every[skip : skip + limit if limit else None]


def test_get_by_pid(cat):
    flt = filters.parse_filter("Dataset", {"include": ["files", "samples", "document"]})
    with cat.session() as session:
        ds = search.get(session, flt, "20.500.12269/BRIGHTNESS/V200082", now=datetime.now(UTC), cap=10)
        doc = search.get(
            session,
            filters.parse_filter("Document", {}),
            "https://doi.org/10.5555/V20.PAPER",
            now=datetime.now(UTC),
            cap=10,
        )
        missing = search.get(session, flt, "nothing", now=datetime.now(UTC), cap=10)
    assert ds["files"] == [
        {
            "id": ds["files"][0]["id"],
            "name": "nicos_00000070.hdf",
            "path": None,
            "size": 20192672187,
            "datasetId": ds["pid"],
        }
    ]
    assert ds["samples"][0]["name"] == "hBN target with 1.0 mm diameter hole"
    assert ds["document"]["pid"] == "10.5555/v20.paper"
    psi = find(
        cat, "Dataset", {"include": [{"relation": "files", "scope": {"where": {"name": {"like": "%.tif"}}}}]}
    )
    assert [r["pid"] for r in psi][:1] == ["PID.SAMPLE.PREFIX/psi_ds1"]
    assert psi[0]["files"][0] == {
        "id": psi[0]["files"][0]["id"],
        "name": "PSI-2018-R2-6_cropped_volume0000.tif",
        "path": None,
        "size": 95220228,
        "datasetId": "PID.SAMPLE.PREFIX/psi_ds1",
    }
    assert doc["pid"] == "10.5555/v20.paper" and missing is None


def test_embargoed_datasets_show_no_files_size_or_samples(tmp_path):
    c = new_catalogue(tmp_path)
    assert import_panosc(c, FIXTURES / "ess_datasets_response.json").failed == []
    pid = "20.500.12269/2483nicos_00002483.hdf"
    with c.session() as s:
        ds = c.get_dataset(s, pid)
        ds.is_public, ds.release_date = False, datetime.now(UTC) + timedelta(days=30)
    got = {r["pid"]: r for r in find(c, "Dataset", {"include": ["files", "samples"]})}
    assert got[pid]["isPublic"] is False and got[pid]["size"] is None
    assert got[pid]["files"] == [] and got[pid]["samples"] == []
    by_file = find(
        c, "Dataset", {"include": [{"relation": "files", "scope": {"where": {"name": "nicos_00002483.hdf"}}}]}
    )
    assert by_file == []  # an embargoed dataset's file names are not searchable either
    assert find(c, "Dataset", {"where": {"size": {"gt": 0}}, "fields": ["pid"]}) == [
        {"pid": "20.500.12269/79e97997-b565-4ef7-9d2f-f26d69debda1"},
        {"pid": "20.500.12269/BRIGHTNESS/V200082"},
    ]
    assert [r["pid"] for r in find(c, "Dataset", {"where": {"isPublic": False}})] == [pid]
    c.close()


def test_ordering_by_size_leaves_embargoed_datasets_last_whatever_their_size(tmp_path):
    c = new_catalogue(tmp_path)
    assert import_panosc(c, FIXTURES / "ess_datasets_response.json").failed == []
    closed = "20.500.12269/2483nicos_00002483.hdf"
    with c.session() as s:
        ds = c.get_dataset(s, closed)
        ds.is_public, ds.release_date, ds.size = False, datetime.now(UTC) + timedelta(days=30), 10**15
    for order in ("size DESC", "size ASC"):
        got = find(c, "Dataset", {"order": order, "fields": ["pid", "size"]})
        assert got[-1] == {"pid": closed, "size": None}, order
        sizes = [r["size"] or 0 for r in got[:-1]]
        assert sizes == sorted(sizes, reverse=order.endswith("DESC")), order
    c.close()


def test_import_command_reports_bad_records_and_goes_on(tmp_path):
    good = expected("ess")
    bad = json.loads(json.dumps(good[0]))
    bad["pid"], bad["creationDate"] = "bad-date", "last Tuesday"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "records.json").write_text(json.dumps([bad, *good[1:]]))
    (folder / "broken.json").write_text("{not json")
    state = tmp_path / "state"
    code = (
        "import sys; from panbinder.catalogue_cli import CatalogueApp as A; A.launch_instance(sys.argv[1:])"
    )
    env = {**os.environ, "PANBINDER_STATE": str(state)}
    out = subprocess.run(
        [sys.executable, "-c", code, "import-panosc", str(folder)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "failed: broken.json:" in out.stderr
    assert "failed: records.json: record 0 (pid 'bad-date'):" in out.stderr and "creationDate" in out.stderr
    assert out.stdout.split() == [r["pid"] for r in good[1:]]
    assert "imported 2 datasets, 2 failed" in out.stderr
