"""The PaNOSC search API's HTTP side in the portal: the routes (capital and lower-case plurals,
count, PIDs with '/'), JSON answers, and bad filters as a 400 whose message says what to change."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio

from panbinder.data_mounts.panosc.importer import import_panosc
from tests.web_app import web_portal

pytestmark = pytest.mark.asyncio(loop_scope="module")
ESS = Path(__file__).resolve().parent / "fixtures" / "panosc" / "ess_datasets_response.json"
V20 = "20.500.12269/BRIGHTNESS/V200082"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def portal(tmp_path_factory):
    async with web_portal(tmp_path_factory.mktemp("panosc")) as p:
        assert import_panosc(p.catalogue, ESS).failed == []
        p.add_publication("10.5555/v20", V20)
        yield p


def filtered(path: str, flt: dict | str, **more: str) -> str:
    raw = flt if isinstance(flt, str) else json.dumps(flt)
    extra = "".join(f"&{k}={quote(v)}" for k, v in more.items())
    return f"{path}?filter={quote(raw)}{extra}"


async def test_find_datasets(portal):
    flt = {"where": {"title": {"like": "V20"}}, "include": ["files", "instrument"], "order": "pid ASC"}
    resp = await portal.fetch(filtered("/api/Datasets", flt))
    assert resp.code == 200 and resp.headers["Content-Type"].startswith("application/json")
    records = json.loads(resp.body)
    assert [r["pid"] for r in records] == ["20.500.12269/79e97997-b565-4ef7-9d2f-f26d69debda1", V20]
    assert records[1]["files"][0]["name"] == "nicos_00000070.hdf" and records[1]["instrument"] is None


async def test_count_get_and_lower_case_documents(portal):
    resp = await portal.fetch("/api/Datasets/count?where=" + quote('{"title": {"like": "V20"}}'))
    assert json.loads(resp.body) == {"count": 2}
    resp = await portal.fetch(filtered(f"/api/Datasets/{quote(V20, safe='')}", {"include": ["document"]}))
    assert resp.code == 200 and json.loads(resp.body)["document"]["pid"] == "10.5555/v20"
    resp = await portal.fetch(filtered("/api/documents", {"include": ["datasets"]}, query="V20"))
    docs = {d["pid"]: d for d in json.loads(resp.body)}
    assert sorted(docs) == ["10.5555/v20", "67JH32", "YC7SZ5"]  # the publication, ESS's proposals
    assert all(0 < d["score"] < 1 for d in docs.values())
    assert [d["pid"] for d in docs["10.5555/v20"]["datasets"]] == [V20]
    assert docs["YC7SZ5"]["type"] == "proposal" and docs["10.5555/v20"]["type"] == "publication"
    resp = await portal.fetch("/api/Documents/count")
    assert json.loads(resp.body) == {"count": 3}
    resp = await portal.fetch("/api/Documents/count?where=" + quote('{"type": "proposal"}'))
    assert json.loads(resp.body) == {"count": 2}
    resp = await portal.fetch(filtered("/api/Documents/YC7SZ5", {"include": ["datasets"]}))
    assert resp.code == 200 and json.loads(resp.body)["datasets"][0]["documentId"] == "YC7SZ5"


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (filtered("/api/Datasets", '{"where": {"title": '), "not valid JSON"),
        (filtered("/api/Datasets", {"where": {"title": {"regex": "V2."}}}), "unknown operator 'regex'"),
        (filtered("/api/Documents", {"include": ["authors"]}), "Document has no relation 'authors'"),
        (filtered("/api/Instruments", {"limit": -3}), "'limit' must be a whole number"),
        ("/api/Datasets/count?where=" + quote('{"owner": "me"}'), "Dataset has no field 'owner'"),
    ],
)
async def test_bad_filters_are_a_400_saying_what_to_change(portal, path, says):
    resp = await portal.fetch(path)
    assert resp.code == 400, resp.body
    body = json.loads(resp.body)
    assert body["reason"] == "bad_filter" and says in body["message"], body
    assert "Traceback" not in resp.body.decode()


async def test_unknown_pid_is_a_404(portal):
    resp = await portal.fetch("/api/Datasets/no-such-pid")
    assert resp.code == 404 and json.loads(resp.body)["reason"] == "not_found"


async def test_a_request_past_the_record_budget_is_a_400(portal):
    flt = {"include": [{"relation": "document", "scope": {"include": ["datasets"]}}]}
    resp = await portal.fetch(filtered("/api/Datasets", flt))
    assert resp.code == 200  # 3 datasets, V20's document and its one dataset: 5 records
    portal.catalogue.panosc_max_records = 4
    try:
        resp = await portal.fetch(filtered("/api/Datasets", flt))
    finally:
        portal.catalogue.panosc_max_records = 5000
    body = json.loads(resp.body)
    assert resp.code == 400 and body["reason"] == "bad_filter"
    assert "more than 4 records" in body["message"] and "lower the limit" in body["message"]
