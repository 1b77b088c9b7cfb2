"""GET /build/<provider>/<spec>: Server-Sent Events in BinderHub's schema."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from tornado.iostream import StreamClosedError

from panbinder.data_mounts.access import Identity
from panbinder.errors import PanbinderError
from panbinder.events import DEFAULT_FAILED_STATUS, SSE_KEEPALIVE, Event, sse_event
from panbinder.executor import log_task_exception
from panbinder.pipeline import run_pipeline
from panbinder.providers import get_provider_class

from ..handlers.base import BaseHandler
from .review_links import launch_identity

_END = object()


def launch_owner(who: Identity) -> str:
    """Whose workspace the launch mounts: the signed-in user's, but never on a launch through a
    review link (its server holds data the reviewer may see only there, and a workspace would
    let them keep or register copies of it)."""
    if who.review is not None:
        return ""
    return who.name or ""


class BuildHandler(BaseHandler):
    closed = False

    def initialize(self) -> None:
        self.abandoned = asyncio.Event()  # the client left: stop following the build

    def on_connection_close(self) -> None:
        self.closed = True
        self.abandoned.set()

    def log_url(self, name: str) -> str:
        return f"{self.public_base}build-logs/{quote(name, safe='@')}"

    def ready_extra(self, provider_name: str, provider, spec: str, resolved: str) -> dict:
        host = self.public_base
        repo_url = provider.repo_url
        ref_url = (
            repo_url.removesuffix(".git") + f"/tree/{resolved}" if repo_url.startswith("http") else repo_url
        )
        return {
            "repo_url": repo_url,
            "binder_ref_url": ref_url,
            "binder_launch_host": host,
            "binder_request": f"v2/{provider_name}/{spec}",
            "binder_persistent_request": f"v2/{provider_name}/{provider.persistent_spec(resolved)}",
        }

    async def send(self, event: Event | str) -> None:
        if self.closed:
            return
        try:
            self.write(event if isinstance(event, str) else sse_event(event))
            await self.flush()
        except StreamClosedError:
            self.closed = True

    async def get(self, provider_name: str, _spec: str) -> None:
        provider_cls = get_provider_class(provider_name)
        spec = self.provider_spec("build", provider_name)
        provider = self.settings["pipeline"].provider(provider_cls, spec)
        build_only = self.get_argument("build_only", "false").lower() in ("1", "true", "yes")
        if build_only and not self.settings["app"].enable_build_only:
            raise PanbinderError(
                "This service launches what it builds: remove build_only from the request "
                "(the operators may allow build-only requests with ServeApp.enable_build_only).",
                reason="build_only_disabled",
                status_code=403,
            )
        # access and mounts are settled before the stream starts: refusals are plain 4xx answers
        who = await launch_identity(self, provider, record=not build_only)  # a review link is a use
        plan = await provider.prepare(who)
        groups = None if who.anonymous else who.groups  # a profile may be for some Hub groups only
        profile = self.settings["pipeline"].launcher.profile(self.get_argument("profile", ""), groups)
        self.settings["pipeline"].check_policy(provider)  # a refused repository gets a 403

        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self.set_cors()

        queue: asyncio.Queue = asyncio.Queue()

        async def produce() -> None:
            try:
                async for event in run_pipeline(
                    self.settings["pipeline"],
                    provider,
                    build_only=build_only,
                    log=self.log,
                    plan=plan,
                    abandoned=self.abandoned,
                    profile=profile,
                    owner=launch_owner(who),
                    review=who.review,
                ):
                    queue.put_nowait(event)
            except Exception:
                self.log.exception("pipeline crashed for %s", spec)
                queue.put_nowait(Event("failed", "Something went wrong on our side; try again in a moment."))
            finally:
                queue.put_nowait(_END)

        task = asyncio.create_task(produce(), name=f"pipeline-{provider_name}")
        task.add_done_callback(lambda t: log_task_exception(t, self.log))
        interval = self.settings["keepalive_interval"]
        last = None
        resolved = provider.unresolved_ref
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), interval)
            except TimeoutError:
                await self.send(SSE_KEEPALIVE)
                continue
            if item is _END:
                break
            last = item
            resolved = item.extra.get("ref", resolved)
            await self.send(self.decorate(item, provider_name, provider, spec, resolved))
        if last is None or not last.terminal:
            await self.send(
                Event(
                    "failed",
                    "The request ended without a result; try again.",
                    {"status_code": DEFAULT_FAILED_STATUS},
                )
            )
        if not self.closed:
            self.finish()

    def decorate(self, item: Event, provider_name: str, provider, spec: str, resolved: str) -> Event:
        """Add what BinderHub's clients read: the links of 'ready', the log and status of 'failed'."""
        if item.phase == "ready":
            extra = self.ready_extra(provider_name, provider, spec, resolved)
            return Event("ready", item.message, {**item.extra, **extra})
        if item.phase == "failed":
            extra = {"status_code": DEFAULT_FAILED_STATUS, **item.extra}
            if item.extra.get("build_log"):
                extra["build_log_url"] = self.log_url(item.extra["build_log"])
            return Event("failed", item.message, extra)
        return item


routes = [(r"/build/([^/]+)/(.+)", BuildHandler)]
