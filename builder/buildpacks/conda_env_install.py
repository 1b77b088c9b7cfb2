"""Solve and install environment.yml's conda packages from a channel mirror, inside the image.

Run by the image build with py-rattler's own Python (see conda_mirror.py), with the plan that
panbinder wrote: ``python conda_env_install.py PLAN.json``. panbinder never imports this file.

When the solved environment has python, the plan's ``with_python`` specs (ipykernel, pip) are
added and the environment is solved again. A failure prints ``ERROR_MARKER`` and a JSON object
(kind "missing" with the package names that no channel has, or for a plan pinned by an
environment lock the ``name ==version build`` specs that no channel has; "unsolvable", or
"unavailable")
for panbinder to turn into the build's failed event, then exits with 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from typing import Any, NoReturn

ERROR_MARKER = "panbinder-conda-error: "


def say(message: str) -> None:
    print(f"panbinder: {message}", flush=True)


def fail(kind: str, detail: str, missing: list[str] | None = None) -> NoReturn:
    say(f"conda environment failed ({kind}): {detail}")
    report = {"kind": kind, "missing": missing or [], "detail": " ".join(detail.split())[:800]}
    print(ERROR_MARKER + json.dumps(report), flush=True)
    sys.exit(1)


def leave(status: int) -> NoReturn:
    """Exit without interpreter finalization: py-rattler's runtime threads may still hold thread
    states then, and a normal exit can abort ("PyGILState_Release ... finalizing", status 134)
    after the work is done."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def spec_names(specs: list[str]) -> list[str]:
    """The package names of match specs (``numpy >=1.2`` -> ``numpy``)."""
    names = []
    for spec in specs:
        name = spec.strip().split("::")[-1]
        for stop in " =<>!~[":
            name = name.split(stop)[0]
        names.append(name.lower())
    return names


def client() -> Any:
    """rattler's client; with the system's roots (SSL_CERT_FILE: the deployment's CA bundle) if set."""
    import rattler

    cafile = os.environ.get("SSL_CERT_FILE", "")
    if cafile and os.path.exists(cafile):
        return rattler.Client.from_config(rattler.Config.from_toml('tls-root-certs = "system"'))
    return rattler.Client.default_client()


async def missing_names(
    gateway: Any, channels: list[str], platforms: list[Any], specs: list[str]
) -> list[str]:
    """The requested names that no channel has at all."""
    names = spec_names(specs)
    found = await gateway.query(channels, platforms, names, recursive=False)
    present = {record.name.normalized for records in found for record in records}
    return [name for name in names if name not in present]


def pin_key(spec: str) -> tuple[str, str, str]:
    """(name, version, build) of a lock's pin ``name ==version build``."""
    name, version, build = [*spec.split(), "", ""][:3]
    return name.lower(), version.removeprefix("=="), build


async def missing_pins(
    gateway: Any, channels: list[str], platforms: list[Any], specs: list[str]
) -> list[str]:
    """The pinned specs that no channel has in that exact version and build."""
    found = await gateway.query(channels, platforms, specs, recursive=False)
    present = {(r.name.normalized, str(r.version), str(r.build)) for records in found for r in records}
    return [spec for spec in specs if pin_key(spec) not in present]


async def solve(plan: dict, gateway: Any, platforms: list[Any], specs: list[str]) -> list[Any]:
    import rattler
    from rattler.exceptions import SolverError

    try:
        return await rattler.solve(
            plan["channels"],
            specs,
            gateway=gateway,
            platforms=platforms,
            virtual_packages=rattler.VirtualPackage.detect(),
        )
    except SolverError as e:
        missing = await missing_names(gateway, plan["channels"], platforms, specs)
        if not missing and plan.get("pinned"):
            missing = await missing_pins(gateway, plan["channels"], platforms, specs)
        fail("missing" if missing else "unsolvable", str(e), missing)


async def run(plan: dict) -> None:
    import rattler

    http = client()
    gateway = rattler.Gateway(cache_dir=os.path.join(plan["cache"], "repodata"), client=http)
    platforms = [rattler.Subdir.current(), rattler.Subdir("noarch")]
    say(f"solving {', '.join(plan['specs'])} against the conda channel mirror: {', '.join(plan['channels'])}")
    records = await solve(plan, gateway, platforms, plan["specs"])
    if plan["with_python"] and any(r.name.normalized == "python" for r in records):
        say(f"the environment has python: adding {', '.join(plan['with_python'])} for its kernel")
        records = await solve(plan, gateway, platforms, plan["specs"] + plan["with_python"])
    await rattler.install(
        records,
        plan["prefix"],
        cache_dir=os.path.join(plan["cache"], "pkgs"),
        client=http,
        show_progress=False,
    )
    listing = ", ".join(f"{r.name.normalized} {r.version} ({r.channel})" for r in records)
    say(
        f"installed {len(records)} conda packages into {plan['prefix']} from the mirror {plan['mirror']}: {listing}"
    )


def main(path: str) -> None:
    from rattler.exceptions import FetchRepoDataError, GatewayError, InstallerError, TransactionError

    with open(path, encoding="utf-8") as f:
        plan = json.load(f)
    try:
        asyncio.run(run(plan))
    except (GatewayError, FetchRepoDataError, InstallerError, TransactionError) as e:
        fail("unavailable", str(e))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except SystemExit as e:
        leave(e.code if isinstance(e.code, int) else 1)
    except BaseException:
        traceback.print_exc()
        leave(1)
    leave(0)
