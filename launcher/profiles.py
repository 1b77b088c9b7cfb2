"""Resource profiles: named CPU, memory, GPU, partition and time-limit sets offered at launch.

A launch names a profile (``profile=NAME`` on ``/build``); the portal looks it up in
``Profiles.profiles`` and signs its values with the launch options (see ``signing.py``), so
the Hub side applies exactly what the portal chose and a server's owner cannot ask for more.
Each back-end maps a profile with a pure function of its own: ``docker_resources`` and
``swarm_resources`` here, the Slurm back-end's in its own module, ``kubernetes_resources``
for the chart's pods. Machines here have no GPU, so the GPU mappings are checked as data.

A profile may name Hub ``groups``: only their members may choose it (``Profiles.get``), so a
GPU partition is not one ``?profile=gpu`` away from every anonymous reader. The service itself
(pre-started servers, the nightly checks) may choose any profile.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from traitlets import List, Unicode
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Profile:
    """What one launch may use. ``memory`` as docker writes it ('2G', '512M'); ``gpus`` a count;
    ``partition`` and ``time_limit`` (minutes, 0: none) matter to batch back-ends only;
    ``groups`` are the Hub groups whose members may choose it (empty: everyone)."""

    name: str
    cpu: float = 1.0
    memory: str = "2G"
    gpus: int = 0
    partition: str = ""
    time_limit: int = 0
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.groups, list):  # as settings and JSON give it; a tuple keeps it hashable
            object.__setattr__(self, "groups", tuple(self.groups))

    def to_dict(self) -> dict:
        """The profile as settings write it; without ``groups`` when it has none, so that an
        unrestricted profile signs with the launch options as it always did."""
        out = asdict(self)
        if self.groups:
            out["groups"] = list(self.groups)
        else:
            del out["groups"]
        return out

    def allows(self, groups: frozenset[str] | bool | None) -> bool:
        """Whether a caller in Hub ``groups`` may choose this profile (True: the service itself,
        which may choose any; None: an anonymous caller, who may choose unrestricted ones)."""
        if groups is True or not self.groups:
            return True
        return bool(groups) and not set(self.groups).isdisjoint(groups)

    @classmethod
    def from_dict(cls, raw: object) -> Profile:
        """A profile from settings or signed options; a bad entry raises PanbinderError."""
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise PanbinderError("each profile is a dict with a non-empty 'name'", reason="bad_profile")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise PanbinderError(
                f"profile {raw['name']!r} has unknown keys {sorted(unknown)}", reason="bad_profile"
            )
        profile = cls(**raw)
        ok = (
            isinstance(profile.cpu, int | float)
            and not isinstance(profile.cpu, bool)
            and profile.cpu > 0
            and isinstance(profile.gpus, int)
            and not isinstance(profile.gpus, bool)
            and profile.gpus >= 0
            and isinstance(profile.partition, str)
            and isinstance(profile.time_limit, int)
            and profile.time_limit >= 0
            and isinstance(profile.memory, str)
            and _MEMORY.match(profile.memory) is not None
            and isinstance(profile.groups, tuple)
            and all(isinstance(g, str) and g for g in profile.groups)
        )
        if not ok:
            raise PanbinderError(
                f"profile {profile.name!r}: cpu > 0, memory like '2G', gpus and time_limit "
                "whole numbers >= 0, partition a string, groups a list of Hub group names",
                reason="bad_profile",
                log_message=f"bad profile {raw!r}",
            )
        return profile


def memory_bytes(memory: str) -> int:
    """'2G' -> 2147483648 (binary units, as docker reads them)."""
    match = _MEMORY.match(memory)
    if match is None:
        raise PanbinderError(f"memory {memory!r} is not like '512M' or '2G'", reason="bad_profile")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


class Profiles(LoggingConfigurable):
    """The resource profiles offered at launch."""

    profiles = List(
        help="""Resource profiles a launch may choose with profile=NAME, each a dict with name,
        cpu (cores), memory ('2G'), gpus (count), partition, time_limit (minutes, 0: none) and
        groups (the Hub groups whose members may choose it; empty or absent: everyone), e.g.
        [{'name': 'gpu', 'cpu': 4, 'memory': '16G', 'gpus': 1, 'partition': 'gpu',
        'groups': ['gpu-users']}]. A launch without a profile gets HubProcess.cpu_limit and
        mem_limit.""",
    ).tag(config=True)
    default_profile = Unicode(
        "", help="Profile of a launch that names none (empty: HubProcess.cpu_limit and mem_limit)."
    ).tag(config=True)

    def all(self) -> list[Profile]:
        return [Profile.from_dict(raw) for raw in self.profiles]

    def get(self, name: str, groups: frozenset[str] | bool | None = True) -> Profile | None:
        """The profile called ``name`` (empty: the default one, or None when there is none) for
        a caller in Hub ``groups`` (True: the service itself; None: anonymous). An unknown name
        is a 400, a profile restricted to groups the caller is in none of a 403; both messages
        name the profiles this caller may choose."""
        name = name or self.default_profile
        if not name:
            return None
        known = self.all()
        usable = ", ".join(p.name for p in known if p.allows(groups)) or "none"
        for profile in known:
            if profile.name != name:
                continue
            if profile.allows(groups):
                return profile
            sign_in = "; sign in if you are one" if groups is None else ""
            raise PanbinderError(
                f"The resource profile {name!r} is for members of {', '.join(profile.groups)}"
                f"{sign_in}; choose one of: {usable}.",
                reason="profile_not_allowed",
                status_code=403,
                log_message=f"profile {name!r} refused to a caller in groups {groups!r}",
            )
        raise PanbinderError(
            f"There is no resource profile {name!r}; choose one of: {usable}.",
            reason="unknown_profile",
            status_code=400,
        )


def docker_resources(profile: Profile) -> dict:
    """DockerSpawner settings for ``profile``: limits and, for GPUs, a device request."""
    out: dict = {"mem_limit": profile.memory, "cpu_limit": float(profile.cpu), "device_requests": []}
    if profile.gpus:
        out["device_requests"] = [{"Driver": "nvidia", "Count": profile.gpus, "Capabilities": [["gpu"]]}]
    return out


def swarm_resources(profile: Profile) -> dict:
    """A swarm service's ``Resources`` (API field names) for ``profile``: CPU and memory limits;
    GPUs as a reservation of the nodes' generic resource ``NVIDIA-GPU`` (nodes advertise it with
    dockerd's ``--node-generic-resource NVIDIA-GPU=<uuid>``)."""
    out: dict = {
        "Limits": {"NanoCPUs": int(profile.cpu * 1e9), "MemoryBytes": memory_bytes(profile.memory)},
        "Reservations": {},
    }
    if profile.gpus:
        out["Reservations"]["GenericResources"] = [
            {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": profile.gpus}}
        ]
    return out


def kubernetes_resources(profile: Profile) -> dict:
    """A container's ``resources`` for the chart's server pods (GPUs as ``nvidia.com/gpu``)."""
    limits: dict = {"cpu": str(profile.cpu), "memory": f"{memory_bytes(profile.memory)}"}
    if profile.gpus:
        limits["nvidia.com/gpu"] = profile.gpus
    return {"limits": limits, "requests": dict(limits)}
