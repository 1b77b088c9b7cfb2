"""Repo2DockerBuilder: runs repo2docker (as a library) in a worker thread, then pushes."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from repo2docker.app import Repo2Docker
from repo2docker.contentproviders import Git as GitContent
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default

from panbinder.errors import PanbinderError
from panbinder.events import Event
from panbinder.executor import run_blocking
from panbinder.logs import scrub

from . import cancel
from .archives import source_for
from .base import Builder, BuildRequest
from .build_engine import BuildEngine
from .buildpacks import BASE_IMAGE, PackSettings, configured_packs, index_auth
from .buildpacks.conda_mirror import CondaMirror
from .buildpacks.desktop import Desktop
from .buildpacks.frozen import frozen_pack
from .buildpacks.installer import PackageInstaller
from .cancel import BuildCancelled, CancelToken
from .checkout import check_checkout_size
from .clone import clone_bundle, clone_pinned, falls_back_to_bundle
from .engine import BuildKitEngine
from .failure_causes import FailedBuild, explain, notice_line
from .labelling import label_and_push
from .limits import format_size
from .lock import LockCapture
from .url_guard import RepoGuard

_DONE = object()
ENGINE_STOPPED = (
    "The build engine stopped during the build (its docker daemon does not answer), so the build "
    "could not finish; running servers are not affected. Try again in a few minutes; if it keeps "
    "failing, ask the operators to start the build engine (panbinder build-engine start)."
)


class _QueueHandler(logging.Handler):
    """Forward a build's repo2docker log records to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        super().__init__()
        self.loop = loop
        self.queue = queue

    def emit(self, record: logging.LogRecord) -> None:
        phase = getattr(record, "phase", "building")
        phase = phase if phase in ("fetching", "building") else "building"
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (phase, record.getMessage()))


def failure_message(
    tail: list[str], error: str, notices: Sequence[str] = (), python_version: str = "", disk: str = ""
) -> str:
    """Why the build failed, from its last log lines, its error and its notices (failure_causes.py)."""
    return explain(FailedBuild(tail, error, notices, python_version, disk))


