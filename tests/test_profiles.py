"""Resource profiles: lookup from settings and the mapping of each back-end (no GPU here, so
the GPU parts are checked as data)."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from panbinder.errors import PanbinderError
from panbinder.launcher.profiles import (
    Profile,
    Profiles,
    docker_resources,
    kubernetes_resources,
    memory_bytes,
    swarm_resources,
)

GPU = Profile("gpu", cpu=4, memory="16G", gpus=2, partition="gpu", time_limit=120)


def profiles(**traits) -> Profiles:
    return Profiles(config=Config({"Profiles": traits}))


def test_lookup_by_name_and_default() -> None:
    p = profiles(profiles=[GPU.to_dict(), {"name": "small", "cpu": 0.5, "memory": "512M"}])
    assert p.get("gpu") == GPU
    assert p.get("small") == Profile("small", cpu=0.5, memory="512M")
    assert p.get("") is None  # no default: the Hub's own limits
    assert profiles(profiles=[GPU.to_dict()], default_profile="gpu").get("") == GPU


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(PanbinderError) as err:
        profiles(profiles=[GPU.to_dict()]).get("huge")
    assert err.value.status_code == 400 and "choose one of: gpu" in err.value.message


@pytest.mark.parametrize(
    "raw",
    [
        {"cpu": 1},
        {"name": "x", "cpu": 0},
        {"name": "x", "memory": "lots"},
        {"name": "x", "gpus": -1},
        {"name": "x", "gpus": True},
        {"name": "x", "time_limit": 1.5},
        {"name": "x", "colour": "red"},
        "gpu",
    ],
)
def test_bad_profile_is_refused_clearly(raw) -> None:
    with pytest.raises(PanbinderError) as err:
        profiles(profiles=[raw]).get("x")
    assert err.value.reason == "bad_profile"


def test_memory_units() -> None:
    assert memory_bytes("2G") == 2 * 1024**3
    assert memory_bytes("512M") == 512 * 1024**2
    assert memory_bytes("1.5GiB") == int(1.5 * 1024**3)
    assert memory_bytes("100") == 100


def test_docker_mapping() -> None:
    assert docker_resources(Profile("s", cpu=2, memory="1G")) == {
        "mem_limit": "1G",
        "cpu_limit": 2.0,
        "device_requests": [],
    }
    assert docker_resources(GPU)["device_requests"] == [
        {"Driver": "nvidia", "Count": 2, "Capabilities": [["gpu"]]}
    ]


def test_swarm_mapping() -> None:
    assert swarm_resources(GPU) == {
        "Limits": {"NanoCPUs": 4_000_000_000, "MemoryBytes": 16 * 1024**3},
        "Reservations": {"GenericResources": [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}]},
    }
    assert swarm_resources(Profile("s"))["Reservations"] == {}


def test_kubernetes_mapping() -> None:
    resources = kubernetes_resources(GPU)
    assert resources["limits"] == {"cpu": "4", "memory": str(16 * 1024**3), "nvidia.com/gpu": 2}
    assert "nvidia.com/gpu" not in kubernetes_resources(Profile("s"))["limits"]
