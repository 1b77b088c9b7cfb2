"""The composition root: the components of a running panbinder, each built once from configuration.

The portal (``panbinder serve``) and the ``build``, ``launch`` and ``rebuild`` commands take their
components from ``Components``; no other module wires components together. Each component is made
on first use, once, with the command as its traitlets parent (so it reads the command's settings
and state folder). What a component needs from the others it gets through the hooks its seam
declares (``Builder.on_built``, ``Launcher.use_secrets``, ``Launcher.use_run_engine``,
``Launcher.pool``), never by probing. The run engine's ``Docker`` is made here once and handed to
whatever talks to that engine.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .builder.archives import (
    ArchiveDownloads,
    DataverseSource,
    FigshareSource,
    SoftwareHeritageSource,
    ZenodoSource,
)
from .builder.base import Builder
from .builder.build_engine import BuildEngine
from .builder.buildpacks.conda_mirror import CondaMirror
from .builder.buildpacks.desktop import Desktop
from .builder.buildpacks.installer import PackageInstaller
from .builder.engine import BuildKitEngine
from .builder.manager import BuildManager
from .builder.policy import SpecPolicy
from .builder.r2d import Repo2DockerBuilder
from .builder.url_guard import RepoGuard
from .checks.compare import OutputComparison
from .checks.kept import KeptNotebooks
from .checks.records import CheckRecords
from .data_mounts.build_leases import BuildLeases
from .data_mounts.catalogue import Catalogue
from .data_mounts.derived_data import DerivedData
from .data_mounts.review_links import ReviewLinks
from .data_mounts.sandbox import PreviewSandbox
from .docker_engine import Docker
from .launcher.base import Launcher
from .launcher.hub_api import HubLauncher
from .launcher.hub_process import HubProcess
from .launcher.pool import ServerPool
from .launcher.profiles import Profiles
from .launcher.reaper import Reaper
from .pipeline import PipelineContext
from .providers.doi import DoiProvider
from .providers.git import GitProvider
from .providers.shorthands import GistProvider, GitHubProvider, GitLabProvider
from .registry_cache import Registry
from .registry_cache.archive import Archive
from .review_servers import ReviewServers

if TYPE_CHECKING:
    from .command import PanbinderBase

# The configurable classes of the components, for --help-all and --generate-config.
COMPONENTS = [
    Docker,
    Registry,
    Archive,
    Repo2DockerBuilder,
    BuildKitEngine,
    BuildEngine,
    CondaMirror,
    PackageInstaller,
    Desktop,
    BuildManager,
    SpecPolicy,
    GitProvider,
    DoiProvider,
    GitHubProvider,
    GitLabProvider,
    GistProvider,
    RepoGuard,
    HubLauncher,
    ArchiveDownloads,
    ZenodoSource,
    FigshareSource,
    DataverseSource,
    SoftwareHeritageSource,
    ServerPool,
    Profiles,
    Reaper,
    HubProcess,
    Catalogue,
    DerivedData,
    ReviewLinks,
    ReviewServers,
    PreviewSandbox,
    OutputComparison,
    CheckRecords,
    KeptNotebooks,
]


class Components:
    """The components of one command, made on first use from its configuration.

    ``builder_class`` and ``launcher_class`` are the implementations the command chose (its
    ``ServiceApp.builder_class`` / ``launcher_class`` settings). The launcher owns its pool of
    pre-started servers and its reaper (``Launcher.pool``, ``HubLauncher.reaper``).
    """

    def __init__(
        self,
        command: PanbinderBase,
        *,
        builder_class: type[Builder] = Repo2DockerBuilder,
        launcher_class: type[Launcher] = HubLauncher,
    ) -> None:
        self.command = command
        self.log = command.log
        self.builder_class = builder_class
        self.launcher_class = launcher_class

    @cached_property
    def catalogue(self) -> Catalogue:
        """The dataset catalogue; its first session runs the migrations (``serve`` starts it
        before anything serves)."""
        return Catalogue(parent=self.command, log=self.log)

    @cached_property
    def derived_data(self) -> DerivedData:
        """Settings of derived datasets (``panbinder-publish`` in servers with a workspace)."""
        return DerivedData(parent=self.command, log=self.log)

    @cached_property
    def review_links(self) -> ReviewLinks:
        """Review links of publications, signed with their own key (the state folder's unless set)."""
        links = ReviewLinks(parent=self.command, log=self.log)
        links.signing_key = links.signing_key or self.command.secret("review-link-key")
        return links

    @cached_property
    def review_servers(self) -> ReviewServers:
        """The servers started through review links, stopped when their link ends."""
        return ReviewServers(
            parent=self.command, log=self.log, catalogue=self.catalogue, launcher=self.launcher
        )

    @cached_property
    def registry(self) -> Registry:
        return Registry(parent=self.command, log=self.log)

    @cached_property
    def docker(self) -> Docker:
        """The run engine (readers' servers, the reaper, archive and restore, /health): one client
        for them all. The build engine has its own (``BuildEngine.docker()``)."""
        return Docker(parent=self.command, log=self.log)

    @cached_property
    def archive(self) -> Archive:
        return Archive(parent=self.command, log=self.log, docker=self.docker)

    @cached_property
    def builder(self) -> Builder:
        builder = self.builder_class(parent=self.command, log=self.log)
        if builder.on_built is None:  # each build's environment lock goes to the catalogue
            builder.on_built = lambda image, digest, lock: self.catalogue.record_lock(image, digest, lock)
        builder.use_build_engine(self.build_engine)
        return builder

    @cached_property
    def build_engine(self) -> BuildEngine:
        """The second dockerd that builds run in (builds, label builds, lock probes, step limits)."""
        return BuildEngine(parent=self.command, log=self.log)

    @cached_property
    def manager(self) -> BuildManager:
        """Builds, shared with the other portals on the same catalogue through its build leases."""
        return BuildManager(
            parent=self.command,
            log=self.log,
            builder=self.builder,
            build_engine=self.build_engine,
            leases=BuildLeases(self.catalogue),
        )

    @cached_property
    def launcher(self) -> Launcher:
        launcher = self.launcher_class(parent=self.command, log=self.log)
        launcher.use_secrets(self.command.secret)
        launcher.use_run_engine(self.docker)
        return launcher

    @cached_property
    def policy(self) -> SpecPolicy:
        return SpecPolicy(parent=self.command, log=self.log)

    @cached_property
    def pipeline(self) -> PipelineContext:
        """Resolve, look up, build, launch: what the portal's /build and the commands run."""
        return PipelineContext(
            registry=self.registry,
            manager=self.manager,
            launcher=self.launcher,
            image_prefix=self.command.image_prefix,
            policy=self.policy,
            catalogue=self.catalogue,
            settings=self.command,
            review_servers=self.review_servers,
        )

    @cached_property
    def hub(self) -> HubProcess:
        """The JupyterHub that ``serve`` runs (its settings, ports, start and stop)."""
        return HubProcess(parent=self.command, log=self.log, docker=self.docker)

    @cached_property
    def previews(self) -> PreviewSandbox:
        return PreviewSandbox(parent=self.command, log=self.log)

    @cached_property
    def kept_notebooks(self) -> KeptNotebooks:
        """The notebooks of each publication's last check (the runner keeps them, the portal shows them)."""
        return KeptNotebooks(parent=self.command, log=self.log, state=self.state)

    @property
    def state(self) -> Path:
        return self.command.state


__all__ = ["COMPONENTS", "Components"]
