"""Search on a real catalogue, SQLite and PostgreSQL: the index kept in sync by the database, facets
on PaNET, bad queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, delete, insert, select, text, update

from panbinder.data_mounts import fts, search, search_cache
from panbinder.data_mounts.access import ANONYMOUS, Identity
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import Dataset, Publication, Technique
from panbinder.data_mounts.search_query import SearchQuery, parse
from panbinder.errors import PanbinderError

NOW = datetime(2026, 6, 1, tzinfo=UTC)
XRD, SCXRD_LIKE, SAXS, SANS = "PaNET01216", "PaNET01290", "PaNET01188", "PaNET01189"  # 01290 is below XRD
SAS = "PaNET01124"  # small angle scattering: parent of SAXS and SANS


@pytest.fixture
def cat(any_db_url):
    """Each test on SQLite and on a new database of a PostgreSQL server."""
    c = Catalogue(db_url=any_db_url)
    c.start()
    yield c
    c.close()


def add(session, pid: str, *, techniques=(), **fields) -> Dataset:
    techs = []
    for t in techniques:
        row = session.scalar(select(Technique).where(Technique.panet_id == t))
        if row is None:
            row = Technique(panet_id=t, label=t)
            session.add(row)
        techs.append(row)
    fields.setdefault("creation_date", datetime(2024, 3, 1, tzinfo=UTC))
    ds = Dataset(pid=pid, owners=fields.pop("owners", []), groups=fields.pop("groups", []), **fields)
    ds.techniques = techs
    session.add(ds)
    session.flush()
    return ds


def query(**kw) -> SearchQuery:
    filters = tuple((k, tuple(v)) for k, v in kw.pop("filters", {}).items())
    return SearchQuery(filters=filters, **kw)


def pids(cat, q: SearchQuery, who=ANONYMOUS) -> list[str]:
    with cat.session() as s:
        return [d.pid for d in search.search_datasets(s, q, who, now=NOW).items]


def facet(cat, q: SearchQuery, name: str) -> dict[str, int]:
    with cat.session() as s:
        result = search.search_datasets(s, q, ANONYMOUS, now=NOW, facet_limit=1000)
    return {v.value: v.count for v in result.facets[name]}


# full-text index kept in sync ---------------------------------------------------------------


def test_text_search_follows_insert_update_and_delete(cat):
    with cat.session() as s:
        add(s, "ds-1", title="Lysozyme crystals at room temperature")
    assert pids(cat, query(q="lysozyme")) == ["ds-1"]
    assert pids(cat, query(q="crystal")) == ["ds-1"]  # porter stemming
    with cat.session() as s:
        s.scalar(select(Dataset).where(Dataset.pid == "ds-1")).title = "Vesicles under pressure"
    assert pids(cat, query(q="lysozyme")) == []
    assert pids(cat, query(q="vesicles")) == ["ds-1"]
    with cat.session() as s:
        s.execute(delete(Dataset).where(Dataset.pid == "ds-1"))
    assert pids(cat, query(q="vesicles")) == []
    with cat.session() as s:  # the index holds nothing for a removed row
        if s.get_bind().dialect.name == "sqlite":
            assert (
                s.scalar(text("SELECT count(*) FROM datasets_fts WHERE datasets_fts MATCH 'vesicles'")) == 0
            )


def test_text_search_covers_pid_instrument_facility_proposal_keywords_and_description(cat):
    with cat.session() as s:
        add(
            s,
            "10.5072/abc-123",
            title="t",
            instrument="D22",
            facility="ILL",
            proposal_id="9-10-1234",
            keywords=["membranes"],
            description="Contrast variation of lipid bilayers",
            sample="DPPC",
            is_public=True,
        )
        add(s, "other", title="unrelated")
    for q in ("abc-123", "d22", "ill", "9-10-1234", "membranes", "bilayers", "dppc"):
        assert pids(cat, query(q=q)) == ["10.5072/abc-123"], q


def test_view_counter_does_not_touch_the_index_or_the_updated_time(cat):
    with cat.session() as s:
        ds = add(s, "ds-1", title="counted")
        updated = ds.updated
    with cat.session() as s:
        search.count_dataset_view(s, "ds-1")
        search.count_dataset_view(s, "ds-1")
    with cat.session() as s:
        ds = s.scalar(select(Dataset).where(Dataset.pid == "ds-1"))
        assert (ds.views, ds.updated) == (2, updated)
    assert pids(cat, query(q="counted")) == ["ds-1"]


def test_ranking_puts_title_matches_first(cat):
    with cat.session() as s:
        add(s, "a", title="powder sample", description="diffraction of a powder of zeolite")
        add(s, "b", title="zeolite diffraction", description="a powder")
    assert pids(cat, query(q="zeolite")) == ["b", "a"]


@pytest.mark.parametrize(
    "q",
    [
        '"',
        '"unclosed',
        "AND",
        "OR OR",
        "NOT x",
        "NEAR(a b)",
        "title:x",
        "*",
        "a*",
        "-",
        "-x",
        "(",
        "^a",
        "a + b",
        "x'); DROP TABLE datasets; --",
        "\\",
        "\u0000",
        "🙂",
        "a" * 400,
        "{a b}",
        "col:*",
    ],
)
def test_no_user_query_breaks_the_search(cat, q):
    with cat.session() as s:
        add(s, "ds-1", title="NOT a title: with (parens) and AND")
    pids(cat, query(q=q))  # never raises


def test_query_syntax_is_searched_as_text(cat):
    with cat.session() as s:
        add(s, "ds-1", title="AND NEAR gate")
        add(s, "ds-2", title="plain")
    with cat.session() as s:
        stopwords_dropped = s.get_bind().dialect.name == "postgresql"  # its 'english' configuration
    assert pids(cat, query(q="AND")) == ([] if stopwords_dropped else ["ds-1"])
    assert pids(cat, query(q="near")) == ["ds-1"]
    assert pids(cat, query(q='"near gate"')) == ["ds-1"]
    assert pids(cat, query(q="-plain gate")) == ["ds-1"]
    assert pids(cat, query(q="pla*")) == ["ds-2"]


def test_parse_terms_quotes_everything():
    terms = fts.parse_terms('a "b c" -d e* "" ; ')
    assert fts.fts5_query(terms) == '("a" AND "b c" AND "e" *) NOT "d"'
    assert fts.parse_terms('x"y') == [fts.Term("x y")]
    assert fts.parse_terms("-only") == [fts.Term("only")]


# facets ----------------------------------------------------------------------------------------


def test_a_parent_technique_counts_each_dataset_with_narrower_terms_once(cat):
    with cat.session() as s:
        add(s, "saxs", techniques=[SAXS])
        add(s, "sans", techniques=[SANS])
        add(s, "both", techniques=[SAXS, SANS])  # two terms below SAS: counted once there
        add(s, "xrd", techniques=[XRD])
    counts = facet(cat, query(), "technique")
    assert counts[SAS] == 3
    assert counts[SAXS] == 2 and counts[SANS] == 2
    assert counts["PaNET01184"] == 3  # x-ray scattering: saxs, both, xrd
    assert sorted(pids(cat, query(filters={"technique": [SAS]}))) == ["both", "sans", "saxs"]


def test_x_ray_diffraction_finds_narrower_terms(cat):
    with cat.session() as s:
        add(s, "imaging", techniques=[SCXRD_LIKE])
        add(s, "saxs", techniques=[SAXS])
    assert pids(cat, query(filters={"technique": [XRD]})) == ["imaging"]
    assert pids(cat, query(filters={"technique": ["x-ray diffraction"]})) == ["imaging"]


def test_technique_counts_from_signatures_is_pure():
    counts = search.technique_counts([((SAXS, SANS), 2), ((SAXS,), 1), ((), 5)])
    assert counts[SAS] == 3 and counts[SANS] == 2 and counts[SAXS] == 3


def test_facets_and_across_or_within_and_ignore_their_own_filter(cat):
    with cat.session() as s:
        add(s, "a", facility="ILL", data_type="raw", size=5 * 10**6, is_public=True)
        add(s, "b", facility="ILL", data_type="processed", size=5 * 10**9, is_public=True)
        add(s, "c", facility="ESRF", data_type="raw", size=5 * 10**11, is_public=True)
        add(
            s,
            "d",
            facility="ESRF",
            data_type="raw",
            is_public=True,
            creation_date=datetime(2021, 1, 1, tzinfo=UTC),
        )
    q = query(filters={"facility": ["ILL"], "data_type": ["raw"]})
    assert pids(cat, q) == ["a"]
    # facility counts under data_type=raw only (its own filter left out): ILL 1, ESRF 2
    assert facet(cat, q, "facility") == {"ESRF": 2, "ILL": 1}
    assert facet(cat, q, "data_type") == {"raw": 1, "processed": 1}
    assert sorted(pids(cat, query(filters={"facility": ["ILL", "ESRF"], "data_type": ["raw"]}))) == [
        "a",
        "c",
        "d",
    ]
    with cat.session() as s:
        assert search.search_datasets(s, query(), ANONYMOUS, now=NOW).total == 4
        assert search.search_datasets(s, q, ANONYMOUS, now=NOW).total == 1
        assert search.search_datasets(s, query(q="nothing-like-this"), ANONYMOUS, now=NOW).total == 0
    assert facet(cat, query(), "size") == {"small": 2, "medium": 1, "large": 1}
    assert facet(cat, query(), "year") == {"2024": 3, "2021": 1}
    assert pids(cat, query(filters={"year": ["2021"]})) == ["d"]
    assert sorted(pids(cat, query(filters={"size": ["medium", "large"]}))) == ["b", "c"]


@pytest.mark.parametrize("chosen", [2, 3])
def test_rows_failing_two_chosen_facets_count_nowhere_and_the_rest_count_as_before(cat, chosen):
    # counting keeps only rows that fail at most one chosen facet: each facet's counts must
    # still equal a count with the other facets' filters (and not its own)
    rows = [
        ("a", "ILL", "raw", "Physics"),
        ("b", "ILL", "processed", "Physics"),  # fails data_type only
        ("c", "ESRF", "raw", "Physics"),  # fails facility only
        ("d", "ESRF", "processed", "Physics"),  # fails two
        ("e", "ESRF", "processed", "Chemistry"),  # fails two or three
        ("f", "ILL", "raw", "Chemistry"),  # fails field only (when chosen)
    ]
    with cat.session() as s:
        for pid, facility, data_type, field in rows:
            add(s, pid, facility=facility, data_type=data_type, scientific_field=field, is_public=True)
    chosen_filters = {"facility": ["ILL"], "data_type": ["raw"], "field": ["Physics"]}
    chosen_filters = dict(list(chosen_filters.items())[:chosen])
    q = query(filters=chosen_filters)
    column = {"facility": 1, "data_type": 2, "field": 3}
    for name in ("facility", "data_type", "field"):
        others = {f: v for f, v in chosen_filters.items() if f != name}
        passing = [r for r in rows if all(r[column[f]] in v for f, v in others.items())]
        want: dict[str, int] = {}
        for r in passing:
            want[r[column[name]]] = want.get(r[column[name]], 0) + 1
        assert facet(cat, q, name) == want, name
    assert sorted(pids(cat, q)) == (["a"] if chosen == 3 else ["a", "f"])


def test_access_facet_follows_release_dates(cat):
    with cat.session() as s:
        add(s, "public", is_public=True)
        add(s, "released", release_date=NOW - timedelta(days=1))
        add(s, "embargoed", release_date=NOW + timedelta(days=1))
        add(s, "no-date")
    assert facet(cat, query(), "access") == {"open": 2, "embargoed": 2}
    assert sorted(pids(cat, query(filters={"access": ["embargoed"]}))) == ["embargoed", "no-date"]


def test_an_embargoed_sample_name_neither_finds_nor_hides_the_dataset(cat):
    with cat.session() as s:
        add(s, "open", title="lipid film", sample="DPPC", is_public=True)
        add(s, "closed", title="lipid film", sample="DPPC", release_date=NOW + timedelta(days=1))
        add(s, "no-date", title="lipid film", sample="DPPC vesicles")
    for sort in ("relevance", "newest"):
        assert pids(cat, query(q="dppc", sort=sort)) == ["open"], sort
        assert pids(cat, query(q="dppc*", sort=sort)) == ["open"], sort
        assert pids(cat, query(q='"lipid film" dppc', sort=sort)) == ["open"], sort
        # an excluded word found only in a hidden sample does not hide the dataset either
        assert sorted(pids(cat, query(q="lipid -dppc", sort=sort))) == ["closed", "no-date"], sort
        assert sorted(pids(cat, query(q="lipid", sort=sort))) == ["closed", "no-date", "open"], sort
    with cat.session() as s:
        found = search.search_datasets(s, query(q="dppc"), ANONYMOUS, now=NOW + timedelta(days=2))
        assert sorted(d.pid for d in found.items) == ["closed", "open"]  # released: searchable
        assert found.total == 2 and {v.value: v.count for v in found.facets["access"]} == {"open": 2}


def test_embargoed_sizes_are_not_counted_filtered_or_sorted_by(cat):
    with cat.session() as s:
        add(s, "open-small", size=5 * 10**6, is_public=True)
        add(s, "open-medium", size=5 * 10**9, release_date=NOW - timedelta(days=1))
        add(s, "closed-huge", size=5 * 10**13, release_date=NOW + timedelta(days=1))
        add(s, "closed-tiny", size=10)
    assert facet(cat, query(), "size") == {"small": 1, "medium": 1}
    assert facet(cat, query(), "access") == {"open": 2, "embargoed": 2}
    assert pids(cat, query(filters={"size": ["huge"]})) == []
    assert pids(cat, query(filters={"size": ["small"]})) == ["open-small"]
    assert facet(cat, query(filters={"size": ["small"]}), "access") == {"open": 1}
    # embargoed datasets come after the open ones, by PID, whatever their real size
    assert pids(cat, query(sort="largest")) == ["open-medium", "open-small", "closed-huge", "closed-tiny"]
    with cat.session() as s:
        s.scalar(select(Dataset).where(Dataset.pid == "closed-huge")).size = 1
        s.scalar(select(Dataset).where(Dataset.pid == "closed-tiny")).size = 10**15
    assert pids(cat, query(sort="largest"))[2:] == ["closed-huge", "closed-tiny"]


def test_text_and_facets_combine(cat):
    with cat.session() as s:
        add(s, "a", title="vesicle pressure", facility="PSI", techniques=[SANS])
        add(s, "b", title="vesicle heat", facility="ILL", techniques=[SANS])
        add(s, "c", title="crystal", facility="PSI", techniques=[SANS])
    q = query(q="vesicle", filters={"technique": [SAS]})
    assert sorted(pids(cat, q)) == ["a", "b"]
    assert facet(cat, q, "facility") == {"PSI": 1, "ILL": 1}


def test_my_datasets_by_owner_group_or_proposal(cat):
    with cat.session() as s:
        add(s, "owned", owners=["alice"])
        add(s, "group", groups=["proposal-42"])
        add(s, "proposal", proposal_id="proposal-42")
        add(s, "other", owners=["bob"], is_public=True)
    alice = Identity("alice", frozenset({"proposal-42"}))
    assert sorted(pids(cat, query(mine=True), alice)) == ["group", "owned", "proposal"]
    assert pids(cat, query(mine=True), ANONYMOUS) == []


def test_sorting_and_paging(cat):
    with cat.session() as s:
        for i in range(5):
            add(s, f"d{i}", title=f"t{4 - i}", size=i, creation_date=datetime(2020 + i, 1, 1, tzinfo=UTC))
    assert pids(cat, query()) == ["d4", "d3", "d2", "d1", "d0"]
    assert pids(cat, query(sort="oldest", per_page=2, page=2)) == ["d2", "d3"]
    assert pids(cat, query(sort="title")) == ["d4", "d3", "d2", "d1", "d0"]
    with cat.session() as s:
        search.count_dataset_view(s, "d1")
    assert pids(cat, query(sort="views"))[0] == "d1"


def test_publications_search_and_launch_counter(cat):
    with cat.session() as s:
        ds = add(s, "d", title="data")
        s.add(
            Publication(
                doi="10.1/x",
                title="Vesicles",
                authors=["Ada Lovelace"],
                year=2024,
                repo_url="r",
                ref="main",
                resolved_sha="0" * 40,
                datasets=[ds],
            )
        )
    with cat.session() as s:
        assert [p.doi for p in search.search_publications(s, query(q="lovelace")).items] == ["10.1/x"]
        search.count_launch(s, "10.1/x")
    with cat.session() as s:
        assert s.scalar(select(Publication.launches)) == 1
        assert s.scalar(select(Dataset.launches).where(Dataset.pid == "d")) == 1


# parameters --------------------------------------------------------------------------------


def getter(params: dict[str, list[str]]):
    return lambda name: params.get(name, [])


@pytest.mark.parametrize(
    ("params", "wrong"),
    [
        ({"page": ["0"]}, "page"),
        ({"page": ["x"]}, "page"),
        ({"per_page": ["1000"]}, "per_page"),
        ({"sort": ["random"]}, "sort"),
        ({"technique": ["not a technique"]}, "technique"),
        ({"year": ["20x4"]}, "year"),
        ({"year": ["0000"]}, "year"),
        ({"year": ["9999"]}, "year"),
        ({"size": ["giant"]}, "size"),
        ({"access": ["secret"]}, "access"),
        ({"data_type": ["raw-ish"]}, "data_type"),
        ({"q": ["x" * 501]}, "q"),
        ({"facility": [f"f{i}" for i in range(21)]}, "facility"),
    ],
)
def test_bad_parameters_say_which_and_what_to_change(params, wrong):
    with pytest.raises(PanbinderError) as e:
        parse(getter(params))
    assert e.value.status_code == 400 and e.value.message.startswith(f"'{wrong}'")


def test_control_characters_are_dropped_from_text_and_values(cat):
    q = parse(getter({"q": ["ves\x00icles\n"], "facility": ["IL\x00L"]}))
    assert q.q == "ves icles" and q.selected("facility") == ("IL L",)
    pids(cat, q)


def test_permalink_round_trip():
    q = parse(getter({"q": ["lipid"], "technique": ["SANS"], "facility": ["ILL", "PSI"], "page": ["2"]}))
    assert q.selected("technique") == (SANS,)
    again = parse(lambda name: [v for k, v in q.params() if k == name])
    assert again == q
    toggled = q.toggled("facility", "ILL")
    assert toggled.selected("facility") == ("PSI",) and toggled.page == 1


def test_facet_cache_is_dropped_by_a_write_but_not_by_a_view(cat):
    cache = search.FacetCache(30.0)
    with cat.session() as s:
        add(s, "a", facility="ILL", is_public=True)
    with cat.session() as s:
        assert search.search_datasets(s, query(), ANONYMOUS, now=NOW, cache=cache).total == 1
        search.count_dataset_view(s, "a")  # a counter: nothing a search counts changes
    key = search.FacetCache.key(query(), ANONYMOUS)
    with cat.session() as s:
        assert cache.get(key, search_cache.stamp(s, NOW), NOW) is not None
        add(s, "b", facility="ILL")  # a write: the kept counts are stale
    with cat.session() as s:
        assert cache.get(key, search_cache.stamp(s, NOW), NOW) is None
        result = search.search_datasets(s, query(), ANONYMOUS, now=NOW, cache=cache)
        assert result.total == 2 and len(result.items) == 2
        mine = query(mine=True)  # "my datasets" are counted per person
        assert search.FacetCache.key(mine, Identity("a")) != search.FacetCache.key(mine, Identity("b"))


def test_kept_results_end_with_the_next_embargo_end(cat):
    cache = search.FacetCache(3600.0)
    with cat.session() as s:
        add(s, "a", title="lipid", is_public=True)
        add(s, "b", title="lipid", sample="DPPC", release_date=NOW + timedelta(days=1))
    later = NOW + timedelta(days=2)
    with cat.session() as s:
        assert [
            d.pid for d in search.search_datasets(s, query(q="dppc"), ANONYMOUS, now=NOW, cache=cache).items
        ] == []
        found = search.search_datasets(s, query(q="dppc"), ANONYMOUS, now=later, cache=cache)
        assert [d.pid for d in found.items] == ["b"] and found.total == 1


@pytest.mark.parametrize("page", [1, 2])
def test_ranked_pages_read_from_kept_matches_equal_the_database_s(cat, page):
    words = ["lipid", "lipid film", "lipid lipid film", "film"]
    with cat.session() as s:
        for i in range(30):
            add(
                s,
                f"d{i:02d}",
                title=words[i % 4],
                description="lipid" if i % 3 else "",
                sample="DPPC" if i % 5 == 0 else "",
                facility=("ILL", "ESRF")[i % 2],
                is_public=i % 7 != 0,
                release_date=NOW + timedelta(days=1) if i % 7 == 0 else None,
            )
    cache = search.FacetCache(30.0)
    for q in (
        query(q="lipid", per_page=10, page=page),
        query(q="lipid", filters={"facility": ["ILL"]}, per_page=10, page=page),
        query(q="lipid -dppc", per_page=10, page=page),
        query(q="lipid", filters={"access": ["embargoed"]}, per_page=10, page=page),
        query(q="dppc", per_page=10, page=page),
    ):
        for _ in range(2):  # computed, then read from the kept matches
            with cat.session() as s:
                kept = search.search_datasets(s, q, ANONYMOUS, now=NOW, cache=cache)
                fresh = search.search_datasets(s, q, ANONYMOUS, now=NOW)
            assert [d.pid for d in kept.items] == [d.pid for d in fresh.items], q
            assert kept.total == fresh.total and kept.facets == fresh.facets, q


def test_technique_key_follows_the_links(cat):
    with cat.session() as s:
        add(s, "a", techniques=[SANS, SAXS])
    with cat.session() as s:
        ds = s.scalar(select(Dataset).where(Dataset.pid == "a"))
        s.refresh(ds)
        ids = sorted(t.id for t in ds.techniques)
        assert ds.technique_key == ",".join(str(i) for i in ids)
        ds.techniques = [t for t in ds.techniques if t.panet_id == SANS]
    with cat.session() as s:
        ds = s.scalar(select(Dataset).where(Dataset.pid == "a"))
        s.refresh(ds)
        assert ds.technique_key == str(ds.techniques[0].id)


def test_migrations_go_down_to_0003_and_up_again_keeping_the_index(tmp_path):
    from alembic import command

    from panbinder.data_mounts import db

    url = f"sqlite:///{tmp_path}/m.sqlite"
    db.upgrade(url)
    command.downgrade(db.alembic_config(url), "0003")
    db.upgrade(url)
    c = Catalogue(db_url=url)
    try:
        with c.session() as s:
            add(s, "back", title="after the round trip", techniques=[SANS])
        assert pids(c, query(q="round trip")) == ["back"]
        with c.session() as s:
            assert s.scalar(select(Dataset.technique_key)) != ""
    finally:
        c.close()


def test_migrating_down_keeps_the_rows_that_point_at_datasets_and_publications(tmp_path):
    """SQLite enforces foreign keys on every connection: a table copy in the downgrade would
    delete the files, techniques, publication links and check runs along with the old table."""
    from alembic import command

    from panbinder.data_mounts import db
    from panbinder.data_mounts.models import CheckRun, DatasetFile

    url = f"sqlite:///{tmp_path}/m.sqlite"
    c = Catalogue(db_url=url)
    c.start()
    try:
        with c.session() as s:
            ds = add(s, "kept", title="kept through the downgrade", techniques=[SANS, SAXS])
            ds.files = [DatasetFile(path="a.h5", size=1), DatasetFile(path="b.h5", size=2)]
            pub = Publication(
                doi="10.1/kept", repo_url="https://example.org/r.git", ref="main", resolved_sha="a" * 40
            )
            pub.datasets = [ds]
            s.add(pub)
            s.flush()
            s.add(CheckRun(publication_id=pub.id, kind="frozen", started=NOW, verdict="reproduced"))
    finally:
        c.close()
    tables = (
        "datasets",
        "dataset_files",
        "dataset_techniques",
        "publications",
        "publication_datasets",
        "checks",
    )

    def counts() -> dict[str, int]:
        engine = create_engine(url)
        with engine.connect() as conn:
            found = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables}
        engine.dispose()
        return found

    before = counts()
    assert before == {
        "datasets": 1,
        "dataset_files": 2,
        "dataset_techniques": 2,
        "publications": 1,
        "publication_datasets": 1,
        "checks": 1,
    }
    command.downgrade(db.alembic_config(url), "0003")
    assert counts() == before
    db.upgrade(url)
    assert counts() == before
    c = Catalogue(db_url=url)
    try:
        assert pids(c, query(q="downgrade")) == ["kept"]  # the index is rebuilt from the rows
    finally:
        c.close()


def test_technique_keys_follow_writes_of_many_links_at_once(cat):
    """One statement inserting and one deleting links of several datasets (revision 0015's
    statement triggers on PostgreSQL, 0005's row triggers on SQLite)."""
    from panbinder.data_mounts.models import dataset_techniques

    with cat.session() as s:
        a, b = add(s, "a", title="first"), add(s, "b", title="second")
        terms = [Technique(panet_id=t, label=t) for t in (SAXS, SANS, XRD)]
        s.add_all(terms)
        s.flush()
        links = [{"dataset_id": d.id, "technique_id": t.id} for d in (a, b) for t in terms]
        s.execute(insert(dataset_techniques), links)
        s.execute(
            delete(dataset_techniques).where(
                dataset_techniques.c.technique_id == terms[1].id, dataset_techniques.c.dataset_id == a.id
            )
        )
        ids = sorted(t.id for t in terms)
    with cat.session() as s:
        keys = dict(s.execute(select(Dataset.pid, Dataset.technique_key)).all())
    assert keys["b"] == ",".join(map(str, ids))
    assert keys["a"] == ",".join(str(i) for i in ids if i != terms[1].id)
    assert pids(cat, query(filters={"technique": [SAS]})) == ["a", "b"] or set(
        pids(cat, query(filters={"technique": [SAS]}))
    ) == {"a", "b"}


@pytest.fixture
def postgres_cat(postgres_server):
    from tests.postgres import fresh_database

    with fresh_database(postgres_server) as url:
        c = Catalogue(db_url=url)
        c.start()
        yield c
        c.close()


def test_the_search_counter_is_raised_once_per_transaction_on_postgresql(postgres_cat):
    """However many statements write, and a rolled-back savepoint takes its raise back."""
    from panbinder.data_mounts.models import search_state

    def version() -> int:
        with postgres_cat.session() as s:
            return s.scalar(select(search_state.c.version))

    before = version()
    with postgres_cat.session() as s:
        for i in range(5):
            add(s, f"d{i}", title=f"dataset {i}", techniques=[SANS])
        s.execute(update(Dataset).values(title="renamed"))
    assert version() == before + 1
    with postgres_cat.session() as s:
        nested = s.begin_nested()
        add(s, "gone", title="rolled back")
        nested.rollback()
        add(s, "kept", title="kept")
    assert version() == before + 2  # the savepoint's raise was undone, the next one counted
    with postgres_cat.session() as s:
        s.execute(update(Dataset).values(views=Dataset.views + 1))  # not read by a search
    assert version() == before + 2


def test_revision_0015_goes_down_and_up_again(any_db_url):
    from alembic import command

    from panbinder.data_mounts import db

    db.upgrade(any_db_url)
    command.downgrade(db.alembic_config(any_db_url), "0014")
    c = Catalogue(db_url=any_db_url)
    try:
        with c.session() as s:  # 0005's row trigger again on PostgreSQL
            add(s, "old", title="written at 0014", techniques=[SANS, SAXS])
        assert pids(c, query(q="written", filters={"technique": [SANS]})) == ["old"]
    finally:
        c.close()
    db.upgrade(any_db_url)
    c = Catalogue(db_url=any_db_url)
    try:
        with c.session() as s:
            add(s, "new", title="written at head", techniques=[XRD], is_public=False)
        assert pids(c, query(q="written", filters={"technique": [SAS]})) == ["old"]
        assert pids(c, query(q="written head")) == ["new"]  # embargoed: through what it shows
        with c.session() as s:
            keys = dict(s.execute(select(Dataset.pid, Dataset.technique_key)).all())
        assert keys["new"] != "" and keys["old"].count(",") == 1
    finally:
        c.close()
