"""Database engine, sessions and migrations for the catalogue (any SQLAlchemy URL).

Migrations run programmatically with Alembic; the scripts live in ``migrations/`` next to
this module, so they are found wherever the package is installed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

MIGRATIONS = Path(__file__).with_name("migrations")


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's filter: the full-text search objects (``fts.py``) are not in the models."""
    from .fts import is_fts_object

    return not is_fts_object(name, type_)


def default_url(state_dir: str | os.PathLike[str]) -> str:
    """The default catalogue: an SQLite file in the state directory."""
    return f"sqlite:///{Path(state_dir).resolve() / 'catalogue.sqlite'}"


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


# Page cache per SQLite connection, in KiB (SQLite's default is 2 MiB). A search whose words
# match 30,000 of 100,000 datasets reads each matching row for its facets and page; with the
# default cache those rows came back from the operating system for every search, and 64 MiB
# (the benchmark catalogue's dataset rows fit) cut its counting from about 180 to 140 ms of
# CPU and the page from 225 to 160 ms (benchmarks/search.py). Memory is taken only as used.
SQLITE_CACHE_KIB = 65536


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def sqlite_write_ahead(dbapi_connection, _record=None) -> None:
    """Write-ahead logging, synced at checkpoints: in SQLite's default mode every commit waited
    for two syncs of the disk (about 10 ms each on the 2-core test machine; a launch records its
    view, a burst of launches waited for each other's), and readers waited for writers. A
    commit stays atomic and the file consistent after a crash; a power cut may lose the last
    commits. Not for a file on a network file system (``Catalogue.sqlite_wal``)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, *, wal: bool = True) -> Engine:
    """An engine for ``url``; an SQLite file gets its folder created, foreign keys on and (with
    ``wal``) write-ahead logging."""
    parsed = make_url(url)
    kwargs: dict = {}
    on_disk = False
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            on_disk = True
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if wal and on_disk:
            event.listen(engine, "connect", sqlite_write_ahead)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # objects stay readable after commit (handlers render them after the session ends)
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Alembic's commands install the running migration's context in module globals (``alembic.context``,
# ``alembic.op``), so two upgrades at once in one process (two catalogues started from different
# threads) would take each other's context away: one at a time.
_ALEMBIC = threading.Lock()


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` on a URL or engine; idempotent."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        cfg = alembic_config()
        with _ALEMBIC, engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
