"""The search pages and their JSON twin on the real portal app (tests/web_app.py): cards, facets,
permalinks, "my datasets", embargo, counters, bad parameters, escaping and page weight."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import pytest

from panbinder.data_mounts.models import Dataset, Technique
from tests.test_web_escaping import HOSTILE_TITLE, assert_safe_page, tags_of
from tests.web_app import web_portal

MEMBER = "member-token"
SAXS, SANS, SAS = "PaNET01188", "PaNET01189", "PaNET01124"


def add(cat, pid: str, *, techniques=(), **fields) -> None:
    with cat.session() as s:
        techs = []
        for t in techniques:
            row = s.query(Technique).filter_by(panet_id=t).one_or_none() or Technique(panet_id=t, label=t)
            techs.append(row)
        fields.setdefault("creation_date", datetime(2024, 3, 1, tzinfo=UTC))
        ds = Dataset(pid=pid, owners=fields.pop("owners", []), groups=fields.pop("groups", []), **fields)
        ds.techniques = techs
        s.add(ds)


@pytest.fixture
async def portal(tmp_path):
    async with web_portal(tmp_path) as p:
        cat = p.catalogue
        add(
            cat,
            "pid:saxs",
            title="Vesicles seen with X-rays",
            techniques=[SAXS],
            facility="ESRF",
            size=2470673,
            is_public=True,
            description="Lipid vesicles under pressure",
            views=5,
        )
        add(
            cat,
            "pid:sans",
            title="Vesicles seen with neutrons",
            techniques=[SANS],
            facility="ILL",
            size=5 * 10**9,
            is_public=True,
            preview="scan.nxs::/entry/data/counts",
        )
        add(
            cat,
            "pid:closed",
            title="Embargoed vesicles",
            techniques=[SANS],
            facility="ILL",
            release_date=datetime(2030, 5, 17, tzinfo=UTC),
            groups=["proposal-42"],
            preview="scan.nxs::/entry/data/counts",
        )
        add(cat, "pid:hostile", title=HOSTILE_TITLE, facility=HOSTILE_TITLE, is_public=True)
        p.hub_users[MEMBER] = {"name": "alice", "groups": ["proposal-42"]}
        yield p


async def page(portal, path: str, **kw):
    return await portal.fetch(path, accept="text/html", **kw)


def cards(html: str) -> list[str]:
    return [a["data-pid"] for tag, a in tags_of(html) if tag == "li" and "data-pid" in a]


async def test_search_page_shows_cards_with_human_sizes_and_facets(portal):
    resp = await page(portal, "/datasets?q=vesicles")
    assert resp.code == 200
    html = assert_safe_page(resp)
    assert set(cards(html)) == {"pid:saxs", "pid:sans", "pid:closed"}
    assert "2.47 MB" in html and "5 GB" in html and "2470673" not in html
    assert 'data-facet="technique" data-value="PaNET01124"' in html  # the parent term is offered
    assert len(resp.body) < 200_000
    for tag, attrs in tags_of(html):  # nothing from another site
        for name in ("src", "href"):
            assert not attrs.get(name, "").startswith(("http://", "https://", "//")) or tag == "a", attrs


async def test_facet_links_narrow_and_keep_the_whole_query(portal):
    html = (await page(portal, "/datasets?q=vesicles&sort=title")).body.decode()
    href = next(
        a["href"]
        for t, a in tags_of(html)
        if a.get("data-facet") == "facility" and a.get("data-value") == "ILL"
    )
    assert "q=vesicles" in href and "sort=title" in href
    narrowed = (await page(portal, href)).body.decode()
    assert set(cards(narrowed)) == {"pid:sans", "pid:closed"}
    html = (await page(portal, f"/datasets?technique={SAS}&facility=ESRF&facility=ILL")).body.decode()
    assert set(cards(html)) == {"pid:saxs", "pid:sans", "pid:closed"}


async def test_embargoed_card_shows_the_lock_and_date_but_no_thumbnail(portal):
    html = (await page(portal, "/datasets?q=embargoed")).body.decode()
    assert cards(html) == ["pid:closed"]
    assert "Embargoed" in html and "2030-05-17" in html
    assert "api/preview/thumbnail" not in html
    open_card = (await page(portal, "/datasets?q=neutrons")).body.decode()
    assert "api/preview/thumbnail/pid%3Asans?file=scan.nxs" in open_card.replace("pid:sans?", "pid%3Asans?")


async def test_json_twin_has_cards_facets_and_a_permalink(portal):
    resp = await portal.fetch("/api/search/datasets?" + urlencode({"q": "vesicles", "technique": "SANS"}))
    assert resp.code == 200
    data = json.loads(resp.body)
    assert data["total"] == 2 and {c["pid"] for c in data["items"]} == {"pid:sans", "pid:closed"}
    assert data["permalink"].endswith("datasets?q=vesicles&technique=PaNET01189")
    techniques = next(f for f in data["facets"] if f["name"] == "technique")["values"]
    assert any(v["value"] == SANS and v["selected"] and v["count"] == 2 for v in techniques)
    assert data["items"][0]["templates"] == []


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "per_page=5000",
        "sort=price",
        "technique=nonsense",
        "year=twenty",
        "size=xxl",
        "access=secret",
        "data_type=rawish",
        "q=" + "x" * 600,
        "page=" + "9" * 40,
    ],
)
async def test_bad_parameters_answer_400_with_a_message(portal, query):
    name = query.split("=")[0]
    resp = await portal.fetch(f"/api/search/datasets?{query}")
    assert resp.code == 400, query
    assert json.loads(resp.body)["message"].startswith(f"'{name}'")
    resp = await page(portal, f"/datasets?{query}")
    assert resp.code == 400 and 'id="message"' in resp.body.decode() and name in resp.body.decode()


@pytest.mark.parametrize("q", ['"', "AND OR NOT", "NEAR(", "a:b", "*", "-", "'); --", "\\", "%00"])
async def test_any_text_query_answers(portal, q):
    resp = await portal.fetch("/api/search/datasets?q=" + quote(q))
    assert resp.code == 200, resp.body


async def test_my_datasets_need_sign_in_and_list_group_datasets(portal):
    resp = await page(portal, "/datasets?mine=1")
    assert resp.code == 302 and "/login?next=" in resp.headers["Location"]
    assert (await portal.fetch("/api/search/datasets?mine=1")).code == 403
    resp = await page(portal, "/datasets?mine=1", token=MEMBER)
    assert cards(resp.body.decode()) == ["pid:closed"]


async def test_views_are_counted_shown_and_sortable(portal):
    for _ in range(7):
        assert (await page(portal, f"/datasets/{quote('pid:sans', safe='')}")).code == 200
    html = (await page(portal, "/datasets?sort=views")).body.decode()
    assert cards(html)[:2] == ["pid:sans", "pid:saxs"]
    assert "7" in (await page(portal, f"/datasets/{quote('pid:sans', safe='')}")).body.decode()


async def test_publications_page(portal):
    portal.add_publication("10.5555/paper.one", "pid:saxs")
    html = assert_safe_page(await page(portal, "/publications?q=paper"))
    assert 'data-doi="10.5555/paper.one"' in html and "badge/doi/10.5555/paper.one.svg" in html
    assert (await portal.fetch("/api/search/publications?sort=largest")).code == 400


async def test_home_page_links_to_the_search(portal):
    html = (await page(portal, "/")).body.decode()
    assert 'id="find-data"' in html and "/datasets" in html


async def test_paging_links(portal):
    for i in range(25):
        add(
            portal.catalogue,
            f"pid:many-{i:02d}",
            title=f"many {i}",
            is_public=True,
            creation_date=datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=i),
        )
    html = (await page(portal, "/datasets?q=many&sort=newest&per_page=10&page=2")).body.decode()
    assert cards(html) == [f"pid:many-{i:02d}" for i in range(14, 4, -1)]
    assert 'rel="next"' in html and 'rel="prev"' in html


async def test_embargoed_sample_and_size_only_for_readers_who_may_open_the_dataset(portal):
    add(
        portal.catalogue,
        "pid:hidden",
        title="Hidden details",
        sample="Zirconium",
        size=7 * 10**9,
        release_date=datetime(2030, 5, 17, tzinfo=UTC),
        groups=["proposal-42"],
    )
    path = f"/datasets/{quote('pid:hidden', safe='')}"
    for token, shown in ((None, False), (MEMBER, True)):
        card = json.loads((await portal.fetch("/api/search/datasets?q=hidden", token=token)).body)["items"][0]
        assert ("Zirconium" in card["excerpt"], card["size"] == 7 * 10**9, card["size_text"] == "7 GB") == (
            (shown,) * 3
        )
        assert (card["file_count"] is None) is not shown
        html = (await page(portal, "/datasets?q=hidden", token=token)).body.decode()
        assert cards(html) == ["pid:hidden"]
        assert ("Zirconium" in html, "7 GB" in html) == (shown, shown)
        detail = json.loads(
            (await portal.fetch(f"/api/datasets/{quote('pid:hidden', safe='')}", token=token)).body
        )
        assert (detail["sample"], detail["size"]) == (("Zirconium", 7 * 10**9) if shown else (None, None))
        html = (await page(portal, path, token=token)).body.decode()
        assert ("Zirconium" in html, "7 GB" in html, "under embargo" in html) == (shown, shown, not shown)
        # the sample name does not find an embargoed dataset, whoever asks
        assert cards((await page(portal, "/datasets?q=zirconium", token=token)).body.decode()) == []
