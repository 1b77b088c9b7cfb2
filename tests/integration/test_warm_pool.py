"""Warm publications: right after ``panbinder serve`` starts, a registered publication's server is
already pre-started and paused; the first click takes it (thawed, with the click's mounts), it
is never handed out again, and the pool's hits and misses are counted.

A portal of its own (the shared one was started before any publication was registered), on a
facility folder of its own, started twice: to build (or find) the analysis image, then with the
publication registered.
"""

from __future__ import annotations

import json
import re
import textwrap
from urllib.parse import quote, unquote

import docker
import pytest
from tornado.httpclient import AsyncHTTPClient

from panbinder.launcher.reaper import escape_name
from tests.support import read_stream

from .conftest import catalogue_of, cli, write_scan

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

DOI = "10.5555/panbinder.warm"
CONFIG = """
    c.GitProvider.allow_local = True
    c.HubProcess.mem_limit = "1G"
    c.HubProcess.cpu_limit = 1.0
    c.ServerPool.refill_delay = 30
    c.ServerPool.sweep_interval = 3600
    c.ServerPool.max_servers = 2
    c.ServerPool.warm_timeout = 300  # a loaded machine starts a server slowly
    c.HubProcess.start_timeout = 300
    c.HubLauncher.launch_timeout = 300.0
    """


async def fetch(url: str, token: str = "") -> str:
    headers = {"Authorization": f"token {token}"} if token else {}
    return (await AsyncHTTPClient().fetch(url, headers=headers)).body.decode()


def server_container(portal, ready: dict):
    user = unquote(re.search(r"/user/([^/]+)/", ready["url"])[1])
    return docker.from_env().containers.get(f"{portal.container_prefix}-{escape_name(user)}")


def data_mounts(container) -> set[tuple[str, str, bool]]:
    """(host path, path in the server, writable) of the server's dataset mounts."""
    return {
        (m["Source"], m["Destination"], m["RW"])
        for m in container.attrs["Mounts"]
        if m["Destination"].startswith("/data/")
    }


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


async def test_a_registered_publication_is_warm_from_the_start(
    portal_factory, git_server, analysis_repo, tmp_path
):
    facility = tmp_path / "facility"
    write_scan(facility / "warm-scan", 4)
    config = textwrap.dedent(CONFIG) + f"c.Catalogue.storage_roots = [{str(facility)!r}]\n"
    repo = git_server.url(analysis_repo)
    with portal_factory("warm", config, start=False) as p:
        p.start(timeout=600)  # a first run builds the image (the suite's other portals may have)
        built = await read_stream(p.build_url(repo, "main", "build_only=true"))
        assert built.last["phase"] == "ready", built.log()
        image = built.last["imageName"]
        p.stop()
        cli(p, "datasets", "scan", str(facility))
        cat = catalogue_of(p, facility)
        with cat.session() as s:
            cat.get_dataset(s, "local:warm-scan").is_public = True
        cat.close()
        cli(
            p,
            "publications",
            "add",
            f"--doi={DOI}",
            f"--repo={repo}",
            "--ref=main",
            "--dataset=local:warm-scan",
        )
        p.start(timeout=600)

        # the portal listens once the first pre-started server is there: paused, no click yet
        health = json.loads(await fetch(f"{p.url}/health", p.service_token))
        assert health["prestarted"] == {image: 1}, health
        assert health["pool"]["paused"] == 1 and health["pool"]["hits"] == 0, health
        assert health["pool"]["server_memory_bytes"] < 400 * 2**20, health  # measured, not assumed
        prestarted = [c for c in docker.from_env().containers.list() if c.name.startswith(p.container_prefix)]
        assert [c.status for c in prestarted] == ["paused"]

        first = await read_stream(f"{p.url}/build/doi/{quote(DOI, safe='')}")
        assert first.last["phase"] == "ready", first.log()
        assert first.last["prestarted"] is True and "launching" not in first.phases
        taken = server_container(p, first.last)
        assert taken.id == prestarted[0].id and taken.status == "running"
        mounts = data_mounts(taken)
        assert str(facility / "warm-scan") in {source for source, _, writable in mounts if not writable}, (
            mounts
        )
        status = await fetch(f"{first.last['url']}api/status", first.last["token"])
        assert "started" in status

        second = await read_stream(f"{p.url}/build/doi/{quote(DOI, safe='')}")
        assert second.last["phase"] == "ready", second.log()
        assert second.last["prestarted"] is False  # the pool held one server: it went to the first
        assert second.last["url"] != first.last["url"]
        assert data_mounts(server_container(p, second.last)) == mounts  # a cold start, same mounts

        text = await fetch(f"{p.url}/metrics")
        assert metric(text, "panbinder_pool_hits_total") == 1
        assert metric(text, "panbinder_pool_misses_total") == 1
