"""Every 4xx the portal's handlers answer, in-process: the status, the machine-readable reason,
a message that says what to do, and nothing started (no build, no launch).

The same answers through docker and a real Hub are in tests/integration/test_bad_input.py,
test_ssrf.py and test_publications.py; these run in a second (see tests/web_app.py).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from urllib.parse import quote

import pytest
import pytest_asyncio

from tests.web_app import CORS_ORIGIN, REPO, SERVICE_TOKEN, git_spec, web_portal

DOI = "10.5555/paper.open"
DOI_EMBARGO = "10.5555/paper.embargo"
DOI_NOWHERE = "10.5555/paper.nowhere"
DOI_OUTSIDE = "10.5555/paper.outside"
MEMBER_TOKEN = "alice-token"


# one portal for the module (refusals change nothing), its tests on the module's event loop
pytestmark = pytest.mark.asyncio(loop_scope="module")


@asynccontextmanager
async def catalogued_portal(tmp_path, config: dict | None = None):
    """A portal with an open, an embargoed and a location-less dataset, and two publications."""
    async with web_portal(tmp_path, config) as p:
        p.add_dataset("local:open")
        p.add_dataset("local:embargoed", public=False, groups=("proposal-42",))
        p.add_dataset("local:nowhere", location=None)
        p.add_dataset("local:outside", location="/etc")  # not under a storage root
        p.add_publication(DOI, "local:open")
        p.add_publication(DOI_EMBARGO, "local:embargoed")
        p.add_publication(DOI_NOWHERE, "local:nowhere")
        p.add_publication(DOI_OUTSIDE, "local:outside")
        p.hub_users[MEMBER_TOKEN] = {"name": "alice", "groups": ["proposal-42"]}
        yield p


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def portal(tmp_path_factory):
    async with catalogued_portal(tmp_path_factory.mktemp("web-errors")) as p:
        yield p


def body(resp) -> dict:
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers["Content-Type"]
    return json.loads(resp.body)


def assert_refused(portal, resp, status: int, reason: str, words: str = "") -> dict:
    """A JSON refusal with the portal's headers; nothing was built or launched."""
    assert resp.code == status, (resp.code, resp.body)
    data = body(resp)
    assert data["status"] == status and data["reason"] == reason, data
    assert words in data["message"], data
    assert "Traceback" not in data["message"]
    assert resp.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    assert "Content-Security-Policy" in resp.headers
    assert portal.builder.requests == [] and portal.launcher.requests == []
    return data


SPEC = git_spec()
# (path after /v2/ or /build/, status, reason, words of the message)
LAUNCH_REFUSALS = [
    (
        "nosuch/abc/main",
        404,
        "unknown_provider",
        "this service knows: dataverse, doi, figshare, gh, gist, git, gl, swh, template, zenodo.",
    ),
    ("git/only-one-segment", 400, "malformed_spec", "url-quoted repository URL"),
    ("git/not%20a%20url/main", 400, "bad_url", "https://"),
    ("git/" + quote("https://github.com\\@127.0.0.1/repo.git", safe="") + "/main", 400, "bad_url", ""),
    (f"git/{quote(REPO, safe='')}/bad..ref", 400, "malformed_ref", "not a valid git ref"),
    (f"git/{quote(REPO, safe='')}/-x", 400, "malformed_ref", "not a valid git ref"),
    (f"git/{quote('http://127.0.0.1/r.git', safe='')}/main", 403, "http_not_allowed", "use https://"),
    (f"git/{quote('file:///srv/repo', safe='')}/main", 403, "local_repo", "not allowed"),
    (f"git/{quote('git://127.0.0.2/r', safe='')}/main", 403, "blocked_address", "public repository URL"),
    ("doi/not-a-doi", 400, "bad_doi", "expected something like 10.5281/zenodo"),
    ("doi/10.5555/nobody", 404, "unknown_doi", "check the DOI"),
    (f"doi/{DOI_EMBARGO}", 403, "embargo", "sign in as a member of its proposal"),
    (f"doi/{DOI_NOWHERE}", 409, "no_location", "ask the facility to register where its files are"),
    (f"doi/{DOI_OUTSIDE}", 409, "dataset_missing", "tell the facility"),
    (f"gi%74/{SPEC}", 400, "malformed_spec", "Malformed path"),  # the provider's name must be plain
]


@pytest.mark.parametrize(("spec", "status", "reason", "words"), LAUNCH_REFUSALS)
@pytest.mark.parametrize("route", ["v2", "build"])
async def test_launch_refusals_answer_before_anything_starts(portal, route, spec, status, reason, words):
    resp = await portal.fetch(f"/{route}/{spec}")
    assert_refused(portal, resp, status, reason, words)


