"""The OpenAPI description: valid OpenAPI 3, complete for /api, /build, /health and /versions,
and served by the portal with its public URL (never the request's Host) in ``servers``."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
from tornado.httpclient import AsyncHTTPClient

from panbinder.web.api import build, checks, openapi
from panbinder.web.api import catalogue as catalogue_api
from panbinder.web.api import derived as derived_api
from panbinder.web.api import panosc as panosc_api
from panbinder.web.api import restore as restore_api
from panbinder.web.api import review_links as review_links_api
from panbinder.web.api import search as search_api
from panbinder.web.handlers import build_logs, health
from panbinder.web.handlers import catalogue as catalogue_pages
from tests.web_app import web_portal

PUBLIC_URL = "https://binder.facility.example"
DESCRIBED_PREFIXES = ("/api/", "/build", "/health", "/versions")


def described_routes() -> list[str]:
    """The route patterns of the portal that the description must cover."""
    modules = (
        build,
        build_logs,
        health,
        catalogue_pages,
        catalogue_api,
        checks,
        openapi,
        search_api,
        panosc_api,
        review_links_api,
        derived_api,
        restore_api,
    )
    patterns = [path for module in modules for path, _ in module.routes]
    return [p for p in patterns if p.startswith(DESCRIBED_PREFIXES)]


def sample_path(template: str) -> str:
    """A concrete path for an OpenAPI path template: each {parameter} becomes a plain word."""
    return re.sub(r"\{[^}]+\}", "sample", template)


def test_description_file_is_valid_openapi_3():
    spec, _ = read_from_filename(str(openapi.DESCRIPTION_FILE))
    validate(spec)
    assert spec["openapi"].startswith("3.")


def test_served_description_is_valid_with_the_public_url():
    doc = openapi.description(PUBLIC_URL + "/binder/")
    validate(doc)
    assert doc["servers"] == [{"url": PUBLIC_URL + "/binder"}]
    assert openapi.description()["servers"] == [{"url": "/"}]


def test_every_route_under_api_build_health_versions_is_described():
    paths = list(openapi.description()["paths"])
    for pattern in described_routes():
        if pattern == "/metrics":
            continue
        matched = [p for p in paths if re.fullmatch(pattern, sample_path(p))]
        assert matched, f"route {pattern} has no path in the description"


def test_every_described_path_is_a_route():
    patterns = described_routes()
    for path in openapi.description()["paths"]:
        assert any(re.fullmatch(p, sample_path(path)) for p in patterns), path


def test_every_operation_describes_its_errors_with_the_error_body():
    doc = openapi.description()
    error_ref = "#/components/schemas/Error"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status.startswith("4") or (status.startswith("5") and path != "/health"):
                    ref = response.get("$ref", "")
                    body = doc["components"]["responses"][ref.rsplit("/", 1)[-1]] if ref else response
                    schema = body["content"]["application/json"]["schema"]
                    assert schema == {"$ref": error_ref}, (path, method, status)


@pytest.fixture
async def served(tmp_path):
    async with web_portal(
        tmp_path, {"ServeApp": {"base_url": "/binder/", "public_url": PUBLIC_URL}}
    ) as portal:
        yield portal.url


async def test_portal_serves_the_description_with_its_public_url(served):
    resp = await AsyncHTTPClient().fetch(
        served + "/api/openapi.json", headers={"Host": "evil.example"}, raise_error=False
    )
    assert resp.code == 200, resp.body
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Access-Control-Allow-Origin"] == "https://pages.example.org"
    assert "Content-Security-Policy" in resp.headers
    doc = json.loads(resp.body)
    validate(doc)
    assert doc["servers"] == [{"url": PUBLIC_URL + "/binder"}]
    assert "evil.example" not in resp.body.decode()
