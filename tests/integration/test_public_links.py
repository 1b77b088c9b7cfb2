"""Absolute links in the build stream come from the configured public URL, not the Host header.

A client chooses its ``Host`` header; if the portal built ``binder_launch_host`` or
``build_log_url`` from it, a crafted request (or a poisoned cache in front of the portal) would
hand other users links to another site. The test portal's public URL is its default,
``http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import pytest

from tests.support import read_stream

from .conftest import ANALYSIS_FILES

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

EVIL = {"Host": "evil.example:666", "X-Forwarded-Host": "evil.example"}


async def test_ready_event_links_ignore_the_host_header(portal, git_server, analysis_repo):
    s = await read_stream(portal.build_url(git_server.url(analysis_repo), "main"), headers=EVIL)
    assert s.last["phase"] == "ready", s.log()
    assert s.last["binder_launch_host"] == f"{portal.url}/"
    assert "evil.example" not in s.raw


async def test_build_log_url_ignores_the_host_header(portal, git_server):
    files = {**ANALYSIS_FILES, "postBuild": "#!/bin/bash\necho failing on purpose\nexit 3\n"}
    git_server.commit("failing-postbuild", files, "fails")
    url = portal.build_url(git_server.url("failing-postbuild"), "main", "build_only=true")
    s = await read_stream(url, headers=EVIL)
    assert s.last["phase"] == "failed", s.log()
    assert s.last["build_log_url"] == f"{portal.url}/build-logs/{s.last['build_log']}"
    assert "evil.example" not in s.raw
