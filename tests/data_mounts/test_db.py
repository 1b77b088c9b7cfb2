"""Models and migrations on a temporary SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from panbinder.data_mounts import build_leases, db, derived_models  # noqa: F401 (their tables are on Base)
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Base, Dataset, DatasetFile, Publication, Technique


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/state/catalogue.sqlite"


def test_upgrade_creates_tables_and_is_idempotent(url, tmp_path):
    db.upgrade(url)
    db.upgrade(url)  # second run: nothing to do, no error
    engine = db.make_engine(url)
    try:
        assert (
            db.current_revision(engine) == ScriptDirectory.from_config(db.alembic_config()).get_current_head()
        )
        tables = set(inspect(engine).get_table_names())
        assert {"datasets", "dataset_files", "techniques", "dataset_techniques"} <= tables
        assert {"publications", "publication_datasets", "image_locks", "checks", "alembic_version"} <= tables
    finally:
        engine.dispose()
    assert (tmp_path / "state" / "catalogue.sqlite").exists()


def test_migration_matches_models(any_db_url):
    """The migration and the models describe the same schema (a model change needs a migration),
    on SQLite and PostgreSQL."""
    db.upgrade(any_db_url)
    engine = db.make_engine(any_db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(
                    conn, opts={"compare_type": True, "include_object": db.include_object}
                ),
                Base.metadata,
            )
    finally:
        engine.dispose()
    assert diff == []


def test_datasets_are_found_by_proposal_through_an_index(any_db_url):
    """PaNOSC proposal Documents look their datasets up by proposal id (revision 0014)."""
    db.upgrade(any_db_url)
    engine = db.make_engine(any_db_url)
    try:
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("datasets")}
        assert indexes["ix_datasets_proposal_id"] == ["proposal_id"]
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                plan = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT id FROM datasets WHERE proposal_id = 'p-1'"
                ).all()
            assert "ix_datasets_proposal_id" in " ".join(str(row[-1]) for row in plan)
    finally:
        engine.dispose()


def test_migration_script_location_is_inside_the_package():
    cfg = db.alembic_config("sqlite:///x.sqlite")
    location = cfg.get_main_option("script_location")
    assert location == str(db.MIGRATIONS)
    assert (db.MIGRATIONS / "env.py").is_file()
    assert (db.MIGRATIONS / "versions" / "0001_initial.py").is_file()


def test_catalogue_start_is_idempotent_and_lazy(url, tmp_path):
    cat = Catalogue(db_url=url)
    assert not (tmp_path / "state").exists()  # constructing does not touch the database
    cat.start()
    cat.start()
    with cat.session() as s:
        assert s.scalars(select(Dataset)).all() == []
    cat.close()


def test_default_url_uses_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PANBINDER_STATE", str(tmp_path / "st"))
    assert Catalogue().url == f"sqlite:///{tmp_path}/st/catalogue.sqlite"
    assert db.redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


@pytest.fixture
def cat(url):
    c = Catalogue(db_url=url)
    c.start()
    yield c
    c.close()


def test_dataset_roundtrip_with_relations(cat):
    created = datetime(2020, 2, 7, 13, 46, 43, tzinfo=UTC)
    release = datetime(2030, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    with cat.session() as s:
        ds = Dataset(
            pid="10.5281/zenodo.1",
            title="t",
            techniques=[Technique(panet_id="PaNET01188", label="small angle x-ray scattering")],
            owners=["alice"],
            groups=["p1234"],
            creation_date=created,
            release_date=release,
            size=2 * 10**12,
            file_count=1,
            files=[
                DatasetFile(
                    path="sub/a.h5", size=2 * 10**12, sha256="0" * 64, mtime_ns=1_700_000_000_123_456_789
                )
            ],
        )
        s.add(ds)
        s.add(
            Publication(
                doi="10.1234/x",
                repo_url="https://e.org/r.git",
                ref="main",
                resolved_sha="a" * 40,
                datasets=[ds],
            )
        )
    with cat.session() as s:
        ds = cat.get_dataset(s, "10.5281/zenodo.1")
        assert ds.creation_date == created and ds.creation_date.tzinfo is not None
        assert ds.release_date == release and ds.release_date.utcoffset() == timedelta(0)
        assert ds.owners == ["alice"] and ds.groups == ["p1234"]
        assert ds.size == 2 * 10**12  # BigInteger
        assert [(t.panet_id, t.label) for t in ds.techniques] == [
            ("PaNET01188", "small angle x-ray scattering")
        ]
        assert ds.files[0].mtime == datetime.fromtimestamp(1_700_000_000.123456789, UTC)
        assert [p.doi for p in ds.publications] == ["10.1234/x"]
        assert ds.slug == "10.5281-zenodo.1-" + ds.slug.rsplit("-", 1)[1]
        pub = cat.get_publication(s, "https://doi.org/10.1234/X")
        assert pub is not None and pub.created.tzinfo is not None
        assert [d.pid for d in pub.datasets] == ["10.5281/zenodo.1"]


def test_naive_datetimes_are_utc(cat):
    with cat.session() as s:
        s.add(Dataset(pid="p", creation_date=datetime(2001, 2, 7, 8, 54, 21)))
    with cat.session() as s:
        assert cat.get_dataset(s, "p").creation_date == datetime(2001, 2, 7, 8, 54, 21, tzinfo=UTC)


def test_unique_pid_and_rollback(cat):
    with cat.session() as s:
        s.add(Dataset(pid="dup"))
    with pytest.raises(IntegrityError), cat.session() as s:
        s.add(Dataset(pid="other"))
        s.flush()
        s.add(Dataset(pid="dup"))
    with cat.session() as s:
        assert [d.pid for d in s.scalars(select(Dataset))] == ["dup"]  # "other" rolled back


def test_deleting_dataset_cascades_files(cat):
    with cat.session() as s:
        s.add(Dataset(pid="p", files=[DatasetFile(path="a.h5", size=1)]))
    with cat.session() as s:
        s.delete(cat.get_dataset(s, "p"))
    with cat.session() as s:
        assert s.scalars(select(DatasetFile)).all() == []


def test_an_sqlite_file_catalogue_writes_ahead_unless_told_not_to(tmp_path):
    """Commits wait for no disk sync (the default mode synced twice per commit, about 10 ms)."""
    from sqlalchemy import text

    def modes(wal: bool) -> tuple[str, int]:
        engine = db.make_engine(f"sqlite:///{tmp_path / f'c-{wal}.sqlite'}", wal=wal)
        try:
            with engine.connect() as conn:
                return (
                    conn.execute(text("PRAGMA journal_mode")).scalar(),
                    conn.execute(text("PRAGMA synchronous")).scalar(),
                )
        finally:
            engine.dispose()

    assert modes(True) == ("wal", 1)  # NORMAL
    assert modes(False) == ("delete", 2)  # SQLite's own: FULL
