"""Words' bm25 scores kept from FTS5 (data_mounts/text_scores.py) rank a search exactly as FTS5
ranks the whole query, ties broken by id, through every column for an open dataset and through
the shown ones for an embargoed one; they are scored in the background and dropped with their
catalogue version."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import insert, update

from benchmarks.search import fill, scenarios
from panbinder.data_mounts import db, facet_index, fts, search, text_scores
from panbinder.data_mounts.access import ANONYMOUS
from panbinder.data_mounts.models import Dataset
from panbinder.data_mounts.search_query import SearchQuery

NOW = datetime(2026, 12, 1, tzinfo=UTC)
TOKENIZER = "porter unicode61 remove_diacritics 2"
# zirconia is a sample name only (hidden while embargoed), and in some open descriptions
QUERIES = [
    "dynamics",
    "Structures",
    "vesicles pressure",
    "pressure vesicles",
    "phase phase",
    "protein crystal structure",
    '"in situ" steel',
    "zirconia",
    "zirconia growth",
]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('scores')}/c.sqlite"
    fill(url, 1500)
    engine = db.make_engine(url)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    rows = [
        {
            "pid": f"10.5072/zr-{i}",
            "title": "Growth kinetics" if i % 3 else "Zirconia growth",
            "description": "zirconia zirconia growth" if i % 2 else "growth",
            "facility": "ESRF",
            "instrument": "ID02",
            "sample": "zirconia",
            "keywords": [],
            "owners": [],
            "groups": [],
            "creation_date": start + timedelta(days=i),
            "release_date": NOW + timedelta(days=400) if i % 4 else start,
            "is_public": False,
            "size": 10**6,
        }
        for i in range(40)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Dataset), rows)
    yield db.session_factory(engine)
    engine.dispose()


def warmed(session) -> facet_index.FacetIndex:
    index = facet_index.current(session)
    assert index is not None and index.words.wait(60)
    return index


def fts5_ranked(session, match: str) -> list[tuple[int, float]]:
    weights = ", ".join(str(w) for w in fts.SQLITE_TABLES["datasets"][1])
    cursor = session.connection().connection.cursor()
    sql = f"SELECT rowid, bm25(datasets_fts, {weights}) AS r FROM datasets_fts WHERE datasets_fts MATCH ?"
    return cursor.execute(sql + " ORDER BY r, rowid", (match,)).fetchall()


def test_a_query_ranks_as_the_sum_of_its_words_ranks(sessions):
    """Bit for bit, through every column and through the shown ones, and in FTS5's order."""
    ties = hidden_words = terms_seen = 0
    with sessions() as s:
        index = warmed(s)
        words = text_scores.WordScores(index.version, index.ids, ~index.public)
        cursor = s.connection().connection.cursor()
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {text_scores.HIDDEN_ROWS} (id INTEGER PRIMARY KEY)")
        cursor.executemany(
            f"INSERT INTO {text_scores.HIDDEN_ROWS} VALUES (?)", ((int(i),) for i in words.ids[words.hidden])
        )
        hidden = set(words.ids[words.hidden].tolist())
        for q in QUERIES:
            terms = fts.parse_terms(q)
            match = fts.fts5_query(terms)
            for t in terms:  # through the shown columns: from the full ranks when FTS5 gives them
                full, shown = words.score(cursor, t.text, False), words.score(cursor, t.text, True)
                derived = words.shown(cursor, t.text, full)
                assert np.array_equal(derived.rows, shown.rows) and np.array_equal(derived.ranks, shown.ranks)
                hidden_words += bool(fts5_ranked(s, "{sample} : " + fts.fts5_query([t])))
                terms_seen += 1
            for visible in (False, True):
                parts = [words.score(cursor, t.text, visible) for t in terms]
                mine = text_scores.combined(parts)
                got = sorted(
                    zip(index.ids[mine.rows].tolist(), mine.ranks.tolist(), strict=True),
                    key=lambda p: (p[1], p[0]),
                )
                expected = fts5_ranked(s, fts.fts5_visible(match, "datasets") if visible else match)
                if visible:
                    expected = [p for p in expected if p[0] in hidden]
                assert got == expected, (q, visible)
                assert expected, q
                ranks = [r for _i, r in expected]
                ties += len(ranks) - len(set(ranks))
        cursor.execute(f"DROP TABLE {text_scores.HIDDEN_ROWS}")
    assert ties > 0  # equal ranks are ordered by id
    assert 0 < hidden_words < terms_seen  # words in a hidden column, and words not in one


