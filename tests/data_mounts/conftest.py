"""Shared fixtures: a catalogue confined to the module's ``storage``, on a temporary SQLite file.

A module that also runs on PostgreSQL overrides ``db_url`` with ``any_db_url``: its tests then run
once per backend, the PostgreSQL ones each on a new database of one throwaway server per session
(Debian's ``postgresql``, started in a temporary folder by ``tests/postgres.py``), or of the
server ``PANBINDER_TEST_DB_URL`` names.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from panbinder.data_mounts.catalogue import Catalogue
from tests.postgres import fresh_database, temporary_cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server for this test session."""
    given = os.environ.get("PANBINDER_TEST_DB_URL", "")
    if given:
        yield given
        return
    with temporary_cluster() as url:
        yield url


@contextlib.contextmanager
def _catalogue_url(request, folder: Callable[[], Path]) -> Iterator[str]:
    """An SQLite file in ``folder()`` or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{folder()}/c.sqlite"
        return
    with fresh_database(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request, tmp_path) -> Iterator[str]:
    with _catalogue_url(request, lambda: tmp_path) as url:
        yield url


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/c.sqlite"


@pytest.fixture
def cat(db_url, storage):
    c = Catalogue(db_url=db_url, storage_roots=[str(storage)])
    c.start()
    yield c
    c.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db_url(request, tmp_path_factory) -> Iterator[str]:
    """As ``any_db_url``, one database per module and backend (for data filled once)."""
    with _catalogue_url(request, lambda: tmp_path_factory.mktemp("db")) as url:
        yield url
