"""``panbinder``: one traitlets Application with subcommands ``serve`` and ``build``.

Every setting is a trait, loadable from ``panbinder_config.py``; ``panbinder --help-all``
lists them and ``panbinder --generate-config`` writes a commented file.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from traitlets import Bool, Float, Int, Type, Unicode, default

from .base import PanbinderBase
from .builder.build_engine import BuildEngine
from .builder.buildpacks.conda_mirror import CondaMirror
from .builder.engine import BuildKitEngine
from .builder.manager import BuildManager
from .builder.policy import SpecPolicy
from .builder.r2d import Repo2DockerBuilder
from .builder.url_guard import RepoGuard
from .data_mounts.catalogue import Catalogue
from .data_mounts.sandbox import PreviewSandbox
from .errors import PanbinderError
from .events import Event
from .executor import run_blocking
from .launcher.base import ServerScope
from .launcher.hub_api import HubLauncher
from .launcher.hub_process import HubProcess
from .launcher.pool import ServerPool
from .launcher.reaper import Reaper
from .lifecycle import PortalRun
from .providers.doi import DoiProvider
from .providers.git import GitProvider
from .registry_cache import Registry

COMPONENTS = [
    Registry,
    Repo2DockerBuilder,
    BuildKitEngine,
    BuildEngine,
    CondaMirror,
    BuildManager,
    SpecPolicy,
    GitProvider,
    DoiProvider,
    RepoGuard,
    HubLauncher,
    ServerPool,
    Reaper,
    HubProcess,
    Catalogue,
    PreviewSandbox,
]


class ServiceApp(PanbinderBase):
    """The commands that build and launch (serve, build, launch): builder, launcher, registry."""

    builder_class = Type(
        "panbinder.builder.r2d.Repo2DockerBuilder",
        klass="panbinder.builder.base.Builder",
        help="Builder implementation (import path).",
    ).tag(config=True)
    launcher_class = Type(
        "panbinder.launcher.hub_api.HubLauncher",
        klass="panbinder.launcher.base.Launcher",
        help="Launcher implementation (import path).",
    ).tag(config=True)

    def components(self):
        from .builder.manager import BuildManager
        from .pipeline import PipelineContext
        from .registry_cache import Registry

        registry = Registry(parent=self, log=self.log)
        builder = self.builder_class(parent=self, log=self.log)
        if getattr(builder, "on_built", False) is None:  # record each build's lock in the catalogue
            builder.on_built = lambda image, digest, lock: self.catalogue.record_lock(image, digest, lock)
        manager = BuildManager(parent=self, log=self.log, builder=builder)
        if not manager.log_dir:
            manager.log_dir = str(self.state / "build-logs")
        launcher = self.launcher_class(parent=self, log=self.log)
        if hasattr(launcher, "signing_key") and not launcher.signing_key:
            launcher.signing_key = self.secret("launch-signing-key")
        return PipelineContext(
            registry=registry,
            manager=manager,
            launcher=launcher,
            image_prefix=self.image_prefix,
            policy=SpecPolicy(parent=self, log=self.log),
            catalogue=self.catalogue,
            settings=self,
        )


class ServeApp(ServiceApp):
    classes = [PanbinderBase, ServiceApp, *COMPONENTS]
    name = "panbinder-serve"
    description = "Run the portal and JupyterHub in the foreground."
    ip = Unicode("127.0.0.1", help="Address of the portal.").tag(config=True)
    port = Int(8585, help="Port of the portal.").tag(config=True)
    base_url = Unicode("/", help="URL prefix of the portal.").tag(config=True)
    cors_allow_origin = Unicode(
        "", help="Access-Control-Allow-Origin for /build and badges, and allow_origin of launched servers."
    ).tag(config=True)
    keepalive_interval = Float(20.0, help="Seconds between keepalive comments on idle event streams.").tag(
        config=True
    )
    public_url = Unicode(
        "",
        help="URL users reach the portal at, without the base_url (default: http://ip:port); "
        "absolute links (launch URLs, badges, build logs) start with it, never with the Host header.",
    ).tag(config=True)
    start_hub = Bool(True, help="Start JupyterHub as a child process (False: use a running Hub).").tag(
        config=True
    )
    max_header_size = Int(
        64 * 1024, help="Bytes a request's line and headers may take; larger ones get 431."
    ).tag(config=True)
    header_timeout = Float(
        20.0,
        help="Seconds a client may take to send a request's headers, counted from the end of its "
        "previous request (so it also closes keep-alive connections left idle).",
    ).tag(config=True)
    max_body_size = Int(1024 * 1024, help="Bytes a request body may take (the portal takes none).").tag(
        config=True
    )
    body_timeout = Float(30.0, help="Seconds a client may take to send a request body.").tag(config=True)
    enable_build_only = Bool(
        False,
        help="Allow /build/...?build_only=true (API-only mode): build the image and end with 'ready' "
        "and its imageName, launching nothing. Refused with 403 when False.",
    ).tag(config=True)

    @default("public_url")
    def _public_url_default(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def start(self) -> None:
        try:
            asyncio.run(self.serve())
        except PanbinderError as e:  # a port in use, a state folder in use: what to change
            self.log.error("panbinder serve stopped: %s", e.message)
            self.exit(1)
        except asyncio.CancelledError:
            self.log.info("panbinder serve stopped by a signal while starting")
            self.exit(1)
        except Exception as e:
            # a Hub that would not start, docker not answering: say so, no traceback
            self.log.error("panbinder serve stopped: %s: %s", type(e).__name__, e)
            self.log.debug("details", exc_info=True)
            self.exit(1)

    def _install_signals(self) -> asyncio.Event:
        """SIGTERM and SIGINT stop the portal; while it starts, they cancel the start (clean-up runs)."""
        stop = asyncio.Event()
        main = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if self._stopping:
                self.log.info("received %s; already stopping", sig.name)
                return
            self.log.info("received %s, stopping", sig.name)
            if self._serving:
                stop.set()
            elif main is not None:
                main.cancel()

        self._serving = self._stopping = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        return stop

    def _prepare_state(self, hub: HubProcess, ctx) -> PortalRun:
        """Take the state folder: stop what an earlier run left (Hub, proxy, culler, builds)."""
        run = PortalRun(self.state, self.log, hub_timeout=hub.stop_timeout)
        run.claim()
        run.mark()
        hub.stop_stale(self.state)
        ctx.manager.inflight_dir = ctx.manager.inflight_dir or str(self.state / "run" / "builds")
        ctx.manager.stop_interrupted()
        run.stop_left_behind()
        return run

    async def _stop(self, ctx, server, hub: HubProcess, previews, run: PortalRun | None) -> None:
        """In order, each bounded: the portal's listener, builds, pre-started servers, previews,
        then the Hub (user servers, culler, proxy), then the watcher's last sweep."""
        if server is not None:
            server.stop()
        with contextlib.suppress(Exception):
            await ctx.manager.stop_all("shutdown", timeout=10)
        if server is not None:  # pre-started servers, the reaper, removals under way
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ctx.launcher.stop(), 30)
        await previews.stop()
        await run_blocking(hub.stop)
        if run is not None:
            await run_blocking(run.release)

    async def serve(self) -> None:
        from . import metrics
        from .data_mounts.preview import ThumbnailCache
        from .launcher.hub_process import check_ports
        from .web.app import make_app
        from .web.auth import HubIdentity
        from .web.http_server import make_http_server

        stop = self._install_signals()
        ctx = self.components()
        self.hub_connection(ctx.launcher)
        token = ctx.launcher.api_token
        hub = self.hub = HubProcess(parent=self, log=self.log)
        catalogue = self.catalogue  # migrations run before anything serves
        metrics.BUILDS_IN_PROGRESS.set_function(lambda: ctx.manager.running)
        pool = getattr(ctx.launcher, "pool", None)
        metrics.POOL_SERVERS.set_function(lambda: pool.count if pool is not None else 0)
        metrics.BUILD_QUEUE.set_function(lambda: ctx.manager.queued)

        def count_build(job, outcome: str, seconds: float) -> None:
            metrics.BUILD_TIME.labels(job.result.phase if job.result else outcome).observe(seconds)
            metrics.BUILDS.labels(outcome).inc()

        ctx.manager.on_finish.append(count_build)
        previews = PreviewSandbox(parent=self, log=self.log)
        run = server = None
        try:
            run = self._prepare_state(hub, ctx)
            ports = [(self.ip, self.port, "ServeApp.port")]
            if self.start_hub:
                prefix = f"{ctx.registry.host}/{self.image_prefix}"
                settings = hub.settings(
                    state_dir=self.state,
                    allowed_image_prefixes=[prefix],
                    cors_origin=self.cors_allow_origin,
                    storage_roots=list(catalogue.storage_roots),
                    portal_oauth_callback=f"{self.public_url}{self.base_url}oauth_callback",
                )
                ports += hub.ports(settings["hub_ip"])
            check_ports(ports)
            run.start_watcher()
            if self.start_hub:
                hub.start(
                    state_dir=self.state,
                    token=token,
                    proxy_token=self.secret("proxy-token"),
                    signing_key=ctx.launcher.signing_key,
                    settings=settings,
                )
                await hub.wait_ready(token)
                hub.watch(token)  # a Hub that exits is started again
            await ctx.launcher.start(
                ServerScope(
                    hub.container_prefix, f"http://{settings['hub_connect_ip']}:{hub.hub_port}/hub/api"
                )
                if self.start_hub
                else None
            )
            with contextlib.suppress(PanbinderError):  # logged; the first preview tries again
                await previews.start()  # logs what the sandbox enforces on this machine
            app = make_app(
                pipeline=ctx,
                app=self,
                log=self.log,
                public_url=self.public_url,
                base_url=self.base_url,
                cors_allow_origin=self.cors_allow_origin,
                keepalive_interval=self.keepalive_interval,
                identity=HubIdentity(
                    hub_url=hub.public_url,
                    public_hub_url=ctx.launcher.public_url or hub.public_url,
                    api_token=token,
                    portal_url=self.public_url,
                    base_url=self.base_url,
                ),
                cookie_secret=self.secret("portal-cookie-secret"),
                thumbnail_cache=ThumbnailCache(self.state / "thumbnails"),
                preview_sandbox=previews,
            )
            server = make_http_server(
                app,
                max_header_size=self.max_header_size,
                header_timeout=self.header_timeout,
                max_body_size=self.max_body_size,
                body_timeout=self.body_timeout,
            )
            server.listen(self.port, self.ip)
            url = f"http://{self.ip}:{self.port}{self.base_url}"
            self.log.info("JupyterHub at %s", hub.public_url)
            print(f"\npanbinder is running at {url}\n", flush=True)
            self._serving = True
            await stop.wait()
        finally:
            self._stopping = True
            await self._stop(ctx, server, hub, previews, run)


