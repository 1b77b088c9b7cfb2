"""The facet index (counts in memory, data_mounts/facet_index.py) gives exactly what the SQL
counts give, on generated datasets in the benchmark's record shapes, on SQLite and PostgreSQL,
and follows writes and embargo ends; a text search with facets ranks only its kept rows, in the
same order."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from benchmarks.search import fill, scenarios
from panbinder.data_mounts import db, facet_index, search, text_scores
from panbinder.data_mounts.access import ANONYMOUS, Identity
from panbinder.data_mounts.models import Dataset
from panbinder.data_mounts.search_filters import text_condition
from panbinder.data_mounts.search_query import SearchQuery
from tests.postgres import fresh_database

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def sessions(request, tmp_path_factory):
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('facets')}/c.sqlite"
        else:
            url = stack.enter_context(fresh_database(request.getfixturevalue("postgres_server")))
        fill(url, 1500)
        engine = db.make_engine(url)
        yield db.session_factory(engine)
        engine.dispose()


def queries() -> list[SearchQuery]:
    runs = scenarios(random.Random(3), 25)
    return [
        *(q for batch in runs.values() for q in batch),
        SearchQuery("phase", (("size", ("small", "huge")),)),
        SearchQuery("", (("access", ("embargoed",)), ("size", ("large",)))),
        SearchQuery("lysozyme", (("technique", ("PaNET01124",)), ("access", ("embargoed",)))),
        SearchQuery(
            "", (("facility", ("ILL", "ESRF")), ("instrument", ("D11", "ID02")), ("year", ("2019",)))
        ),
        SearchQuery("steel -bone", (("data_type", ("raw",)),)),
        SearchQuery("bone", mine=True),
    ]


WHO = Identity("user7", frozenset({"proposal-12"}))


def counts(session, q: SearchQuery, now: datetime) -> tuple:
    who = WHO if q.mine else ANONYMOUS
    return search.count_facets(session, q, who, now, text_condition(session, "datasets", q.q, now))


def test_counts_in_memory_equal_the_sql_counts(sessions, monkeypatch):
    found = 0
    for q in queries():
        with sessions() as s:
            assert facet_index.current(s) is not None
            indexed = counts(s, q, NOW)
            with monkeypatch.context() as m:
                m.setattr(facet_index, "current", lambda session: None)
                in_sql = counts(s, q, NOW)
        assert indexed == in_sql, q
        found += indexed[0] > 0
    assert found > 0.8 * len(queries())  # the queries find something


def test_embargo_ends_are_read_at_counting_time(sessions):
    later = NOW + timedelta(days=800)  # many embargoes (three years) have ended by then
    with sessions() as s:
        now_open = dict((v, n) for v, _l, n in counts(s, SearchQuery(), NOW)[1]["access"])
        later_open = dict((v, n) for v, _l, n in counts(s, SearchQuery(), later)[1]["access"])
    assert later_open["open"] > now_open["open"] and sum(later_open.values()) == sum(now_open.values())


def test_a_write_rebuilds_the_index_or_counts_in_sql_meanwhile(sessions, monkeypatch):
    monkeypatch.setattr(facet_index, "REBUILD_SECONDS", 3600.0)  # as if one was just built
    with sessions() as s:
        before = facet_index.current(s)
        assert before is not None
        total = counts(s, SearchQuery("", (("facility", ("LEGO",)),)), NOW)[0]
        assert total == 0
        s.execute(update(Dataset).where(Dataset.id <= 7).values(facility="LEGO"))
        s.commit()
    with sessions() as s:  # another build so soon: this search is counted in SQL, and right
        assert facet_index.current(s) is None
        assert counts(s, SearchQuery("", (("facility", ("LEGO",)),)), NOW)[0] == 7
    monkeypatch.setattr(facet_index, "REBUILD_SECONDS", 0.0)
    with sessions() as s:
        after = facet_index.current(s)
        assert after is not None and after.version > before.version
        found = counts(s, SearchQuery("", (("facility", ("LEGO",)),)), NOW)
    assert found[0] == 7 and ("LEGO", "LEGO", 7) in found[1]["facility"]


@pytest.mark.parametrize(("page", "named"), [(1, 20_000), (2, 20_000), (4, 20_000), (1, 0), (3, 0)])
def test_kept_rows_are_ranked_as_the_database_ranks_all_matches(sessions, monkeypatch, page, named):
    """Kept ids named to FTS5 (up to RANK_KEPT), or every match scored and the kept ones taken
    (RANK_KEPT 0), give the page the SQL ranking (``text_match``, no facet index) gives (the
    words' kept scores, ``test_text_scores.py``, left out)."""
    monkeypatch.setattr(search, "RANK_KEPT", named)
    monkeypatch.setattr(text_scores, "lookup", lambda *args: None)
    for q in queries():
        if not q.q:
            continue
        q = SearchQuery(q.q, q.filters, page=page, per_page=10, mine=q.mine)
        who = WHO if q.mine else ANONYMOUS
        with sessions() as s:
            kept = search.search_datasets(s, q, who, now=NOW)
            with monkeypatch.context() as m:
                m.setattr(facet_index, "current", lambda session: None)  # counted and ranked in SQL
                everything = search.search_datasets(s, q, who, now=NOW)
        assert [d.id for d in kept.items] == [d.id for d in everything.items], q
        assert kept.total == everything.total
