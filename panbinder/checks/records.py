"""The checks' history in the catalogue (table ``checks``): record a run, read it back, count verdicts.

Each run is one row: the steps as JSON, the verdict and first failing step repeated as columns
(so history and overview queries read no JSON), whether the image was restored from the
archive, and the differences and nbdime diff capped in size (``max_differences``,
``max_diff_chars``): one notebook that prints a large array differently every night must not
grow the catalogue by megabytes a night. A stored check reads back as the same ``CheckResult``
when nothing was capped.

The overview counts, for each night (UTC date), each publication's last check of that night, so
a publication checked twice counts once.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from traitlets import Instance, Int
from traitlets.config import LoggingConfigurable

from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import CheckRun, Publication
from panbinder.errors import PanbinderError

from .verdict import CheckResult, Difference, Kind, StepResult


@dataclasses.dataclass(frozen=True)
class RecordedCheck:
    """A check as stored: its row id and its result."""

    id: int
    result: CheckResult


@dataclasses.dataclass(frozen=True)
class NightCounts:
    """How many publications got each verdict on one night (verdict value -> count)."""

    night: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _result(row: CheckRun, doi: str) -> CheckResult:
    return CheckResult(
        doi=doi,
        kind=Kind(row.kind),
        started=row.started,
        steps=tuple(StepResult.from_dict(s) for s in row.steps),
        image=row.image,
        restored=row.restored,
        differences=tuple(Difference.from_dict(d) for d in row.differences),
        diff=row.diff,
    )


class CheckRecords(LoggingConfigurable):
    """Reads and writes the ``checks`` table of a catalogue."""

    catalogue = Instance(Catalogue)
    max_differences = Int(
        200, help="Differences stored per check; the rest are counted in one last entry."
    ).tag(config=True)
    max_diff_chars = Int(
        200_000, help="Characters of nbdime's diff text stored per check; longer diffs are cut."
    ).tag(config=True)

    def _capped(self, result: CheckResult) -> tuple[list[dict], str]:
        differences = [d.to_dict() for d in result.differences[: self.max_differences]]
        left = len(result.differences) - self.max_differences
        if left > 0:
            last = result.differences[self.max_differences]
            more = Difference(
                last.notebook, last.cell, last.cell_id, "more", "", "", f"{left} more differences"
            )
            differences.append(more.to_dict())
        diff = result.diff
        if len(diff) > self.max_diff_chars:
            diff = (
                diff[: self.max_diff_chars]
                + f"\n… ({len(result.diff) - self.max_diff_chars} more characters)"
            )
        return differences, diff

    def _publication(self, session: Session, doi: str) -> Publication:
        publication = self.catalogue.get_publication(session, doi)
        if publication is None:
            raise PanbinderError(
                f"No publication with DOI {doi} in the catalogue; register it first",
                reason="unknown_publication",
                status_code=404,
            )
        return publication

    def record(self, result: CheckResult) -> int:
        """Store one check; returns its id. The verdict must be decidable (see ``CheckResult``)."""
        verdict, failed = result.verdict, result.failed_step
        differences, diff = self._capped(result)
        with self.catalogue.session() as session:
            row = CheckRun(
                publication=self._publication(session, result.doi),
                kind=result.kind.value,
                started=result.started,
                seconds=result.seconds,
                verdict=verdict.value,
                failed_step=failed.step.value if failed else "",
                message=result.message,
                image=result.image,
                restored=result.restored,
                steps=[s.to_dict() for s in result.steps],
                differences=differences,
                diff=diff,
            )
            session.add(row)
            session.flush()
            self.log.info("check %s of %s: %s", row.id, result.doi, verdict.value)
            return row.id

    def history(self, doi: str, *, kind: Kind | None = None, limit: int = 366) -> list[RecordedCheck]:
        """The publication's checks, newest first (at most ``limit``)."""
        with self.catalogue.session() as session:
            publication = self._publication(session, doi)
            query = select(CheckRun).where(CheckRun.publication_id == publication.id)
            if kind is not None:
                query = query.where(CheckRun.kind == kind.value)
            query = query.order_by(CheckRun.started.desc(), CheckRun.id.desc()).limit(limit)
            return [RecordedCheck(row.id, _result(row, publication.doi)) for row in session.scalars(query)]

    def latest(self, doi: str, *, kind: Kind = Kind.FROZEN) -> RecordedCheck | None:
        """The publication's last check of ``kind``, or None if it was never checked."""
        found = self.history(doi, kind=kind, limit=1)
        return found[0] if found else None

    def overview(
        self, *, days: int = 90, kind: Kind = Kind.FROZEN, now: datetime | None = None
    ) -> list[NightCounts]:
        """Verdict counts per night over the last ``days`` nights (nights without checks left out)."""
        since = (now or datetime.now(UTC)) - timedelta(days=days)
        query = (
            select(CheckRun.publication_id, CheckRun.started, CheckRun.verdict)
            .where(CheckRun.kind == kind.value, CheckRun.started >= since)
            .order_by(CheckRun.started, CheckRun.id)
        )
        last: dict[tuple[date, int], str] = {}
        with self.catalogue.session() as session:
            for publication_id, started, verdict in session.execute(query):
                last[(started.astimezone(UTC).date(), publication_id)] = verdict  # later rows win
        nights: dict[date, Counter[str]] = {}
        for (night, _), verdict in last.items():
            nights.setdefault(night, Counter())[verdict] += 1
        return [NightCounts(night, dict(nights[night])) for night in sorted(nights)]

    def latest_counts(self, *, kind: Kind = Kind.FROZEN) -> dict[str, int]:
        """How many publications have each verdict as their last check of ``kind`` (the last
        one recorded; checks run one at a time)."""
        last = (
            select(func.max(CheckRun.id).label("id"))
            .where(CheckRun.kind == kind.value)
            .group_by(CheckRun.publication_id)
            .subquery()
        )
        query = (
            select(CheckRun.verdict, func.count())
            .join(last, CheckRun.id == last.c.id)
            .group_by(CheckRun.verdict)
        )
        with self.catalogue.session() as session:
            return {verdict: count for verdict, count in session.execute(query)}
