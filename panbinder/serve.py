"""``panbinder serve``: the portal and JupyterHub in the foreground.

This is the one module that imports the web portal (``web/``): it takes the components from the
composition root (components.py), starts the Hub, and hands the pipeline, the catalogue and the
launcher to ``web.app.make_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from traitlets import Bool, Float, Int, Unicode, default

from . import metrics
from .check_cli import CHECK_CLASSES, make_scheduler
from .command import PanbinderBase
from .components import COMPONENTS
from .data_mounts.derived_data import DerivedData
from .data_mounts.derived_limits import remove_orphans
from .data_mounts.preview import ThumbnailCache
from .data_mounts.sandbox import PreviewSandbox
from .errors import PanbinderError
from .executor import run_blocking
from .launcher.base import ServerScope
from .launcher.hub_process import HubProcess, check_ports
from .lifecycle import PortalRun
from .pipeline import PipelineContext
from .service_cli import ServiceApp
from .warm import warm_pool
from .web.app import derived_app, make_app
from .web.auth import HubIdentity
from .web.http_server import make_http_server
from .web.urls import public_base, review_url


class ServeApp(ServiceApp):
    classes = [PanbinderBase, ServiceApp, *COMPONENTS, *CHECK_CLASSES]
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
    health_timeout = Float(
        5.0, help="Seconds each /health check (registry, docker, Hub, build engine) may take."
    ).tag(config=True)
    health_cache = Float(10.0, help="Seconds a /health check's result is reused before it runs again.").tag(
        config=True
    )
    launcher_stop_timeout = Float(
        30.0,
        help="Seconds the launcher may take at shutdown to remove pre-started servers and finish "
        "removals under way, before the Hub is stopped.",
    ).tag(config=True)
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
        if self._derived_server is not None:
            self._derived_server.stop()
        elif self._derived_sockets:  # bound, never served (the start failed)
            for sock in self._derived_sockets:
                sock.close()
        with contextlib.suppress(Exception):
            await ctx.manager.stop_all("shutdown")  # BuildManager.stop_timeout
        if server is not None:  # pre-started servers, the reaper, removals under way
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ctx.launcher.stop(), self.launcher_stop_timeout)
        await previews.stop()
        await run_blocking(hub.stop)
        if run is not None:
            await run_blocking(run.release)

    @staticmethod
    def _publish_metrics(ctx: PipelineContext) -> None:
        metrics.BUILDS_IN_PROGRESS.set_function(lambda: ctx.manager.running)
        pool = ctx.launcher.pool
        metrics.POOL_SERVERS.set_function(lambda: pool.count if pool is not None else 0)
        metrics.POOL_MEMORY.set_function(lambda: pool.status()["memory_bytes"] if pool is not None else 0)
        metrics.BUILD_QUEUE.set_function(lambda: ctx.manager.queued)

        def count_build(job, outcome: str, seconds: float) -> None:
            metrics.BUILD_TIME.labels(job.result.phase if job.result else outcome).observe(seconds)
            metrics.BUILDS.labels(outcome).inc()

        ctx.manager.on_finish.append(count_build)

    async def serve(self) -> None:
        stop = self._install_signals()
        parts = self.components
        ctx = parts.pipeline
        token = ctx.launcher.api_token
        hub = parts.hub
        catalogue = parts.catalogue
        derived = parts.derived_data
        self._use_derived_root(catalogue, derived)
        catalogue.start()  # migrations run before anything serves
        self._remove_derived_orphans(catalogue, derived)
        self._publish_metrics(ctx)
        previews = parts.previews
        run = server = checks = None
        try:
            run = self._prepare_state(hub, ctx)
            ports = [(self.ip, self.port, "ServeApp.port")]
            if self.start_hub:
                launcher_workspaces = getattr(ctx.launcher, "workspaces", None)
                if not hub.workspaces.enabled and launcher_workspaces is not None:
                    launcher_workspaces.enabled = False  # the Hub mounts none: the portal signs none
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
            if self.start_hub:
                self._derived_listener(derived, settings)
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
            await self._warm_pool(ctx)
            with contextlib.suppress(PanbinderError):  # logged; the first preview tries again
                await previews.start()  # logs what the sandbox enforces on this machine
            server = self._portal(ctx, hub, previews)
            server.listen(self.port, self.ip)
            self._listen_derived(server)
            checks = make_scheduler(self, parts)  # nightly checks (CheckScheduler.nightly_at)
            checks.start()
            parts.review_servers.start()  # stops review links' servers once they end (ReviewServers.interval)
            url = f"http://{self.ip}:{self.port}{self.base_url}"
            self.log.info("JupyterHub at %s", hub.public_url)
            print(f"\npanbinder is running at {url}\n", flush=True)
            self._serving = True
            await stop.wait()
        finally:
            self._stopping = True
            if checks is not None:
                await checks.stop()
            await parts.review_servers.stop()
            await self._stop(ctx, server, hub, previews, run)

    _derived_server: HTTPServer | None = None
    _derived_sockets: list | None = None

    def _use_derived_root(self, catalogue, derived: DerivedData) -> None:
        """Derived datasets are stored under ``DerivedData.root``: a storage root of the
        catalogue (and so of the Hub's mount check), made here if missing."""
        if not derived.enabled:
            return
        root = Path(derived.root)
        root.mkdir(parents=True, exist_ok=True)
        if str(root) not in catalogue.storage_roots:
            catalogue.storage_roots = [*catalogue.storage_roots, str(root)]

    def _remove_derived_orphans(self, catalogue, derived: DerivedData) -> None:
        """Remove the copies of registrations a stopped portal left unfinished (``.incoming``)."""
        if not derived.enabled:
            return
        try:
            remove_orphans(Path(derived.root), catalogue, self.log)
        except Exception as e:  # the catalogue away: they are removed at the next start
            self.log.warning("derived datasets: unfinished copies not removed: %s", e)

    def _derived_listener(self, derived: DerivedData, settings: dict) -> None:
        """Bind the listener servers reach for ``panbinder-publish`` (on the Hub's connect
        address; port 0: any free one) and give the Hub's spawner its URL."""
        if not derived.enabled:
            return
        ip = settings["hub_connect_ip"]
        try:
            self._derived_sockets = bind_sockets(derived.internal_port, ip)
        except OSError as e:  # the portal still serves; servers get no panbinder-publish
            self.log.warning(
                "derived datasets not taken: cannot listen on %s:%d (%s); set DerivedData.internal_port "
                "to a free port (0: any)",
                ip,
                derived.internal_port,
                e.strerror or e,
            )
            return
        port = self._derived_sockets[0].getsockname()[1]
        default = f"http://{ip}:{port}{self.base_url}api/derived-datasets"
        settings["spawner"]["publish_api_url"] = derived.api_url or default

    def _listen_derived(self, portal: HTTPServer) -> None:
        if not self._derived_sockets:
            return
        # reached from servers directly, never through the proxy: X-Forwarded-* are not trusted
        self._derived_server = self.http_server(derived_app(portal.request_callback), xheaders=False)
        self._derived_server.add_sockets(self._derived_sockets)
        address = self._derived_sockets[0].getsockname()
        self.log.info("derived datasets taken at %s:%d", address[0], address[1])

    async def _warm_pool(self, ctx: PipelineContext) -> None:
        """Pre-start servers for the launches most expected (``warm.py``); a failure only logs."""
        try:
            await warm_pool(ctx, self.state, self.log)
        except Exception as e:  # the catalogue or registry away: the pool fills on first launches
            self.log.warning("could not plan the pre-started servers at start: %s", e)

    def _portal(self, ctx: PipelineContext, hub: HubProcess, previews: PreviewSandbox) -> HTTPServer:
        """The portal's HTTP server (not listening yet) for the pipeline, the catalogue and the launcher."""
        identity = self.identity(
            hub.public_url, ctx.launcher.public_url or hub.public_url, ctx.launcher.api_token
        )
        return self.http_server(self.portal_app(identity, hub=hub, previews=previews))

    def identity(self, hub_url: str, public_hub_url: str, api_token: str) -> HubIdentity:
        """Who a portal request comes from, asked of the Hub at ``hub_url`` with ``api_token``."""
        return HubIdentity(
            hub_url=hub_url,
            public_hub_url=public_hub_url,
            api_token=api_token,
            portal_url=self.public_url,
            base_url=self.base_url,
        )

    def portal_app(
        self,
        identity: HubIdentity,
        *,
        hub: HubProcess | None = None,
        previews: PreviewSandbox | None = None,
        cookie_secret: str = "",
    ) -> web.Application:
        """The portal's tornado application from the components and this command's settings."""
        parts = self.components
        return make_app(
            pipeline=parts.pipeline,
            docker=parts.docker,
            app=self,
            log=self.log,
            public_url=self.public_url,
            base_url=self.base_url,
            cors_allow_origin=self.cors_allow_origin,
            keepalive_interval=self.keepalive_interval,
            health_timeout=self.health_timeout,
            health_cache=self.health_cache,
            identity=identity,
            hub=hub,
            cookie_secret=cookie_secret or self.secret("portal-cookie-secret"),
            thumbnail_cache=ThumbnailCache(self.state / "thumbnails"),
            preview_sandbox=previews,
            kept_notebooks=parts.kept_notebooks,
            review_links=parts.review_links,
            derived_data=parts.derived_data,
            manifest_dir=str(self.state / "manifests"),
        )

    def review_url(self, doi: str, token: str) -> str:
        """The public URL of a review link, as the portal's owners' page shows it."""
        return review_url(public_base(self.public_url, self.base_url), doi, token)

    def http_server(self, app: web.Application, *, xheaders: bool = True) -> HTTPServer:
        """The HTTP server for ``app`` with this command's request limits (not listening yet);
        ``xheaders``: trust the proxy's X-Forwarded-* headers."""
        return make_http_server(
            app,
            xheaders=xheaders,
            max_header_size=self.max_header_size,
            header_timeout=self.header_timeout,
            max_body_size=self.max_body_size,
            body_timeout=self.body_timeout,
        )


__all__ = ["ServeApp"]
