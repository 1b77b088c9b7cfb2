"""Terms' ranks kept from the database (data_mounts/text_scores.py) rank a search exactly as the
database ranks the whole query (FTS5's bm25 on SQLite, the sum of the terms' ts_rank on
PostgreSQL), ties broken by id, through every column for an open dataset and through the shown
ones for an embargoed one; they are scored in the background and dropped with their catalogue
version."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Float, cast, insert, literal_column, select, update

from benchmarks.search import fill, scenarios
from panbinder.data_mounts import db, facet_index, fts, fts5_scores, search, search_filters, text_scores
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


# a phrase an embargoed dataset shows only (its sample, hidden, sits between the two in its text)
SHOWN_PHRASE = '"zr77 kinetics"'


def _filled(url: str):
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
            "proposal_id": "zr77",
            "sample": "zirconia",
            "keywords": ["kinetics"],
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
    return engine


@pytest.fixture(scope="module")
def sessions(module_db_url):
    engine = _filled(module_db_url)
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


def database_ranked(session, q: str, visible: bool) -> list[tuple[int, float]]:
    """The database's (id, rank) of the whole query, through every column or (rows not public)
    through the shown ones, best first."""
    terms = fts.parse_terms(q)
    if session.get_bind().dialect.name == "sqlite":
        match = fts.fts5_query(terms)
        found = fts5_ranked(session, fts.fts5_visible(match, "datasets") if visible else match)
        hidden = set(session.scalars(select(Dataset.id).where(Dataset.is_public.is_not(True))))
        return [p for p in found if p[0] in hidden] if visible else found
    vector = literal_column(f"datasets.{fts.SHOWN}" if visible else "datasets.search_vector")
    rank = search_filters.pg_rank(vector, terms).label("r")
    stmt = select(Dataset.id, cast(rank, Float)).where(vector.op("@@")(search_filters._pg_tsquery(terms)))
    return [tuple(r) for r in session.execute(stmt.order_by(rank, Dataset.id))]


def test_a_query_ranks_as_the_sum_of_its_terms_ranks(sessions):
    """Bit for bit, through every column and through the shown ones, and in the database's order."""
    ties = 0
    with sessions() as s:
        index = warmed(s)
        words = index.words
        cursor = s.connection().connection.cursor()
        words.scorer.begin(cursor, words.ids[words.hidden])
        for q in QUERIES:
            terms = fts.parse_terms(q)
            keys = words.scorer.keys(s, terms)
            assert keys is not None, q
            scored = [words.score(cursor, key, text) for key, text in keys]
            for visible in (False, True):
                mine = text_scores.combined([pair[visible] for pair in scored])
                got = sorted(
                    zip(index.ids[mine.rows].tolist(), mine.ranks.tolist(), strict=True),
                    key=lambda p: (p[1], p[0]),
                )
                expected = database_ranked(s, q, visible)
                assert got == expected, (q, visible)
                assert expected, q
                ranks = [r for _i, r in expected]
                ties += len(ranks) - len(set(ranks))
        words.scorer.end(cursor)
    assert ties > 0  # equal ranks are ordered by id


@pytest.fixture(scope="module")
def sqlite_sessions(tmp_path_factory):
    engine = _filled(f"sqlite:///{tmp_path_factory.mktemp('fts5')}/c.sqlite")
    yield db.session_factory(engine)
    engine.dispose()


def test_fts5_shown_ranks_are_taken_from_the_full_ones_only_when_equal(sqlite_sessions):
    """FTS5's shortcut: a word no row holds in a hidden column has the same ranks through the
    shown columns, so they are taken from the full ones; the others are asked."""
    hidden_words = terms_seen = 0
    with sqlite_sessions() as s:
        index = warmed(s)
        scorer = index.words.scorer
        cursor = s.connection().connection.cursor()
        scorer.begin(cursor, index.ids[index.words.hidden])
        for q in QUERIES:
            for t in fts.parse_terms(q):
                full, shown = scorer.score(cursor, None, t.text)
                asked = scorer.pairs(cursor, t.text, True)
                if shown is None:  # the full pairs of the rows not public
                    keep = np.isin(full[0], asked[0]) & np.isin(full[0], index.ids[index.words.hidden])
                    shown = (full[0][keep], full[1][keep])
                else:
                    hidden_words += 1
                assert np.array_equal(shown[0], asked[0]) and np.array_equal(shown[1], asked[1]), t
                terms_seen += 1
        scorer.end(cursor)
    assert 0 < hidden_words < terms_seen  # words in a hidden column, and words not in one


