"""A repo2docker engine that builds with BuildKit through ``docker build``.

repo2docker's own engine needs the ``buildx`` plug-in. Docker engines from 18.09 on have
BuildKit built in, and ``DOCKER_BUILDKIT=1 docker build`` reaches it with any client that
still speaks it (Debian's does). Registered as entry point ``panbinder-buildkit`` in the
``repo2docker.engines`` group.

Limits: BuildKit in dockerd ignores ``docker build --memory``, ``--cpu-quota`` and
``--cgroup-parent`` (checked on dockerd 20.10 with cgroup v1: a ``RUN`` step sees no memory or
CPU limit and runs in ``/docker/buildkit/<step id>`` whatever the parent), so this engine does
not pass ``container_limits`` on. Instead a build that ``BuildManager`` limits gets the build
argument ``no_proxy`` with a marker (see ``limits.py``), by which the manager's watcher finds
the build's ``RUN`` steps and writes the limits into their cgroups.

Builds go to the build engine (``build_engine.py``), named by ``docker_host``: the engine that
runs readers' servers never builds.

Every ``docker`` process is registered with the build thread's ``CancelToken`` (see
``cancel.py``), so a cancelled or timed-out build stops at once; that is why the build and its
push run the command line, while the image look-up goes through the SDK
(``panbinder.docker_engine``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from typing import IO, Any

from repo2docker.docker import DockerEngine
from repo2docker.engine import BuildError, Image
from traitlets import Bool, Dict, Unicode, default

from panbinder.docker_engine import Docker, default_cli

from . import cancel, limits


def _lines(stream: IO[bytes]) -> Iterator[str]:
    """Split on \\n and \\r, as progress output uses both."""
    buf = b""
    while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(4096):
        buf += chunk
        *done, buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        for line in done:
            yield line.decode("utf-8", "replace") + "\n"
    if buf:
        yield buf.decode("utf-8", "replace") + "\n"


def run_streaming(
    args: list[str], *, stdin_file: IO[bytes] | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run a command, yield its merged output line by line, raise BuildError on failure."""
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if stdin_file is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    token = cancel.current()
    if token is not None:
        token.register(proc)
    feeder = None
    if stdin_file is not None:

        def feed() -> None:
            try:
                shutil.copyfileobj(stdin_file, proc.stdin)
            except BrokenPipeError:
                pass
            finally:
                proc.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
    tail: deque[str] = deque(maxlen=30)
    try:
        for line in _lines(proc.stdout):
            tail.append(line)
            yield line
    finally:
        code = proc.wait()
        if token is not None:
            token.unregister(proc)
        if feeder is not None:
            feeder.join(timeout=5)
    if token is not None:
        token.check()
    if code != 0:
        what = next((a for a in args[1:] if not a.startswith("-") and "://" not in a), args[0])
        raise BuildError(f"docker {what} exited with {code}:\n{''.join(tail)}")


class BuildKitEngine(DockerEngine):
    docker_cli = Unicode(
        help="Docker client used for `docker build` with BuildKit (builds: the build engine's, "
        "BuildEngine.docker_cli; else Debian's client when present, else the first `docker` on PATH).",
    ).tag(config=True)

    docker_host = Unicode(
        "",
        help="Docker host URL of the engine that builds (builds: the build engine's, BuildEngine.host). "
        "Empty: the client's default engine.",
    ).tag(config=True)

    secrets = Dict(
        value_trait=Unicode(),
        key_trait=Unicode(),
        help="BuildKit secrets of every build, id -> file (`docker build --secret id=ID,src=FILE`), "
        "which RUN steps mount and no layer keeps. Set per build by the builder (the package index "
        "credentials, see buildpacks/index_auth.py).",
    ).tag(config=True)

    no_cache = Bool(
        False, help="Build without the layer cache (`--no-cache`), as `panbinder rebuild --fresh` does."
    ).tag(config=True)

    @default("docker_cli")
    def _docker_cli_default(self) -> str:
        return default_cli()

    @property
    def container_cli(self) -> str:
        return self.docker_cli

    @property
    def docker(self) -> Docker:
        """The engine that builds (command line and SDK)."""
        made = getattr(self, "_docker", None)
        if made is None or (made.cli, made.host) != (self.docker_cli, self.docker_host):
            made = self._docker = Docker(cli=self.docker_cli, host=self.docker_host, log=self.log)
        return made

    @property
    def command(self) -> list[str]:
        """The docker client with the build engine's host."""
        return self.docker.command()

    def inspect_image(self, image: str) -> Image | None:
        """The image's tags and configuration in the build engine, or None."""
        info = self.docker.inspect_image(image)
        if info is None:
            return None
        return Image(tags=info["RepoTags"], config={"WorkingDir": "", **info["Config"]})

    def build(
        self,
        *,
        push: bool = False,
        load: bool = False,
        buildargs: dict[str, str] | None = None,
        cache_from: list[str] | None = None,
        container_limits: dict[str, Any] | None = None,
        tag: str = "",
        custom_context: bool = False,
        dockerfile: str = "",
        fileobj: IO[bytes] | None = None,
        path: str = "",
        labels: dict[str, str] | None = None,
        platform: str | None = None,
        **kwargs: Any,
    ) -> Iterator[str]:
        args = [*self.command, "build", "--progress=plain", *(["--no-cache"] if self.no_cache else [])]
        step_args = limits.build_args_for(tag, buildargs) if tag else {}
        for key, value in {**(buildargs or {}), **step_args}.items():
            args += ["--build-arg", f"{key}={value}"]
        for name, source in self.secrets.items():
            args += ["--secret", f"id={name},src={source}"]
        for image in cache_from or []:
            args += ["--cache-from", image]
        if dockerfile:
            args += ["--file", dockerfile]
        if tag:
            args += ["--tag", tag]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        if platform:
            args += ["--platform", platform]
        env = dict(os.environ, DOCKER_BUILDKIT="1")
        if fileobj is not None:
            fileobj.seek(0)
            yield from run_streaming([*args, "-"], stdin_file=fileobj, env=env)
        else:
            yield from run_streaming([*args, path], env=env)
        if push:
            yield from self.push(tag)

    def push(self, tag: str) -> Iterator[str]:
        yield from run_streaming([*self.command, "push", tag])
