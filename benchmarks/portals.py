"""Two portals, one catalogue (a throwaway PostgreSQL 15), one Hub: build deduplication across them.

1. M concurrent build-only requests for one new commit, alternating between the portals: how
   many builds ran (target 1), how many streams ended `ready` (target M), and the seconds until
   the last one did, against one portal alone given the same M requests for another new commit.
2. M concurrent launches of one new commit over both portals: builds, ready, seconds.

    python -m benchmarks.portals [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from benchmarks.load import remove_servers
from tests.portals import builds_of, portal_config, shared_hub_config
from tests.postgres import fresh_database, temporary_cluster
from tests.support import Portal, read_stream, running_git, running_portal

PREFIX = "panbinder-bench-portals"
LIMITS = """
c.ServerPool.size = 0
c.HubProcess.mem_limit = '512M'
c.HubProcess.start_timeout = 480
c.HubLauncher.launch_timeout = 480
c.HubLauncher.max_concurrent_launches = 16
"""
FILES = {"README.md": "two portals\n", "data/values.txt": "21\n"}


async def requests(portals: list[Portal], git, name: str, m: int, query: str) -> None:
    git.commit(name, {**FILES, "README.md": f"{name} {time.time()!r}\n"}, "new commit")
    urls = [p.build_url(git.url(name), "main", query) for p in portals]
    start = time.monotonic()
    streams = await asyncio.gather(
        *(read_stream(urls[i % len(urls)], timeout=900) for i in range(m)), return_exceptions=True
    )
    seconds = time.monotonic() - start
    ready = sum(1 for s in streams if not isinstance(s, BaseException) and s.last.get("phase") == "ready")
    builds = builds_of([p.state for p in portals], name)
    kind = "build-only requests" if query else "launches"
    print(
        f"{m} concurrent {kind} of one new commit over {len(portals)} portal(s): builds {builds} "
        f"(target 1), ready {ready} of {m}, last ready after {seconds:.1f} s"
    )


async def main(m: int) -> None:
    AsyncHTTPClient.configure(None, max_clients=m + 10)
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp, running_git(Path(tmp, "git")) as git:
        with temporary_cluster() as server, fresh_database(server) as url:
            a_config = portal_config(url, "pb-a-", LIMITS)
            with running_portal(Path(tmp, "a"), prefix=PREFIX, config=a_config) as a:
                b_config = portal_config(url, "pb-b-", LIMITS) + shared_hub_config(a)
                with running_portal(Path(tmp, "b"), prefix=PREFIX, config=b_config, hub_port=a.hub_port) as b:
                    stamp = int(time.time())
                    await requests([a], git, f"one-{stamp}", m, "build_only=true")
                    await requests([a, b], git, f"two-{stamp}", m, "build_only=true")
                    await requests([a, b], git, f"launch-{stamp}", m, "")
                    await remove_servers(a)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(min(args.requests, 60)))