async def test_a_banned_repository_is_refused_by_url_and_by_doi(tmp_path):
    banned = {"SpecPolicy": {"banned_specs": [r"git://127\.0\.0\.1:9/"]}}
    async with web_portal(tmp_path, banned) as portal:
        portal.add_dataset("local:open")
        portal.add_publication(DOI, "local:open")
        for path in (f"/v2/git/{SPEC}", f"/build/git/{SPEC}", f"/v2/doi/{DOI}", f"/build/doi/{DOI}"):
            resp = await portal.fetch(path)
            assert_refused(portal, resp, 403, "banned_spec", "is not allowed on this service")


async def test_build_only_is_refused_unless_enabled(tmp_path):
    async with web_portal(tmp_path, {"ServeApp": {"enable_build_only": False}}) as portal:
        resp = await portal.fetch(f"/build/git/{SPEC}?build_only=true")
        assert_refused(portal, resp, 403, "build_only_disabled", "ServeApp.enable_build_only")


@pytest.mark.parametrize("name", ["labpath", "urlpath", "filepath"])
@pytest.mark.parametrize("value", ["/etc/passwd", "https://evil.example/", "a/../../hub/admin", "x\\y"])
async def test_launch_targets_outside_the_server_are_refused(portal, name, value):
    resp = await portal.fetch(f"/v2/git/{SPEC}?{name}={quote(value)}")
    assert_refused(portal, resp, 400, "bad_launch_target", f"'{name}' ")


async def test_embargo_page_offers_sign_in_and_a_member_gets_the_launch_page(portal):
    page = await portal.fetch(f"/v2/doi/{DOI_EMBARGO}?labpath=a.ipynb", accept="text/html")
    assert page.code == 403 and page.headers["Content-Type"].startswith("text/html")
    text = page.body.decode()
    assert '<p id="message">' in text and "Traceback" not in text
    assert 'id="login" href="/login?next=%2Fv2%2Fdoi%2F10.5555%2Fpaper.embargo%3Flabpath%3Da.ipynb"' in text
    member = await portal.fetch(f"/v2/doi/{DOI_EMBARGO}", accept="text/html", token=MEMBER_TOKEN)
    assert member.code == 200, member.body


async def test_a_signed_in_outsider_is_refused_by_name(portal):
    portal.hub_users["bob-token"] = {"name": "bob", "groups": ["proposal-7"]}
    resp = await portal.fetch(f"/build/doi/{DOI_EMBARGO}", token="bob-token")
    assert_refused(portal, resp, 403, "embargo", "user 'bob' is not in its proposal")


@pytest.mark.parametrize(
    "path", [f"/build/git/{SPEC}", f"/v2/doi/{DOI}", "/api/datasets", f"/api/publications/{DOI}", "/login"]
)
async def test_a_token_the_hub_does_not_know_is_refused(portal, path):
    resp = await portal.fetch(path, token="not-a-token")
    assert_refused(portal, resp, 403, "bad_token", "sign in again")


async def test_when_the_hub_does_not_answer_identity_fails_with_503(tmp_path):
    async with catalogued_portal(tmp_path) as portal:
        portal.stop_hub()
        resp = await portal.fetch(f"/build/git/{SPEC}", token=MEMBER_TOKEN)
        assert_refused(portal, resp, 503, "hub_auth", "try again later")


async def test_login_sends_an_anonymous_reader_to_the_hub_and_a_member_back(portal):
    target = f"/v2/doi/{DOI_EMBARGO}"
    anonymous = await portal.fetch(f"/login?next={quote(target, safe='')}")
    assert anonymous.code == 302 and "/hub/api/oauth2/authorize?" in anonymous.headers["Location"]
    member = await portal.fetch(f"/login?next={quote(target, safe='')}", token=MEMBER_TOKEN)
    assert member.code == 302 and member.headers["Location"] == target