@pytest.mark.parametrize("page", [1, 2, 5])
def test_pages_from_kept_scores_equal_the_database_ranking(sessions, monkeypatch, page):
    """The benchmark's searches (text with and without facets) and the queries above: the same
    page, total and counts as the database ranking every match in SQL, with the terms' ranks used."""
    runs = scenarios(random.Random(5), 20)
    wanted = [SearchQuery(q) for q in [*QUERIES, SHOWN_PHRASE, "struct*", "steel -bone"]] + [
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


def test_matching_rows_from_kept_scores_equal_the_database_s(sessions, monkeypatch):
    """An embargoed dataset is found through the columns it shows only (zirconia is its sample)."""
    with sessions() as s:
        index = warmed(s)
        for q in [*QUERIES, SHOWN_PHRASE]:
            for now in (NOW, NOW + timedelta(days=500)):  # the embargoes end meanwhile
                kept = facet_index.text_rows(s, index, q, now)
                with monkeypatch.context() as m:
                    m.setattr(text_scores, "lookup", lambda *args: None)
                    asked = facet_index.text_rows(s, index, q, now)
                assert np.array_equal(kept, asked), q
        assert text_scores.lookup(s, index.words, "zirconia") is not None
        found = index.ids[facet_index.text_rows(s, index, "zirconia", NOW)]
        postgres = s.get_bind().dialect.name == "postgresql"
        if postgres:  # the phrase is kept, and matches what the embargoed rows show only
            index.words.want(s.get_bind(), index.words.scorer.keys(s, fts.parse_terms(SHOWN_PHRASE)))
            assert index.words.wait(30) and text_scores.lookup(s, index.words, SHOWN_PHRASE) is not None
        phrase = index.ids[facet_index.text_rows(s, index, SHOWN_PHRASE, NOW)]
    assert 0 < len(found) < 40
    assert len(phrase) == (30 if postgres else 0)  # FTS5 matches a phrase within one column


def test_frequent_terms_are_scored_before_any_search(sessions):
    with sessions() as s:
        index = warmed(s)
        for word in ("structure", "Dynamics", "porosity", "ESRF"):  # porosity: "poros", not "poro"
            assert text_scores.lookup(s, index.words, word) is not None, word
        assert text_scores.lookup(s, index.words, "steel -bone") is None  # exclusions go to the database
        assert index.words.spent > 0 and 0 < index.words.nbytes <= text_scores.MAX_BYTES
        if s.get_bind().dialect.name == "sqlite":
            assert text_scores.lookup(s, index.words, "graph*") is None  # prefixes go to FTS5
        else:  # keyed by the server's own query text
            assert index.words.scorer.keys(s, fts.parse_terms("Structures struct*")) == [
                ("'structur'", "Structures"),
                ("'struct':*", "struct"),
            ]


def test_a_broad_search_missed_is_scored_for_the_next_one(sessions):
    """A phrase (kept as one entry) found in many datasets; a narrow one is left to the database."""
    with sessions() as s:
        index = warmed(s)
        for text in ('"time resolved"', "10.5072/zr-3"):  # a phrase in many datasets, and one dataset
            q = SearchQuery(text)
            assert text_scores.lookup(s, index.words, q.q) is None
            first = search.search_datasets(s, q, ANONYMOUS, now=NOW)
            assert index.words.wait(30)
            assert (text_scores.lookup(s, index.words, q.q) is not None) == (text != "10.5072/zr-3")
            again = search.search_datasets(s, q, ANONYMOUS, now=NOW)
            assert [d.pid for d in first.items] == [d.pid for d in again.items] and again.items
            assert first.total == again.total


def test_nothing_kept_or_warmed_when_the_settings_say_so(sessions, monkeypatch):
    """``Catalogue.search_scores_mib`` 0 keeps nothing, ``search_warm_share`` 0 ranks nothing in
    advance: the same results, ranked by the database."""
    monkeypatch.setattr(facet_index, "REBUILD_SECONDS", 0.0)
    q = SearchQuery("structure", (("facility", ("ESRF",)),))
    with sessions() as s:
        expected = search.search_datasets(s, q, ANONYMOUS, now=NOW)
        engine = s.get_bind()
    try:
        for budget, share in ((0, 0.02), (2**20, 0.0)):
            facet_index.configure(engine, budget=budget, warm_share=share)
            with sessions() as s:  # a write: the index is read again with the settings
                s.execute(update(Dataset).where(Dataset.id == 7).values(title=f"Title {budget}"))
                s.commit()
                index = warmed(s)
                assert (index.words.budget, index.words.warm_share) == (budget, share)
                got = search.search_datasets(s, q, ANONYMOUS, now=NOW)
                assert len(index.words) == 0 and text_scores.lookup(s, index.words, "structure") is None
            assert [d.id for d in got.items] == [d.id for d in expected.items] and got.total == expected.total
        with pytest.raises(ValueError, match="budget"):
            facet_index.configure(engine, budget=-1, warm_share=0.5)
    finally:  # and a write, so the next index is read with them
        facet_index.configure(engine, budget=text_scores.MAX_BYTES, warm_share=text_scores.WARM_SHARE)
        with sessions() as s:
            s.execute(update(Dataset).where(Dataset.id == 7).values(title="Title again"))
            s.commit()


def test_an_index_is_not_read_inside_a_writing_transaction(sessions, monkeypatch):
    """Rows not committed, under a version another transaction could take: counted in SQL."""
    monkeypatch.setattr(facet_index, "REBUILD_SECONDS", 0.0)
    with sessions() as s:
        assert facet_index.current(s) is not None
        s.execute(update(Dataset).where(Dataset.id == 9).values(title="Uncommitted"))
        assert facet_index.current(s) is None
        s.rollback()
        assert facet_index.current(s) is not None


def test_a_write_drops_the_scores_and_the_next_search_sees_it(sessions, monkeypatch):
    monkeypatch.setattr(facet_index, "REBUILD_SECONDS", 0.0)
    with sessions() as s:
        before = warmed(s)
        assert text_scores.lookup(s, before.words, "dynamics") is not None
        s.execute(update(Dataset).where(Dataset.id == 5).values(title="Quasicrystal dynamics"))
        s.commit()
    with sessions() as s:
        stale = text_scores.WordScores(before.version, before.ids, ~before.public, before.words.scorer)
        stale.warm(s.get_bind())  # the version has moved on: it stops before scoring a word
        assert stale.wait(30) and len(stale) == 0
        after = warmed(s)
        assert after is not before and after.version > before.version
        found = search.search_datasets(s, SearchQuery("quasicrystal dynamics"), ANONYMOUS, now=NOW)
    assert [d.id for d in found.items] == [5]


def test_the_budget_keeps_the_most_recently_used():
    ids = np.arange(1, 101, dtype=np.int64)
    words = text_scores.WordScores(1, ids, np.zeros(100, dtype=bool), None, budget=3 * 120)
    entry = text_scores.Scored(np.arange(10, dtype=np.int32), np.zeros(10))  # 120 bytes
    for name in "abc":
        assert words.put(((name,), False), entry)
    assert words.get((("a",), False)) is not None  # a used again: b is now the oldest
    assert not words.put((("d",), False), entry, evict=False)  # frequent words never evict
    assert words.put((("d",), False), entry)
    assert words.get((("b",), False)) is None and words.get((("a",), False)) is not None
    assert words.nbytes == 360 and len(words) == 3


def test_tokens_are_fts5_s():
    tokens, spelling = fts5_scores.tokens, fts5_scores.spelling
    assert tokens(TOKENIZER, "Structures") == ("structur",)
    assert tokens(TOKENIZER, "in situ") == ("in", "situ")
    assert tokens(TOKENIZER, "Ünïcödé") == ("unicod",)
    assert tokens(TOKENIZER, "_") == ()
    word = spelling(TOKENIZER, "poros")
    assert word is not None and tokens(TOKENIZER, word) == ("poros",)
