"""Bad input ends in a clear 4xx or a failed event, never a traceback; the service stays up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.support import free_port, read_stream

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]


async def get(url: str, accept: str = "application/json"):
    return await AsyncHTTPClient().fetch(url, headers={"Accept": accept}, raise_error=False)


async def test_unknown_provider_is_404_with_known_providers(portal):
    resp = await get(portal.url + "/build/nosuch/abc/main")
    assert resp.code == 404
    body = json.loads(resp.body)
    assert body["reason"] == "unknown_provider"
    assert "nosuch" in body["message"] and "git" in body["message"]


async def test_malformed_spec_is_400(portal):
    resp = await get(portal.url + "/build/git/only-one-segment")
    assert resp.code == 400
    assert "url-quoted repository URL" in json.loads(resp.body)["message"]


async def test_not_a_url_is_400(portal):
    resp = await get(portal.url + "/build/git/not%20a%20url/main")
    assert resp.code == 400
    body = json.loads(resp.body)
    assert body["reason"] == "bad_url" and "https://" in body["message"]


async def test_malformed_ref_is_400(portal):
    resp = await get(portal.url + "/build/git/https%3A%2F%2Fexample.org%2Frepo.git/bad..ref")
    assert resp.code == 400
    assert "not a valid git ref" in json.loads(resp.body)["message"]


async def test_html_error_page_has_no_traceback(portal):
    resp = await get(portal.url + "/v2/git/only-one-segment", accept="text/html")
    assert resp.code == 400
    text = resp.body.decode()
    assert "url-quoted repository URL" in text and "Traceback" not in text


async def test_unreachable_repository_fails_with_message(portal):
    url = f"git://127.0.0.1:{free_port()}/nothing-here"
    s = await read_stream(portal.build_url(url, "main"))
    assert s.phases[-1] == "failed"
    assert s.last["message"] == (
        f"Could not read the repository {url}; check the URL and that the repository is public."
    )
    assert "Connection refused" not in s.raw and "Failed to connect" not in s.raw


async def test_http_repository_url_is_refused_by_default(portal):
    resp = await get(portal.build_url("http://127.0.0.1:1/repo.git", "main"))
    assert resp.code == 403
    body = json.loads(resp.body)
    assert body["reason"] == "http_not_allowed" and "https://" in body["message"]


async def test_ambiguous_repository_url_is_400(portal):
    resp = await get(portal.build_url("https://github.com\\@127.0.0.1/repo.git", "main"))
    assert resp.code == 400
    assert json.loads(resp.body)["reason"] == "bad_url"


async def test_unknown_ref_fails_with_message(portal, git_server, analysis_repo):
    s = await read_stream(portal.build_url(git_server.url(analysis_repo), "no-such-branch"))
    assert s.phases[-1] == "failed"
    assert "'no-such-branch' was not found" in s.last["message"]
    assert "building" not in s.phases


async def test_uninstallable_requirement_fails_with_message_and_log(portal, git_server):
    git_server.commit("broken", {"requirements.txt": "panbinder-no-such-package-xyz==0.0.1\n"}, "broken")
    s = await read_stream(portal.build_url(git_server.url("broken"), "main"))
    assert s.phases[-1] == "failed"
    msg = s.last["message"]
    assert "requirements.txt" in msg and "panbinder-no-such-package-xyz" in msg
    assert any("panbinder-no-such-package-xyz" in line for line in s.last["log_tail"])
    assert "Traceback" not in s.raw


async def test_service_still_works_after_bad_input(portal, git_server, analysis_repo):
    await test_uninstallable_requirement_fails_with_message_and_log(portal, git_server)
    health = json.loads((await get(portal.url + "/health")).body)
    assert health["ok"] is True
    s = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"))
    assert s.last["phase"] == "ready", s.log()


def test_cli_build_prints_image_and_reports_errors(portal, git_server, analysis_repo):
    config = portal.state / "panbinder_config.py"
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "panbinder",
            "build",
            f"--config={config}",
            git_server.url(analysis_repo),
            "main",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1].startswith("127.0.0.1:5000/panbinder/v1-git-")
    bad = subprocess.run(
        [sys.executable, "-m", "panbinder", "build", f"--config={config}", "not a url", "main"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


async def test_failed_build_keeps_its_log(portal, git_server):
    git_server.commit("broken-log", {"requirements.txt": "panbinder-no-such-package-abc==0.0.1\n"}, "broken")
    s = await read_stream(portal.build_url(git_server.url("broken-log"), "main"))
    assert s.phases[-1] == "failed"
    kept = portal.state / "build-logs" / s.last["build_log"]
    text = kept.read_text()
    assert "panbinder-no-such-package-abc" in text
    assert text.rstrip().splitlines()[-1].startswith("[failed]")
