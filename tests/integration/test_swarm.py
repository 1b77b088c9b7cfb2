"""The swarm back-end for real: a one-node swarm on the run engine, a launch by DOI through the
portal with HubProcess.backend = 'swarm', the dataset read-only under /data, the service's
hardening, limits (from a resource profile) and placement constraint, and its removal.

The swarm is made here (``docker swarm init --advertise-addr 127.0.0.1``) only when the engine
is not in one, and left afterwards only by the run that made it; the node label and network
this module adds are removed either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from panbinder.launcher.hub_client import HubClient
from panbinder.launcher.spawner import SERVER_FILES
from tests.support import eventually, read_stream, run_code, session_prefix
from tests.swarm import one_node_swarm, services

from .conftest import cli, write_scan

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow, pytest.mark.swarm]

LABEL = "panbinder.test.swarm"
DOI = "10.5555/panbinder.swarm"
READ_AND_WRITE = (
    "import glob, json, os\n"
    "m = json.load(open('/data/MANIFEST.json'))\n"
    "path = os.path.join(m['datasets'][0]['path'], 'scan.nxs')\n"
    "print(len(open(path, 'rb').read()) > 0, os.getuid())\n"
    "try:\n    open(path, 'a').write('x')\nexcept OSError as e:\n    print(e.strerror)\n"
)


@pytest.fixture(scope="module")
def swarm() -> Iterator[str]:
    """The run engine as a one-node swarm manager with the label of the test's dataset root."""
    with one_node_swarm((f"{LABEL}=true",), prefix=session_prefix("panbinder-swarm")) as node:
        yield node


@pytest.fixture(scope="module")
def swarm_portal(swarm, portal_factory, storage_root, git_server) -> Iterator:
    prefix = session_prefix("panbinder-swarm")
    scans = storage_root / "swarm"  # only the labelled node has it
    write_scan(scans / "swarm-scan", 4)
    config = f"""
        c.Catalogue.storage_roots = [{str(storage_root)!r}]
        c.GitProvider.allow_local = True
        c.HubProcess.backend = "swarm"
        c.HubProcess.swarm_network = {prefix + "-net"!r}
        c.HubProcess.swarm_node_labels = {{{str(scans)!r}: "{LABEL}=true"}}
        c.HubProcess.pids_limit = 150
        c.Profiles.profiles = [{{"name": "small", "cpu": 1.5, "memory": "768M"}}]
        c.ServerPool.size = 0
        """
    with portal_factory("swarm", config, prefix=prefix) as portal:
        git_server.commit("swarm-paper", {"requirements.txt": "", "README.md": "swarm\n"}, "paper")
        [pid] = cli(portal, "datasets", "scan", "--public", str(scans)).stdout.split()
        cli(
            portal,
            "publications",
            "add",
            f"--doi={DOI}",
            f"--repo={git_server.url('swarm-paper')}",
            "--ref=main",
            f"--dataset={pid}",
        )
        yield portal


async def test_launch_as_swarm_service_with_dataset_limits_and_placement(swarm_portal) -> None:
    s = await read_stream(f"{swarm_portal.url}/build/doi/{DOI}?profile=small", timeout=900)
    assert s.last["phase"] == "ready", s.log()
    ready = s.last
    out = await run_code(ready["url"], ready["token"], READ_AND_WRITE)
    assert out.split("\n")[:2] == ["True 1000", "Read-only file system"], out

    [service] = services(swarm_portal.container_prefix)
    task = service["Spec"]["TaskTemplate"]
    assert task["Resources"]["Limits"] == {
        "NanoCPUs": 1_500_000_000,
        "MemoryBytes": 768 * 1024**2,
        "Pids": 150,
    }
    assert task["ContainerSpec"]["CapabilityDrop"] == ["ALL"]
    assert task["Placement"]["Constraints"] == [f"node.labels.{LABEL}==true"]
    # every mount read-only: the dataset under /data, and the changes download's files
    # (an anonymous server's /opt/panbinder and the notice in its home folder)
    mounts = {m["Target"]: m.get("ReadOnly") for m in task["ContainerSpec"]["Mounts"]}
    assert all(mounts.values()), mounts
    assert any(target.startswith("/data/") for target in mounts), mounts
    others = {target for target in mounts if not target.startswith("/data/")}
    assert others <= {SERVER_FILES, "/home/jovyan/CHANGES-ARE-TEMPORARY.md"}, mounts
    assert task["RestartPolicy"]["Condition"] == "none"

    user = ready["url"].rstrip("/").rsplit("/", 1)[1]
    hub = HubClient(
        f"http://127.0.0.1:{swarm_portal.hub_port}", swarm_portal.service_token, stream_slots=1, call_slots=2
    )
    try:
        assert await hub.remove(user, 60)
    finally:
        hub.close()
    await eventually(lambda: not services(swarm_portal.container_prefix), 30, "the service removed", 0.2)
    print(json.dumps({"swarm_launch_seconds": round(s.seconds, 2)}))
