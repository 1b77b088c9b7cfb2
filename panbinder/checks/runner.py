"""Run one publication's check: each step in order, each recorded, then the verdict.

1. **archive intact**: when the publication has an archive (``Archive.root``, named as
   ``panbinder archive DOI`` names it), every file of it is verified against its sha256, as
   ``restore --verify-only`` does; the registry must hold the image under its repository's name
   with the digest the archive (else the catalogue's lock record) names. When the registry lost
   the image and an archive exists, the image is restored from it and the check says so
   (``CheckResult.restored``). No archive and no image: the step fails (nothing to check from).
2. **launches**: the same pipeline and launcher as a reader's launch by DOI, as an anonymous
   reader (same hardening and limits; the publication's open datasets mounted read-only). A
   publication with a dataset under embargo is not launched at all: the step fails (``does not
   run``) saying which dataset is under embargo until when, and that the check runs once the
   data is released; nothing of the data is read, mounted or recorded.
3. **runs**: the plan (``notebooks.load_plan``) read from the repository's files in the image,
   its commands and notebooks executed inside the launched server's container
   (``in_container``: why there). The first error names the notebook, the cell and the exception.
4. **same results**: each notebook that ran compared with its stored outputs (``OutputComparison``).
5. **frozen rebuild**: ``rebuild --frozen`` of the publication must succeed with an identical lock
   (``CheckRunner.frozen_rebuild``; it rebuilds the image, so it costs a build). The rebuild is
   ``rebuilds.rebuild_image`` with the command's own builder and build manager (in ``serve``,
   serve's build queue, where it waits behind readers' builds). When the upstream repository
   cannot give the pinned commit, the rebuild checks it out of the archive's repository bundle
   and its message says so ("rebuilt from the archive's repository bundle; upstream ... is
   unreachable").

A *fresh* check (``check(doi, Kind.FRESH)``) instead starts with ``rebuild --fresh`` (the
repository's files resolved again today, what changed upstream in its message) and launches,
runs and compares that image, so "would still build today" is told apart from "still
reproducible from its archive".

The launched server is always stopped and its temporary user removed, whatever happened. A
step that cannot run because an earlier one failed is recorded as skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from traitlets import Bool, Float, Int
from traitlets.config import LoggingConfigurable

from panbinder.data_mounts.access import ANONYMOUS, embargo_text, may_access
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import ImageLock
from panbinder.docker_engine import Docker
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking
from panbinder.launcher import LaunchRequest
from panbinder.launcher.base import server_user as user_of
from panbinder.launcher.reaper import escape_name
from panbinder.pipeline import PipelineContext, run_pipeline
from panbinder.providers.doi import DoiProvider
from panbinder.rebuilds import FRESH, FROZEN, RebuildResult, pinned_image
from panbinder.registry_cache import ImageRef
from panbinder.registry_cache.archive import (
    Archive,
    ArchiveError,
    archive_name,
    repository_bundle,
    verify_bag,
)
from panbinder.registry_cache.naming import parse_image

from . import restore
from .compare import OutputComparison
from .execution import Execution
from .in_container import collect_repository, execute_in_container
from .kept import KeptNotebooks
from .notebooks import load_plan
from .verdict import CheckResult, Difference, Kind, Status, Step, StepResult

# rebuild(image, kind, bundle=None): ``rebuilds.rebuild_image`` with the command's components
# (kind FROZEN/FRESH; bundle: the archive's repository bundle, for an upstream gone)
Rebuild = Callable[..., Awaitable[RebuildResult]]


@dataclasses.dataclass
class CheckContext:
    """What a check uses, made by the command that runs it from the composition root."""

    pipeline: PipelineContext
    catalogue: Catalogue
    archive: Archive
    docker: Docker  # the run engine, where launched servers' containers are
    container_prefix: str  # HubProcess.container_prefix: a server is <prefix>-<escaped user>
    comparison: OutputComparison
    rebuild: Rebuild | None = None  # None: this command cannot rebuild (rebuild steps are skipped)
    notebooks: KeptNotebooks | None = None  # keeps each checked notebook, stored and executed


@dataclasses.dataclass
class _Run:
    """What the launch, run and results steps found."""

    steps: list[StepResult]
    differences: tuple[Difference, ...] = ()
    diff: str = ""
    # (path, as stored, as executed or None) of each notebook of the plan, for KeptNotebooks
    notebooks: list[tuple[str, dict[str, Any] | None, Any]] = dataclasses.field(default_factory=list)


def _step(step: Step, ok: bool, began: float, started: datetime, message: str = "") -> StepResult:
    status = Status.PASSED if ok else Status.FAILED
    return StepResult(step, status, round(time.monotonic() - began, 3), message, started)


def _skipped(step: Step, why: str) -> StepResult:
    return StepResult(step, Status.SKIPPED, 0.0, why, datetime.now(UTC))


class CheckRunner(LoggingConfigurable):
    """Checks publications one at a time (see the module's docstring for the steps)."""

    notebook_timeout = Float(
        600.0, help="Seconds a notebook (or a command) may run when the plan names no timeout."
    ).tag(config=True)
    frozen_rebuild = Bool(
        True, help="Rebuild the image from its lock (rebuild --frozen) in every check; it costs a build."
    ).tag(config=True)
    max_notebook_bytes = Int(
        200_000_000, help="Bytes of notebooks and plan files a check reads from an image at most."
    ).tag(config=True)

    def __init__(self, context: CheckContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context

    def image_of(self, repo_url: str, sha: str) -> ImageRef:
        ctx = self.context.pipeline
        return pinned_image(registry=ctx.registry.host, prefix=ctx.image_prefix, repo_url=repo_url, sha=sha)

    async def check(self, doi: str, kind: Kind = Kind.FROZEN) -> CheckResult:
        """Check the registered publication ``doi``; PanbinderError when it is not registered.
        A ``fresh`` check rebuilds the image from the repository's files first and runs that."""
        started = datetime.now(UTC)
        with self.context.catalogue.session() as session:
            publication = self.context.catalogue.get_publication(session, doi)
            if publication is None:
                raise PanbinderError(
                    f"No publication with DOI {doi} is registered; check the DOI.", status_code=404
                )
            doi, repo_url, sha = publication.doi, publication.repo_url, publication.resolved_sha
        image = self.image_of(repo_url, sha)
        if kind == Kind.FRESH:
            return await self.fresh_check(doi, image, started)
        async with self.opened_archive(doi, sha) as (path, scratch):  # kept for the frozen rebuild
            archive_step, restored = await self.check_archive(image, path, scratch)
            steps = [archive_step]
            if archive_step.status == Status.FAILED:
                why = "not run: the archive step failed"
                skipped = (Step.LAUNCH, Step.RUN, Step.RESULTS, Step.FROZEN_REBUILD)
                steps += [_skipped(s, why) for s in skipped]
                return CheckResult(doi, Kind.FROZEN, started, tuple(steps), image.full, restored)
            run = await self.launch_and_run(doi)
            await self.keep_notebooks(doi, Kind.FROZEN, started, run)
            steps += run.steps
            steps.append(await self.rebuild_step(image, self.archive_bundle(path, scratch)))
        return CheckResult(
            doi, Kind.FROZEN, started, tuple(steps), image.full, restored, run.differences, run.diff
        )

    async def fresh_check(self, doi: str, source: ImageRef, started: datetime) -> CheckResult:
        """Rebuild from the repository's files (``rebuild --fresh``), then launch, run, compare that."""
        began = time.monotonic()
        if self.context.rebuild is None:
            raise PanbinderError("This command cannot rebuild images; run panbinder check --fresh.")
        try:
            rebuild = await self.context.rebuild(source.full, FRESH)
            ok, message, image = rebuild.ok, rebuild.summary(), rebuild.image
        except PanbinderError as error:
            ok, message, image = False, error.message, ""
        rebuilt = _step(Step.FRESH_REBUILD, ok, began, started, message)
        if not ok:
            why = "not run: the fresh rebuild failed"
            steps = [rebuilt, *(_skipped(s, why) for s in (Step.LAUNCH, Step.RUN, Step.RESULTS))]
            return CheckResult(doi, Kind.FRESH, started, tuple(steps), image)
        run = await self.launch_and_run(doi, parse_image(image))
        await self.keep_notebooks(doi, Kind.FRESH, started, run)
        return CheckResult(
            doi, Kind.FRESH, started, (rebuilt, *run.steps), image, False, run.differences, run.diff
        )

    # archive intact -----------------------------------------------------------------------------

    def archive_path(self, doi: str, sha: str) -> Path | None:
        folder = Path(self.context.archive.root) / archive_name(doi, sha)
        for path in (folder, folder.with_name(folder.name + ".tar")):
            if path.exists():
                return path
        return None

    def recorded_digest(self, image: ImageRef) -> str:
        with self.context.catalogue.session() as session:
            row = session.scalar(select(ImageLock).where(ImageLock.image == image.full))
            return row.digest if row is not None else ""

    @contextlib.asynccontextmanager
    async def opened_archive(self, doi: str, sha: str) -> AsyncIterator[tuple[Path | None, Path]]:
        """The publication's archive (None: none) and a scratch folder for it: the archive is
        opened once (a tarball is unpacked once), and the restore and the frozen rebuild (its
        repository bundle) use that copy."""
        path = self.archive_path(doi, sha)
        scratch = await run_blocking(tempfile.mkdtemp, prefix="panbinder-check-") if path is not None else ""
        try:
            yield path, Path(scratch)
        finally:
            if scratch:
                await run_blocking(shutil.rmtree, scratch, ignore_errors=True)

    def archive_bundle(self, path: Path | None, scratch: Path) -> Path | None:
        """The repository bundle of the archive ``check_archive`` opened (the folder ``path``, or
        the tarball's copy in ``scratch``), confined to it; None when there is none."""
        if path is None:
            return None
        bag = path if path.is_dir() else next((p for p in scratch.iterdir() if p.is_dir()), scratch)
        try:
            return repository_bundle(bag)
        except ArchiveError as error:
            self.log.warning("the frozen rebuild cannot fall back on the archive: %s", error.message)
            return None

    async def check_archive(
        self, image: ImageRef, path: Path | None, scratch: Path
    ) -> tuple[StepResult, bool]:
        """Verify the archive and compare the registry's digest; restore the image when the
        registry lost it."""
        began, started = time.monotonic(), datetime.now(UTC)
        bag: Path | None = None
        try:
            expected = ""
            if path is not None:
                bag, expected = await run_blocking(self.verify_archive, path, scratch)
            expected = expected or await run_blocking(self.recorded_digest, image)
            found = await self.context.pipeline.registry.digest(image)
        except PanbinderError as error:
            return _step(Step.ARCHIVE, False, began, started, error.message), False
        if found is None and path is None and expected:
            message = f"the registry lost {image.full} and the publication has no archive to restore it from"
            return _step(Step.ARCHIVE, False, began, started, message), False
        if found is None and path is None:  # never built here: the launch builds it
            message = f"no archive; {image.full} was never built here, the launch builds it"
            return _step(Step.ARCHIVE, True, began, started, message), False
        if found is None:
            assert path is not None and bag is not None
            try:
                await run_blocking(restore.restore_image, self.context.archive, bag, self.context)
            except PanbinderError as error:
                message = f"the registry lost {image.full} and restoring it failed: {error.message}"
                return _step(Step.ARCHIVE, False, began, started, message), False
            message = f"the registry had lost {image.full}; restored from {path.name}"
            return _step(Step.ARCHIVE, True, began, started, message), True
        if expected and found != expected:
            message = f"the registry's {image.full} has digest {found}, recorded {expected}"
            return _step(Step.ARCHIVE, False, began, started, message), False
        where = f"archive {path.name} verified; " if path is not None else "no archive; "
        return _step(Step.ARCHIVE, True, began, started, f"{where}registry has {found}"), False

    def verify_archive(self, path: Path, scratch: Path) -> tuple[Path, str]:
        """Open the archive at ``path`` (a tarball unpacked into ``scratch``) and verify every
        file of it; its bag folder and the image digest it records."""
        bag = self.context.archive.open(path, scratch)
        verify_bag(bag)
        return bag, self.context.archive.describe(bag).digest

    # launches, runs, same results -------------------------------------------------------------

    async def launch_and_run(self, doi: str, image: ImageRef | None = None) -> _Run:
        """Launch the publication (its own image, or ``image``), run its plan, compare."""
        began, started = time.monotonic(), datetime.now(UTC)
        ctx = self.context.pipeline
        user = ""
        embargo = await run_blocking(self.embargo, doi)
        if embargo:
            launch = _step(Step.LAUNCH, False, began, started, embargo)
            why = "not run: the data is under embargo"
            return _Run([launch, _skipped(Step.RUN, why), _skipped(Step.RESULTS, why)])
        try:
            provider = ctx.provider(DoiProvider, doi)
            failure = ""
            try:
                plan = await provider.prepare(ANONYMOUS)
                if image is None:
                    events = run_pipeline(ctx, provider, plan=plan, log=self.log)
                else:  # a rebuilt image: straight to the launcher, with the same mounts
                    events = ctx.launcher.launch(
                        LaunchRequest(secrets.token_hex(4), image, plan.mounts, plan.environment)
                    )
                async for event in events:
                    if event.phase == "failed":
                        failure = event.message + (
                            f" ({event.extra['detail']})" if "detail" in event.extra else ""
                        )
                    elif event.phase == "ready":
                        user = user_of(event.extra["url"])
            except PanbinderError as error:
                failure = error.message
            if not user:
                launch = _step(Step.LAUNCH, False, began, started, failure or "the server did not start")
                why = "not run: the server did not start"
                return _Run([launch, _skipped(Step.RUN, why), _skipped(Step.RESULTS, why)])
            launch = _step(Step.LAUNCH, True, began, started, f"server of {user} started")
            container = f"{self.context.container_prefix}-{escape_name(user)}"
            return await self.run_in(container, launch)
        finally:
            if user:
                await asyncio.shield(ctx.launcher.delete_user(user))

    def embargo(self, doi: str) -> str:
        """Why an anonymous reader may not launch ``doi`` (its first dataset under embargo), or ""."""
        catalogue = self.context.catalogue
        with catalogue.session() as session:
            publication = catalogue.get_publication(session, doi)
            closed = (
                [ds for ds in publication.datasets if not may_access(ds, ANONYMOUS)] if publication else []
            )
            if not closed:
                return ""
            return (
                f"{embargo_text(closed[0])}: a check runs as an anonymous reader would, so it runs once "
                "the data is released; nothing was launched"
            )

    async def run_in(self, container: str, launch: StepResult) -> _Run:
        began, started = time.monotonic(), datetime.now(UTC)
        docker = self.context.docker
        with tempfile.TemporaryDirectory(prefix="panbinder-check-") as tmp:
            try:
                await run_blocking(
                    collect_repository, docker, container, Path(tmp), max_bytes=self.max_notebook_bytes
                )
                plan = load_plan(Path(tmp), default_timeout=self.notebook_timeout)
            except PanbinderError as error:
                why = "not run: the notebooks did not run"
                run = _step(Step.RUN, False, began, started, error.message)
                return _Run([launch, run, _skipped(Step.RESULTS, why)])
            if plan.empty:
                message = "nothing to run: no notebook has stored outputs and no panbinder.yml names any"
                unreadable = "; ".join(f"{name} ({why})" for name, why in plan.unreadable[:5])
                message += f"; unreadable: {unreadable}" if unreadable else ""
                run = _step(Step.RUN, False, began, started, message)
                return _Run([launch, run, _skipped(Step.RESULTS, "not run: nothing ran")])
            failure = await self.run_commands(container, plan.commands, plan.timeout)
            stored: dict[str, dict[str, Any]] = {}
            executions: list[Execution] = []
            for path in plan.notebooks:
                try:
                    stored[path] = json.loads((Path(tmp) / path).read_text(encoding="utf-8"))
                except (OSError, ValueError) as error:
                    failure = failure or f"{path}: not a readable notebook ({error})"
                    continue
                execution = await run_blocking(
                    execute_in_container, docker, container, path, stored[path], timeout=plan.timeout
                )
                executions.append(execution)
                if execution.error is not None and not failure:
                    failure = f"{path}: {execution.error.describe()}"
        ran = f"{len(plan.notebooks)} notebooks, {len(plan.commands)} commands ran"
        run = _step(Step.RUN, not failure, began, started, failure or ran)
        results, differences, diff = self.results(executions, stored)
        executed = {e.path: e.notebook for e in executions}
        notebooks = [(path, stored.get(path), executed.get(path)) for path in plan.notebooks]
        return _Run([launch, run, *results], differences, diff, notebooks)

    async def keep_notebooks(self, doi: str, kind: Kind, started: datetime, run: _Run) -> None:
        """Keep the run's notebooks for the publication page; a failure here is logged, the check goes on."""
        if self.context.notebooks is None or not run.notebooks:
            return
        try:
            await run_blocking(self.context.notebooks.keep, doi, kind, started, run.notebooks)
        except (OSError, ValueError, TypeError) as error:
            self.log.warning("the notebooks of the check of %s were not kept: %s", doi, error)

    async def run_commands(self, container: str, commands: tuple[str, ...], timeout: float) -> str:
        """Run the plan's commands in the repository's folder; the first failure's message."""
        for command in commands:
            script = 'cd "${REPO_DIR:-$HOME}" && exec sh -c "$1"'
            try:
                proc = await run_blocking(
                    self.context.docker.run_cli,
                    "exec", container, "sh", "-c", script, "sh", command, timeout=timeout,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                return f"command {command!r} did not finish within {timeout:g} s"
            except OSError as error:
                return f"command {command!r} could not be started: {error}"
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip()[-300:]
                return f"command {command!r} failed with exit status {proc.returncode}: {tail}"
        return ""

    def results(
        self, executions: list[Execution], stored: dict[str, dict[str, Any]]
    ) -> tuple[list[StepResult], tuple[Difference, ...], str]:
        """The same-results step (comparing each notebook as far as it ran)."""
        began, started = time.monotonic(), datetime.now(UTC)
        differences: list[Difference] = []
        diffs: list[str] = []
        for execution in executions:
            comparison = self.context.comparison.compare_notebooks(
                execution.path, stored[execution.path], execution.notebook
            )
            differences += comparison.differences
            diffs += [comparison.diff] if comparison.diff else []
        if not executions:
            return [_skipped(Step.RESULTS, "not run: no notebook ran")], (), ""
        if differences:
            more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
            step = _step(Step.RESULTS, False, began, started, differences[0].describe() + more)
        else:
            step = _step(Step.RESULTS, True, began, started, f"{len(executions)} notebooks compared")
        return [step], tuple(differences), "\n".join(diffs)

    # frozen rebuild ---------------------------------------------------------------------------

    async def rebuild_step(self, image: ImageRef, bundle: Path | None = None) -> StepResult:
        """``rebuild --frozen``; ``bundle`` (the archive's repository) stands in for an upstream gone."""
        if not self.frozen_rebuild:
            return _skipped(Step.FROZEN_REBUILD, "turned off (CheckRunner.frozen_rebuild)")
        if self.context.rebuild is None:
            return _skipped(Step.FROZEN_REBUILD, "this service's builder cannot rebuild from a lock")
        began, started = time.monotonic(), datetime.now(UTC)
        try:
            rebuild = await self.context.rebuild(image.full, FROZEN, bundle=bundle)
            ok, message = rebuild.ok, rebuild.summary()
        except PanbinderError as error:
            ok, message = False, error.message
        return _step(Step.FROZEN_REBUILD, ok, began, started, message)
