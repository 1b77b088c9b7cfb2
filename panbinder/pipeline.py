"""From a provider spec to a running server: resolve, look up, build (shared), launch.

The pipeline reaches the builder and the launcher only through their base classes and yields
events; the HTTP handler and the ``build`` and ``launch`` commands only format them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from traitlets.config import Configurable

from . import metrics
from .builder import BuildRequest
from .builder.manager import BuildManager
from .builder.policy import SpecPolicy
from .data_mounts.mounts import MountPlan
from .errors import PanbinderError
from .events import Event
from .launcher import Launcher, LaunchRequest
from .launcher.base import server_user
from .launcher.profiles import Profile
from .providers import RepoProvider
from .registry_cache import Registry, image_ref

if TYPE_CHECKING:
    from .data_mounts.catalogue import Catalogue
    from .data_mounts.review_grants import ReviewGrant
    from .review_servers import ReviewServers


@dataclass
class PipelineContext:
    """What a request goes through, made once by the composition root (components.py): the
    registry, the build manager, the launcher, the ban/allow lists, the catalogue, and the
    record of servers started through review links (None: such launches are refused)."""

    registry: Registry
    manager: BuildManager
    launcher: Launcher
    image_prefix: str
    policy: SpecPolicy | None = None
    catalogue: Catalogue | None = None
    settings: Configurable | None = None  # where providers read their configuration
    review_servers: ReviewServers | None = None

    def provider(self, cls: type[RepoProvider], spec: str) -> RepoProvider:
        """A provider of class ``cls`` (see ``providers.get_provider_class``) for ``spec``, with
        this service's settings and catalogue; a PanbinderError (4xx) for a malformed spec."""
        return cls(spec, parent=self.settings, catalogue=self.catalogue)

    def check_policy(self, provider: RepoProvider) -> None:
        """Raise PanbinderError (403) for a repository the ban/allow lists refuse."""
        if self.policy is not None:
            self.policy.check(provider.repo_url, provider.unresolved_ref)


def refusal(error: PanbinderError) -> Event:
    """The failed event of a refused request, with the HTTP status BinderHub's clients read."""
    return Event("failed", error.message, {"reason": error.reason, "status_code": error.status_code})


