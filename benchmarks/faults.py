"""Fault suite summary: each fault injected once with requests in flight, in one bounded run on
127.0.0.1. Prints, per fault and in all: requests, how they ended, requests lost, orphans left
(target: 0 lost, 0 orphans).

    python -m benchmarks.faults [--only portal|build]

Faults: the portal killed (SIGKILL) mid-build and mid-launch, then started again; the Hub killed
alone while servers run; the run engine (dockerd) restarted while servers run; the build engine
killed mid-build; the registry down. What a fault hits is the benchmark's own: its portals
(own state folders and ports), a run engine and a build engine of its own (own sockets, data
roots and bridges) and its own registry; the machine's dockerd, build engine and shared registry
are never touched.

A reader is one GET of a /build stream. A stream cut by a killed portal is read again, as an
EventSource reconnects, until it ends ``ready`` or ``failed`` or the reader's deadline passes. A
request is lost when it never ends either way, when it ends ``ready`` with a server that does
not answer its token, or when a server that was running before a fault neither answers after it
nor is reported gone by the Hub. Orphans are counted once the portal had time to clean up (its
reaper's grace period): temporary Hub users without a running server, containers of no running
server, processes of dead portal runs, build steps of stopped builds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from panbinder.builder.buildpacks.settings import BASE_IMAGE
from tests.support import (
    OwnRegistry,
    Portal,
    container_names,
    hub_users,
    kill_hub,
    leftover_processes,
    notebook,
    own_run_engine,
    portal_health,
    processes_running,
    quick_recovery_config,
    read_stream,
    remove_containers,
    restart_engine,
    running_git,
    server_running,
    unmount_under,
    wait_status,
)

READER_TIMEOUT = 300.0  # seconds one reader may take, retries included
SETTLE = 60.0  # seconds the portal gets to clean up after a fault before orphans are counted
FILES = {
    "requirements.txt": "tabulate==0.9.0\n",
    "figure.ipynb": notebook("import tabulate\nprint(42)"),
}
RUN_CONFIG = quick_recovery_config(cull_timeout=3600)
BUILD_CONFIG = """
c.GitProvider.allow_local = True
c.ServeApp.start_hub = False
"""


@dataclass
class Fault:
    name: str
    ends: list[str] = field(default_factory=list)  # ready / failed / lost, one per request
    retries: int = 0
    orphans: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.ends.count("lost")

    def line(self) -> str:
        return (
            f"{self.name:<38} {len(self.ends):>3} requests: {self.ends.count('ready'):>2} ready "
            f"{self.ends.count('failed'):>2} failed {self.lost:>2} lost ({self.retries} reconnects); "
            f"orphans {len(self.orphans)}" + (f": {', '.join(self.orphans)}" if self.orphans else "")
        )


async def answers(url: str, token: str) -> bool:
    resp = await AsyncHTTPClient().fetch(
        url + "api/status", headers={"Authorization": f"token {token}"}, raise_error=False, request_timeout=5
    )
    return resp.code == 200


async def reader(url: str, fault: Fault, servers: list[dict] | None = None) -> None:
    """One request, read again while its stream is cut, until ``ready`` or ``failed``."""
    deadline = time.monotonic() + READER_TIMEOUT
    while time.monotonic() < deadline:
        try:
            stream = await read_stream(url, timeout=deadline - time.monotonic())
        except Exception:  # the portal is down (refused) or was killed mid-stream
            stream = None
        phase = stream.last.get("phase") if stream else None
        if phase == "failed":
            fault.ends.append("failed")
            return
        if phase == "ready":
            ready = stream.last
            if "url" in ready:  # a launch: its server must answer its token
                try:
                    await wait_status(ready["url"] + "api/status", ready["token"], timeout=30)
                except TimeoutError:
                    fault.ends.append("lost")
                    return
                if servers is not None:
                    servers.append(ready)
            fault.ends.append("ready")
            return
        fault.retries += 1
        await asyncio.sleep(1)
    fault.ends.append("lost")


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if await result if asyncio.iscoroutine(result) else result:
            return True
        await asyncio.sleep(interval)
    return False


def orphans(portal: Portal, engine_host: str = "", steps: tuple[str, ...] = ()) -> list[str]:
    """What no launch owns: see the module docstring."""
    found = [f"process {p.pid} ({p.command[:60]})" for p in leftover_processes(portal)]
    found += [f"build step '{s}'" for s in steps if processes_running(s)]
    if engine_host and portal.proc is not None and portal.proc.poll() is None:
        users = hub_users(portal)
        running = {name for name, model in users.items() if server_running(model)}
        found += [f"Hub user {u}" for u in sorted(set(users) - running)]
        found += [
            f"container {c}"
            for c in container_names(portal.container_prefix, engine_host)
            if not any(u[3:] in c for u in running)
        ]
    return found


async def settle(fault: Fault, portal: Portal, engine_host: str = "", steps: tuple[str, ...] = ()) -> None:
    """Count the fault's orphans once the portal had time to clean up; print its line."""
    await until(lambda: not orphans(portal, engine_host, steps), SETTLE, 1.0)
    fault.orphans += orphans(portal, engine_host, steps)
    print(fault.line(), flush=True)


