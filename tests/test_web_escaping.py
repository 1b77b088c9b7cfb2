"""Script injection, open redirects and Host-header links, attacked against the real portal app.

The portal's application serves on 127.0.0.1 (tests/web_app.py) with a real SQLite catalogue
that holds a dataset and a publication with hostile identifiers; the Hub's user API is a
stand-in that knows one signed-in reader's token. Browser checks of the same payloads are in
tests/integration/test_xss.py.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from tornado.httpclient import AsyncHTTPClient

from panbinder.data_mounts.models import Publication
from panbinder.web.handlers.badge import badge_svg
from panbinder.web.urls import doi_links, launch_targets, local_next, path_segment, target_problem
from tests.web_app import PUBLIC_URL, web_portal

SCRIPT = "</script><script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
HOSTILE_PID = f"pid{SCRIPT}{IMG}'onmouseover=alert(3) x"
HOSTILE_TITLE = f"title{SCRIPT}{IMG}"
HOSTILE_DOI = "10.5555/x\"onmouseover=alert(4)'><img/src=x/onerror=alert(5)>)](javascript:alert(6))"
PAYLOAD_MARKERS = ("<script>alert", "<img src=x", "<img/src=x", 'x"onmouseover')
REQUIRED_CSP = (
    "default-src 'self'",
    "script-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "frame-ancestors 'self'",
)

# ---------------------------------------------------------------- pure checks


@pytest.mark.parametrize(
    "value",
    ["figure.ipynb", "figures/fig 3.ipynb", "lab/tree/a.ipynb?kernel=x", "voila/render/x.ipynb", SCRIPT, IMG],
)
def test_relative_launch_targets_pass(value):
    assert target_problem(value) is None


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("javascript:alert(1)", "full URL"),
        ("JaVaScRiPt:alert(1)", "full URL"),
        ("https://evil.example/x", "full URL"),
        ("//evil.example/x", "starts with '/'"),
        ("/lab/tree/x.ipynb", "without the leading '/'"),
        ("lab//evil.example", "'//'"),
        ("lab\\..\\x", "backslash"),
        ("%5Cevil.example", "backslash"),
        ("a/../../hub/admin", "'..'"),
        ("a/%2e%2e/%2E%2E/hub", "'..'"),
        ("a/%252e%252e/hub", "'..'"),
        ("%2F%2Fevil.example", "starts with '/'"),
        ("lab\t/x", "control character"),
        ("lab/x\n", "control character"),
        ("lab/%0d%0aSet-Cookie:x", "control character"),
        ("x" * 2000, "longer than"),
    ],
)
def test_launch_targets_leaving_the_server_are_refused(value, hint):
    assert hint in target_problem(value)
    for name in ("urlpath", "labpath", "filepath"):
        with pytest.raises(Exception) as info:
            launch_targets({name: value})
        assert info.value.status_code == 400 and info.value.message.startswith(f"'{name}' ")


OFFSITE = [
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "/%5Cevil.example/",
    "/%5cevil.example/",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "https://evil.example/",
    "https:/evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "/\t/evil.example",
    "/\n/evil.example",
    "\t//evil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/..//evil.example",
    "/../evil",
    "evil.example",
    "",
]


@pytest.mark.parametrize("target", OFFSITE)
@pytest.mark.parametrize("base_url", ["/", "/binder/"])
def test_login_next_never_leaves_the_portal(target, base_url):
    assert local_next(target, base_url) == base_url


@pytest.mark.parametrize(
    ("target", "base_url", "expected"),
    [
        ("/v2/doi/10.5555/x?labpath=a.ipynb", "/", "/v2/doi/10.5555/x?labpath=a.ipynb"),
        ("/datasets/local%3Aopen", "/", "/datasets/local%3Aopen"),
        ("/binder/v2/doi/10.5555/x", "/binder/", "/binder/v2/doi/10.5555/x"),
        ("/binder", "/binder/", "/binder"),
        ("/other/page", "/binder/", "/binder/"),
        ("/binderx/page", "/binder/", "/binder/"),
    ],
)
def test_login_next_keeps_paths_under_the_base_url(target, base_url, expected):
    assert local_next(target, base_url) == expected


def test_path_segment_encodes_markup_and_dot_segments():
    assert path_segment("10.5555/abc") == "10.5555/abc"
    encoded = path_segment(HOSTILE_DOI)
    assert not set(encoded) & set("\"'<>()[] ?#\\")
    assert path_segment("a/../../admin") == "a%2F..%2F..%2Fadmin"  # one segment: no '..' to resolve
    assert path_segment("a//b") == "a%2F%2Fb"
    assert path_segment("%2e%2e") == "%252e%252e"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(text: str) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(text)
    return parser.tags


def test_badge_snippets_keep_a_hostile_doi_inside_the_link():
    links = doi_links(f"{PUBLIC_URL}/", HOSTILE_DOI)
    tags = tags_of(links["badge_html"])
    assert [(t, sorted(a)) for t, a in tags] == [("a", ["href"]), ("img", ["alt", "src"])]
    assert tags[0][1]["href"] == links["launch_url"] and tags[1][1]["src"] == links["badge_url"]
    md = re.fullmatch(r"\[!\[launch\]\(([^()\s]+)\)\]\(([^()\s]+)\)", links["badge_markdown"])
    assert md, links["badge_markdown"]
    assert md.group(1) == links["badge_url"] and md.group(2) == links["launch_url"]
    assert links["launch_url"].startswith(f"{PUBLIC_URL}/v2/doi/10.5555/x%22onmouseover")


def test_svg_badge_text_is_escaped():
    root = ET.fromstring(badge_svg(IMG, SCRIPT, '"/><script>alert(1)</script>'))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == [IMG, SCRIPT]
    assert not [e for e in root.iter() if e.tag.endswith("script")]


# ---------------------------------------------------------------- the portal app


ALICE = "alice-token"  # a signed-in reader's Hub token


def add_hostile_records(cat) -> None:
    record = {
        "pid": HOSTILE_PID,
        "title": HOSTILE_TITLE,
        "isPublic": True,
        "creationDate": "2024-03-01T10:00:00Z",
        "techniques": [],
        "files": [{"path": f"scan{IMG}.nxs", "size": 3}],
    }
    cat.import_datasets([record])
    with cat.session() as session:
        session.add(
            Publication(
                doi=HOSTILE_DOI,
                title=HOSTILE_TITLE,
                authors=[IMG],
                repo_url="git://127.0.0.1:9/paper",
                ref="main",
                resolved_sha="a" * 40,
                datasets=[cat.get_dataset(session, HOSTILE_PID)],
            )
        )


@pytest.fixture
async def portal(tmp_path):
    """The portal app on loopback with hostile catalogue records; requests are anonymous unless
    they carry ``ALICE``'s token."""
    async with web_portal(tmp_path) as p:
        add_hostile_records(p.catalogue)
        p.hub_users[ALICE] = {"name": "alice", "groups": []}
        yield p