@pytest.mark.parametrize("page", [1, 2, 5])
def test_pages_from_kept_scores_equal_the_fts5_ranking(sessions, monkeypatch, page):
    """The benchmark's searches (text with and without facets) and the queries above: the same
    page, total and counts as FTS5 ranking every match in SQL, with the words' scores used."""
    runs = scenarios(random.Random(5), 20)
    wanted = [SearchQuery(q) for q in QUERIES] + [
        q for name in ("text + 2 facets", "text only") for q in runs[name]
    ]
    used = 0
    for q in wanted:
        q = SearchQuery(q.q, q.filters, page=page, per_page=10)
        with sessions() as s:
            index = warmed(s)
            used += text_scores.lookup(s, index.words, q.q) is not None
            kept = search.search_datasets(s, q, ANONYMOUS, now=NOW)
            with monkeypatch.context() as m:
                m.setattr(facet_index, "current", lambda session: None)  # counted and ranked in SQL
                everything = search.search_datasets(s, q, ANONYMOUS, now=NOW)
        assert [d.id for d in kept.items] == [d.id for d in everything.items], q
        assert kept.total == everything.total and kept.facets == everything.facets, q
    assert used > len(wanted) // 2


def test_matching_rows_from_kept_scores_equal_fts5_s(sessions, monkeypatch):
    """An embargoed dataset is found through the columns it shows only (zirconia is its sample)."""
    with sessions() as s:
        index = warmed(s)
        for q in QUERIES:
            for now in (NOW, NOW + timedelta(days=500)):  # the embargoes end meanwhile
                kept = facet_index.text_rows(s, index, q, now)
                with monkeypatch.context() as m:
                    m.setattr(text_scores, "lookup", lambda *args: None)
                    asked = facet_index.text_rows(s, index, q, now)
                assert np.array_equal(kept, asked), q
        assert text_scores.lookup(s, index.words, "zirconia") is not None
        found = index.ids[facet_index.text_rows(s, index, "zirconia", NOW)]
    assert 0 < len(found) < 40


def test_frequent_words_are_scored_before_any_search(sessions):
    with sessions() as s:
        index = warmed(s)
        for word in ("structure", "Dynamics", "porosity", "ESRF"):  # porosity: "poros", not "poro"
            assert text_scores.lookup(s, index.words, word) is not None, word
        assert text_scores.lookup(s, index.words, "graph*") is None  # prefixes go to FTS5
        assert text_scores.lookup(s, index.words, "steel -bone") is None  # so do exclusions
        assert index.words.spent > 0 and 0 < index.words.nbytes <= text_scores.MAX_BYTES


def test_a_broad_search_missed_is_scored_for_the_next_one(sessions):
    """A phrase (kept as one entry) found in many datasets; a narrow one is left to FTS5."""
    with sessions() as s:
        index = warmed(s)
        for text in ('"in situ"', "10.5072/zr-3"):  # about 9 % of the datasets, and one dataset
            q = SearchQuery(text)
            assert text_scores.lookup(s, index.words, q.q) is None
            first = search.search_datasets(s, q, ANONYMOUS, now=NOW)
            assert index.words.wait(30)
            assert (text_scores.lookup(s, index.words, q.q) is not None) == (text != "10.5072/zr-3")
            again = search.search_datasets(s, q, ANONYMOUS, now=NOW)
            assert [d.pid for d in first.items] == [d.pid for d in again.items] and again.items
            assert first.total == again.total


def test_a_write_drops_the_scores_and_the_next_search_sees_it(sessions, monkeypatch):
    monkeypatch.setattr(facet_index, "REBUILD_SECONDS", 0.0)
    with sessions() as s:
        before = warmed(s)
        assert text_scores.lookup(s, before.words, "dynamics") is not None
        s.execute(update(Dataset).where(Dataset.id == 5).values(title="Quasicrystal dynamics"))
        s.commit()
    with sessions() as s:
        stale = text_scores.WordScores(before.version, before.ids, ~before.public)
        stale.warm(s.get_bind())  # the version has moved on: it stops before scoring a word
        assert stale.wait(30) and len(stale) == 0
        after = warmed(s)
        assert after is not before and after.version > before.version
        found = search.search_datasets(s, SearchQuery("quasicrystal dynamics"), ANONYMOUS, now=NOW)
    assert [d.id for d in found.items] == [5]


def test_the_budget_keeps_the_most_recently_used():
    ids = np.arange(1, 101, dtype=np.int64)
    words = text_scores.WordScores(1, ids, np.zeros(100, dtype=bool), budget=3 * 120)
    entry = text_scores.Scored(np.arange(10, dtype=np.int32), np.zeros(10))  # 120 bytes
    for name in "abc":
        assert words.put(((name,), False), entry)
    assert words.get((("a",), False)) is not None  # a used again: b is now the oldest
    assert not words.put((("d",), False), entry, evict=False)  # frequent words never evict
    assert words.put((("d",), False), entry)
    assert words.get((("b",), False)) is None and words.get((("a",), False)) is not None
    assert words.nbytes == 360 and len(words) == 3


def test_tokens_are_fts5_s():
    assert text_scores.tokens(TOKENIZER, "Structures") == ("structur",)
    assert text_scores.tokens(TOKENIZER, "in situ") == ("in", "situ")
    assert text_scores.tokens(TOKENIZER, "Ünïcödé") == ("unicod",)
    assert text_scores.tokens(TOKENIZER, "_") == ()
    word = text_scores.spelling(TOKENIZER, "poros")
    assert word is not None and text_scores.tokens(TOKENIZER, word) == ("poros",)
