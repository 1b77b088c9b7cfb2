"""Every importer on the real catalogue files, plus DataCite and shape errors."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from panbinder.data_mounts import importers
from panbinder.data_mounts.importers import (
    normalise_doi,
    parse_datasets,
    parse_publications,
    split_repo_url,
)
from panbinder.errors import PanbinderError
from tests.shared_data import CATALOGUE

PANOSC = CATALOGUE / "panosc-search-api"
SCICAT = CATALOGUE / "scicatlive-seed"


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_esrf_panosc_response():
    records = parse_datasets(load(PANOSC / "esrf_datasets_response.json"))
    assert [r.pid for r in records] == [
        "162249330",
        "162279268",
        "162359384",
        "164215699",
        "164234242",
        "186715663",
    ]
    first = records[0]
    assert first.shape == "panosc"
    assert (first.title, first.facility, first.instrument) == ("PRIVATE", "ESRF", "ID16A-NI")
    assert first.is_public is True
    assert first.creation_date == datetime(2018, 12, 5, 12, 0, tzinfo=UTC)
    assert first.release_date == datetime(2020, 9, 20, 6, 0, tzinfo=UTC)
    assert first.proposal_id == "10.15151/ESRF-ES-162248067"
    assert first.files == () and first.techniques == ()
    orange = records[-1]  # documentId " ": no document, one file
    assert orange.release_date is None and orange.proposal_id is None
    assert orange.instrument == "PUBLISHER"
    assert [f.path for f in orange.files] == ["ESRF-orange-book.pdf"] and orange.file_count == 1


def test_ess_panosc_response():
    records = parse_datasets(load(PANOSC / "ess_datasets_response.json"))
    assert len(records) == 3
    by_pid = {r.pid: r for r in records}
    pluronic = by_pid["20.500.12269/2483nicos_00002483.hdf"]
    assert pluronic.title == "Pluronic f127 10wt%"
    assert pluronic.size == 197469081 and pluronic.file_count == 1
    assert pluronic.files[0].path == "nicos_00002483.hdf"
    assert pluronic.proposal_id == "YC7SZ5"
    assert pluronic.owners == ("0000-0002-7774-8995",)
    assert pluronic.facility == "" and pluronic.instrument == ""  # the ESS response has no instrument
    # the technique is only a parameter there ("SANS", "reflectometry"): looked up in PaNET
    assert by_pid["20.500.12269/79e97997-b565-4ef7-9d2f-f26d69debda1"].techniques[0].panet_id == "PaNET01189"
    v20 = by_pid["20.500.12269/BRIGHTNESS/V200082"]
    assert v20.techniques[0].panet_id == "PaNET01121"
    assert v20.size == 20192672187


def test_loopback_store_matches_the_api_response():
    store = load(PANOSC / "ess_branch_db.json")
    assert isinstance(next(iter(store["models"]["Dataset"].values())), str)  # JSON strings inside JSON
    records = parse_datasets(store)
    assert {r.shape for r in records} == {"loopback"}
    api = {r.pid: r for r in parse_datasets(load(PANOSC / "ess_datasets_response.json"))}
    assert len(records) == 3
    for rec in records:
        other = api[rec.pid]
        for field in (
            "title",
            "is_public",
            "creation_date",
            "size",
            "file_count",
            "files",
            "proposal_id",
            "owners",
            "techniques",
        ):
            assert getattr(rec, field) == getattr(other, field), (rec.pid, field)


def test_loopback_bad_inner_json_is_named():
    store = {"ids": {}, "models": {"Dataset": {"x": "{not json"}}}
    with pytest.raises(PanbinderError, match="Dataset record 'x'"):
        parse_datasets(store)


def test_scicat_v3_seed():
    records = parse_datasets(load(SCICAT / "Dataset.json"))
    assert len(records) == 19
    assert {r.shape for r in records} == {"scicat-v3"}
    assert sum(r.data_type == "raw" for r in records) == 7
    assert sum(r.data_type == "processed" for r in records) == 12
    assert len({t.panet_id for r in records for t in r.techniques}) == 10
    by_pid = {r.pid: r for r in records}
    desy = by_pid["PID.SAMPLE.PREFIX/desy_ds1"]
    assert desy.title == "cheetah"
    assert desy.techniques == (importers.TechniqueRef("PaNET01168", "serial femtosecond crystallography"),)
    assert desy.owners == ("Oleksandr Yefanov",) and desy.groups == ("group1",)
    assert desy.creation_date == datetime(2020, 2, 7, 13, 46, 43, tzinfo=UTC)
    assert desy.release_date == datetime(2024, 6, 29, tzinfo=UTC)  # datasetlifecycle.dateOfPublishing
    assert (desy.size, desy.file_count, desy.is_public) == (4000, 98, True)
    assert desy.instrument == "desy_instrument1"
    psi = by_pid["PID.SAMPLE.PREFIX/psi_ds3"]
    assert psi.proposal_id == "psi_proposal1" and psi.size == 1173381773872 and psi.file_count == 7084
    assert by_pid["PID.SAMPLE.PREFIX/hzdr_ds1"].size == 2_000_000_000_000  # 2000000000000.0 in the file


def _as_v4(v3: dict) -> dict:
    """The v3 seed record in the v4 unified shape (scicat-backend-next migration 20240920111733)."""
    rec = copy.deepcopy(v3)
    rec["pid"] = rec.pop("_id")
    rec["proposalIds"] = [rec.pop("proposalId")] if "proposalId" in rec else []
    rec["instrumentIds"] = [rec.pop("instrumentId")] if "instrumentId" in rec else []
    rec["sampleIds"] = [rec.pop("sampleId")] if "sampleId" in rec else []
    rec["principalInvestigators"] = (
        [rec.pop("principalInvestigator")] if "principalInvestigator" in rec else []
    )
    rec["creationTime"] = rec["creationTime"]["$date"]
    rec["version"] = "4.0.0"
    return rec


def test_scicat_v4_shape():
    seed = load(SCICAT / "Dataset.json")
    psi_v3 = next(r for r in seed if r["_id"] == "PID.SAMPLE.PREFIX/psi_ds3")
    (v4,) = parse_datasets([_as_v4(psi_v3)])
    (v3,) = parse_datasets([psi_v3])
    assert v4.shape == "scicat-v4"
    assert v4.pid == v3.pid and v4.proposal_id == "psi_proposal1" and v4.instrument == "psi_instrument1"
    assert v4.creation_date == v3.creation_date and v4.techniques == v3.techniques
    assert set(v4.owners) >= set(v3.owners)


def test_scicat_published_data():
    records = parse_publications(load(SCICAT / "PublishedData.json"))
    assert len(records) == 11
    desy = records[0]
    assert desy.shape == "scicat-published"
    assert desy.doi == "10.9999/desy_pub1"
    assert desy.title.startswith("Evaluation of serial crystallographic structure determination")
    assert desy.authors == ("Oleksandr Yefanov", "al.") and desy.year == 2019
    assert desy.dataset_pids == tuple(f"PID.SAMPLE.PREFIX/desy_ds{i}" for i in (1, 2, 3))
    assert desy.repo_url == ""  # SciCat records name no git repository
    dls = next(r for r in records if r.doi == "10.9999/dls_pub1")
    assert dls.dataset_pids == ("PID.SAMPLE.PREFIX/dsl_ds1",)  # a typo in the seed: no such dataset


DATACITE = {
    "data": {
        "id": "10.5281/zenodo.1234567",
        "type": "dois",
        "attributes": {
            "doi": "10.5281/ZENODO.1234567",
            "titles": [{"title": "Subtitle", "titleType": "Subtitle"}, {"title": "SANS of aged steel"}],
            "creators": [
                {"name": "Doe, Jane", "nameType": "Personal"},
                {"givenName": "Max", "familyName": "Mustermann"},
            ],
            "publicationYear": "2024",
            "descriptions": [{"description": "Code: git ref: v1.2.", "descriptionType": "TechnicalInfo"}],
            "relatedIdentifiers": [
                {
                    "relatedIdentifier": "https://zenodo.org/record/1",
                    "relatedIdentifierType": "URL",
                    "relationType": "References",
                },
                {
                    "relatedIdentifier": "https://github.com/example/sans-analysis",
                    "relatedIdentifierType": "URL",
                    "relationType": "IsSupplementTo",
                },
                {
                    "relatedIdentifier": "PID.SAMPLE.PREFIX/ukri_ds1",
                    "relatedIdentifierType": "Handle",
                    "relationType": "IsDerivedFrom",
                },
                {
                    "relatedIdentifier": "10.1063/1.5124387",
                    "relatedIdentifierType": "DOI",
                    "relationType": "References",
                },
                {
                    "relatedIdentifier": "10.9999/cited-by",
                    "relatedIdentifierType": "DOI",
                    "relationType": "IsCitedBy",
                },
            ],
        },
    }
}


def test_datacite_rest_record():
    (rec,) = parse_publications(DATACITE)
    assert rec.shape == "datacite"
    assert rec.doi == "10.5281/zenodo.1234567"
    assert rec.title == "SANS of aged steel"
    assert rec.authors == ("Doe, Jane", "Max Mustermann")
    assert rec.year == 2024
    assert rec.repo_url == "https://github.com/example/sans-analysis"
    assert rec.ref == "v1.2"  # from the descriptions entry
    assert rec.related_ids == (
        "https://zenodo.org/record/1",
        "PID.SAMPLE.PREFIX/ukri_ds1",
        "10.1063/1.5124387",
    )


def test_datacite_bare_attributes_with_ref_suffix():
    attrs = copy.deepcopy(DATACITE["data"]["attributes"])
    attrs["relatedIdentifiers"][1]["relatedIdentifier"] = "https://gitlab.example.org/g/r.git@0123abc"
    (rec,) = parse_publications(attrs)
    assert (rec.repo_url, rec.ref) == ("https://gitlab.example.org/g/r.git", "0123abc")
    (listed,) = parse_publications({"data": [DATACITE["data"]]})
    assert listed.doi == "10.5281/zenodo.1234567"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/org/repo", ("https://github.com/org/repo", None)),
        ("https://github.com/org/repo#v1.0", ("https://github.com/org/repo", "v1.0")),
        ("https://github.com/org/repo@main", ("https://github.com/org/repo", "main")),
        ("https://github.com/org/repo/tree/release/2.0", ("https://github.com/org/repo", "release/2.0")),
        ("https://gitlab.com/g/sub/repo/-/tree/dev", ("https://gitlab.com/g/sub/repo", "dev")),
        ("https://github.com/org/repo/blob/main/README.md", ("https://github.com/org/repo", None)),
        ("https://codebase.helmholtz.cloud/g/r", ("https://codebase.helmholtz.cloud/g/r", None)),
        ("https://example.org/x/repo.git", ("https://example.org/x/repo.git", None)),
        ("https://zenodo.org/record/4553506", None),
        ("https://github.com/org", None),
        ("https://cxidb.org/id-98.html", None),
        ("ftp://github.com/org/repo", None),
        ("not a url", None),
    ],
)
def test_split_repo_url(url, expected):
    assert split_repo_url(url) == expected


@pytest.mark.parametrize(
    "given",
    [
        "10.5281/ZENODO.1",
        "https://doi.org/10.5281/zenodo.1",
        "doi:10.5281/Zenodo.1",
        " http://dx.doi.org/10.5281/zenodo.1 ",
    ],
)
def test_normalise_doi(given):
    assert normalise_doi(given) == "10.5281/zenodo.1"


@pytest.mark.parametrize("bad", ["", "zenodo.1", "10.1/x", "https://example.org/10.5281/x", None])
def test_normalise_doi_refuses(bad):
    with pytest.raises(PanbinderError, match="is not a DOI"):
        normalise_doi(bad)


GOOD = {"pid": "a", "title": "ok", "isPublic": True, "creationDate": "2020-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("bad", "where", "field"),
    [
        ({**GOOD, "pid": "b", "title": ["x"]}, "record 1 (pid 'b')", "'title' must be a string"),
        ({k: v for k, v in GOOD.items() if k != "pid"}, "record 1 (no pid)", "'pid' is missing"),
        ({**GOOD, "pid": "b", "isPublic": "yes"}, "record 1 (pid 'b')", "'isPublic' must be true or false"),
        (
            {**GOOD, "pid": "b", "creationDate": "last year"},
            "record 1 (pid 'b')",
            "'creationDate' must be an ISO 8601 date",
        ),
        ({**GOOD, "pid": "b", "size": -1}, "record 1 (pid 'b')", "'size' must be a whole number"),
        (
            {**GOOD, "pid": "b", "techniques": [{"pid": "SAXS-1"}]},
            "record 1 (pid 'b')",
            "'techniques[0].pid' must be a PaNET id",
        ),
        (
            {**GOOD, "pid": "b", "files": [{"name": "../../etc/passwd"}]},
            "record 1 (pid 'b')",
            "'files[0].name'",
        ),
        ({**GOOD, "pid": "a"}, "record 1 (pid 'a')", "'pid' repeats record 0"),
        ({"_id": "s", "type": "exotic", "datasetName": "x"}, "record 1 (pid 's')", "'type' must be one of"),
        ({"datasetName": "x", "ownerGroup": "g"}, "record 1 (no pid)", "'pid' is missing"),
        ("just a string", "record 1 (no pid)", "must be a JSON object"),
        ({"hello": "world"}, "record 1 (no pid)", "'pid' is missing"),  # parsed in the file's shape
    ],
)
def test_bad_record_names_record_and_field(bad, where, field):
    with pytest.raises(PanbinderError) as err:
        parse_datasets([GOOD, bad])
    assert err.value.message.startswith(where + ":"), err.value.message
    assert field in err.value.message
    assert err.value.reason == "bad_record"


def test_unrecognised_dataset_shape():
    with pytest.raises(PanbinderError, match=r"^record 0 \(no pid\): is neither a PaNOSC"):
        parse_datasets([{"hello": "world"}])


def test_load_json_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(PanbinderError, match=r"bad\.json is not valid JSON"):
        importers.load_json(bad)
    with pytest.raises(PanbinderError, match="does not exist"):
        importers.load_json(tmp_path / "missing.json")


def test_unknown_publication_shape():
    with pytest.raises(PanbinderError, match=r"record 0 .*neither a DataCite record"):
        parse_publications([{"pid": "x"}])