async def get(url: str, *, html_page: bool = True, **headers: str):
    accept = {"Accept": "text/html"} if html_page else {}
    return await AsyncHTTPClient().fetch(
        url, headers={**accept, **headers}, raise_error=False, follow_redirects=False
    )


def assert_safe_page(resp) -> str:
    """The response carries the CSP; its HTML has no inline script and no payload as markup."""
    csp = resp.headers.get("Content-Security-Policy", "")
    for directive in REQUIRED_CSP:
        assert directive in csp, (resp.effective_url, csp)
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"
    assert resp.headers.get("Referrer-Policy")
    text = resp.body.decode()
    if "html" in resp.headers.get("Content-Type", ""):
        for tag, attrs in tags_of(text):
            assert tag != "script" or attrs.get("src", "").startswith("/static/"), (tag, attrs)
            assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
            assert tag != "img" or attrs.get("src") != "x", attrs
            for name in ("href", "src"):
                assert not attrs.get(name, "").lower().startswith("javascript:"), attrs
        for marker in PAYLOAD_MARKERS:
            assert marker not in text, marker
    return text


def git_launch(query: str) -> str:
    return f"/v2/git/{quote('git://127.0.0.1:9/repo', safe='')}/main?{query}"


async def test_launch_page_puts_targets_in_escaped_data_attributes(portal):
    resp = await get(portal.url + git_launch(f"labpath={quote(SCRIPT + IMG)}&urlpath={quote(IMG)}"))
    assert resp.code == 200
    text = assert_safe_page(resp)
    launch = next(attrs for tag, attrs in tags_of(text) if attrs.get("id") == "launch")
    assert launch["data-labpath"] == SCRIPT + IMG and launch["data-urlpath"] == IMG
    assert launch["data-stream"].startswith("/build/git/git%3A%2F%2F127.0.0.1%3A9%2Frepo/main?")


@pytest.mark.parametrize("name", ["labpath", "urlpath", "filepath"])
@pytest.mark.parametrize("value", ["javascript:alert(1)", "//evil.example/", "/\\evil.example", "../../hub"])
async def test_launch_page_refuses_targets_outside_the_server(portal, name, value):
    resp = await get(portal.url + git_launch(f"{name}={quote(value)}"))
    assert resp.code == 400
    text = assert_safe_page(resp)
    assert f'<p id="message">&#x27;{name}&#x27; ' in text
    api = await get(portal.url + git_launch(f"{name}={quote(value)}"), html_page=False)
    assert api.code == 400 and json.loads(api.body)["reason"] == "bad_launch_target"


