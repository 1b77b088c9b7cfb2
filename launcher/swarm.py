"""Hub-side spawner for Docker Swarm: each server is a swarm service with one task.

Same launch check and hardening as on one engine (``PanbinderSpawner``): signed options,
confined read-only dataset mounts under /data, non-root user (the image's uid 1000), every
capability dropped, CPU, memory and process limits (``Limits.Pids``, accepted by docker 20.10's
API 1.41). ``no-new-privileges`` cannot be set on a swarm service before API 1.44 (docker 25);
with an empty capability bounding set a setuid program still gains no capability.

Dataset roots may exist only on some nodes: ``node_labels`` maps a root to a node label, and a
launch that mounts a dataset under that root is constrained to the nodes carrying it.

Networking, measured on a one-node swarm (docker 20.10): services join ``network_name``, a
swarm-scoped *bridge* network made on first use, so each task is a container on a local bridge
that the Hub and proxy reach at its address (as with docker0), and the server reaches the Hub
API at the docker0 gateway like a container. The address comes from the task's container, so
the Hub must run on the node of the task; on a multi-node swarm use an overlay network the Hub
joins instead. A task that exits is not restarted (``RestartPolicy: none``): the Hub sees it
stopped, as with a container.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Iterable

from dockerspawner import SwarmSpawner
from traitlets import Bool, Dict, Float, Unicode, default

from panbinder.launcher.profiles import Profile, swarm_resources
from panbinder.launcher.spawner import PanbinderSpawner

STARTING = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}


def placement_constraints(host_paths: Iterable[str], node_labels: dict[str, str]) -> list[str]:
    """``node.labels.KEY==VALUE`` for each labelled root (a ``'KEY=VALUE'`` label) that holds one
    of ``host_paths``; sorted and without repeats."""
    found = set()
    for root, label in node_labels.items():
        top = posixpath.normpath(root)
        if any(
            posixpath.normpath(p) == top or posixpath.normpath(p).startswith(top + "/") for p in host_paths
        ):
            key, _, value = label.partition("=")
            found.add(f"node.labels.{key}=={value or 'true'}")
    return sorted(found)


def service_resources(
    *, profile: Profile | None, cpu_limit: float | None, mem_limit: int | None, pids_limit: int | None
) -> dict:
    """The service's ``Resources``: the profile's (GPUs included) or the Hub's limits, and pids."""
    if profile is not None:
        resources = swarm_resources(profile)
    else:
        limits = {}
        if cpu_limit:
            limits["NanoCPUs"] = int(cpu_limit * 1e9)
        if mem_limit:
            limits["MemoryBytes"] = int(mem_limit)
        resources = {"Limits": limits, "Reservations": {}}
    if pids_limit:
        resources["Limits"]["Pids"] = int(pids_limit)
    return resources


class PanbinderSwarmSpawner(PanbinderSpawner, SwarmSpawner):
    node_labels = Dict(
        value_trait=Unicode(),
        help="""Dataset roots that exist only on some nodes, each mapped to the node label that
        marks those nodes ('KEY=VALUE', or 'KEY' for KEY==true), e.g.
        {'/gpfs/p11': 'panbinder.data.p11=true'}; a launch mounting a dataset under such a root
        runs only on nodes with the label (docker node update --label-add).""",
    ).tag(config=True)
    create_network = Bool(
        True, help="Make network_name (a swarm-scoped bridge network) when it does not exist."
    ).tag(config=True)
    task_poll_interval = Float(
        0.1, help="Seconds between checks that the service's task runs, during start."
    ).tag(config=True)
    profile: Profile | None = None
    workspace_mount: tuple[str, str, str] | None = None  # (volume, device folder, container path)

    @default("network_name")
    def _network_default(self) -> str:
        return "panbinder-swarm"

    @default("use_internal_ip")
    def _internal_default(self) -> bool:
        return True

    def use_profile(self, profile: Profile) -> None:
        self.profile = profile

    def service_extras(self) -> None:
        """Hardening, limits, placement and restart policy, through SwarmSpawner's extra specs."""
        host = self.extra_host_config
        self.extra_container_spec = {
            "cap_drop": list(host.get("cap_drop") or ["ALL"]),
            **self.extra_container_spec,
        }
        resources = service_resources(
            profile=self.profile,
            cpu_limit=self.cpu_limit,
            mem_limit=self.mem_limit,
            pids_limit=host.get("pids_limit"),
        )
        self.extra_task_spec = {
            "resources": resources,
            "restart_policy": {"Condition": "none"},
            **self.extra_task_spec,
        }
        constraints = placement_constraints(self.read_only_volumes, self.node_labels)
        if constraints:
            placement = dict(self.extra_placement_spec)
            placement["constraints"] = sorted({*(placement.get("constraints") or []), *constraints})
            self.extra_placement_spec = placement

    async def use_workspace(self, volume: str, device: str, path: str) -> None:
        """A service mount of type volume: the node's local driver makes the volume (a bind of
        the mounted workspace) when the task starts."""
        self.workspace_mount = (volume, device, path)

    @property
    def mounts(self) -> list:
        from docker.types import DriverConfig, Mount

        mounts = list(super().mounts)
        if self.workspace_mount is not None:
            volume, device, path = self.workspace_mount
            driver = DriverConfig("local", {"type": "none", "o": "bind", "device": device})
            mounts.append(Mount(path, volume, type="volume", no_copy=True, driver_config=driver))
        return mounts

    async def ensure_network(self) -> None:
        if not self.create_network or not self.network_name:
            return
        found = await self.docker("networks", names=[self.network_name])
        if any(n["Name"] == self.network_name for n in found):  # the filter matches parts of names
            return
        self.log.info("creating swarm bridge network %s", self.network_name)
        await self.docker("create_network", self.network_name, driver="bridge", scope="swarm")

    async def create_object(self) -> dict:
        await self.ensure_network()
        self.service_extras()
        return await super().create_object()

    async def start_object(self) -> None:
        """Wait until the task runs (SwarmSpawner waits 1 s and more between checks)."""
        while True:
            task = await self.get_task()
            if not task:
                raise RuntimeError(f"Service {self.service_name} not found")
            state = task["Status"]["State"].lower()
            if state not in STARTING:
                break
            await asyncio.sleep(self.task_poll_interval)
        if state != "running":
            raise RuntimeError(f"Service {self.service_name} not running: {task['Status'].get('Err', state)}")

    async def get_ip_and_port(self) -> tuple[str, int]:
        """The task container's address on ``network_name`` (a local bridge, see above)."""
        task = await self.get_task()
        container = (task or {}).get("Status", {}).get("ContainerStatus", {}).get("ContainerID")
        if not container:
            raise RuntimeError(f"Service {self.service_name} has no running container")
        info = await self.docker("inspect_container", container)
        networks = info["NetworkSettings"]["Networks"]
        network = networks.get(self.network_name) or next(iter(networks.values()))
        return network["IPAddress"], self.port
