"""The checks' history in the catalogue (table ``checks``): record a run, read it back, count verdicts.

Each run is one row: the steps as JSON, the verdict and first failing step repeated as columns
(so history and overview queries read no JSON), whether the image was restored from the
archive, and the differences and nbdime diff capped in size (``max_differences``,
``max_diff_chars``): one notebook that prints a large array differently every night must not
grow the catalogue by megabytes a night. A stored check reads back as the same ``CheckResult``
when nothing was capped.

The overview counts, for each night (UTC date), each publication's last check of that night, so
a publication checked twice counts once. Pages read light: the publication page's history chart
reads four short columns of the frozen checks of its window (``publication_checks``), and the
overview page (``summary``) is four queries, grouped in the database (GROUP BY), whatever the
number of publications, never a query per publication.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Subquery, func, literal, select
from sqlalchemy.orm import Session
from traitlets import Instance, Int
from traitlets.config import LoggingConfigurable

from panbinder.data_mounts.catalogue import Catalogue
from panbinder.data_mounts.models import CheckRun, Publication
from panbinder.errors import PanbinderError

from .verdict import CheckResult, Difference, Kind, StepResult, Verdict

NEVER_CHECKED = "never checked"
MESSAGE_CHARS = 300  # of a check's message, in the history chart's tooltips and the overview's table


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


@dataclasses.dataclass(frozen=True)
class CheckMark:
    """What the history chart and a verdict line need of one check: no steps, no diff."""

    started: datetime
    verdict: Verdict
    message: str
    restored: bool = False
    failed_step: str = ""


@dataclasses.dataclass(frozen=True)
class PublicationChecks:
    """What the publication page shows: the last frozen check in full, the last fresh one
    ("would still build today") and the frozen checks of the chart's window, oldest first."""

    latest: CheckResult | None
    fresh: CheckMark | None
    marks: tuple[CheckMark, ...]


@dataclasses.dataclass(frozen=True)
class PublicationStatus:
    """One row of the overview's table: a publication and its last frozen check (if any)."""

    doi: str
    title: str
    verdict: str  # a Verdict's value, or NEVER_CHECKED
    failed_step: str = ""
    message: str = ""
    started: datetime | None = None


@dataclasses.dataclass(frozen=True)
class Summary:
    """The overview: how many publications have each last verdict now (``NEVER_CHECKED`` too),
    the counts per night, how many were registered by each of those nights, and the table."""

    counts: dict[str, int]
    nights: list[NightCounts]
    registered: dict[date, int]
    publications: list[PublicationStatus]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _mark(started: datetime, verdict: str, message: str, restored: bool, failed: str) -> CheckMark:
    return CheckMark(started, Verdict(verdict), message or "", bool(restored), failed or "")


def _night(value: object) -> date:
    """A database's ``date(...)``: a date (PostgreSQL) or its ISO text (SQLite)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


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

    def publication_checks(
        self, doi: str, *, nights: int = 90, now: datetime | None = None
    ) -> PublicationChecks:
        """The publication page's checks in one session: the last frozen check in full, the
        last fresh check's mark, and the marks of the frozen checks of the last ``nights`` nights."""
        since = (now or datetime.now(UTC)) - timedelta(days=nights)
        columns = (
            CheckRun.started,
            CheckRun.verdict,
            func.substr(CheckRun.message, 1, MESSAGE_CHARS),
            CheckRun.restored,
            CheckRun.failed_step,
        )
        newest = (CheckRun.started.desc(), CheckRun.id.desc())
        with self.catalogue.session() as session:
            publication = self._publication(session, doi)
            mine = CheckRun.publication_id == publication.id
            frozen = CheckRun.kind == Kind.FROZEN.value
            latest = session.scalar(select(CheckRun).where(mine, frozen).order_by(*newest).limit(1))
            fresh = session.execute(
                select(*columns).where(mine, CheckRun.kind == Kind.FRESH.value).order_by(*newest).limit(1)
            ).first()
            window = select(*columns).where(mine, frozen, CheckRun.started >= since)
            marks = tuple(_mark(*row) for row in session.execute(window.order_by(CheckRun.started)))
            return PublicationChecks(
                _result(latest, publication.doi) if latest is not None else None,
                _mark(*fresh) if fresh is not None else None,
                marks,
            )

    def overview(
        self, *, days: int = 90, kind: Kind = Kind.FROZEN, now: datetime | None = None
    ) -> list[NightCounts]:
        """Verdict counts per night over the last ``days`` nights (nights without checks left out)."""
        since = (now or datetime.now(UTC)) - timedelta(days=days)
        night = func.date(CheckRun.started)
        last_of_night = (  # each publication's last check of each night (checks run one at a time)
            select(func.max(CheckRun.id).label("id"))
            .where(CheckRun.kind == kind.value, CheckRun.started >= since)
            .group_by(CheckRun.publication_id, night)
            .subquery()
        )
        query = (
            select(night, CheckRun.verdict, func.count())
            .join(last_of_night, CheckRun.id == last_of_night.c.id)
            .group_by(night, CheckRun.verdict)
        )
        nights: dict[date, dict[str, int]] = {}
        with self.catalogue.session() as session:
            for day, verdict, count in session.execute(query):
                nights.setdefault(_night(day), {})[verdict] = count
        return [NightCounts(day, nights[day]) for day in sorted(nights)]

    def _last_checks(self, kind: Kind) -> Subquery:
        return (
            select(CheckRun.publication_id, func.max(CheckRun.id).label("id"))
            .where(CheckRun.kind == kind.value)
            .group_by(CheckRun.publication_id)
            .subquery()
        )

    def summary(
        self, *, days: int = 90, limit: int = 1000, kind: Kind = Kind.FROZEN, now: datetime | None = None
    ) -> Summary:
        """The overview page's figures: counts now (publications never checked too), per night
        (``overview``), publications registered by each night, and the first ``limit``
        publications (by DOI) with their last verdict, first failing step and date."""
        last = self._last_checks(kind)
        verdict = func.coalesce(CheckRun.verdict, literal(NEVER_CHECKED))
        joined = (
            select(Publication.id)
            .outerjoin(last, last.c.publication_id == Publication.id)
            .outerjoin(CheckRun, CheckRun.id == last.c.id)
        )
        counts = joined.with_only_columns(verdict, func.count(Publication.id)).group_by(verdict)
        table = joined.with_only_columns(
            Publication.doi,
            Publication.title,
            verdict,
            CheckRun.failed_step,
            func.substr(CheckRun.message, 1, MESSAGE_CHARS),
            CheckRun.started,
        ).order_by(Publication.doi)
        created = func.date(Publication.created)
        per_day = select(created, func.count()).group_by(created).order_by(created)
        nights = self.overview(days=days, kind=kind, now=now)
        with self.catalogue.session() as session:
            now_counts = {name: count for name, count in session.execute(counts)}
            rows = [PublicationStatus(*row) for row in session.execute(table.limit(limit))]
            created_per_day = [(_night(day), count) for day, count in session.execute(per_day)]
        registered: dict[date, int] = {}
        for night_counts in nights:
            registered[night_counts.night] = sum(c for day, c in created_per_day if day <= night_counts.night)
        rows = [
            dataclasses.replace(r, failed_step=r.failed_step or "", message=r.message or "") for r in rows
        ]
        return Summary(now_counts, nights, registered, rows)

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
