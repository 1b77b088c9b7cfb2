"""schemathesis drives every operation of the portal's OpenAPI description against the real portal.

Each generated request must get an answer below 500 that matches the description (status,
content type, body schema); every error is the JSON error body, never a traceback; an event
stream from /build ends with ``failed`` (no fuzzed request may build or launch), read within a
bounded time. /health is checked between batches and must stay green.

No request may make the portal connect anywhere but 127.0.0.1: the generated repository URLs
are either one of a few loopback URLs on a closed port or strings without ``:`` or ``%`` (no
scheme, no host: refused before any name is looked up), and the provider catch-all never sends ``git``
or ``doi``. Negative (schema-violating) values are generated only where they cannot reach git.

``PANBINDER_FUZZ_EXAMPLES`` sets the examples per operation (default 25, a few minutes in all);
a larger run: ``PANBINDER_FUZZ_EXAMPLES=400 make test PYTEST_ARGS=tests/integration/test_fuzz.py``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import time
from urllib.parse import quote

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from panbinder.web.api import openapi
from tests.support import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EXAMPLES = int(os.environ.get("PANBINDER_FUZZ_EXAMPLES", "25"))
STREAM_SECONDS = 60.0  # a fuzzed /build stream must have ended by then
HEALTH_EVERY = 20  # requests between two /health checks
CLOSED_PORT = free_port()  # nothing listens there: git fails at once, without leaving loopback
LOOPBACK_REPOS = [
    f"git://127.0.0.1:{CLOSED_PORT}/nothing-here",
    f"https://127.0.0.1:{CLOSED_PORT}/group/repo.git",
    f"ssh://git@127.0.0.1:{CLOSED_PORT}/group/repo.git",
    "git@127.0.0.1:group/repo.git",  # scp-like: ssh to 127.0.0.1:22
]
PIDS = ["local:open-scan", "local:embargoed-scan", "local:released-scan"]
DOIS = ["10.5555/panbinder.open", "10.5555/panbinder.embargo"]
STREAMS: list[list[dict]] = []  # the event streams the fuzzed /build requests got
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def fuzz_description() -> dict:
    """The served description, with path parameters narrowed so that fuzzing stays on loopback
    and reaches the catalogue's real entries now and then."""
    doc = copy.deepcopy(openapi.description())
    git = doc["paths"]["/build/git/{repository}/{ref}"]["get"]["parameters"]
    # schemathesis puts path values in the URL as they are ('%' and '/' included): send the
    # loopback URLs quoted, and no '%' in the others, whose unquoting could make a ':'
    loopback = [quote(url, safe="") for url in LOOPBACK_REPOS]
    git[0]["schema"] = {"anyOf": [{"enum": loopback}, {"type": "string", "pattern": "^[^:%]*$"}]}
    params = doc["components"]["parameters"]
    params["pid"]["schema"] = {"anyOf": [{"enum": PIDS}, {"type": "string"}]}
    params["doi"]["schema"] = {"anyOf": [{"enum": DOIS}, {"type": "string"}]}
    params["file"]["schema"] = {"anyOf": [{"enum": ["scan.nxs"]}, {"type": "string"}]}
    return doc


def _build_doi_uses_catalogue_only(doc: dict) -> dict:
    """/build/doi gets no registered DOI: a fuzzed request must not launch a real server."""
    op = doc["paths"]["/build/doi/{doi}"]["get"]
    doi = {"name": "doi", "in": "path", "required": True, "schema": {"type": "string"}}
    op["parameters"] = [doi, *op["parameters"][1:]]
    return doc


DESCRIPTION = _build_doi_uses_catalogue_only(fuzz_description())
BUILD_PATHS = [p for p in DESCRIPTION["paths"] if p.startswith("/build/")]

api = schemathesis.openapi.from_dict(copy.deepcopy(DESCRIPTION)).exclude(path=BUILD_PATHS)
builds = schemathesis.openapi.from_dict(copy.deepcopy(DESCRIPTION)).include(path=BUILD_PATHS)
builds.config.generation.update(modes=[GenerationMode.POSITIVE])


@builds.hook
def filter_path_parameters(context, path_parameters):
    """The catch-all route never names a real provider (those have their own operations)."""
    if path_parameters is None or context.operation.path != "/build/{provider}/{spec}":
        return True
    return path_parameters.get("provider") not in ("git", "doi")


class Watch:
    """Counts requests and checks /health every HEALTH_EVERY of them."""

    def __init__(self, url: str) -> None:
        self.url, self.count = url, 0

    def tick(self) -> None:
        self.count += 1
        if self.count % HEALTH_EVERY == 0:
            assert_healthy(self.url)