async def survivors(servers: list[dict], portal: Portal, fault: Fault) -> None:
    """Servers running before the fault: each answers its token or is reported gone; else lost."""
    for ready in servers:
        user = ready["url"].rstrip("/").rsplit("/", 1)[1]

        async def settled(ready: dict = ready, user: str = user) -> bool:
            return await answers(ready["url"], ready["token"]) or not server_running(
                hub_users(portal).get(user)
            )

        if not await until(settled, 90, 1.0):
            fault.ends.append("lost")
    servers[:] = [s for s in servers if await answers(s["url"], s["token"])]


async def wait_for_process(text: str, timeout: float = 240) -> None:
    if not await until(lambda: bool(processes_running(text)), timeout, 0.2):
        raise RuntimeError(f"no process '{text}' within {timeout:g} s")


def unique_sleep() -> str:
    return f"sleep {secrets.randbelow(9000) / 1000 + 5:.3f}"


async def portal_faults(git, run: Portal, engine) -> list[Fault]:
    """Faults of a portal with a Hub, whose servers run in ``engine``: portal kill -9 mid-build
    and mid-launch, Hub kill -9, run engine restart."""
    name = f"faults-{secrets.token_hex(4)}"
    git.commit(name, FILES, "cached image")
    url = run.build_url(git.url(name), "main")
    warm = Fault("warm-up (not a fault)")
    await reader(url, warm)  # the image exists and the run engine has pulled it
    if warm.ends != ["ready"]:
        raise RuntimeError(f"the warm-up launch failed:\n{run.logs()}")
    servers: list[dict] = []
    faults = []

    # portal kill -9 mid-build, then started again: readers reconnect and the build runs again
    step = unique_sleep()
    slow = f"{name}-slow"
    git.commit(slow, {**FILES, "postBuild": f"#!/bin/sh\n{step}\n"}, "slow build")
    fault = Fault("portal kill -9 mid-build")
    readers = [asyncio.ensure_future(reader(run.build_url(git.url(slow), "main"), fault)) for _ in range(3)]
    await wait_for_process(step)
    run.kill()
    run.start()
    await asyncio.gather(*readers)
    await settle(fault, run, engine.host, ())
    faults.append(fault)

    # portal kill -9 mid-launch, then started again
    fault = Fault("portal kill -9 mid-launch")
    before = set(container_names(run.container_prefix, engine.host))
    readers = [asyncio.ensure_future(reader(url, fault, servers)) for _ in range(3)]
    await until(lambda: set(container_names(run.container_prefix, engine.host)) - before, 60, 0.1)
    run.kill()
    run.start()
    await asyncio.gather(*readers)
    await settle(fault, run, engine.host)
    faults.append(fault)

    # the Hub killed alone while servers run and launches are under way
    fault = Fault("Hub kill -9 while servers run")
    readers = [asyncio.ensure_future(reader(url, fault, servers)) for _ in range(2)]
    await asyncio.sleep(0.5)
    kill_hub(run)
    await asyncio.gather(*readers)
    await until(lambda: _healthy(run), 90, 1.0)
    await survivors(servers, run, fault)
    await settle(fault, run, engine.host)
    faults.append(fault)

    # the run engine restarted while servers run and launches are under way
    fault = Fault("run engine restart while servers run")
    readers = [asyncio.ensure_future(reader(url, fault, servers)) for _ in range(2)]
    await asyncio.sleep(0.5)
    await asyncio.to_thread(restart_engine, engine)
    await asyncio.gather(*readers)
    await survivors(servers, run, fault)
    await reader(url, fault, servers)  # a new launch of the same image works
    await settle(fault, run, engine.host)
    faults.append(fault)
    return faults


async def _healthy(portal: Portal) -> bool:
    return (await portal_health(portal))[0] == 200


