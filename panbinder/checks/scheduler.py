"""Nightly checks inside ``panbinder serve``: every publication, ``concurrency`` at a time, yielding
to readers.

``CheckScheduler.nightly_at`` (UTC, ``HH:MM``; empty: no nightly checks) starts a round that
checks every registered publication in DOI order, ``concurrency`` at once (1 by default: a check
launches a server and may rebuild an image, and on a small machine two at once would slow readers
down). The round yields to readers' builds twice over: before each publication it waits while a
reader's build runs or waits for a slot (``BuildManager.readers_building``, which leaves out the
checks' own rebuilds), polling every ``yield_interval`` seconds; and a check's rebuild goes
through serve's build queue as a background build, which waits behind every reader's build
(``builder.queue.SlotQueue``). A publication whose check cannot be made is logged and the round
goes on. After its frozen check, a publication whose last fresh check is ``fresh_every_days`` old
gets a fresh one (its image rebuilt from the repository's files). ``check_and_record`` (also used
by ``panbinder check``) records each result and calls the webhook when the verdict changed.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from traitlets import Float, Int, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from panbinder.builder.manager import BuildManager
from panbinder.executor import run_blocking

from .notify import CheckNotifier
from .records import CheckRecords, RecordedCheck
from .runner import CheckRunner
from .verdict import Kind

TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


async def check_and_record(
    runner: CheckRunner, records: CheckRecords, notifier: CheckNotifier, doi: str, kind: Kind = Kind.FROZEN
) -> RecordedCheck:
    """Check ``doi``, record the result, call the webhook if its verdict changed."""
    previous = await run_blocking(lambda: records.latest(doi, kind=kind))
    result = await runner.check(doi, kind)
    check_id = await run_blocking(records.record, result)
    await notifier.changed(previous.result if previous is not None else None, result)
    return RecordedCheck(check_id, result)


def next_round(now: datetime, at: str) -> datetime:
    """The first ``at`` (UTC ``HH:MM``) strictly after ``now``."""
    hour, minute = (int(part) for part in at.split(":"))
    today = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)


class CheckScheduler(LoggingConfigurable):
    nightly_at = Unicode(
        "02:00", help="UTC time (HH:MM) when panbinder serve checks every publication; empty: never."
    ).tag(config=True)
    fresh_every_days = Int(
        7,
        help="Days between fresh checks of a publication (its image rebuilt from the repository's "
        "files, a build each), made in the nightly round after its frozen check; 0: never.",
    ).tag(config=True)
    yield_interval = Float(
        30.0, help="Seconds between looks at readers' builds while a nightly check waits for them to end."
    ).tag(config=True)
    concurrency = Int(
        1,
        min=1,
        help="Publications the nightly round checks at once (each launches a server and may rebuild "
        "its image); each still waits for readers' builds first.",
    ).tag(config=True)

    @validate("nightly_at")
    def _valid_time(self, proposal: dict) -> str:
        value = proposal["value"].strip()
        if value and not TIME_RE.match(value):
            raise TraitError(f"CheckScheduler.nightly_at must be HH:MM (UTC) or empty, not {value!r}")
        return value

    def __init__(
        self,
        *,
        runner: CheckRunner,
        records: CheckRecords,
        notifier: CheckNotifier,
        manager: BuildManager,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.runner, self.records, self.notifier, self.manager = runner, records, notifier, manager
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        if self.nightly_at and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run_nightly(), name="nightly-checks")
            self.task.add_done_callback(self._done)
            self.log.info("nightly checks at %s UTC", self.nightly_at)

    def _done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("the nightly checks stopped", exc_info=task.exception())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def run_nightly(self) -> None:
        while True:
            wait = (next_round(datetime.now(UTC), self.nightly_at) - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(0.0, wait))
            await self.run_round()

    async def readers_done(self) -> None:
        """Return when no reader's build runs or waits (the checks' own rebuilds do not count)."""
        while True:  # the manager offers no event for "idle"; a look every yield_interval is cheap
            if not self.manager.readers_building:
                return
            await asyncio.sleep(self.yield_interval)

    async def fresh_due(self, doi: str) -> bool:
        """Whether ``doi``'s last fresh check is ``fresh_every_days`` old (or it never had one)."""
        if self.fresh_every_days <= 0:
            return False
        last = await run_blocking(lambda: self.records.latest(doi, kind=Kind.FRESH))
        age = datetime.now(UTC) - last.result.started if last is not None else None
        return age is None or age >= timedelta(days=self.fresh_every_days) - timedelta(hours=1)

    async def run_round(self) -> dict[str, str]:
        """Check every publication once, ``concurrency`` at a time; DOI -> verdict (or the error
        that kept it from a verdict), in DOI order."""
        catalogue = self.records.catalogue

        def dois() -> list[str]:
            with catalogue.session() as session:
                return [p.doi for p in catalogue.list_publications(session, limit=1_000_000)]

        todo = await run_blocking(dois)
        outcome: dict[str, str] = {}
        queue = iter(todo)

        async def worker() -> None:
            for doi in queue:  # shared: each publication goes to one worker
                outcome[doi] = await self.check_publication(doi)

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(todo)))))
        self.log.info("nightly checks done: %d publications", len(outcome))
        return {doi: outcome[doi] for doi in todo if doi in outcome}

    async def check_publication(self, doi: str) -> str:
        """Once readers' builds are done: the frozen check of ``doi``, then a fresh one if due."""
        await self.readers_done()
        try:
            recorded = await check_and_record(self.runner, self.records, self.notifier, doi)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # one publication never stops the round
            self.log.warning("the nightly check of %s could not be made: %s", doi, error)
            return f"not checked: {error}"
        if await self.fresh_due(doi):
            await self.readers_done()
            try:
                await check_and_record(self.runner, self.records, self.notifier, doi, Kind.FRESH)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.log.warning("the fresh check of %s could not be made: %s", doi, error)
        return recorded.result.verdict.value