def disk_space(path: str) -> str:
    """The free space and size of the file system holding ``path`` ("" when unknown); the path
    itself is left out, as the text reaches readers in the failed event."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return ""
    return f"{format_size(usage.free)} free of {format_size(usage.total)}"


class Repo2DockerBuilder(Builder):
    base_image = Unicode(
        BASE_IMAGE,
        help="Image every build starts FROM (made offline by the set-up with debootstrap and copied "
        "into the build engine, see BuildEngine.seed_images).",
    ).tag(config=True)
    ca_bundle = Unicode(
        help="CA bundle copied into images and named by PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE "
        "and NODE_EXTRA_CA_CERTS, for TLS-intercepting proxies. Default: the host's bundle. Empty: none.",
    ).tag(config=True)
    index_url = Unicode(
        "",
        help="Python package index URL used in builds (empty: pip's default). It may carry credentials "
        "(https://user:token@host/simple): build steps get them as a BuildKit secret, never in the "
        "image's variables, layers or the build log.",
    ).tag(config=True)
    extra_index_urls = List(
        Unicode(), help="Extra package index URLs for builds (credentials as for index_url)."
    ).tag(config=True)
    allowed_index_hosts = List(
        Unicode(),
        help="Package index hosts (shell patterns such as '*.pypi.facility.eu', host[:port]) that a "
        "repository's Pipfile [[source]] may name besides the hosts of index_url and "
        "extra_index_urls; a source naming pypi.org means the deployment's index. Any other host "
        "fails the build, naming the host and this setting.",
    ).tag(config=True)
    index_timeout = Float(
        20.0, help="Seconds one package look-up on the index may take (environment.yml converted to pip)."
    ).tag(config=True)
    index_threads = Int(
        8, help="Package look-ups on the index at once (environment.yml converted to pip)."
    ).tag(config=True)
    server_requirements = List(
        Unicode(),
        ["jupyterhub==6.1.1", "jupyterlab==4.6.6"],
        help="Pinned packages that make up the single-user server in every image.",
    ).tag(config=True)
    user_name = Unicode("jovyan", help="Non-root user inside images.").tag(config=True)
    user_id = Int(1000, help="Uid (and gid) of that user.").tag(config=True)
    docker_cli = Unicode(
        "",
        help="Docker client for BuildKit builds (empty: BuildEngine.docker_cli); it talks to BuildEngine.host.",
    ).tag(config=True)
    log_tail_lines = Int(40, help="Log lines attached to a failed event.").tag(config=True)
    python_version = Unicode("3.11", help="The Python version of base_image (its python3).").tag(config=True)
    runtime_policy = Enum(
        ["notice", "refuse"],
        "notice",
        help="runtime.txt (or Pipfile / environment.yml) asking for a Python other than python_version: "
        "'notice' builds with python_version and says so in the build log; 'refuse' fails the build.",
    ).tag(config=True)
    conda_policy = Enum(
        ["pip", "refuse", "mirror"],
        "pip",
        help="environment.yml without conda: 'pip' installs its dependencies with pip when every one "
        "exists on the package index (else fails listing them); 'refuse' fails; 'mirror' solves and "
        "installs them with py-rattler from conda_channel_mirror (see CondaMirror).",
    ).tag(config=True)
    conda_channel_mirror = Unicode(
        "",
        help="Base URL of the conda channel mirror for conda_policy='mirror'; channel <name> is "
        "<mirror>/<name> (CondaMirror.channel_urls overrides single channels).",
    ).tag(config=True)
    allowed_base_images = List(
        Unicode(),
        [BASE_IMAGE],
        help="Images a repository's Dockerfile may name in FROM (images of the build engine, which "
        "BuildEngine.seed_images copies there; nothing is pulled).",
    ).tag(config=True)
    lock_probe_timeout = Float(
        120.0,
        help="Seconds the probe that reads a built image's environment lock may run (one docker run, "
        "about half a second; during the push). A probe that takes longer records no lock.",
    ).tag(config=True)
    label_lock = Bool(
        True,
        help="After each push, write the image's environment lock into its label org.panbinder.lock "
        "(a label-only build and a second push of config and manifest, 0.2 to 0.3 s) so the image "
        "describes itself. A failure is a warning; the unlabelled image stays pushed.",
    ).tag(config=True)
    infer_packages = Bool(
        True,
        help="Install what a repository's notebooks and scripts import and nothing installs, when an "
        "import-name map (builder/buildpacks/import_map.json) knows the package (sklearn -> "
        "scikit-learn), in a layer of its own with a notice listing them. False: install only what "
        "the repository lists.",
    ).tag(config=True)
    import_map = Dict(
        value_trait=Unicode(),
        key_trait=Unicode(),
        help="Import names -> distributions added to the shipped map for infer_packages, e.g. the "
        "facility's own packages on its index ({'facility_tools': 'facility-tools'}).",
    ).tag(config=True)
    extra_buildpacks = List(
        Unicode(),
        help="Extra build packs ('module:Class'), tried before the built-in ones, after those of the "
        "'panbinder.buildpacks' entry point group.",
    ).tag(config=True)

    @property
    def guard(self) -> RepoGuard:
        """RepoGuard settings decide where the build's clone may connect, as for the ref look-up."""
        if getattr(self, "_guard", None) is None:
            self._guard = RepoGuard(parent=self, log=self.log)
        return self._guard

    def use_build_engine(self, engine: BuildEngine) -> None:
        """The composition root's build engine, unless this builder names its own client."""
        if not self.docker_cli:
            self._build_engine = engine

    @property
    def build_engine(self) -> BuildEngine:
        """The docker engine builds, label builds and lock probes run in (never the run engine)."""
        if getattr(self, "_build_engine", None) is None:
            self._build_engine = BuildEngine(parent=self, log=self.log)
            if self.docker_cli:
                self._build_engine.docker_cli = self.docker_cli
        return self._build_engine

    @default("ca_bundle")
    def _ca_bundle_default(self) -> str:
        host = "/etc/ssl/certs/ca-certificates.crt"
        return host if os.path.exists(host) else ""

    def pack_settings(self) -> PackSettings:
        settings = PackSettings(
            server_requirements=tuple(self.server_requirements),
            ca_bundle=self.ca_bundle,
            index_url=self.index_url,
            extra_index_urls=tuple(self.extra_index_urls),
            allowed_index_hosts=tuple(self.allowed_index_hosts),
            index_timeout=self.index_timeout,
            index_threads=self.index_threads,
            uid=self.user_id,
            python_version=self.python_version,
            runtime_policy=self.runtime_policy,
            conda_policy=self.conda_policy,
            conda_channel_mirror=self.conda_channel_mirror,
            allowed_base_images=tuple(self.allowed_base_images),
            infer_packages=self.infer_packages,
            extra_import_map=tuple(sorted(self.import_map.items())),
        )
        settings = Desktop(parent=self).apply(settings)
        return PackageInstaller(parent=self).apply(CondaMirror(parent=self).apply(settings))

    def _make_r2d(self, request: BuildRequest, log: logging.Logger, workdir: str) -> Repo2Docker:
        packs = configured_packs(self.pack_settings(), log=log, extra=self.extra_buildpacks)
        r2d = Repo2Docker(
            repo=request.repo_url,
            ref=request.resolved_ref,
            output_image_spec=request.image.full,
            engine="panbinder-buildkit",
            content_providers=[GitContent],
            base_image=self.base_image,
            buildpacks=packs,
            default_buildpack=packs[-1],
            user_id=self.user_id,
            user_name=self.user_name,
            # repo2docker's default CMD names the classic notebook, which these images do not have
            appendix='CMD ["jupyter", "lab", "--ip", "0.0.0.0"]',
            run=False,
            push=False,
            json_logs=True,
            git_workdir=workdir,
            cleanup_checkout=False,
            labels={
                "org.panbinder.repo": request.repo_url,
                "org.panbinder.ref": request.resolved_ref,
                "org.panbinder.provider": request.provider,
            },
        )
        r2d.log = log
        # repo2docker makes its engine itself (parent=r2d), from r2d's config: the deployment's
        # BuildKitEngine settings, with the build engine's client and host unless those are set
        engine = r2d.config.BuildKitEngine
        if "BuildKitEngine" in self.config:
            engine.merge(self.config.BuildKitEngine)
        if "docker_cli" not in engine:
            engine.docker_cli = self.build_engine.docker_cli
        if "docker_host" not in engine:
            engine.docker_host = self.build_engine.host
        credentials = index_auth.credentials_of(self.pack_settings())
        if credentials:  # a BuildKit secret, in the build's own temporary folder (index_auth.py)
            netrc = index_auth.write_netrc(credentials, os.path.dirname(workdir))
            engine.secrets = {**engine.get("secrets", {}), index_auth.SECRET_ID: netrc}
        if request.recipe is not None:
            self._apply_recipe(r2d, request, log, os.path.dirname(workdir))
        return r2d

    def _apply_recipe(self, r2d: Repo2Docker, request: BuildRequest, log: logging.Logger, tmp: str) -> None:
        """A rebuild's recipe: the frozen pack (its requirements file in the build's own temporary
        folder) instead of the detected ones, and/or no layer cache."""
        recipe = request.recipe
        assert recipe is not None
        if recipe.frozen:
            path = os.path.join(tmp, "frozen-requirements.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write(recipe.frozen_requirements)
            pack = frozen_pack(
                self.pack_settings(),
                log=log,
                requirements_file=path,
                pins=list(recipe.apt_pins),
                lock=recipe.lock,
            )
            r2d.buildpacks, r2d.default_buildpack = [pack], pack
        if recipe.no_cache:
            r2d.config.BuildKitEngine.no_cache = True

    def _engine(self, r2d: Repo2Docker) -> BuildKitEngine:
        return BuildKitEngine(parent=r2d)

    def _build_blocking(
        self, request: BuildRequest, log: logging.Logger, push_line: Any, token: CancelToken | None = None
    ) -> None:
        token = token or CancelToken()
        with tempfile.TemporaryDirectory(prefix="panbinder-build-") as tmp, cancel.bound(token):
            workdir = os.path.join(tmp, "repo")
            token.workdir = workdir  # cancel() also stops git working there
            r2d = self._make_r2d(request, log, workdir)

            def fetch_and_measure(url: str, ref: str, checkout_path: str) -> None:
                # the guarded clone, not repo2docker's: pinned address, no redirects, git's output
                # in the operator's log only (the request was checked by its provider; file://
                # reaches the builder only where a provider allowed it)
                source = source_for(url, parent=self, log=self.log)
                if source is not None:  # an archive record: its files, through the same guard
                    log.info("Fetching %s version %s\n", url, ref, extra={"phase": "fetching"})
                    source.fetch(url, ref, checkout_path, check=token.check)
                    check_checkout_size(checkout_path, self.max_repo_size)
                    return
                bundle = request.recipe.repo_bundle if request.recipe is not None else ""
                try:
                    clone_pinned(self.guard, url, ref, checkout_path, allow_file=True, log=log)
                except PanbinderError as e:
                    if not falls_back_to_bundle(e, bundle, ref):
                        raise
                    self.log.warning("%s; cloning the archive's bundle %s", e.log_message or e, bundle)
                    clone_bundle(bundle, url, ref, checkout_path, log=log)
                token.check()
                check_checkout_size(checkout_path, self.max_repo_size)  # before anything is built

            r2d.fetch = fetch_and_measure
            r2d.build()
            token.check()
            engine = self._engine(r2d)
            if not engine.inspect_image(request.image.full):
                raise RuntimeError("repo2docker finished without producing the image")
            push_line(None)
            docker = (
                self.build_engine.docker()
            )  # the same engine as ``engine``, one SDK client for all builds
            label = functools.partial(label_and_push, docker_cli=docker) if self.label_lock else None
            # the probe runs during the push
            lock = LockCapture(self, request, docker, label=label, timeout=self.lock_probe_timeout)
            pushed = []
            for line in engine.push(request.image.full):
                push_line(line)
                pushed.append(line)
            lock.finish(pushed, emit=push_line)

    async def ping(self) -> bool:
        """The build engine answers."""
        return await run_blocking(self.build_engine.ping)

    async def _failed(
        self, request: BuildRequest, error: BaseException, lines: list[str], notices: Sequence[str] = ()
    ) -> Event:
        """The failed event for ``error``: the build engine gone, else what the log explains."""
        fields = {"build_id": request.build_id, "image": request.image.full, "phase": "failed"}
        self.log.warning("build failed: %s", getattr(error, "log_message", error), extra=fields)
        extra: dict[str, Any] = {"log_tail": lines[-self.log_tail_lines :]}
        if isinstance(error, PanbinderError):  # its reason and status, as when it comes before the build
            return Event(
                "failed",
                scrub(error.message),
                {**extra, "reason": error.reason, "status_code": error.status_code},
            )
        if not isinstance(error, BuildCancelled) and not await self.ping():
            self.log.error("the build engine at %s does not answer", self.build_engine.host, extra=fields)
            return Event("failed", ENGINE_STOPPED, {**extra, "reason": "build_engine_stopped"})
        disk = await run_blocking(disk_space, self.build_engine.data_root)
        message = failure_message(lines, scrub(str(error)), notices, self.python_version, disk)
        return Event("failed", scrub(message), extra)

    async def build(self, request: BuildRequest) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        log = logging.getLogger(f"panbinder.r2d.{request.build_id}")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.handlers[:] = [_QueueHandler(loop, queue)]

        def push_line(line: str | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("pushing", line))

        token = self.track(request)

        async def work() -> None:
            try:
                await run_blocking(self._build_blocking, request, log, push_line, token)
                queue.put_nowait(_DONE)
            except BaseException as e:  # reported as a failed event below
                queue.put_nowait(e)

        task = asyncio.create_task(work(), name=f"build-{request.build_id}")
        tail: deque[str] = deque(maxlen=self.log_tail_lines)
        notices: list[str] = []  # e.g. the Python version asked for: a failure may be explained by it
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    yield Event("built", "Image built and pushed.\n", {"image": request.image.full})
                    return
                if isinstance(item, BaseException):
                    yield await self._failed(request, item, list(tail), notices)
                    return
                phase, line = item
                if line is None:
                    yield Event("pushing", f"Pushing {request.image.full}\n")
                    continue
                line = scrub(line)  # an index URL with credentials in requirements.txt
                tail.append(line.rstrip("\n"))
                notice = notice_line(line)
                if notice is not None:  # shown as the builder prints it, also when a build step printed it
                    notices.append(notice)
                    line = notice
                yield Event(phase, line if line.endswith("\n") else line + "\n")
        finally:
            if not task.done():
                await asyncio.wait([task])
            self.untrack(request)
            log.handlers.clear()
            logging.Logger.manager.loggerDict.pop(log.name, None)


__all__ = ["ENGINE_STOPPED", "Repo2DockerBuilder", "failure_message"]
