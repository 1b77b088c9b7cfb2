"""Analysis templates on the real portal app (tests/web_app.py): "Analyse with" on cards, the
template facet, /api/templates, and launches refused before anything starts."""

from __future__ import annotations

import json
from urllib.parse import quote

from panbinder.data_mounts import analysis_templates as at
from tests.test_web_escaping import HOSTILE_TITLE, assert_safe_page
from tests.test_web_search import MEMBER, SAS, SAXS, add, cards, page, portal  # noqa: F401

SHA = "b" * 40


def register(cat, title: str, techniques: list[str], **kw) -> str:
    record = at.make_record(
        repo_url="https://git.example.org/t.git", ref="main", title=title, techniques=techniques, **kw
    )
    at._write(cat, record, SHA)
    return record.name


async def test_cards_offer_the_templates_that_fit_and_the_facet_narrows(portal):  # noqa: F811
    cat = portal.catalogue
    register(cat, "SAS fit", [SAS], notebook="fit.ipynb")
    register(cat, "SAXS only", [SAXS])
    resp = await page(portal, "/datasets")
    html = assert_safe_page(resp)
    assert 'id="facet-template"' in html and "Analysis template" in html
    assert "Analyse with SAS fit" in html and 'class="basket-add"' in html
    assert "/v2/template/sas-fit/pid%3Asaxs?labpath=fit.ipynb" in html
    narrowed = await page(portal, "/datasets?template=saxs-only")
    assert cards(narrowed.body.decode()) == ["pid:saxs"]
    found = json.loads((await portal.fetch("/api/search/datasets?template=sas-fit")).body)
    # the embargoed dataset is neither counted nor found (a fit may rest on its files), as sizes
    assert sorted(c["pid"] for c in found["items"]) == ["pid:sans", "pid:saxs"]
    facet = next(f for f in found["facets"] if f["name"] == "template")
    assert {v["value"]: v["count"] for v in facet["values"]} == {"sas-fit": 2, "saxs-only": 1}
    saxs = next(c for c in found["items"] if c["pid"] == "pid:saxs")
    assert [t["name"] for t in saxs["templates"]] == ["sas-fit", "saxs-only"]
    everything = json.loads((await portal.fetch("/api/search/datasets")).body)["items"]
    closed = next(c for c in everything if c["pid"] == "pid:closed")
    assert not closed["accessible"] and closed["templates"] == []
    listed = json.loads((await portal.fetch("/api/templates")).body)["items"]
    assert [t["name"] for t in listed] == ["sas-fit", "saxs-only"]
    assert listed[0]["resolved_sha"] == SHA and listed[0]["search_url"].endswith("datasets?template=sas-fit")


async def test_a_hostile_template_title_stays_text(portal):  # noqa: F811
    register(portal.catalogue, HOSTILE_TITLE, [SAS], name="hostile")
    assert_safe_page(await page(portal, "/datasets?template=hostile"))


async def test_an_embargoed_dataset_refuses_the_launch_with_a_403_naming_it(portal):  # noqa: F811
    register(portal.catalogue, "SAS fit", [SAS])
    resp = await page(portal, "/v2/template/sas-fit/pid%3Asaxs/pid%3Aclosed")
    body = resp.body.decode()
    assert resp.code == 403 and "Embargoed vesicles" in body and "Nothing was launched" in body
    api = await portal.fetch("/build/template/sas-fit/pid%3Aclosed")
    assert api.code == 403 and "under embargo" in json.loads(api.body)["message"]
    unknown = await page(portal, "/v2/template/nothing/pid%3Asaxs")
    assert unknown.code == 404 and "No analysis template" in unknown.body.decode()


async def test_a_member_gets_the_launch_page_for_a_basket(portal):  # noqa: F811
    (portal.storage / "open").mkdir()
    (portal.storage / "closed").mkdir()
    add(portal.catalogue, "pid:a", techniques=[SAXS], is_public=True, location=str(portal.storage / "open"))
    add(
        portal.catalogue,
        "pid:b",
        techniques=[SAXS],
        groups=["proposal-42"],
        location=str(portal.storage / "closed"),
    )
    register(portal.catalogue, "SAS fit", [SAS])
    path = "/v2/template/sas-fit/" + "/".join(quote(p, safe="") for p in ("pid:a", "pid:b"))
    assert (await page(portal, path)).code == 403
    resp = await page(portal, path, token=MEMBER)
    assert resp.code == 200 and "/build/template/sas-fit/pid%3Aa/pid%3Ab" in resp.body.decode()
    launches = json.loads((await portal.fetch("/api/search/datasets")).body)["items"]
    assert {c["pid"]: c["launches"] for c in launches if c["pid"] in ("pid:a", "pid:b")} == {
        "pid:a": 1,
        "pid:b": 1,
    }


async def test_a_dataset_page_lists_the_templates_that_fit_not_when_embargoed(portal):  # noqa: F811
    register(portal.catalogue, "SAS fit", [SAS], notebook="fit.ipynb")
    register(portal.catalogue, "SAXS only", [SAXS])
    register(portal.catalogue, HOSTILE_TITLE, [SAXS], name="hostile")
    html = assert_safe_page(await page(portal, "/datasets/pid%3Asaxs"))
    assert "<h2>Analyse with</h2>" in html
    assert "Analyse with SAS fit" in html and "Analyse with SAXS only" in html
    assert "/v2/template/sas-fit/pid%3Asaxs?labpath=fit.ipynb" in html
    sans = (await page(portal, "/datasets/pid%3Asans")).body.decode()  # SANS: not under SAXS
    assert "Analyse with SAS fit" in sans and "Analyse with SAXS only" not in sans
    closed = "/datasets/pid%3Aclosed"  # embargoed: only a reader who may open it sees the fits
    assert "Analyse with" not in (await page(portal, closed)).body.decode()
    assert "Analyse with SAS fit" in (await page(portal, closed, token=MEMBER)).body.decode()