async def test_dataset_page_with_a_hostile_pid(portal):
    resp = await get(f"{portal.url}/datasets/{path_segment(HOSTILE_PID)}")
    assert resp.code == 200
    text = assert_safe_page(resp)
    preview = next(attrs for tag, attrs in tags_of(text) if attrs.get("id") == "preview")
    assert preview["data-pid"] == HOSTILE_PID
    hrefs = [a["href"] for t, a in tags_of(text) if t == "a"]
    assert f"/publications/{path_segment(HOSTILE_DOI)}" in hrefs
    assert f"/v2/doi/{path_segment(HOSTILE_DOI)}" in hrefs


async def test_publication_page_and_api_with_a_hostile_doi(portal):
    resp = await get(f"{portal.url}/publications/{path_segment(HOSTILE_DOI)}", Host="evil.example")
    assert resp.code == 200
    text = assert_safe_page(resp)
    hrefs = [a["href"] for t, a in tags_of(text) if t == "a"]
    assert f"/datasets/{path_segment(HOSTILE_PID)}" in hrefs
    assert f"{PUBLIC_URL}/v2/doi/{path_segment(HOSTILE_DOI)}" in hrefs
    assert "evil.example" not in text
    # the snippets are shown as text: unescaped, they are the safe snippets again
    snippets = re.findall(r'<pre class="copy">(.*?)</pre>', text)
    expected = doi_links(f"{PUBLIC_URL}/", HOSTILE_DOI)
    assert [html.unescape(s) for s in snippets] == [expected["badge_markdown"], expected["badge_html"]]
    api = await get(f"{portal.url}/api/publications/{path_segment(HOSTILE_DOI)}", html_page=False)
    pub = json.loads(api.body)
    assert {k: pub[k] for k in expected} == expected
    assert_safe_page(api)
    assert api.headers["Access-Control-Allow-Origin"] == "https://pages.example.org"


async def test_host_header_does_not_change_absolute_links(portal):
    listing = await get(f"{portal.url}/api/publications", html_page=False, Host="evil.example:666")
    pubs = json.loads(listing.body)["publications"]
    assert pubs and all(p["launch_url"].startswith(f"{PUBLIC_URL}/v2/doi/") for p in pubs)
    assert "evil.example" not in listing.body.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/static/style.css",
        "/static/launch.js",
        "/badge.svg",
        f"/badge/doi/{path_segment(HOSTILE_DOI)}.svg",
        "/api/datasets",
        "/versions",
        f"/no/such/page/{quote(SCRIPT + IMG)}",
        f"/datasets/{quote(SCRIPT + IMG)}",
        f"/v2/doi/{quote(SCRIPT)}",
        f"/v2/git/{quote(IMG)}/main",
    ],
)
async def test_every_response_carries_the_security_headers(portal, path):
    resp = await get(portal.url + path)
    assert resp.code in (200, 400, 404), (path, resp.code)
    assert_safe_page(resp)


async def test_error_messages_echo_request_values_escaped(portal):
    resp = await get(f"{portal.url}/datasets/{quote(SCRIPT + IMG)}")
    assert resp.code == 404
    text = assert_safe_page(resp)
    assert html.escape(SCRIPT) in text


@pytest.mark.parametrize("target", OFFSITE[:-1])
async def test_login_sends_a_signed_in_user_home_instead_of_off_site(portal, target):
    resp = await get(f"{portal.url}/login?next={quote(target, safe='')}", Authorization=f"token {ALICE}")
    assert resp.code == 302 and resp.headers["Location"] == "/"
    assert_safe_page(resp)


async def test_login_returns_to_a_local_path(portal):
    target = "/v2/doi/10.5555/x?labpath=a.ipynb"
    resp = await get(f"{portal.url}/login?next={quote(target, safe='')}", Authorization=f"token {ALICE}")
    assert resp.code == 302 and resp.headers["Location"] == target


@pytest.mark.parametrize(
    ("target", "expected"), [("//evil.example/", "/"), ("/\\evil.example/", "/"), ("/v2/doi/10.5555/x", None)]
)
async def test_login_sends_an_anonymous_user_to_the_hub_with_a_local_next(portal, target, expected):
    resp = await get(f"{portal.url}/login?next={quote(target, safe='')}")
    assert resp.code == 302
    location = resp.headers["Location"]
    assert location.startswith(f"{portal.hub_url}/hub/api/oauth2/authorize?")
    state = parse_qs(urlsplit(location).query)["state"][0]
    assert portal.identity.auth.get_next_url(state) == (expected or target)