async def until_set(events: AsyncGenerator[Event, None], stop: asyncio.Event | None) -> AsyncIterator[Event]:
    """``events`` until ``stop`` is set; then the iterator is closed at once (a launch closed
    this way removes the server it was starting), without waiting for its next event."""
    if stop is None:
        async for event in events:
            yield event
        return
    try:
        while not stop.is_set():
            step = asyncio.ensure_future(anext(events))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({step, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not step.done():
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
                return
            try:
                event = step.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        await events.aclose()


async def resolve_image(ctx: PipelineContext, provider: RepoProvider):
    resolved = await provider.resolve()
    image = image_ref(
        registry=ctx.registry.host,
        prefix=ctx.image_prefix,
        provider=provider.image_provider,
        repo_url=provider.repo_url,
        ref=resolved,
    )
    return resolved, image


async def track_review_server(ctx: PipelineContext, review: ReviewGrant, ready: Event, log=None) -> Event:
    """Record the server of ``ready`` as started through ``review``'s link, so that the link's
    end stops it; a server that cannot be recorded, or whose link ended while it started, is
    removed at once (failed event)."""
    url = ready.extra.get("url", "")
    try:
        if ctx.review_servers is None:
            raise RuntimeError("no record of review-link servers in this pipeline")
        if not await ctx.review_servers.record(review.link_id, url):
            return Event(
                "failed",
                "This review link ended while the server started; ask the publication's authors for a new one.",
                {"reason": "review_ended", "status_code": 403},
            )
    except Exception as e:
        if log:
            log.error("server of review link %d not recorded, removing it: %s", review.link_id, e)
        if url:
            await asyncio.shield(ctx.launcher.delete_user(server_user(url)))
        return Event(
            "failed", "The server could not be started; try again in a moment.", {"status_code": 503}
        )
    return ready


async def run_pipeline(
    ctx: PipelineContext,
    provider: RepoProvider,
    *,
    build_only: bool = False,
    log=None,
    plan: MountPlan | None = None,
    abandoned: asyncio.Event | None = None,
    profile: Profile | None = None,
    owner: str = "",
    review: ReviewGrant | None = None,
) -> AsyncIterator[Event]:
    """Events of one request; when ``abandoned`` is set (the client left) it stops following
    the build (which the manager may then cancel) and launches nothing. ``owner``: the
    signed-in user whose persistent workspace the server mounts ("": anonymous, none);
    ``review``: the review link the launch goes through (its server is recorded, to be stopped
    when the link ends)."""
    build_id = secrets.token_hex(4)
    try:
        ctx.check_policy(provider)
    except PanbinderError as e:
        metrics.REQUESTS.labels(provider.name, "failed").inc()
        yield refusal(e)
        return
    yield Event("waiting", f"Resolving {provider.unresolved_ref} in {provider.repo_url}\n")
    try:
        resolved, image = await resolve_image(ctx, provider)
        yield Event("fetching", f"Resolved {provider.unresolved_ref} to {resolved}\n", {"ref": resolved})
        digest = await ctx.registry.digest(image)
    except PanbinderError as e:
        if log:
            log.info("request failed: %s", e.log_message, extra={"build_id": build_id})
        metrics.REQUESTS.labels(provider.name, "failed").inc()
        yield refusal(e)
        return
    metrics.CACHE_HITS.labels("hit" if digest else "miss").inc()
    if digest:
        yield Event("built", "Found built image, launching...\n", {"imageName": image.full})
    else:
        request = BuildRequest(
            build_id=build_id,
            provider=provider.name,
            repo_url=provider.repo_url,
            resolved_ref=resolved,
            unresolved_ref=provider.unresolved_ref,
            image=image,
        )
        try:
            job, joined = ctx.manager.attach(request)
        except PanbinderError as e:  # the repository's build quota
            metrics.REQUESTS.labels(provider.name, "failed").inc()
            yield refusal(e)
            return
        if joined:
            yield Event("waiting", "The same image is already being built; following that build.\n")
        async for event in ctx.manager.follow(job, until=abandoned):
            if event.phase == "built":
                event = Event("built", event.message, {**event.extra, "imageName": image.full})
            yield event
            if event.phase == "failed":
                metrics.REQUESTS.labels(provider.name, "failed").inc()
                return
    if abandoned is not None and abandoned.is_set():
        metrics.REQUESTS.labels(provider.name, "abandoned").inc()
        return
    if build_only:  # BinderHub's clients take a stream that ends without 'ready' as failed
        metrics.REQUESTS.labels(provider.name, "built").inc()
        yield Event("ready", f"Image {image.full} is ready\n", {"imageName": image.full})
        return
    started = time.monotonic()
    metrics.LAUNCHES_IN_PROGRESS.inc()
    outcome = "failed"
    try:
        request = LaunchRequest(
            launch_id=build_id,
            image=image,
            mounts=plan.mounts if plan else (),
            environment=plan.environment if plan else (),
            profile=profile,
            # only a launcher that mounts workspaces gets the owner: a plain launch may use the pool;
            # a launch through a review link never mounts a workspace (embargoed data next to it)
            workspace=owner if review is None and ctx.launcher.workspace_path(owner) else "",
        )
        async for event in until_set(ctx.launcher.launch(request), abandoned):
            if event.phase == "ready" and review is not None:
                event = await track_review_server(ctx, review, event, log)
            if event.phase == "ready":
                outcome = "success"
            yield event
        if abandoned is not None and abandoned.is_set() and outcome != "success":
            outcome = "abandoned"
    finally:
        metrics.LAUNCHES_IN_PROGRESS.dec()
        metrics.LAUNCH_TIME.labels(outcome).observe(time.monotonic() - started)
        metrics.REQUESTS.labels(provider.name, outcome).inc()