class BuildApp(ServiceApp):
    classes = [PanbinderBase, ServiceApp, *COMPONENTS]
    name = "panbinder-build"
    usage = "panbinder build REPO_URL [REF]"
    description = "Build and push the image for REPO_URL at REF (default HEAD), printing the build log."
    provider = Unicode("git", help="Repository provider.").tag(config=True)
    aliases = {**PanbinderBase.aliases, "provider": "BuildApp.provider"}

    def start(self) -> None:
        if not self.extra_args:
            print("usage: panbinder build REPO_URL [REF]", file=sys.stderr)
            self.exit(2)
        sys.exit(asyncio.run(self.run_build(*self.extra_args[:2])))

    async def run_build(self, repo_url: str, ref: str = "HEAD") -> int:
        from urllib.parse import quote

        from .pipeline import run_pipeline
        from .providers import get_provider_class

        ctx = self.components()
        try:
            provider = ctx.provider(get_provider_class(self.provider), f"{quote(repo_url, safe='')}/{ref}")
        except PanbinderError as e:
            print(f"error: {e.message}", file=sys.stderr)
            return 2
        last: Event | None = None
        async for event in run_pipeline(ctx, provider, build_only=True, log=self.log):
            last = event
            if event.phase == "failed":
                print(f"\nfailed: {event.message}", file=sys.stderr)
            elif event.message:
                sys.stdout.write(event.message)
                sys.stdout.flush()
        if last is not None and last.phase == "ready":
            print(last.extra.get("imageName", ""))
            return 0
        return 1


