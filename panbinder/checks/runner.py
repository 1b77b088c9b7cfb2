"""Run one publication's check: each step in order, each recorded, then the verdict.

1. **archive intact**: when the publication has an archive (``Archive.root``, named as
   ``panbinder archive DOI`` names it), every file of it is verified against its sha256, as
   ``restore --verify-only`` does; the registry must hold the image under its repository's name
   with the digest the archive (else the catalogue's lock record) names. When the registry lost
   the image and an archive exists, the image is restored from it and the check says so
   (``CheckResult.restored``). No archive and no image: the step fails (nothing to check from).
2. **launches**: the same pipeline and launcher as a reader's launch by DOI, as an anonymous
   reader (same hardening and limits; the publication's open datasets mounted read-only).
3. **runs**: the plan (``notebooks.load_plan``) read from the repository's files in the image,
   its commands and notebooks executed inside the launched server's container
   (``in_container``: why there). The first error names the notebook, the cell and the exception.
4. **same results**: each notebook that ran compared with its stored outputs (``OutputComparison``).
5. **frozen rebuild**: ``rebuild --frozen`` of the publication must succeed with an identical lock
   (``CheckRunner.frozen_rebuild``; it rebuilds the image, so it costs a build).

A *fresh* check (``check(doi, Kind.FRESH)``) instead starts with ``rebuild --fresh`` (the
repository's files resolved again today, what changed upstream in its message) and launches,
runs and compares that image, so "would still build today" is told apart from "still
reproducible from its archive".

The launched server is always stopped and its temporary user removed, whatever happened. A
step that cannot run because an earlier one failed is recorded as skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import select
from traitlets import Bool, Float, Int
from traitlets.config import LoggingConfigurable

from panbinder.data_mounts.access import ANONYMOUS
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import ImageLock
from panbinder.docker_engine import Docker
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking
from panbinder.launcher import LaunchRequest
from panbinder.launcher.reaper import escape_name
from panbinder.pipeline import PipelineContext, run_pipeline
from panbinder.providers.doi import DoiProvider
from panbinder.registry_cache import ImageRef, image_ref
from panbinder.registry_cache.archive import Archive, archive_name, verify_bag
from panbinder.registry_cache.naming import parse_image

from . import restore
from .compare import OutputComparison
from .execute import Execution
from .in_container import collect_repository, execute_in_container
from .notebooks import load_plan
from .verdict import CheckResult, Difference, Kind, Status, Step, StepResult

# (ok, message) of a frozen rebuild of a DOI
Rebuild = Callable[[str], Awaitable[tuple[bool, str]]]
# (ok, message, the rebuilt image's full name) of a fresh rebuild of a DOI
FreshRebuild = Callable[[str], Awaitable[tuple[bool, str, str]]]


@dataclasses.dataclass
class CheckContext:
    """What a check uses, made by the command that runs it from the composition root."""

    pipeline: PipelineContext
    catalogue: Catalogue
    archive: Archive
    docker: Docker  # the run engine, where launched servers' containers are
    container_prefix: str  # HubProcess.container_prefix: a server is <prefix>-<escaped user>
    comparison: OutputComparison
    rebuild: Rebuild | None = None
    fresh_rebuild: FreshRebuild | None = None


@dataclasses.dataclass
class _Run:
    """What the launch, run and results steps found."""

    steps: list[StepResult]
    differences: tuple[Difference, ...] = ()
    diff: str = ""


def _step(step: Step, ok: bool, began: float, started: datetime, message: str = "") -> StepResult:
    status = Status.PASSED if ok else Status.FAILED
    return StepResult(step, status, round(time.monotonic() - began, 3), message, started)


def _skipped(step: Step, why: str) -> StepResult:
    return StepResult(step, Status.SKIPPED, 0.0, why, datetime.now(UTC))


def user_of(url: str) -> str:
    """The temporary user of a server URL ``.../user/<name>/``."""
    return unquote(url.rstrip("/").rsplit("/", 1)[-1])


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
        return image_ref(
            registry=ctx.registry.host, prefix=ctx.image_prefix, provider="git", repo_url=repo_url, ref=sha
        )

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
        if kind == Kind.FRESH:
            return await self.fresh_check(doi, started)
        image = self.image_of(repo_url, sha)
        archive_step, restored = await self.archive_step(doi, image, sha)
        steps = [archive_step]
        if archive_step.status == Status.FAILED:
            why = "not run: the archive step failed"
            steps += [_skipped(s, why) for s in (Step.LAUNCH, Step.RUN, Step.RESULTS, Step.FROZEN_REBUILD)]
            return CheckResult(doi, Kind.FROZEN, started, tuple(steps), image.full, restored)
        run = await self.launch_and_run(doi)
        steps += run.steps
        steps.append(await self.rebuild_step(doi))
        return CheckResult(
            doi, Kind.FROZEN, started, tuple(steps), image.full, restored, run.differences, run.diff
        )

    async def fresh_check(self, doi: str, started: datetime) -> CheckResult:
        """Rebuild from the repository's files (``rebuild --fresh``), then launch, run, compare that."""
        began = time.monotonic()
        if self.context.fresh_rebuild is None:
            raise PanbinderError("This command cannot rebuild images; run panbinder check --fresh.")
        try:
            ok, message, image = await self.context.fresh_rebuild(doi)
        except PanbinderError as error:
            ok, message, image = False, error.message, ""
        rebuilt = _step(Step.FRESH_REBUILD, ok, began, started, message)
        if not ok:
            why = "not run: the fresh rebuild failed"
            steps = [rebuilt, *(_skipped(s, why) for s in (Step.LAUNCH, Step.RUN, Step.RESULTS))]
            return CheckResult(doi, Kind.FRESH, started, tuple(steps), image)
        run = await self.launch_and_run(doi, parse_image(image))
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

    async def archive_step(self, doi: str, image: ImageRef, sha: str) -> tuple[StepResult, bool]:
        began, started = time.monotonic(), datetime.now(UTC)
        path = self.archive_path(doi, sha)
        try:
            expected = ""
            if path is not None:
                expected = await run_blocking(self.verify_archive, path)
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
            try:
                assert path is not None
                await run_blocking(restore.restore_image, self.context.archive, path, self.context)
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

    def verify_archive(self, path: Path) -> str:
        """Verify every file of the archive at ``path``; the image digest it records."""
        with tempfile.TemporaryDirectory(prefix="panbinder-check-") as scratch:
            bag = self.context.archive.open(path, Path(scratch))
            verify_bag(bag)
            return self.context.archive.describe(bag).digest

    # launches, runs, same results -------------------------------------------------------------

    async def launch_and_run(self, doi: str, image: ImageRef | None = None) -> _Run:
        """Launch the publication (its own image, or ``image``), run its plan, compare."""
        began, started = time.monotonic(), datetime.now(UTC)
        ctx = self.context.pipeline
        user = ""
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
        return _Run([launch, run, *results], differences, diff)

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

    async def rebuild_step(self, doi: str) -> StepResult:
        if not self.frozen_rebuild or self.context.rebuild is None:
            return _skipped(Step.FROZEN_REBUILD, "turned off (CheckRunner.frozen_rebuild)")
        began, started = time.monotonic(), datetime.now(UTC)
        try:
            ok, message = await self.context.rebuild(doi)
        except PanbinderError as error:
            ok, message = False, error.message
        return _step(Step.FROZEN_REBUILD, ok, began, started, message)
