"""The PaNOSC search API of a real ``panbinder serve``: ``panbinder catalogue import-panosc``
imports the PaNOSC reference server's responses and SciCat datasets into the portal's catalogue,
and the query the PaNOSC search portal sends for a technique finds the expected datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.integration.conftest import cli
from tests.support import session_prefix

pytestmark = [pytest.mark.docker, pytest.mark.slow]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "panosc"
PREFIX = session_prefix("panbinder-pn")


@pytest.fixture(scope="module")
def service(portal_factory):
    with portal_factory("pn", "c.ServeApp.start_hub = False\n", prefix=PREFIX) as p:
        yield p


def test_import_then_portal_technique_query(service, tmp_path):
    records = tmp_path / "records"
    shutil.copytree(FIXTURES, records)
    out = cli(service, "catalogue", "import-panosc", str(records))
    assert "imported 31 datasets and 19 files, 0 failed" in out.stderr, out.stderr
    # panosc-eu/searchui's filter for datasets of a technique, with its page size
    flt = {
        "include": [{"relation": "techniques", "scope": {"where": {"name": "small angle scattering"}}}],
        "limit": 50,
    }
    resp = requests.get(f"{service.url}/api/Datasets?filter={quote(json.dumps(flt))}", timeout=30)
    assert resp.status_code == 200, resp.text
    assert sorted(r["pid"] for r in resp.json()) == [
        "20.500.12269/79e97997-b565-4ef7-9d2f-f26d69debda1",
        "PID.SAMPLE.PREFIX/soleil_ds1",
        "PID.SAMPLE.PREFIX/soleil_ds2",
        "PID.SAMPLE.PREFIX/ukri_ds1",
        "PID.SAMPLE.PREFIX/ukri_ds2",
        "PID.SAMPLE.PREFIX/ukri_ds3",
    ]
    count = requests.get(f"{service.url}/api/Instruments/count", timeout=30).json()
    assert count == {"count": 6}
    unknown_operator = quote(json.dumps({"where": {"title": {"re": 1}}}))
    bad = requests.get(f"{service.url}/api/Datasets?filter={unknown_operator}", timeout=30)
    assert bad.status_code == 400 and "unknown operator 're'" in bad.json()["message"]