class LaunchApp(ServiceApp):
    classes = [PanbinderBase, ServiceApp, *COMPONENTS]
    name = "panbinder-launch"
    usage = "panbinder launch --doi DOI"
    description = (
        "Launch a registered publication (--doi DOI) through the running service's Hub and print "
        "the server URL with its token. Embargoed datasets are refused as for an anonymous reader."
    )
    doi = Unicode("", help="DOI of a registered publication.").tag(config=True)
    aliases = {**PanbinderBase.aliases, "doi": "LaunchApp.doi"}

    def start(self) -> None:
        if not self.doi:
            print("usage: panbinder launch --doi DOI", file=sys.stderr)
            self.exit(2)
        sys.exit(asyncio.run(self.run_launch()))

    async def run_launch(self) -> int:
        from .data_mounts.access import ANONYMOUS
        from .pipeline import run_pipeline

        ctx = self.components()
        self.hub_connection(ctx.launcher)
        ctx.launcher.pool = None  # a script wants its own server, and this process exits
        try:
            provider = ctx.provider(DoiProvider, self.doi)
            plan = await provider.prepare(ANONYMOUS)
        except PanbinderError as e:
            print(f"error: {e.message}", file=sys.stderr)
            return 2
        last: Event | None = None
        async for event in run_pipeline(ctx, provider, log=self.log, plan=plan):
            last = event
            if event.phase == "failed":
                print(f"failed: {event.message}", file=sys.stderr)
            elif event.message and event.phase != "ready":
                sys.stderr.write(event.message)
        await ctx.launcher.stop()  # a failed launch's server and user are removed before exiting
        if last is not None and last.phase == "ready":
            print(f"{last.extra['url']}?token={last.extra['token']}")
            return 0
        return 1


ALL_CLASSES = [PanbinderBase, ServiceApp, ServeApp, BuildApp, LaunchApp, *COMPONENTS]

from .cli import PanbinderApp, main  # noqa: E402  (the entry point; re-exported)

__all__ = ["ALL_CLASSES", "BuildApp", "LaunchApp", "PanbinderApp", "ServeApp", "ServiceApp", "main"]

if __name__ == "__main__":
    main()