def assert_healthy(url: str) -> None:
    resp = requests.get(f"{url}/health", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["ok"] is True, resp.text


@pytest.fixture(scope="module")
def watch(portal, publications):
    assert_healthy(portal.url)
    yield Watch(portal.url)
    assert_healthy(portal.url)


CRASH_MARKERS = ("Uncaught exception", "pipeline crashed", "Traceback (most recent call last)")


def assert_no_crash(logged: str) -> None:
    for marker in CRASH_MARKERS:
        at = logged.find(marker)
        assert at < 0, logged[max(at - 1500, 0) : at + 4000]


@pytest.fixture(scope="module")
def portal_log(portal):
    """What the portal logs while this module runs: a crash shows there even when it is hidden."""
    path = portal.state / "portal.log"
    start = path.stat().st_size if path.exists() else 0

    def new_lines() -> str:
        with path.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    return new_lines


def assert_clean_error(response) -> None:
    """A 4xx is the JSON error body, with no traceback in it."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"status", "reason", "message"}, body
        assert body["status"] == response.status_code
    assert "Traceback" not in response.text


@api.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_answers_as_described(case, portal, watch, portal_log):
    response = case.call(base_url=portal.url, timeout=30)
    watch.tick()
    assert_clean_error(response)
    case.validate_response(response, checks=CHECKS)


def read_events(response: requests.Response) -> list[dict]:
    """The events of a stream, read for at most STREAM_SECONDS."""
    deadline = time.monotonic() + STREAM_SECONDS
    events: list[dict] = []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            events.append(json.loads(line[6:]))
        assert time.monotonic() < deadline, f"stream open after {STREAM_SECONDS} s: {events[-3:]}"
    return events


@builds.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_build_refuses_or_fails_quickly(case, portal, watch, portal_log):
    kwargs = case.as_transport_kwargs(base_url=portal.url)
    with requests.request(**kwargs, stream=True, timeout=30) as response:
        watch.tick()
        if response.status_code != 200:
            assert_clean_error(response)
            case.validate_response(response, checks=CHECKS)
            return
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = read_events(response)
    STREAMS.append(events)
    assert events, "an event stream without events"
    assert events[-1]["phase"] == "failed", events[-3:]
    assert events[-1].get("message"), events[-3:]
    assert "Traceback" not in json.dumps(events)


def test_fuzzing_reached_the_pipeline_and_left_the_portal_healthy(portal, portal_log):
    """The build operations did start streams (not only refusals), nothing crashed on the way
    (not even behind a 4xx or a failed event), /health is green, and the portal serves the
    description that was fuzzed, with its own URL as the server."""
    served = requests.get(f"{portal.url}/api/openapi.json", timeout=10).json()
    assert served == openapi.description(portal.url + "/")
    assert_no_crash(portal_log())
    resolving = [e for events in STREAMS for e in events if "127.0.0.1" in e.get("message", "")]
    assert resolving, "no fuzzed /build request got past the refusals to a loopback repository"
    assert_healthy(portal.url)


# ---------------------------------------------------------------- raw malformed requests

CLOSE = b"Host: 127.0.0.1\r\nConnection: close\r\n"
MALFORMED = {
    "bad request line": b"GARBAGE\r\n\r\n",
    "request line without version": b"GET /health\r\n\r\n",
    "unknown http version": b"GET /health HTTP/7.3\r\n" + CLOSE + b"\r\n",
    "invalid method": b"FROB /api/datasets HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "method with control bytes": b"G\x01T /health HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "bad percent-encoding in path": b"GET /api/datasets/%zz%G1% HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "invalid utf-8 percent-encoded in path": b"GET /api/datasets/%ff%fe%C3 HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "invalid utf-8 raw in path": b"GET /api/publications/\xff\xfe\xc3 HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "invalid utf-8 in build spec": b"GET /build/git/%ff%c3/%fe HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "invalid utf-8 in provider": b"GET /build/%ff/x HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "invalid utf-8 in query": b"GET /api/datasets?q=%ff%fe&limit=%c3 HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "nul byte in path": b"GET /api/datasets/a%00b HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "nul byte in query": b"GET /api/datasets?q=a%00b&facility=%00 HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "nul byte in preview file": b"GET /api/preview/tree/local:open-scan?file=scan%00.nxs HTTP/1.1\r\n"
    + CLOSE
    + b"\r\n",
    "raw nul byte in request line": b"GET /api/datasets/a\x00b HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "nul byte in build ref": b"GET /build/git/git%3A%2F%2F127.0.0.1%3A9%2Fx/ma%00in HTTP/1.1\r\n"
    + CLOSE
    + b"\r\n",
    "nul byte in doi": b"GET /build/doi/10.5555%2F%00 HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "huge query string": b"GET /api/publications?q=" + b"%41" * 20000 + b" HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "many query arguments": b"GET /api/datasets?"
    + b"&".join(b"x%d=1" % i for i in range(3000))
    + b" HTTP/1.1\r\n"
    + CLOSE
    + b"\r\n",
    "odd query string": b"GET /api/datasets?&&=&limit&limit=1&limit=2&offset=-1&%%%&q=%2 HTTP/1.1\r\n"
    + CLOSE
    + b"\r\n",
    "limit beyond any integer": b"GET /api/datasets?limit="
    + b"9" * 5000
    + b" HTTP/1.1\r\n"
    + CLOSE
    + b"\r\n",
    "limit in superscript digits": b"GET /api/publications?limit=%C2%B2&offset=%D9%A1 HTTP/1.1\r\n"
    + CLOSE
    + b"\r\n",
    "thumbnail size beyond any integer": b"GET /api/preview/thumbnail/local:open-scan?file=scan.nxs&path=/x&size="
    + b"9" * 5000
    + b" HTTP/1.1\r\n"
    + CLOSE
    + b"\r\n",
    "absolute uri": b"GET http://evil.invalid/health HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "asterisk uri": b"GET * HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "dot segments": b"GET /api/../../etc/passwd HTTP/1.1\r\n" + CLOSE + b"\r\n",
    "header without colon": b"GET /health HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
    "header with invalid utf-8": b"GET /versions HTTP/1.1\r\nX-Thing: \xff\xfe\r\n" + CLOSE + b"\r\n",
    "conflicting content-length": b"POST /api/datasets HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n"
    + CLOSE
    + b"\r\nhello",
    "negative content-length": b"POST /api/datasets HTTP/1.1\r\nContent-Length: -5\r\n" + CLOSE + b"\r\n",
    "content-length not a number": b"GET /health HTTP/1.1\r\nContent-Length: ten\r\n" + CLOSE + b"\r\n",
    "content-length and chunked": b"POST /api/datasets HTTP/1.1\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n" + CLOSE + b"\r\n4\r\nabcd\r\n0\r\n\r\n",
    "chunked garbage": b"POST /api/datasets HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
    + CLOSE
    + b"\r\nzz\r\n\r\n",
    "chunk size overflow": b"POST /build/git/x/y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
    + CLOSE
    + b"\r\nffffffffffffffffffff\r\nx\r\n",
    "unknown transfer-encoding": b"POST /api/datasets HTTP/1.1\r\nTransfer-Encoding: gzip, zork\r\n"
    + CLOSE
    + b"\r\n",
    "get with a body": b"GET /api/datasets?limit=1 HTTP/1.1\r\nContent-Length: 11\r\n"
    b"Content-Type: application/json\r\n" + CLOSE + b"\r\n{not json!}",
    "form body with invalid utf-8": b"POST /api/publications HTTP/1.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n" + CLOSE + b"\r\nq=%ff\xff",
    "multipart without boundary": b"POST /versions HTTP/1.1\r\nContent-Type: multipart/form-data\r\n"
    b"Content-Length: 3\r\n" + CLOSE + b"\r\nabc",
    "x-forwarded-for garbage": b"GET /health HTTP/1.1\r\nX-Forwarded-For: \x01, ::zz, 999.1.1.1\r\n"
    b"X-Forwarded-Proto: javascript\r\nX-Real-Ip: %00\r\n" + CLOSE + b"\r\n",
    "accept garbage": b"GET /api/datasets/nope HTTP/1.1\r\nAccept: text/html\x01;;q=x\r\n" + CLOSE + b"\r\n",
    "cookie garbage": b'GET /versions HTTP/1.1\r\nCookie: a="\xff; ;;=; _xsrf=\x00\r\n' + CLOSE + b"\r\n",
    "authorization garbage": b"GET /health HTTP/1.1\r\nAuthorization: token \xff\x00\r\n" + CLOSE + b"\r\n",
    "pipelined after a bad request": b"GET /nope%ff HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n"
    + CLOSE
    + b"\r\n",
}


def raw_exchange(port: int, data: bytes, seconds: float = 10.0) -> bytes:
    """Send ``data`` to the portal and read until it closes (or ``seconds`` pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        try:
            sock.sendall(data)
        except OSError:  # the portal may close before reading everything: an answer is still due
            pass
        chunks: list[bytes] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    """The status codes of the responses in ``answer`` (several when pipelined)."""
    return [int(m) for m in re.findall(rb"(?:^|\r\n\r\n|\n)HTTP/1\.[01] (\d{3}) ", answer)]


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_gets_a_4xx_or_a_clean_close(portal, publications, portal_log, name):
    answer = raw_exchange(portal.port, MALFORMED[name])
    codes = statuses(answer)
    assert answer == b"" or codes, answer[:300]  # a response, or nothing at all (a clean close)
    assert all(code < 500 for code in codes), answer[:800]
    assert b"Traceback" not in answer and b'File "' not in answer, answer[:800]


def test_portal_healthy_after_malformed_requests(portal, portal_log):
    for data in MALFORMED.values():
        raw_exchange(portal.port, data, seconds=3)
    assert_healthy(portal.url)
    assert_no_crash(portal_log())
    assert requests.get(f"{portal.url}/versions", timeout=10).status_code == 200
