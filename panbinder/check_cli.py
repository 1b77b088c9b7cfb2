"""``panbinder check DOI`` and ``panbinder check --all``: reproducibility checks from the command line.

Each publication is checked by ``checks.runner.CheckRunner`` (archive, launch through the running
service's Hub, run, compare, frozen rebuild) and the result is recorded in the catalogue's
``checks`` table. ``--all`` checks every registered publication, one at a time; a publication
whose check cannot even start (an error of ours, not a verdict) is reported and the others are
still checked. Output: one line per publication (``DOI: verdict: message``), or with ``--json``
the results as JSON on stdout (an object for one DOI, a list for ``--all``). Progress goes to
stderr, only on a terminal.

Exit status: 0 every publication reproducible; otherwise the worst one's ``EXIT_STATUS`` (3 results
differ, 4 does not run, 5 does not build, 6 archive damaged); 1 a check could not be made; 2 usage.
"""

from __future__ import annotations

import asyncio
import json
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

from traitlets import Bool

from .builder.r2d import Repo2DockerBuilder
from .checks.compare import OutputComparison
from .checks.notify import CheckNotifier
from .checks.records import CheckRecords
from .checks.runner import CheckContext, CheckRunner, Rebuild
from .checks.scheduler import CheckScheduler, check_and_record
from .checks.verdict import CheckResult, Kind, Verdict
from .command import PanbinderBase
from .components import COMPONENTS, Components
from .errors import PanbinderError
from .rebuilds import RebuildResult, rebuild_image
from .service_cli import ServiceApp

EXIT_STATUS = {
    Verdict.REPRODUCIBLE: 0,
    Verdict.DIFFERS: 3,
    Verdict.DOES_NOT_RUN: 4,
    Verdict.DOES_NOT_BUILD: 5,
    Verdict.ARCHIVE_DAMAGED: 6,
}
NOT_CHECKED = 1
# the checks' configurable classes, for this command's and serve's settings
CHECK_CLASSES = [CheckRunner, CheckNotifier, CheckScheduler]


class CheckApp(ServiceApp):
    name = "panbinder-check"
    usage = "panbinder check DOI | --all [--fresh] [--json]"
    description = (
        "Check that registered publications are still reproducible: archive intact, the image "
        "launches (through the running service's Hub), the notebooks run and give the stored "
        "results, and the image rebuilds from its lock. Each result is recorded."
    )
    classes = [PanbinderBase, ServiceApp, *COMPONENTS, *CHECK_CLASSES]
    all = Bool(False, help="Check every registered publication.").tag(config=True)
    json = Bool(False, help="Print the results as JSON.").tag(config=True)
    fresh = Bool(
        False, help="Rebuild each image from the repository's files (rebuild --fresh) and check that image."
    ).tag(config=True)
    flags = {
        **PanbinderBase.flags,
        "all": ({"CheckApp": {"all": True}}, all.help),
        "json": ({"CheckApp": {"json": True}}, json.help),
        "fresh": ({"CheckApp": {"fresh": True}}, fresh.help),
    }

    @cached_property
    def runner(self) -> CheckRunner:
        return make_runner(self, self.components)

    @cached_property
    def records(self) -> CheckRecords:
        return CheckRecords(parent=self, log=self.log, catalogue=self.components.catalogue)

    @cached_property
    def notifier(self) -> CheckNotifier:
        return CheckNotifier(parent=self, log=self.log)

    def start(self) -> None:
        if self.all == bool(self.extra_args) or len(self.extra_args) > 1:
            print(f"usage: {self.usage}", file=sys.stderr)
            self.exit(2)
        sys.exit(asyncio.run(self.run_checks()))

    def dois(self) -> list[str]:
        if not self.all:
            return list(self.extra_args)
        catalogue = self.components.catalogue
        with catalogue.session() as session:
            return [p.doi for p in catalogue.list_publications(session, limit=1_000_000)]

    async def run_checks(self) -> int:
        self.components.pipeline.launcher.pool = None  # each check starts its own server
        outcomes: list[dict[str, Any]] = []
        status = 0
        dois = self.dois()
        try:
            for index, doi in enumerate(dois):
                if sys.stderr.isatty():
                    print(f"[{index + 1}/{len(dois)}] checking {doi}", file=sys.stderr, flush=True)
                outcome, code = await self.check_one(doi)
                outcomes.append(outcome)
                status = max(status, code)  # the worst verdict; 1 when only errors
                if not self.json:
                    print(describe(outcome), flush=True)
        finally:
            await self.components.pipeline.launcher.stop()
        if self.json:
            print(json.dumps(outcomes if self.all else outcomes[0], indent=2, sort_keys=True))
        return status

    async def check_one(self, doi: str) -> tuple[dict[str, Any], int]:
        """One publication's result (recorded) and its exit status; an error is reported, not raised."""
        try:
            kind = Kind.FRESH if self.fresh else Kind.FROZEN
            recorded = await check_and_record(self.runner, self.records, self.notifier, doi, kind)
        except PanbinderError as error:
            return {"doi": doi, "error": error.message}, NOT_CHECKED
        except Exception as error:  # one publication never stops the others
            self.log.exception("the check of %s failed", doi)
            return {"doi": doi, "error": f"the check could not be made: {error}"}, NOT_CHECKED
        result = recorded.result
        return {**result.to_dict(), "id": recorded.id}, EXIT_STATUS[result.verdict]


def rebuilder(command: PanbinderBase, components: Components) -> Rebuild | None:
    """``rebuilds.rebuild_image`` with ``components`` (in ``serve``: serve's builder and build queue,
    where a check's rebuild waits behind readers' builds); None when the builder cannot rebuild."""
    builder = components.builder
    if not isinstance(builder, Repo2DockerBuilder):
        return None

    async def rebuild(image: str, kind: str, bundle: Path | None = None) -> RebuildResult:
        return await rebuild_image(
            image,
            kind,
            builder=builder,
            manager=components.manager,
            catalogue=components.catalogue,
            log=command.log,
            background=True,
            bundle=bundle,
        )

    return rebuild


def make_runner(command: PanbinderBase, components: Components) -> CheckRunner:
    """The check runner of ``command`` (``check``, or ``serve`` for its nightly checks)."""
    context = CheckContext(
        pipeline=components.pipeline,
        catalogue=components.catalogue,
        archive=components.archive,
        docker=components.docker,
        container_prefix=components.hub.container_prefix,
        comparison=OutputComparison(parent=command),
        rebuild=rebuilder(command, components),
        notebooks=components.kept_notebooks,
    )
    return CheckRunner(context, parent=command, log=command.log)


def make_scheduler(command: PanbinderBase, components: Components) -> CheckScheduler:
    """``serve``'s nightly checks, with its components (its launcher, its build manager)."""
    return CheckScheduler(
        parent=command,
        log=command.log,
        runner=make_runner(command, components),
        records=CheckRecords(parent=command, log=command.log, catalogue=components.catalogue),
        notifier=CheckNotifier(parent=command, log=command.log),
        manager=components.manager,
    )


def describe(outcome: dict[str, Any]) -> str:
    if "error" in outcome:
        return f"{outcome['doi']}: not checked: {outcome['error']}"
    result = CheckResult.from_dict(outcome)
    message = f": {result.message}" if result.message else ""
    restored = " (image restored from the archive)" if result.restored else ""
    return f"{result.doi}: {result.verdict.value}{message}{restored}"


__all__ = ["CHECK_CLASSES", "EXIT_STATUS", "CheckApp", "make_runner", "make_scheduler"]
