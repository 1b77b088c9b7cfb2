"""One docker engine, reached through its command line where only that works and the docker SDK
for everything else.

panbinder talks to two engines: the run engine (readers' servers, the pool, archive and restore;
the client's default engine unless ``Docker.host`` names another) and the build engine
(``builder/build_engine.py``, a second dockerd on its own socket). Each gets its own ``Docker``:
``Docker(parent=app)`` for the run engine, ``BuildEngine.docker()`` for the build engine, so no
call can reach the wrong engine by a global default.

The command line stays for what the SDK cannot do as well here: BuildKit builds (docker-py's
build API speaks only the legacy builder, which rejects ``COPY --chmod`` and cache mounts;
Debian's client with ``DOCKER_BUILDKIT=1`` reaches dockerd's built-in BuildKit), a build's push
and its ``docker run`` probe (they are processes a ``CancelToken`` stops at once and the
lifeline finds by command line), ``save | load`` between engines and ``info``. Inspect, tag,
pull, push outside a build, image and container removal, listings and ping go through the SDK
(docker==7.2), one client per engine, made on first use. SDK calls block: from async code they
go through ``call`` (the process's one executor, ``panbinder.executor``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from .errors import PanbinderError
from .executor import run_blocking

if TYPE_CHECKING:
    import docker

T = TypeVar("T")
DEBIAN_CLI = "/usr/bin/docker"
DockerCommand = Sequence[str]


def default_cli() -> str:
    """Debian's docker client when present (newer clients on PATH lack BuildKit without buildx)."""
    return DEBIAN_CLI if os.path.exists(DEBIAN_CLI) else (shutil.which("docker") or "docker")


def docker_argv(docker: str | DockerCommand, *args: str) -> list[str]:
    """A command line for the docker client ``docker``: a path, or a path with global options
    such as ``("/usr/bin/docker", "--host", "unix:///…/build.sock")``."""
    return [docker, *args] if isinstance(docker, str) else [*docker, *args]


