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


# profiles restricted to Hub groups: only their members (and the service itself) may choose them
RESTRICTED = [
    {"name": "small", "cpu": 0.5, "memory": "512M"},
    {**GPU.to_dict(), "groups": ["gpu-users", "beamline-7"]},
    {"name": "bigmem", "memory": "64G", "groups": ["beamline-7"]},
]


@pytest.mark.parametrize("groups", [[""], "gpu-users", [1], ["ok", None], {"gpu-users": 1}])
def test_bad_groups_are_refused_clearly(groups) -> None:
    with pytest.raises(PanbinderError) as err:
        Profile.from_dict({"name": "x", "groups": groups})
    assert err.value.reason == "bad_profile" and "groups" in err.value.message


def test_groups_read_from_settings_as_a_tuple() -> None:
    gpu = Profile.from_dict({**GPU.to_dict(), "groups": ["gpu-users"]})
    assert gpu.groups == ("gpu-users",) and hash(gpu)  # a pool key: hashable
    assert Profile.from_dict(gpu.to_dict()) == gpu
    assert "groups" not in GPU.to_dict()  # unrestricted profiles sign as before


@pytest.mark.parametrize(
    ("name", "groups"),
    [
        ("gpu", frozenset({"gpu-users"})),
        ("gpu", frozenset({"other", "beamline-7"})),
        ("bigmem", frozenset({"beamline-7"})),
        ("small", None),  # an unrestricted profile: anyone, anonymous included
        ("small", frozenset()),
        ("gpu", True),  # the service itself (pre-started servers, checks)
        ("bigmem", True),
    ],
)
def test_members_and_the_service_may_choose(name, groups) -> None:
    assert profiles(profiles=RESTRICTED).get(name, groups).name == name


@pytest.mark.parametrize("groups", [None, frozenset(), frozenset({"other"})])
def test_a_restricted_profile_is_refused_to_others(groups) -> None:
    with pytest.raises(PanbinderError) as err:
        profiles(profiles=RESTRICTED).get("gpu", groups)
    assert err.value.status_code == 403 and err.value.reason == "profile_not_allowed"
    assert "gpu-users, beamline-7" in err.value.message
    assert err.value.message.endswith("choose one of: small.")  # what this caller may use
    assert ("sign in" in err.value.message) == (groups is None)


def test_refusals_name_only_the_profiles_the_caller_may_choose() -> None:
    p = profiles(profiles=RESTRICTED)
    with pytest.raises(PanbinderError) as err:
        p.get("bigmem", frozenset({"gpu-users"}))
    assert err.value.message.endswith("choose one of: small, gpu.")
    with pytest.raises(PanbinderError) as err:
        p.get("huge", None)
    assert err.value.status_code == 400 and err.value.message.endswith("choose one of: small.")
    with pytest.raises(PanbinderError) as err:
        p.get("huge")
    assert err.value.message.endswith("choose one of: small, gpu, bigmem.")


def test_the_default_profile_is_checked_too() -> None:
    p = profiles(profiles=RESTRICTED, default_profile="gpu")
    with pytest.raises(PanbinderError) as err:
        p.get("", None)
    assert err.value.reason == "profile_not_allowed"
    assert p.get("", frozenset({"gpu-users"})).name == "gpu"
