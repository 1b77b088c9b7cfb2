"""The PaNOSC filter parser and its translation to SQL: valid filters (the search API's documented
examples and what the PaNOSC search portal sends), invalid ones (a 400 that says what to change),
and random JSON that must never become anything but a Filter or a 400."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.panosc import filters, search
from panbinder.data_mounts.panosc.filters import Cond, Group, Text
from panbinder.data_mounts.panosc.match import _like, compare_value
from panbinder.errors import PanbinderError

# from the search API's doc/dataset-example-queries.md and doc/document-example-queries.md
DOCUMENTED = {
    "technique": {"include": [{"relation": "techniques", "scope": {"where": {"name": "x-ray absorption"}}}]},
    "photon energy": {
        "include": [
            {
                "relation": "parameters",
                "scope": {
                    "where": {
                        "and": [{"name": "photon_energy"}, {"value": {"between": [880, 990]}}, {"unit": "eV"}]
                    }
                },
            }
        ]
    },
    "files text": {"include": [{"relation": "files", "scope": {"where": {"text": "file1"}}}]},
}
# what panosc-eu/searchui's translate() sends (src/Api/translate.test.js)
PORTAL = {
    "default": {"limit": 50},
    "technique and members": {
        "include": [
            {
                "relation": "members",
                "scope": {"include": [{"relation": "affiliation"}, {"relation": "person"}]},
            },
            {
                "relation": "datasets",
                "scope": {"include": [{"relation": "techniques", "scope": {"where": {"name": "test"}}}]},
            },
        ],
        "limit": 50,
    },
    "temperature": {
        "include": [
            {
                "relation": "datasets",
                "scope": {
                    "include": [
                        {
                            "relation": "parameters",
                            "scope": {
                                "where": {
                                    "and": [
                                        {"name": "sample_temperature"},
                                        {"value": {"between": ["0", "7300"]}},
                                        {"unit": "K"},
                                    ]
                                }
                            },
                        }
                    ]
                },
            }
        ],
        "limit": 50,
    },
    "paging and query": {"skip": 20, "limit": 20, "query": "hBN target", "order": ["title ASC", "pid DESC"]},
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_dataset_filters_parse(name):
    flt = filters.parse_filter("Dataset", DOCUMENTED[name])
    assert flt.includes and flt.includes[0].constrains


def test_parameter_query_with_a_unit_compares_in_si():
    flt = filters.parse_filter("Dataset", DOCUMENTED["photon energy"])
    name, value, unit = flt.includes[0].where.parts
    assert name == Cond("name", "eq", "photon_energy")
    assert unit == Cond("siUnit", "eq", "kg m2/s2")  # energy
    assert value.field == "siValue" and value.op == "between"
    assert value.value == pytest.approx((880 * 1.602176634e-19, 990 * 1.602176634e-19))
    # the same bounds in keV give the same SI range; an unknown unit is compared as written
    kev = json.loads(json.dumps(DOCUMENTED["photon energy"]).replace("[880, 990]", "[0.88, 0.99]"))
    kev = json.loads(json.dumps(kev).replace('"eV"', '"keV"'))
    assert filters.parse_filter("Dataset", kev).includes[0].where.parts[1].value == pytest.approx(value.value)
    odd = json.loads(json.dumps(DOCUMENTED["photon energy"]).replace('"eV"', '"furlongs"'))
    assert filters.parse_filter("Dataset", odd).includes[0].where.parts[1] == Cond(
        "value", "between", (880, 990)
    )


@pytest.mark.parametrize("name", sorted(PORTAL))
def test_portal_document_filters_parse(name):
    flt = filters.parse_filter("Document", PORTAL[name])
    assert flt.model == "Document"


def test_portal_numbers_as_strings_become_numbers():
    flt = filters.parse_filter("Document", PORTAL["temperature"])
    params = flt.includes[0].includes[0]
    assert params.where.parts[1] == Cond("siValue", "between", (0.0, 7300.0))  # K is SI already
    assert flt.includes[0].constrains  # a document needs such a dataset


def test_query_order_paging():
    flt = filters.parse_filter("Document", PORTAL["paging and query"])
    assert (flt.skip, flt.limit, flt.query) == (20, 20, "hBN target")
    assert flt.order == (("title", False), ("pid", True))


def test_where_forms():
    where = filters.parse_where(
        "Dataset", {"title": {"like": "V20%"}, "or": [{"size": {"gt": 5}}, {"text": "x"}]}
    )
    assert where == Group(
        "and", (Cond("title", "like", "V20%"), Group("or", (Cond("size", "gt", 5), Text("x"))))
    )
    assert filters.parse_where("Dataset", {"creationDate": {"gt": "2019-01-01"}}).value == datetime(
        2019, 1, 1, tzinfo=UTC
    )
    assert filters.parse_where("Dataset", {"isPublic": "true"}).value is True
    assert filters.parse_where("Dataset", {"pid": None}) == Cond("pid", "eq", None)


BAD = [
    ('{"where": ', "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"where": {"title": {"regexp": "x"}}}', "unknown operator 'regexp'"),
    ('{"where": {"colour": "red"}}', "Dataset has no field 'colour'"),
    ('{"include": ["sensors"]}', "Dataset has no relation 'sensors'"),
    (
        '{"include": [{"relation": "techniques", "scope": {"where": {"label": "x"}}}]}',
        "Technique has no field 'label'",
    ),
    ('{"limit": -1}', "'limit' must be a whole number"),
    ('{"limit": "ten"}', "'limit' must be a whole number"),
    ('{"skip": 1.5}', "'skip' must be a whole number"),
    ('{"order": "colour ASC"}', "cannot order Datasets by 'colour ASC'"),
    ('{"fields": ["colour"]}', "Dataset has no field 'colour'"),
    ('{"sort": "x"}', "unknown key 'sort'"),
    ('{"where": {"size": {"gt": "big"}}}', "compared with a number"),
    ('{"where": {"size": {"between": [1]}}}', "takes two values"),
    ('{"where": {"creationDate": {"gt": "yesterday"}}}', "ISO 8601 date"),
    ('{"where": {"title": {"like": 5}}}', "needs a string pattern"),
    ('{"where": {"title": {"gt": 1, "lt": 2}}}', "give one operator"),
    ('{"where": {"size": NaN}}', "not valid JSON"),
    ('{"where": {"and": {"title": "x"}}}', "takes a list"),
    ('{"where": {"isPublic": 1}}', "true or false"),
    ('{"where": {"parameters": {"colour": 1}}}', "Parameter has no field 'colour'"),
    ('{"where": {"parameters": {"value": {"gt": "hot"}, "unit": "K"}}}', "'value' of Parameter is compared"),
    ('{"where": {"parameters": {"value": "hot", "unit": "K"}}}', "value \"hot\" in 'K' is not a number"),
    ('{"where": {"variable": "t", "operator": "gt", "value": 1, "units": "K"}}', "unknown key 'units'"),
    ('{"where": {"variable": "t", "operator": "above", "value": 1}}', "unknown operator 'above'"),
    ('{"where": {"query": {"operator": "gt"}}}', "needs 'variable'"),
]


@pytest.mark.parametrize(("raw", "says"), BAD)
def test_bad_filters_say_what_to_change(raw, says):
    with pytest.raises(PanbinderError) as e:
        filters.parse_filter("Dataset", filters.decode(raw))
    assert e.value.status_code == 400 and e.value.reason == "bad_filter"
    assert says in e.value.message, e.value.message


def test_size_limits():
    deep: dict = {"title": "x"}
    for _ in range(filters.MAX_DEPTH + 2):
        deep = {"and": [deep]}
    with pytest.raises(PanbinderError, match="nested more than"):
        filters.parse_where("Dataset", deep)
    wide = {"or": [{"title": str(i)} for i in range(filters.MAX_NODES + 1)]}
    with pytest.raises(PanbinderError, match="more than 200 conditions"):
        filters.parse_where("Dataset", wide)
    with pytest.raises(PanbinderError, match="longer than"):
        filters.decode(" " * (filters.MAX_FILTER_CHARS + 1) + "{}")


@pytest.mark.parametrize(
    ("pattern", "value", "found"),
    [
        ("a%b", "axxb", True),
        ("a%b", "axxbc", False),
        ("a_c", "abc", True),
        ("Cu", "xcuy", True),
        ("%" * 400 + "b", "a" * 300, False),
    ],
)
def test_like_without_regex(pattern, value, found):
    assert _like(pattern, value, False) is found


def test_missing_values_match_only_null_and_negations():
    assert compare_value(None, Cond("summary", "eq", None))
    assert compare_value(None, Cond("summary", "neq", "x"))
    assert not compare_value(None, Cond("summary", "eq", "x"))
    assert not compare_value(None, Cond("summary", "like", "x"))


# -- never a 500: random JSON is a Filter or a 400, and a Filter runs -----------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)
LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-5, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from(["2020-01-01", "%a%", "SAXS", "x-ray diffraction", "PaNET01188", "V20", "_"])
)
OPERATOR = st.sampled_from([*sorted(filters.OPERATORS), "regexp"])
OPERAND = (
    LEAF
    | st.lists(LEAF, max_size=3)
    | st.dictionaries(OPERATOR, LEAF | st.lists(LEAF, min_size=2, max_size=2), min_size=1, max_size=1)
)


def where_for(model: str) -> st.SearchStrategy:
    """Where clauses on ``model``'s fields (now and then another name)."""
    names = st.sampled_from([*filters.FIELDS[model], "text", "colour"])
    return st.recursive(
        st.dictionaries(names, OPERAND, max_size=2),
        lambda kids: st.dictionaries(
            st.sampled_from(["and", "or"]), st.lists(kids, max_size=3), min_size=1, max_size=1
        ),
        max_leaves=6,
    )


