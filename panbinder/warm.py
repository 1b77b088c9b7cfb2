"""Warm start of the pre-started server pool: what a reader may click first after ``serve`` starts.

Registered publications are the links that sit in papers: the ``ServerPool.max_servers`` registered
last and as many of the most launched (a catalogue of thousands is not planned one by one at each
start) each become the launch request an
anonymous reader's click on ``/v2/doi/<doi>`` makes (the ``doi`` provider's own plan and image,
so the pooled server has exactly that click's mounts and environment), with the time it was
registered. Images launched this week without datasets come from the demand log. The pool
(``launcher/pool.py``) ranks them by expected demand and starts what fits its memory budget;
an image the registry does not hold is left out (its first launch builds it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data_mounts.access import Identity
from .errors import PanbinderError
from .executor import run_blocking
from .launcher import LaunchRequest
from .launcher.demand import DemandLog
from .pipeline import PipelineContext, resolve_image
from .providers.doi import DoiProvider
from .registry_cache.naming import parse_image

DEMAND_FILE = "launch-demand.json"


def _registered(ctx: PipelineContext, limit: int) -> list[tuple[str, float]]:
    """(DOI, registration time) of the ``limit`` publications registered last and the ``limit``
    launched most (a catalogue of thousands is not planned one by one at every start)."""
    from sqlalchemy import select

    from .data_mounts.models import Publication

    catalogue = ctx.catalogue
    if catalogue is None:
        return []
    found: dict[str, float] = {}
    with catalogue.session() as session:
        for order in (Publication.created.desc(), Publication.launches.desc()):
            for p in session.scalars(select(Publication).order_by(order, Publication.id).limit(limit)):
                found[p.doi] = p.created.timestamp()
    return list(found.items())


async def publication_requests(
    ctx: PipelineContext, log: Any, limit: int
) -> list[tuple[LaunchRequest, float]]:
    """The launch request of an anonymous click on each publication worth a server (those a
    reader may not launch, embargoed ones, are left out), with its registration time."""
    out = []
    profile = ctx.launcher.profile("")
    for doi, registered in await run_blocking(_registered, ctx, limit):
        provider = ctx.provider(DoiProvider, doi)
        try:
            plan = await provider.prepare(Identity())
            _, image = await resolve_image(ctx, provider)
        except PanbinderError as e:
            log.debug("no pre-started server for %s: %s", doi, e.log_message)
            continue
        request = LaunchRequest(f"warm-{doi}", image, plan.mounts, plan.environment, profile)
        out.append((request, registered))
    return out


async def warm_pool(ctx: PipelineContext, state: Path, log: Any) -> None:
    """Plan the pool from the catalogue and the demand log, and start filling it."""
    pool = ctx.launcher.pool
    if pool is None or pool.size <= 0:
        return
    demand = DemandLog(state / DEMAND_FILE)
    candidates: list[tuple[LaunchRequest, float | None]] = list(
        await publication_requests(ctx, log, pool.max_servers)
    )
    for kind in demand.kinds.values():
        if not kind.image:  # a launch with datasets: only publications' are known again
            continue
        try:
            profile = ctx.launcher.profile(kind.profile)
        except PanbinderError:  # the profile was removed from the configuration
            continue
        candidates.append((LaunchRequest("warm", parse_image(kind.image), profile=profile), None))
    await pool.warm(candidates, demand, available=lambda r: _in_registry(ctx, r, log))
    await pool.first_round()


async def _in_registry(ctx: PipelineContext, request: LaunchRequest, log: Any) -> bool:
    try:
        return bool(await ctx.registry.digest(request.image))
    except PanbinderError as e:
        log.warning("registry not answering while planning the pool: %s", e.log_message)
        return False