async def build_faults(git, build: Portal, build_engine, registry: OwnRegistry) -> list[Fault]:
    """Faults of a build-only portal with its own build engine and registry."""
    faults = []
    step = unique_sleep()
    slow = f"be-{secrets.token_hex(4)}"
    git.commit(slow, {"Dockerfile": f"FROM {BASE_IMAGE}\nRUN {step}\n"}, "slow build")
    fault = Fault("build engine kill -9 mid-build")
    query = "build_only=true"
    readers = [
        asyncio.ensure_future(reader(build.build_url(git.url(slow), "main", query), fault)) for _ in range(2)
    ]
    await wait_for_process(step)
    build_engine_pid = build_engine._pid()
    with contextlib.suppress(ProcessLookupError):
        os.kill(build_engine_pid, signal.SIGKILL)
    await asyncio.gather(*readers)
    started = await asyncio.to_thread(build.command, "build-engine", "start")  # as an operator would
    if started.returncode != 0:
        fault.orphans.append(f"build engine not started again: {started.stderr[-300:]}")
    quick = f"quick-{secrets.token_hex(4)}"
    git.commit(quick, {"Dockerfile": f"FROM {BASE_IMAGE}\nRUN echo quick > /quick\n"}, "quick")
    await reader(build.build_url(git.url(quick), "main", query), fault)  # builds work again
    await settle(fault, build, steps=(step,))
    faults.append(fault)

    fault = Fault("registry down")
    down = f"rd-{secrets.token_hex(4)}"
    git.commit(down, {"Dockerfile": f"FROM {BASE_IMAGE}\nRUN echo down > /down\n"}, "down")
    registry.stop()
    try:
        await asyncio.gather(
            *(reader(build.build_url(git.url(down), "main", query), fault) for _ in range(2))
        )
    finally:
        registry.start()
    await reader(build.build_url(git.url(down), "main", query), fault)  # and once it is back
    await settle(fault, build)
    faults.append(fault)
    return faults


def make_portals(
    work: Path, prefix: str, engine, build_engine, registry: OwnRegistry
) -> tuple[Portal, Portal]:
    """A portal with a Hub whose servers run in ``engine``, and a build-only one with its own
    build engine and registry."""
    run = Portal(
        work / "run", config=f"c.Docker.host = {engine.host!r}\n{RUN_CONFIG}", container_prefix=prefix
    )
    own = "".join(
        f"c.BuildEngine.{k} = {getattr(build_engine, k)!r}\n"
        for k in ("state_dir", "data_root", "bridge", "bridge_address")
    )
    build = Portal(
        work / "build",
        config=f"c.Registry.url = {registry.url!r}\n{own}{BUILD_CONFIG}",
        container_prefix=f"{prefix}-b",
    )
    return run, build


async def run_suite(work: Path, only: str = "") -> tuple[list[Fault], list[str]]:
    """Every fault once; returns them and what was left after the portals stopped."""
    from panbinder.builder.build_engine import BuildEngine

    faults: list[Fault] = []
    prefix = f"panbinder-faults{os.getpid()}"
    build_engine = BuildEngine(
        state_dir=str(work / "build-engine"),
        bridge=f"pbf{os.getpid() % 1_000_000}",
        bridge_address=f"172.29.{os.getpid() % 250}.1/24",
    )
    registry = OwnRegistry(work / "registry")
    with running_git(work / "git") as git, own_run_engine(work / "run-engine") as engine:
        run, build = make_portals(work, prefix, engine, build_engine, registry)
        try:
            if only != "build":
                run.start()
                faults += await portal_faults(git, run, engine)
            if only != "portal":
                build_engine.start()
                registry.start()
                build.start()
                faults += await build_faults(git, build, build_engine, registry)
        except Exception:
            engine_log = build_engine.log_file.read_text()[-3000:] if build_engine.log_file.exists() else ""
            print(
                f"---- logs of the portal with a Hub\n{run.logs()}\n---- of the build portal\n{build.logs()}"
            )
            print(f"---- of the build engine\n{engine_log}", flush=True)
            raise
        finally:
            for portal in (run, build):
                portal.stop()
            await until(lambda: not leftover_processes(run) and not leftover_processes(build), 30, 1.0)
            final = [f"process {p.pid}" for p in leftover_processes(run) + leftover_processes(build)]
            final += [f"container {c}" for c in container_names(prefix, engine.host)]
            remove_containers(prefix, host=engine.host)
            registry.stop()
            build_engine.stop()
            unmount_under(work / "build-engine")
    return faults, final


async def main(only: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="panbinder-faults-"))
    started = time.monotonic()
    try:
        faults, final = await run_suite(work, only)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lost = sum(f.lost for f in faults)
    left = sum(len(f.orphans) for f in faults) + len(final)
    if final:
        print(f"left after the portals stopped: {', '.join(final)}")
    print(
        f"faults injected {len(faults)} / requests lost {lost} / orphans left {left} "
        f"(target 0 / 0; {sum(len(f.ends) for f in faults)} requests, {time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", choices=["portal", "build"], default="", help="only the faults of one portal (default: all)"
    )
    asyncio.run(main(parser.parse_args().only))
