"""Shared fixtures: a catalogue on a temporary SQLite file, confined to the module's ``storage``."""

from __future__ import annotations

import pytest

from panbinder.data_mounts.catalogue import Catalogue


@pytest.fixture
def cat(tmp_path, storage):
    c = Catalogue(db_url=f"sqlite:///{tmp_path}/c.sqlite", storage_roots=[str(storage)])
    c.start()
    yield c
    c.close()
