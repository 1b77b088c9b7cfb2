"""``panbinder build`` and ``panbinder launch``, and ``ServiceApp``, the base they share with
``panbinder serve`` (serve.py): the choice of builder and launcher, and the components.

Both commands run the same pipeline as the portal's /build (panbinder/pipeline.py) and print
its events; neither imports the web portal.
"""

from __future__ import annotations

import asyncio
import sys
from functools import cached_property

from jupyterhub.traitlets import EntryPointType
from traitlets import Type, Unicode

from .command import PanbinderBase
from .components import COMPONENTS, Components
from .data_mounts.access import ANONYMOUS
from .errors import PanbinderError
from .events import Event
from .pipeline import run_pipeline
from .providers.doi import DoiProvider


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

    @cached_property
    def components(self) -> Components:
        """This command's components (panbinder/components.py), built once."""
        return Components(self, builder_class=self.builder_class, launcher_class=self.launcher_class)


class BuildApp(ServiceApp):
    classes = [PanbinderBase, ServiceApp, *COMPONENTS]
    name = "panbinder-build"
    usage = "panbinder build REPO_URL [REF]"
    description = "Build and push the image for REPO_URL at REF (default HEAD), printing the build log."
    provider = EntryPointType(
        "panbinder.providers.git.GitProvider",
        klass="panbinder.providers.base.RepoProvider",
        entry_point_group="panbinder.providers",
        help="Repository provider: the name of an installed one (entry point group panbinder.providers) "
        "or an import path.",
    ).tag(config=True)
    aliases = {**PanbinderBase.aliases, "provider": "BuildApp.provider"}

    def start(self) -> None:
        if not self.extra_args:
            print("usage: panbinder build REPO_URL [REF]", file=sys.stderr)
            self.exit(2)
        sys.exit(asyncio.run(self.run_build(*self.extra_args[:2])))

    async def run_build(self, repo_url: str, ref: str = "HEAD") -> int:
        from urllib.parse import quote

        ctx = self.components.pipeline
        try:
            provider = ctx.provider(self.provider, f"{quote(repo_url, safe='')}/{ref}")
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
        ctx = self.components.pipeline
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


__all__ = ["BuildApp", "LaunchApp", "ServiceApp"]
