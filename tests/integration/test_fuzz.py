"""schemathesis drives every operation of the portal's OpenAPI description against the real portal.

Each generated request must get an answer below 500 that matches the description (status,
content type, body schema); every error is the JSON error body, never a traceback; an event
stream from /build ends with ``failed`` (no fuzzed request may build or launch), read within a
bounded time. /health is checked between batches and must stay green.

No request may make the portal connect anywhere but 127.0.0.1: the generated repository URLs
are either one of a few loopback URLs on a closed port or strings without ``:`` (no scheme, no
host: refused before any name is looked up), and the provider catch-all never sends ``git``
or ``doi``. Negative (schema-violating) values are generated only where they cannot reach git.

``PANBINDER_FUZZ_EXAMPLES`` sets the examples per operation (default 25, a few minutes in all);
a larger run: ``PANBINDER_FUZZ_EXAMPLES=400 make test PYTEST_ARGS=tests/integration/test_fuzz.py``.
"""

from __future__ import annotations

import copy
import json
import os
import time

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

from panbinder.testing import free_port
from panbinder.web.api import openapi

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
    git[0]["schema"] = {"anyOf": [{"enum": LOOPBACK_REPOS}, {"type": "string", "pattern": "^[^:]*$"}]}
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


def assert_clean_error(response) -> None:
    """A 4xx is the JSON error body, with no traceback in it."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"status", "reason", "message"}, body
        assert body["status"] == response.status_code
    assert "Traceback" not in response.text


@api.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_as_described(case, portal, watch):
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
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_build_refuses_or_fails_quickly(case, portal, watch):
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


def test_fuzzing_reached_the_pipeline_and_left_the_portal_healthy(portal):
    """The build operations did start streams (not only refusals), and /health is green."""
    assert STREAMS, "no fuzzed /build request got past the refusals"
    assert_healthy(portal.url)
