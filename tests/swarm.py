"""A one-node docker swarm on the run engine, for the swarm back-end's tests and benchmark.

``docker swarm init --advertise-addr 127.0.0.1`` runs only when the engine is in no swarm, and
``docker swarm leave --force`` afterwards only when it ran; node labels added are removed
either way, and so are the services and networks named with the caller's prefix.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import docker

DOCKER = "/usr/bin/docker"  # the run engine's own client


def engine(*args: str) -> str:
    return subprocess.run(
        [DOCKER, *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


@contextmanager
def one_node_swarm(labels: tuple[str, ...] = (), prefix: str = "") -> Iterator[str]:
    """The engine as a swarm manager whose node carries ``labels`` ('KEY=VALUE'); yields the node id.
    Services and networks whose names start with ``prefix`` are removed at the end."""
    made = engine("info", "--format", "{{.Swarm.LocalNodeState}}") != "active"
    if made:
        engine("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        node = engine("info", "--format", "{{.Swarm.NodeID}}")
        try:
            for label in labels:
                engine("node", "update", "--label-add", label, node)
            yield node
        finally:
            try:
                if prefix:
                    remove_services(prefix)
            finally:
                if not made:
                    for label in labels:
                        subprocess.run([DOCKER, "node", "update", "--label-rm", label.split("=", 1)[0], node])
    finally:
        if made:  # the engine is left as it was found, whatever failed above
            engine("swarm", "leave", "--force")


def services(prefix: str) -> list[dict]:
    """The specs and state of the services whose names start with ``prefix``."""
    client = docker.from_env()
    try:
        return [s.attrs for s in client.services.list(filters={"name": prefix}) if s.name.startswith(prefix)]
    finally:
        client.close()


def remove_services(prefix: str) -> None:
    """Remove the services, then the networks, whose names start with ``prefix``."""
    client = docker.from_env()
    try:
        for service in client.services.list(filters={"name": prefix}):
            if service.name.startswith(prefix):
                service.remove()
        deadline = time.monotonic() + 15
        for network in client.networks.list(names=[prefix]):
            while network.name.startswith(prefix):
                try:
                    network.remove()
                    break
                except docker.errors.APIError:  # a task's container still leaving it
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
    finally:
        client.close()


def task_address(service: str, network: str) -> str:
    """The address of ``service``'s running task container on ``network`` ('' while it has none)."""
    client = docker.from_env()
    try:
        found = client.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"})
        for container in found:
            address = container.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress")
            if address:
                return address
        return ""
    finally:
        client.close()