def include_for(model: str, depth: int = 0) -> st.SearchStrategy:
    relations = filters.RELATIONS.get(model, {})
    if not relations or depth > 2:
        return st.just("sensors")
    options = []
    for name, target in relations.items():
        scope = st.fixed_dictionaries(
            {},
            optional={
                "where": where_for(target),
                "include": st.lists(include_for(target, depth + 1), max_size=2),
            },
        )
        options.append(st.just(name) | st.builds(lambda s, n=name: {"relation": n, "scope": s}, scope))
    return st.one_of(options)


def filter_for(model: str) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {},
        optional={
            "where": where_for(model),
            "include": st.lists(include_for(model), max_size=3),
            "limit": st.integers(-1, 500),
            "skip": st.integers(0, 50),
            "query": st.sampled_from(["V20", "sample data", ""]),
            "order": st.sampled_from(["title DESC", ["pid ASC", "name"], "colour"]),
        },
    )


@pytest.fixture(scope="module")
def small_catalogue(tmp_path_factory):
    cat = Catalogue(db_url=f"sqlite:///{tmp_path_factory.mktemp('fz')}/c.sqlite")
    cat.start()
    cat.import_datasets(json.loads((FIXTURES / "ess_datasets_response.json").read_text()))
    yield cat
    cat.close()


FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "panosc"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), model=st.sampled_from(search.MODELS))
def test_random_filters_never_fail_otherwise(small_catalogue, data, model):
    value = data.draw(JSON | filter_for(model))
    now = datetime.now(UTC)
    try:
        flt = filters.parse_filter(model, filters.decode(json.dumps(value)))
        with small_catalogue.session() as session:
            search.find(session, flt, now=now, cap=10)
            search.count(session, model, flt.where, now=now)
    except PanbinderError as e:
        assert e.status_code == 400