def split_image(image: str) -> tuple[str, str]:
    """(repository, tag or digest) of an image name; the tag is "latest" when none is given."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, digest
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


def as_docker(docker: Docker | str | DockerCommand) -> Docker:
    """``docker`` as a ``Docker``: one already, a client path, or a client command line with an
    optional ``--host URL`` (as ``BuildEngine.command()`` makes)."""
    if isinstance(docker, Docker):
        return docker
    argv = [docker] if isinstance(docker, str) else list(docker)
    host = ""
    for flag in ("--host", "-H"):
        if flag in argv[1:]:
            host = argv[argv.index(flag, 1) + 1]
    return Docker(cli=argv[0], host=host)


class Docker(LoggingConfigurable):
    """The run engine's settings (the build engine's come from ``BuildEngine``)."""

    cli = Unicode(
        help="The docker command line client (default: Debian's /usr/bin/docker when present, "
        "else the first `docker` on PATH).",
    ).tag(config=True)
    host = Unicode(
        "",
        help="Docker host URL of the engine that runs readers' servers, e.g. "
        "unix:///var/run/docker.sock (empty: DOCKER_HOST, else the local socket).",
    ).tag(config=True)
    timeout = Float(120.0, help="Seconds before a docker SDK call is abandoned (pulls and pushes too).").tag(
        config=True
    )

    @default("cli")
    def _cli_default(self) -> str:
        return default_cli()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()

    # --- command line -------------------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        """The client command line for this engine, followed by ``args``."""
        return [self.cli, *(["--host", self.host] if self.host else []), *args]

    def run_cli(self, *args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``docker ARGS`` against this engine (output captured, as text unless told)."""
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(*args), capture_output=True, timeout=timeout, **kwargs)

    # --- SDK ----------------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The SDK client of this engine (made on first use, shared by threads)."""
        with self._client_lock:
            if self._client is None:
                import docker

                if self.host:
                    self._client = docker.DockerClient(base_url=self.host, timeout=int(self.timeout))
                else:
                    self._client = docker.from_env(timeout=int(self.timeout))
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call (one of the methods here) off the event loop."""
        return await run_blocking(fn, *args, **kwargs)

    def ping(self) -> bool:
        """True when the engine answers (never raises)."""
        try:
            return bool(self.client.ping())
        except Exception:
            self.close()  # a new connection next time (the engine may have restarted)
            return False

    def inspect_image(self, image: str) -> dict[str, Any] | None:
        """``docker image inspect`` of a local image, or None when the engine has no such image."""
        from docker.errors import ImageNotFound, NotFound

        try:
            return self.client.api.inspect_image(image)
        except (ImageNotFound, NotFound):
            return None

    def has_image(self, image: str) -> bool:
        return self.inspect_image(image) is not None

    def image_id(self, image: str) -> str:
        """The ID of a local image; PanbinderError when the engine does not have it."""
        info = self.inspect_image(image)
        if info is None:
            raise PanbinderError(
                f"{image} is not in the docker engine; check that it was built.", reason="image"
            )
        return info["Id"]

    def tag(self, source: str, target: str) -> None:
        repository, tag = split_image(target)
        self.client.api.tag(source, repository, tag)

    def remove_image(self, image: str) -> bool:
        """Remove an image name (never forced: an image another name or a container uses stays).
        False when there was nothing to remove or the engine refused."""
        from docker.errors import APIError

        try:
            self.client.api.remove_image(image)
        except APIError:
            return False
        return True

    def pull(self, image: str) -> None:
        """Pull ``image``; PanbinderError with the engine's words when that fails."""
        repository, tag = split_image(image)
        self._stream("pull", image, self.client.api.pull(repository, tag=tag, stream=True, decode=True))

    def push(self, image: str) -> str:
        """Push ``image``; its manifest digest ("" if the engine reported none)."""
        repository, tag = split_image(image)
        chunks = self.client.api.push(repository, tag=tag, stream=True, decode=True)
        return self._stream("push", image, chunks)

    def _stream(self, what: str, image: str, chunks: Any) -> str:
        digest = ""
        for chunk in chunks:
            if chunk.get("error"):
                raise PanbinderError(
                    f"docker {what} {image} failed: {chunk['error']}",
                    reason=f"docker_{what}",
                    status_code=503,
                )
            digest = (chunk.get("aux") or {}).get("Digest", digest)
        return digest

    def containers(self, prefix: str) -> list[Any]:
        """Containers (running or not) whose name starts with ``prefix``."""
        found = self.client.containers.list(all=True, filters={"name": prefix})
        return [c for c in found if c.name.startswith(prefix)]

    def remove_container(self, container: Any) -> bool:
        """Force-remove a container; False when it was removed meanwhile or is being removed
        (a 404 or 409 counts as done, as in DockerSpawner)."""
        from docker.errors import APIError, NotFound

        try:
            container.remove(force=True)
        except (NotFound, APIError):
            return False
        return True

    def pause(self, name: str, paused: bool = True) -> bool:
        """``docker pause`` (or, with ``paused`` False, unpause) the container ``name``; False when
        there is no such container or it is not in a state that allows it (never raises)."""
        from docker.errors import APIError, NotFound

        try:
            (self.client.api.pause if paused else self.client.api.unpause)(name)
        except (NotFound, APIError):
            return False
        return True

    def container_state(self, name: str) -> str:
        """'paused', 'running', another docker state, or 'gone' when there is no such container."""
        from docker.errors import NotFound

        try:
            state = self.client.api.inspect_container(name).get("State") or {}
        except NotFound:
            return "gone"
        return "paused" if state.get("Paused") else str(state.get("Status") or "unknown")

    def memory_usage(self, name: str) -> int | None:
        """Bytes of memory the container uses now, as ``docker stats`` counts them (its cgroup's
        usage without the page cache it could drop); None when docker does not say."""
        from docker.errors import APIError, NotFound

        try:
            stats = self.client.api.stats(name, stream=False, one_shot=True)
        except (NotFound, APIError):
            return None
        memory = stats.get("memory_stats") or {}
        usage = memory.get("usage")
        if not usage:
            return None
        detail = memory.get("stats") or {}
        cache = detail.get("total_inactive_file", detail.get("inactive_file", detail.get("cache", 0)))
        return max(0, int(usage) - int(cache or 0))

    def remove_service(self, name: str) -> bool:
        """Remove a swarm service (its task containers go with it); False when it is gone."""
        from docker.errors import APIError, NotFound

        try:
            self.client.api.remove_service(name)
        except (NotFound, APIError):
            return False
        return True

    def root_dir(self) -> str:
        """The engine's DockerRootDir."""
        return self.client.info().get("DockerRootDir") or "/var/lib/docker"

    def network_subnets(self) -> tuple[str, ...]:
        """Subnets of the engine's networks."""
        return tuple(
            cfg["Subnet"]
            for net in self.client.networks.list()
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []
            if cfg.get("Subnet")
        )

    def bridge_gateway(self) -> str:
        """The default bridge's gateway: containers reach the host there."""
        import ipaddress

        ipam = self.client.networks.get("bridge").attrs["IPAM"]["Config"][0]
        if ipam.get("Gateway"):
            return ipam["Gateway"]
        # dockerd 20.10 leaves Gateway out on the default bridge: it is the first host address
        return str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))


__all__ = ["DEBIAN_CLI", "Docker", "DockerCommand", "as_docker", "default_cli", "docker_argv", "split_image"]
