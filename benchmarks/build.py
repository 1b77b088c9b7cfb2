"""Build benchmark for one medium repository (numpy, h5py, matplotlib), all in one run:
cold build (empty BuildKit cache), code-only commit rebuild (target <= 2 s), requirements change
rebuild, and archive and restore times (after the tag is deleted, then after a registry wipe), by
``panbinder restore`` and inside the portal (``POST /api/archives/restore``), each with the launch
of the restored image, compared against a cached launch of that image (target: restore + launch
<= 2x cached launch). ``--restore-only`` keeps the build cache and stops there. Then pip against uv
(``PackageInstaller.tool``): a cold build and a requirements-change rebuild with each, each cold
build from an empty build cache (target: uv <= 0.5x pip), and whether the two images' locks are
identical. With ``--paper-notebooks`` only the share of paper-style notebooks (benchmarks/paper_repos.py)
that execute headless after a build (target: all). With ``--desktop`` only the desktop layer
(builder/buildpacks/desktop.py): its build time and size, and the code-only rebuild of an image with
and without it (target <= 2 s).

    python -m benchmarks.build [--keep-build-cache] [--installers-only] [--paper-notebooks] [--desktop]
                               [--restore-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from benchmarks.paper_repos import RELEASES, build_and_execute, paper_repos
from panbinder.builder.lock import diff_locks, format_diff, image_lock, is_empty
from tests.dated_index import serving_index
from tests.support import (
    Portal,
    forget_image,
    machine_build_engine,
    read_stream,
    remove_containers,
    running_git,
    running_portal,
    timed_launch,
)

PREFIX = "panbinder-bench-build"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"  # the run engine
BUILD_ENGINE = machine_build_engine()  # where builds and their cache are
REQUIREMENTS = "numpy==2.4.6\nh5py==3.16.0\nmatplotlib==3.11.2\n"


async def build_seconds(url: str) -> tuple[float, str]:
    s = await read_stream(url + "?build_only=true")
    if s.last.get("phase") != "ready":
        raise RuntimeError(s.log()[-3000:])
    return s.seconds, s.last["imageName"]


def cli_seconds(portal: Portal, *args: str) -> float:
    start = time.monotonic()
    proc = portal.command(*args, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"panbinder {args[0]} failed: {proc.stderr[-2000:]}")
    return time.monotonic() - start


async def service_restore(portal: Portal, archive: str) -> tuple[float, dict]:
    """Seconds of ``POST /api/archives/restore`` (the restore inside the running portal) and its answer."""
    start = time.monotonic()
    resp = await AsyncHTTPClient().fetch(
        f"{portal.url}/api/archives/restore",
        method="POST",
        body=json.dumps({"archive": archive}),
        headers={"Authorization": f"token {portal.service_token}", "Content-Type": "application/json"},
        request_timeout=1800,
        raise_error=False,
    )
    if resp.code != 200:
        raise RuntimeError(f"restore failed ({resp.code}): {resp.body[:2000]!r}")
    return time.monotonic() - start, json.loads(resp.body)


async def wait_uploaded(portal: Portal, image: str, timeout: float = 600) -> None:
    """Until the registry has ``image`` (a service restore uploads it after it answered)."""
    from panbinder.registry_cache import Registry
    from panbinder.registry_cache.naming import parse_image

    registry, ref = Registry(url="http://" + image.split("/", 1)[0]), parse_image(image)
    deadline = time.monotonic() + timeout
    while await registry.digest(ref) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{image} did not reach the registry within {timeout:.0f} s")
        await asyncio.sleep(0.5)


async def main(keep_cache: bool, restore_only: bool = False) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp,
        running_git(Path(tmp, "git")) as git,
        running_portal(Path(tmp, "state"), prefix=PREFIX, config="c.ServerPool.size = 0\n") as portal,
    ):
        name = f"medium-{int(time.time())}"
        git.commit(name, {"requirements.txt": REQUIREMENTS, "analysis.py": "print(1)\n"}, "initial")
        url = portal.build_url(git.url(name), "main")
        if not (keep_cache or restore_only):
            subprocess.run(BUILD_ENGINE.command("builder", "prune", "-af"), check=True, capture_output=True)
        cold, _ = await build_seconds(url)
        sha = git.commit(name, {"analysis.py": "print(2)\n"}, "code only")
        code_only, image = await build_seconds(url)
        git.commit(name, {"requirements.txt": REQUIREMENTS + "tabulate==0.9.0\n"}, "one more requirement")
        req_change, _ = await build_seconds(url)
        print(f"cold build ({'warm' if keep_cache else 'empty'} build cache): {cold:7.2f} s")
        print(f"code-only commit rebuild:             {code_only:7.2f} s  (target <= 2 s)")
        print(f"requirements change rebuild:          {req_change:7.2f} s")
        archived_url = portal.build_url(git.url(name), sha)  # the archived image's commit
        cached = min([await timed_launch(archived_url) for _ in range(3)])
        print(f"cached launch (best of 3):            {cached:7.2f} s")
        archive = cli_seconds(portal, "archive", image)  # into the portal's Archive.root
        print(f"archive:                              {archive:7.2f} s")
        bundle = next(p for p in Path(tmp, "state", "archives").iterdir() if p.is_dir() or p.suffix == ".tar")
        # gone from the engine; from the registry its tag only, then (a wipe) also every blob
        for blobs, what in ((False, "tag deleted"), (True, "registry wiped")):
            for how in ("panbinder restore", "service restore"):
                remove_containers(PREFIX)  # the launched servers' containers would keep the image
                forget_image(image, blobs=blobs, docker=DOCKER)
                if how == "service restore":
                    restore, answer = await service_restore(portal, bundle.name)
                else:
                    restore = cli_seconds(portal, "restore", str(bundle))
                launch = await timed_launch(archived_url)
                ratio = (restore + launch) / cached
                print(f"{how} ({what}):{' ' * (22 - len(what))}{restore:7.2f} s, then launch {launch:.2f} s")
                print(f"  (restore + launch) / cached launch: {ratio:7.2f}  (target <= 2)", flush=True)
                if how == "service restore":  # the upload went on after the answer
                    waited = time.monotonic()
                    await wait_uploaded(portal, image)
                    print(
                        f"  upload {answer['upload']} at the answer; in the registry {time.monotonic() - waited:.2f} s later"
                    )


STEP_RE = re.compile(r"^#(\d+) \[[^\]]*\] RUN (.*)$")
DONE_RE = re.compile(r"^#(\d+) DONE (\d+(?:\.\d+)?)s$")


def install_steps(log: str) -> str:
    """The seconds of the server-install and requirements-install steps in a build log."""
    names, done = {}, {}
    for line in log.splitlines():
        if m := STEP_RE.match(line):
            if "python3 -m venv" in m.group(2):
                names[m.group(1)] = "server"
            elif "-r requirements.txt" in m.group(2):
                names[m.group(1)] = "requirements"
        elif m := DONE_RE.match(line):
            done[m.group(1)] = float(m.group(2))
    found = [f"{name} step {done[step]:.1f} s" for step, name in names.items() if step in done]
    return ", ".join(found) or "install steps cached"


async def installer_build(url: str) -> tuple[float, str, str]:
    """(seconds, image, the install steps' seconds) of one build."""
    s = await read_stream(url + "?build_only=true")
    if s.last.get("phase") != "ready":
        raise RuntimeError(s.log()[-3000:])
    log = "".join(e.get("message", "") for e in s.events)
    return s.seconds, s.last["imageName"], install_steps(log)


async def installer_builds(tool: str, tmp: str, git) -> tuple[float, float, list[dict | None]]:
    """(cold build, requirements-change rebuild, [the two images' locks]) with ``tool``."""
    config = f"c.ServerPool.size = 0\nc.PackageInstaller.tool = {tool!r}\n"
    with running_portal(Path(tmp, f"state-{tool}"), prefix=f"{PREFIX}-{tool}", config=config) as portal:
        name = f"medium-{tool}-{int(time.time())}"
        git.commit(name, {"requirements.txt": REQUIREMENTS, "analysis.py": "print(1)\n"}, "initial")
        url = portal.build_url(git.url(name), "main")
        subprocess.run(BUILD_ENGINE.command("builder", "prune", "-af"), check=True, capture_output=True)
        cold, first, steps = await installer_build(url)
        print(f"{tool} cold build {cold:.1f} s: {steps}", flush=True)
        git.commit(name, {"requirements.txt": REQUIREMENTS + "tabulate==0.9.0\n"}, "one more requirement")
        change, second, steps = await installer_build(url)
        print(f"{tool} requirements change rebuild {change:.1f} s: {steps}", flush=True)
    locks = [image_lock(image, docker_cli=BUILD_ENGINE.command()) for image in (first, second)]
    return cold, change, locks


async def compare_installers() -> None:
    with tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp, running_git(Path(tmp, "git")) as git:
        results = {tool: await installer_builds(tool, tmp, git) for tool in ("pip", "uv")}
    (pip_cold, pip_change, pip_locks), (uv_cold, uv_change, uv_locks) = results["pip"], results["uv"]
    print(f"cold build, pip:                      {pip_cold:7.2f} s")
    print(
        f"cold build, uv:                       {uv_cold:7.2f} s  (uv / pip {uv_cold / pip_cold:.2f}, target <= 0.5)"
    )
    print(f"requirements change rebuild, pip:     {pip_change:7.2f} s")
    print(
        f"requirements change rebuild, uv:      {uv_change:7.2f} s  "
        f"(uv / pip {uv_change / pip_change:.2f}, target <= 0.5)"
    )
    for what, a, b in zip(("cold build", "requirements change"), pip_locks, uv_locks, strict=True):
        if a is None or b is None:
            print(f"lock of the {what}: not recorded")
            continue
        diff = diff_locks(a, b)
        print(
            f"lock of the {what}, pip against uv: "
            + ("identical" if is_empty(diff) else "\n" + format_diff(diff))
        )


async def paper_notebooks() -> None:
    """Build each paper-style repository and execute its notebooks; print executed / total."""
    config = "c.ServerPool.size = 0\nc.ServeApp.start_hub = False\n"
    with (
        tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp,
        running_git(Path(tmp, "git")) as git,
        serving_index(RELEASES) as index,
        running_portal(Path(tmp, "state"), prefix=f"{PREFIX}-papers", config=config) as portal,
    ):
        executed = total = 0
        for repo in paper_repos(index):
            start = time.monotonic()
            outcome = await build_and_execute(lambda url: portal.build_url(url, "main"), git, repo, PREFIX)
            total += len(repo.notebooks)
            executed += len(outcome.executed)
            took = time.monotonic() - start
            state = "built" if outcome.built else f"build failed: {outcome.detail[-500:]}"
            print(
                f"{repo.name:16} {len(outcome.executed)}/{len(repo.notebooks)} executed, {state} ({took:.0f} s)"
            )
            for path, error in outcome.failed.items():
                print(f"  {path}: {error[:500]}")
        print(
            f"paper-style notebooks executed headless: {executed}/{total} ({executed / total:.0%}, target: all)"
        )


def desktop_layer_steps(log: str, image: str) -> tuple[float, float]:
    """(seconds, bytes) of the desktop layer's two steps: from the build log and the image's history."""
    names, done = set(), {}
    for line in log.splitlines():
        if (m := STEP_RE.match(line)) and ("tigervnc" in m.group(2) or "remote-desktop-proxy" in m.group(2)):
            names.add(m.group(1))
        elif m := DONE_RE.match(line):
            done[m.group(1)] = float(m.group(2))
    history = subprocess.run(
        BUILD_ENGINE.command(
            "history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", image
        ),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    size = sum(
        int(row.split("\t", 1)[0])
        for row in history.splitlines()
        if "tigervnc" in row or "remote-desktop-proxy" in row
    )
    return sum(done.get(step, 0.0) for step in names), size


async def logged_build(url: str) -> tuple[float, str, str]:
    """(seconds, image, build log) of one build."""
    s = await read_stream(url + "?build_only=true")
    if s.last.get("phase") != "ready":
        raise RuntimeError(s.log()[-3000:])
    return s.seconds, s.last["imageName"], "".join(e.get("message", "") for e in s.events)


async def desktop() -> None:
    """A repository without and one with the desktop layer: first build, code-only rebuild, and
    the layer's seconds (0 when the build cache had it already) and size."""
    with (
        tempfile.TemporaryDirectory(prefix="panbinder-bench-") as tmp,
        running_git(Path(tmp, "git")) as git,
        running_portal(
            Path(tmp, "state"), prefix=f"{PREFIX}-desk", config="c.ServerPool.size = 0\n"
        ) as portal,
    ):
        stamp = int(time.time())
        for kind, extra in (("plain", {}), ("desktop", {"binder/desktop": ""})):
            name = f"{kind}-{stamp}"
            git.commit(name, {"analysis.py": "print(1)\n", **extra}, "initial")
            url = portal.build_url(git.url(name), "main")
            first, image, log = await logged_build(url)
            git.commit(name, {"analysis.py": "print(2)\n"}, "code only")
            code_only, _ = await build_seconds(url)
            print(
                f"{kind:8} first build {first:7.2f} s, code-only rebuild {code_only:5.2f} s (target <= 2 s)"
            )
        seconds, size = desktop_layer_steps(log, image)
        print(f"desktop layer: {size / 1e6:.0f} MB, built in {seconds:.1f} s (0: the build cache had it)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep-build-cache", action="store_true")
    parser.add_argument("--installers-only", action="store_true", help="only pip against uv")
    parser.add_argument("--paper-notebooks", action="store_true", help="only the paper-style notebooks")
    parser.add_argument("--desktop", action="store_true", help="only the desktop layer")
    parser.add_argument(
        "--restore-only", action="store_true", help="only builds (cache kept), archive and restores"
    )
    args = parser.parse_args()
    if args.desktop:
        asyncio.run(desktop())
    elif args.paper_notebooks:
        asyncio.run(paper_notebooks())
    elif not args.installers_only:
        asyncio.run(main(args.keep_build_cache, args.restore_only))
    if not (args.paper_notebooks or args.desktop or args.restore_only):
        asyncio.run(compare_installers())
