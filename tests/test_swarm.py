"""The swarm back-end's service spec, without a swarm: placement from labelled dataset roots,
limits from the Hub's settings or the signed profile, hardening kept, the back-end setting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from panbinder.errors import PanbinderError
from panbinder.launcher.hub_process import HubProcess
from panbinder.launcher.profiles import Profile
from panbinder.launcher.swarm import PanbinderSwarmSpawner, placement_constraints, service_resources

LABELS = {"/gpfs/p11": "panbinder.data.p11=true", "/gpfs/p12/": "beamline-p12"}


def test_placement_only_for_labelled_roots_holding_a_mount() -> None:
    assert placement_constraints(["/gpfs/p11/run1/a.h5"], LABELS) == ["node.labels.panbinder.data.p11==true"]
    assert placement_constraints(["/gpfs/p11", "/gpfs/p12/x"], LABELS) == [
        "node.labels.beamline-p12==true",
        "node.labels.panbinder.data.p11==true",
    ]
    assert placement_constraints(["/gpfs/p111/a.h5", "/srv/open/b.h5"], LABELS) == []  # not under a root


def test_resources_from_the_hub_limits_or_the_profile() -> None:
    assert service_resources(profile=None, cpu_limit=1.0, mem_limit=2 * 1024**3, pids_limit=256) == {
        "Limits": {"NanoCPUs": 1_000_000_000, "MemoryBytes": 2 * 1024**3, "Pids": 256},
        "Reservations": {},
    }
    gpu = Profile("gpu", cpu=2, memory="4G", gpus=1)
    resources = service_resources(profile=gpu, cpu_limit=1.0, mem_limit=1, pids_limit=64)
    assert resources["Limits"] == {"NanoCPUs": 2_000_000_000, "MemoryBytes": 4 * 1024**3, "Pids": 64}
    assert resources["Reservations"]["GenericResources"][0]["DiscreteResourceSpec"]["Value"] == 1


def spawner() -> PanbinderSwarmSpawner:
    return PanbinderSwarmSpawner(
        user=SimpleNamespace(name="pb-a", url="/user/pb-a/", escaped_name="pb-a", id=1),
        extra_host_config={"security_opt": ["no-new-privileges"], "cap_drop": ["ALL"], "pids_limit": 128},
        mem_limit="1G",
        cpu_limit=0.5,
        node_labels=LABELS,
    )


def test_service_keeps_the_hardening_and_places_labelled_datasets() -> None:
    sp = spawner()
    sp.read_only_volumes = {"/gpfs/p11/run1": {"bind": "/data/run1", "mode": "ro"}}
    sp.service_extras()
    sp.service_extras()  # a second start adds nothing twice
    assert sp.extra_container_spec["cap_drop"] == ["ALL"]
    assert sp.extra_task_spec["resources"]["Limits"] == {
        "NanoCPUs": 500_000_000,
        "MemoryBytes": 1024**3,
        "Pids": 128,
    }
    assert sp.extra_task_spec["restart_policy"] == {"Condition": "none"}
    assert sp.extra_placement_spec["constraints"] == ["node.labels.panbinder.data.p11==true"]
    assert sp.network_name == "panbinder-swarm" and sp.use_internal_ip
    assert [m["ReadOnly"] for m in sp.mounts] == [True]


def test_backend_setting_chooses_the_spawner() -> None:
    assert HubProcess().spawner_class() == "panbinder.launcher.spawner.PanbinderSpawner"
    assert HubProcess(backend="swarm").spawner_class() == "panbinder.launcher.swarm.PanbinderSwarmSpawner"
    assert HubProcess(backend="my.Spawner").spawner_class() == "my.Spawner"
    with pytest.raises(PanbinderError) as e:
        HubProcess(backend="swam").spawner_class()
    assert "not one of docker, swarm" in e.value.message
