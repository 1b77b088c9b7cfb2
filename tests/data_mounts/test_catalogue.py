"""The catalogue: one-transaction imports, queries, locations, publications with a fake resolver.

Each test runs on SQLite and on PostgreSQL (``any_db_url`` in conftest.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from panbinder.data_mounts.catalogue import Catalogue, normalise_doi
from panbinder.data_mounts.models import Dataset, Publication, Technique
from panbinder.errors import PanbinderError
from panbinder.paths import slug
from tests.shared_data import CATALOGUE

from .test_importers import DATACITE

SCICAT_DATASETS = json.loads((CATALOGUE / "scicatlive-seed/Dataset.json").read_text(encoding="utf-8"))
PUBLISHED = json.loads((CATALOGUE / "scicatlive-seed/PublishedData.json").read_text(encoding="utf-8"))
ESRF = json.loads((CATALOGUE / "panosc-search-api/esrf_datasets_response.json").read_text(encoding="utf-8"))
ESS_STORE = json.loads((CATALOGUE / "panosc-search-api/ess_branch_db.json").read_text(encoding="utf-8"))


class FakeResolver:
    """Stands in for GitProvider.resolve: a sha derived from (repo, ref), calls recorded."""

    def __init__(self, salt: str = "") -> None:
        self.calls: list[tuple[str, str]] = []
        self.salt = salt

    async def __call__(self, repo_url: str, ref: str) -> str:
        self.calls.append((repo_url, ref))
        return hashlib.sha1(f"{self.salt}{repo_url}@{ref}".encode()).hexdigest()


def sha(repo: str, ref: str, salt: str = "") -> str:
    return hashlib.sha1(f"{salt}{repo}@{ref}".encode()).hexdigest()


@pytest.fixture
def db_url(any_db_url) -> str:
    return any_db_url


@pytest.fixture
def storage(tmp_path) -> Path:
    root = tmp_path / "storage"
    (root / "imports").mkdir(parents=True)
    return root


def count(cat, model) -> int:
    with cat.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_import_real_files(cat):
    assert len(cat.import_datasets(SCICAT_DATASETS)) == 19
    assert cat.import_datasets(ESRF)[0] == "162249330"
    assert len(cat.import_datasets(ESS_STORE)) == 3
    assert count(cat, Dataset) == 19 + 6 + 3
    assert count(cat, Technique) == 12  # 10 from SciCat, SANS and reflectometry from ESS parameters
    with cat.session() as s:
        ds = cat.get_dataset(s, "PID.SAMPLE.PREFIX/psi_ds3")
        assert ds.data_type == "raw" and ds.proposal_id == "psi_proposal1" and ds.groups == ["group1"]
        assert ds.location is None  # no --root: not mountable
        assert [(t.panet_id, t.label) for t in ds.techniques] == [("PaNET01129", "tomography")]
        esrf = cat.get_dataset(s, "162249330")
        assert (esrf.facility, esrf.instrument, esrf.release_date.year) == ("ESRF", "ID16A-NI", 2020)


def test_reimport_updates_in_place(cat):
    cat.import_datasets(ESS_STORE)
    changed = copy.deepcopy(ESS_STORE)
    key = next(iter(changed["models"]["Dataset"]))
    rec = json.loads(changed["models"]["Dataset"][key])
    rec["title"] = "Renamed"
    changed["models"]["Dataset"][key] = json.dumps(rec)
    cat.import_datasets(changed)
    assert count(cat, Dataset) == 3
    with cat.session() as s:
        ds = cat.get_dataset(s, rec["pid"])
        assert ds.title == "Renamed" and [f.path for f in ds.files] == ["nicos_00002483.hdf"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"title": ["a", "list"]},
            "record 3 (pid 'PID.SAMPLE.PREFIX/dls_ds1'): field 'datasetName' must be a string",
        ),
        ({"_id": None}, "record 3 (no pid): field 'pid' is missing"),
        ({"techniques": [{"pid": "PaNETxyz"}]}, "field 'techniques[0].pid' must be a PaNET id"),
    ],
)
def test_malformed_record_writes_nothing(cat, bad, message):
    records = copy.deepcopy(SCICAT_DATASETS)
    if "title" in bad:
        records[3]["datasetName"] = bad["title"]
    else:
        records[3].update(bad)
    with pytest.raises(PanbinderError) as err:
        cat.import_datasets(records)
    assert message in err.value.message
    assert "nothing was imported" in err.value.message
    assert count(cat, Dataset) == 0 and count(cat, Technique) == 0


def test_database_failure_rolls_back_everything(cat, monkeypatch):
    """A failure after some rows were written (here: on the 5th record) leaves nothing behind."""
    original = Catalogue._upsert
    seen = []

    def failing(self, session, rec, location, cache):
        seen.append(rec.pid)
        if len(seen) == 5:
            raise PanbinderError("boom")
        return original(self, session, rec, location, cache)

    monkeypatch.setattr(Catalogue, "_upsert", failing)
    with pytest.raises(PanbinderError, match="boom"):
        cat.import_datasets(SCICAT_DATASETS)
    assert len(seen) == 5 and count(cat, Dataset) == 0


def test_import_with_root_sets_confined_locations(cat, storage):
    pids = cat.import_datasets(ESRF[:2], root=str(storage / "imports"))
    with cat.session() as s:
        ds = cat.get_dataset(s, pids[0])
        assert ds.location == str((storage / "imports" / slug(pids[0])).resolve())


def test_import_root_outside_storage_refused(cat, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(PanbinderError, match="outside the storage roots"):
        cat.import_datasets(ESRF, root=str(tmp_path / "elsewhere"))
    with pytest.raises(PanbinderError, match="outside the storage roots"):
        cat.import_datasets(ESRF, root=f"{cat.storage_roots[0]}/imports/../..")
    assert count(cat, Dataset) == 0


def test_list_datasets_filters(cat):
    cat.import_datasets(SCICAT_DATASETS)
    cat.import_datasets(ESRF)
    with cat.session() as s:
        small_angle = [d.pid for d in cat.list_datasets(s, technique="small angle scattering")]
        # PaNET01124 and everything below it (SAXS PaNET01188, SANS PaNET01189)
        assert small_angle == [
            f"PID.SAMPLE.PREFIX/{n}" for n in ("soleil_ds1", "soleil_ds2", "ukri_ds1", "ukri_ds2", "ukri_ds3")
        ]
        assert [
            d.pid for d in cat.list_datasets(s, technique="http://purl.org/pan-science/PaNET/PaNET01188")
        ] == [
            "PID.SAMPLE.PREFIX/soleil_ds1",
            "PID.SAMPLE.PREFIX/soleil_ds2",
        ]
        assert len(cat.list_datasets(s, facility="esrf")) == 6
        assert [d.pid for d in cat.list_datasets(s, instrument="publisher")] == ["186715663"]
        assert [d.pid for d in cat.list_datasets(s, q="CHEETAH")] == ["PID.SAMPLE.PREFIX/desy_ds1"]
        assert cat.list_datasets(s, q="%") == []  # LIKE wildcards are escaped
        page = cat.list_datasets(s, limit=5, offset=5)
        assert [d.pid for d in page] == sorted(d.pid for d in cat.list_datasets(s, limit=1000))[5:10]


async def test_add_publication_pins_the_ref(cat):
    cat.import_datasets(SCICAT_DATASETS)
    resolve = FakeResolver()
    doi = await cat.add_publication(
        doi="https://doi.org/10.9999/MY-Paper",
        repo_url="https://github.com/example/analysis",
        ref="v1.0",
        dataset_pids=["PID.SAMPLE.PREFIX/psi_ds1", "PID.SAMPLE.PREFIX/psi_ds2"],
        title="Lungs",
        authors=["A. Author"],
        year=2020,
        resolve=resolve,
    )
    assert doi == "10.9999/my-paper"
    assert resolve.calls == [("https://github.com/example/analysis", "v1.0")]
    with cat.session() as s:
        pub = cat.get_publication(s, "doi:10.9999/my-paper")
        assert (pub.ref, pub.resolved_sha) == ("v1.0", sha("https://github.com/example/analysis", "v1.0"))
        assert [d.pid for d in pub.datasets] == ["PID.SAMPLE.PREFIX/psi_ds1", "PID.SAMPLE.PREFIX/psi_ds2"]
        assert (pub.title, pub.authors, pub.year) == ("Lungs", ["A. Author"], 2020)
        assert [p.doi for p in cat.list_publications(s, q="lung")] == ["10.9999/my-paper"]

    # the same registration again is a no-op: never re-resolved
    again = FakeResolver(salt="moved")
    await cat.add_publication(
        doi="10.9999/my-paper",
        repo_url="https://github.com/example/analysis",
        ref="v1.0",
        dataset_pids=["PID.SAMPLE.PREFIX/psi_ds2", "PID.SAMPLE.PREFIX/psi_ds1"],
        resolve=again,
    )
    assert again.calls == []
    # a different registration under the same DOI is refused
    with pytest.raises(PanbinderError, match="already registered") as err:
        await cat.add_publication(
            doi="10.9999/my-paper",
            repo_url="https://github.com/example/analysis",
            ref="main",
            dataset_pids=[],
            resolve=again,
        )
    assert err.value.status_code == 409 and again.calls == []
    with cat.session() as s:
        assert cat.get_publication(s, "10.9999/my-paper").resolved_sha == sha(
            "https://github.com/example/analysis", "v1.0"
        )


async def test_unknown_dataset_pid_refused_nothing_written(cat):
    cat.import_datasets(SCICAT_DATASETS)
    resolve = FakeResolver()
    with pytest.raises(PanbinderError, match="No dataset with PID 'nope/1'") as err:
        await cat.add_publication(
            doi="10.9999/x",
            repo_url="https://github.com/e/r",
            ref="main",
            dataset_pids=["PID.SAMPLE.PREFIX/psi_ds1", "nope/1"],
            resolve=resolve,
        )
    assert err.value.status_code == 404
    assert resolve.calls == [] and count(cat, Publication) == 0


async def test_resolver_failure_writes_nothing(cat):
    cat.import_datasets(SCICAT_DATASETS)

    async def unreachable(repo_url, ref):
        raise PanbinderError(f"The ref '{ref}' was not found in {repo_url}")

    async def not_a_sha(repo_url, ref):
        return "main"

    for resolve in (unreachable, not_a_sha):
        with pytest.raises(PanbinderError):
            await cat.add_publication(
                doi="10.9999/x",
                repo_url="https://github.com/e/r",
                ref="main",
                dataset_pids=["PID.SAMPLE.PREFIX/psi_ds1"],
                resolve=resolve,
            )
    assert count(cat, Publication) == 0


async def test_import_datacite_record(cat):
    cat.import_datasets(SCICAT_DATASETS)
    resolve = FakeResolver()
    doi = await cat.import_publication(DATACITE, resolve=resolve)
    assert doi == "10.5281/zenodo.1234567"
    assert resolve.calls == [("https://github.com/example/sans-analysis", "v1.2")]
    with cat.session() as s:
        pub = cat.get_publication(s, "10.5281/ZENODO.1234567")
        assert pub.ref == "v1.2" and pub.resolved_sha == sha(
            "https://github.com/example/sans-analysis", "v1.2"
        )
        # the Handle matched a dataset; the paper DOI and the Zenodo URL did not and are ignored
        assert [d.pid for d in pub.datasets] == ["PID.SAMPLE.PREFIX/ukri_ds1"]
        assert pub.authors == ["Doe, Jane", "Max Mustermann"] and pub.year == 2024


async def test_import_datacite_matches_dataset_doi_case_insensitively(cat):
    cat.import_datasets([{"pid": "10.15151/ESRF-DC-1", "title": "x", "isPublic": True}])
    record = copy.deepcopy(DATACITE)
    record["data"]["attributes"]["relatedIdentifiers"] = [
        {
            "relatedIdentifier": "https://github.com/e/r#main",
            "relatedIdentifierType": "URL",
            "relationType": "IsSupplementTo",
        },
        {
            "relatedIdentifier": "https://doi.org/10.15151/esrf-dc-1",
            "relatedIdentifierType": "DOI",
            "relationType": "IsDerivedFrom",
        },
    ]
    await cat.import_publication(record, resolve=FakeResolver())
    with cat.session() as s:
        assert [d.pid for d in cat.get_publication(s, "10.5281/zenodo.1234567").datasets] == [
            "10.15151/ESRF-DC-1"
        ]


async def test_datacite_without_known_datasets_refused(cat):
    with pytest.raises(PanbinderError, match="None of the related identifiers"):
        await cat.import_publication(DATACITE, resolve=FakeResolver())
    assert count(cat, Publication) == 0


async def test_import_scicat_published_data(cat):
    cat.import_datasets(SCICAT_DATASETS)
    resolve = FakeResolver()
    with pytest.raises(PanbinderError, match="names no git repository; give one with --repo"):
        await cat.import_publications(PUBLISHED, resolve=resolve, doi="10.9999/psi_pub1")
    dois = await cat.import_publications(
        PUBLISHED, resolve=resolve, doi="10.9999/PSI_PUB1", repo_url="https://github.com/e/lungs", ref="v2"
    )
    assert dois == ["10.9999/psi_pub1"] and resolve.calls == [("https://github.com/e/lungs", "v2")]
    with cat.session() as s:
        pub = cat.get_publication(s, "10.9999/psi_pub1")
        assert len(pub.datasets) == 3 and pub.year == 2020 and pub.authors[0] == "Elena Borisova"
        assert pub.ref == "v2"


async def test_scicat_published_data_typo_pid_refused_as_a_whole(cat):
    """dls_pub1 in the seed points at 'dsl_ds1' (a typo): the whole file is refused."""
    cat.import_datasets(SCICAT_DATASETS)
    resolve = FakeResolver()
    with pytest.raises(PanbinderError, match=r"'PID\.SAMPLE\.PREFIX/dsl_ds1'"):
        await cat.import_publications(PUBLISHED, resolve=resolve, repo_url="https://github.com/e/r")
    assert count(cat, Publication) == 0 and resolve.calls == []


def test_normalise_doi_is_exported():
    assert normalise_doi("DOI:10.9999/ABC") == "10.9999/abc"