CATALOGUE_REFUSALS = [
    ("/api/datasets/local:unknown", 404, "not_found", "No dataset 'local:unknown'"),
    ("/datasets/local:unknown", 404, "not_found", "No dataset 'local:unknown'"),
    ("/api/publications/10.5555/unknown", 404, "not_found", "No publication with DOI"),
    ("/publications/10.5555/unknown", 404, "not_found", "No publication with DOI"),
    ("/api/datasets?limit=abc", 400, "bad_argument", "'limit' must be a whole number"),
    ("/api/datasets?limit=-1", 400, "bad_argument", "'limit' must be a whole number"),
    ("/api/datasets?limit=%C2%B2", 400, "bad_argument", "'limit' must be a whole number"),
    ("/api/datasets?offset=1e3", 400, "bad_argument", "'offset' must be a whole number"),
    ("/api/publications?offset=0x10", 400, "bad_argument", "'offset' must be a whole number"),
    ("/api/preview/tree/local:open", 400, "no_file", "?file="),
    ("/api/preview/tree/local:unknown?file=scan.nxs", 404, "not_found", "No dataset"),
    ("/api/preview/tree/local:embargoed?file=scan.nxs", 403, "embargo", "under embargo"),
    ("/api/preview/tree/local:open?file=other.nxs", 404, "not_found", "is not a file of this dataset"),
    ("/api/preview/tree/local:open?file=../embargoed/scan.nxs", 404, "not_found", "not a file"),
    ("/api/preview/tree/local:nowhere?file=scan.nxs", 409, "no_location", "no storage location"),
    ("/api/preview/tree/local:outside?file=scan.nxs", 403, "path_refused", ""),
    ("/api/preview/thumbnail/local:open?file=scan.nxs", 400, "no_path", "&path="),
    ("/api/preview/thumbnail/local:open?file=scan.nxs&path=/x&size=big", 400, "bad_argument", "'size'"),
    ("/build-logs/no-such-build.log", 404, "log_not_found", "no longer kept"),
    ("/build-logs/..%2Fsecrets%2Fhub-service-token", 404, "bad_log_name", "No such build log"),
    ("/no/such/page", 404, "not_found", "see / for how to launch"),
    ("/v2/", 404, "not_found", ""),
]


@pytest.mark.parametrize(("path", "status", "reason", "words"), CATALOGUE_REFUSALS)
async def test_catalogue_preview_and_log_refusals(portal, path, status, reason, words):
    resp = await portal.fetch(path)
    assert_refused(portal, resp, status, reason, words)


@pytest.mark.parametrize(
    "path",
    ["/api/datasets/%ff", "/v2/git/%ff/main", "/build/doi/%ff", "/api/datasets?q=%ff", "/login?next=%C0%AF"],
)
async def test_bytes_that_are_not_utf8_are_a_plain_400(portal, path):
    assert_refused(portal, await portal.fetch(path), 400, "http", "Bad Request")


@pytest.mark.parametrize("path", ["/datasets/local:unknown", f"/v2/git/{quote(REPO, safe='')}/bad..ref"])
async def test_errors_for_browsers_are_pages_without_traceback(portal, path):
    resp = await portal.fetch(path, accept="text/html")
    assert resp.code in (400, 404) and resp.headers["Content-Type"].startswith("text/html")
    text = resp.body.decode()
    assert '<p id="message">' in text and "Traceback" not in text


async def test_a_huge_limit_is_capped_not_refused(portal):
    resp = await portal.fetch("/api/datasets?limit=" + "9" * 5000)
    assert resp.code == 200 and body(resp)["limit"] == 500


async def test_an_embargoed_dataset_shows_no_files_to_outsiders(portal):
    card = body(await portal.fetch("/api/datasets/local:embargoed"))
    assert card["accessible"] is False and card["files"] is None and "embargo" in card
    member = body(await portal.fetch("/api/datasets/local:embargoed", token=MEMBER_TOKEN))
    assert member["accessible"] is True and [f["path"] for f in member["files"]] == ["scan.nxs"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [f"/build/git/{SPEC}", "/api/datasets", "/api/publications/x", "/health"])
async def test_the_portal_takes_no_request_bodies(portal, method, path):
    """No route accepts a body, JSON or not: every write method gets 405 with the error body."""
    payload = b'{"build_only": true, "repo": ' if method != "DELETE" else None  # not even valid JSON
    resp = await portal.fetch(
        path,
        method=method,
        body=payload,
        headers={"Content-Type": "application/json"},
        allow_nonstandard_methods=True,
    )
    assert_refused(portal, resp, 405, "http", "Method Not Allowed")


async def exchange(portal, data: bytes) -> bytes:
    """Send raw bytes to the portal's port; what it answers before closing."""
    host, port = portal.url.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_oversized_headers_get_431_from_the_portal(portal):
    limit = portal.serve.max_header_size
    request = f"GET /api/datasets HTTP/1.1\r\nHost: x\r\nCookie: {'a' * limit}\r\n\r\n".encode()
    answer = await exchange(portal, request)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert b"fewer or smaller cookies" in answer


async def test_oversized_body_is_refused_before_the_handler(portal):
    size = portal.serve.max_body_size + 1
    head = f"POST /build/git/{SPEC} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
    answer = await exchange(portal, head)  # refused on its Content-Length, before a byte of it
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert portal.builder.requests == []


async def test_health_names_prestarted_images_only_to_operators(portal):
    anonymous = body(await portal.fetch("/health"))
    assert "prestarted" not in anonymous and anonymous["prestarted_servers"] == 0
    member = body(await portal.fetch("/health", token=MEMBER_TOKEN))
    assert "prestarted" not in member
    portal.hub_users["admin-token"] = {"name": "operator", "admin": True}
    for token in (SERVICE_TOKEN, "admin-token"):
        assert "prestarted" in body(await portal.fetch("/health", token=token))
