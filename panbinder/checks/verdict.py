"""The verdict model of a reproducibility check: steps, their outcome, and one verdict.

A check runs its steps in this order and records each one (``STEP_ORDER``): the archive is
intact, the image launches, the notebooks run, their results are the same as the stored ones,
and the environment rebuilds (frozen from the lock, or fresh from the repository). A *frozen*
check starts from the archived image; a *fresh* one from an image rebuilt today, so the two
kinds together tell "still reproducible from its archive" from "would still build today".

The verdict is the most severe failure among the steps (``VERDICT_OF_STEP`` and
``SEVERITY``): a damaged archive outweighs a build failure, which outweighs a notebook that
does not run, which outweighs results that differ. ``failed_step`` is the first failing step
(in run order) with that verdict, and ``message`` is its message. A check where nothing failed
is ``reproducible`` only if the notebooks actually ran: without that there is no evidence,
and the model refuses to call it anything.

Everything is a frozen dataclass that goes to JSON and back unchanged (the catalogue stores it,
the API and the CLI print it).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Step(StrEnum):
    ARCHIVE = "archive intact"
    LAUNCH = "launches"
    RUN = "runs"
    RESULTS = "same results"
    FROZEN_REBUILD = "frozen rebuild"
    FRESH_REBUILD = "fresh rebuild"


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run; the step's message says why


class Verdict(StrEnum):
    REPRODUCIBLE = "reproducible"
    DIFFERS = "runs, results differ"
    DOES_NOT_RUN = "does not run"
    DOES_NOT_BUILD = "does not build"
    ARCHIVE_DAMAGED = "archive damaged"


class Kind(StrEnum):
    FROZEN = "frozen"  # the archived image (restored from the archive if the registry lost it)
    FRESH = "fresh"  # an image rebuilt from the repository's files today


STEP_ORDER = (
    Step.ARCHIVE,
    Step.FRESH_REBUILD,
    Step.LAUNCH,
    Step.RUN,
    Step.RESULTS,
    Step.FROZEN_REBUILD,
)
VERDICT_OF_STEP = {
    Step.ARCHIVE: Verdict.ARCHIVE_DAMAGED,
    Step.FROZEN_REBUILD: Verdict.DOES_NOT_BUILD,
    Step.FRESH_REBUILD: Verdict.DOES_NOT_BUILD,
    Step.LAUNCH: Verdict.DOES_NOT_RUN,
    Step.RUN: Verdict.DOES_NOT_RUN,
    Step.RESULTS: Verdict.DIFFERS,
}
# most severe first
SEVERITY = (
    Verdict.ARCHIVE_DAMAGED,
    Verdict.DOES_NOT_BUILD,
    Verdict.DOES_NOT_RUN,
    Verdict.DIFFERS,
    Verdict.REPRODUCIBLE,
)


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One step: its status, when it started, how long it took (seconds) and what happened."""

    step: Step
    status: Status
    seconds: float = 0.0
    message: str = ""
    started: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step.value,
            "status": self.status.value,
            "seconds": self.seconds,
            "message": self.message,
            "started": _time(self.started),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepResult:
        return cls(
            step=Step(data["step"]),
            status=Status(data["status"]),
            seconds=float(data.get("seconds", 0.0)),
            message=str(data.get("message", "")),
            started=_parse_time(data.get("started")),
        )


@dataclasses.dataclass(frozen=True)
class Difference:
    """One difference between a stored and an executed output (``compare.py`` makes them).

    ``kind`` is "text", "number", "image", "error", "outputs" (a different number or type of
    outputs) or "missing"; ``stored`` and ``executed`` are shortened values; ``detail`` says
    what differs in words (e.g. "12.5 % of pixels changed").
    """

    notebook: str
    cell: int
    cell_id: str
    kind: str
    stored: str
    executed: str
    detail: str = ""

    def describe(self) -> str:
        where = f"{self.notebook}, cell {self.cell}" + (f" ({self.cell_id})" if self.cell_id else "")
        what = self.detail or f"{self.stored!r} became {self.executed!r}"
        return f"{where}: {self.kind}: {what}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Difference:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check of one publication: its steps, the differences found and the nbdime diff text."""

    doi: str
    kind: Kind
    started: datetime
    steps: tuple[StepResult, ...]
    image: str = ""
    restored: bool = False  # the registry had lost the image; it came back from the archive
    differences: tuple[Difference, ...] = ()
    diff: str = ""

    def __post_init__(self) -> None:
        if self.started.tzinfo is None:
            object.__setattr__(self, "started", self.started.replace(tzinfo=UTC))
        seen = [s.step for s in self.steps]
        if len(set(seen)) != len(seen):
            raise ValueError(f"a step is recorded twice: {[s.value for s in seen]}")

    def step(self, step: Step) -> StepResult | None:
        return next((s for s in self.steps if s.step == step), None)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def failed_step(self) -> StepResult | None:
        """The first failing step (run order) among those with the most severe verdict."""
        failed = [s for s in self.steps if s.status == Status.FAILED]
        if not failed:
            return None
        worst = min(SEVERITY.index(VERDICT_OF_STEP[s.step]) for s in failed)
        candidates = [s for s in failed if SEVERITY.index(VERDICT_OF_STEP[s.step]) == worst]
        return min(candidates, key=lambda s: STEP_ORDER.index(s.step))

    @property
    def verdict(self) -> Verdict:
        failed = self.failed_step
        if failed is not None:
            return VERDICT_OF_STEP[failed.step]
        ran = self.step(Step.RUN)
        if ran is None or ran.status != Status.PASSED:
            raise ValueError(
                "no step failed but the notebooks did not run: a check without a run has no verdict"
            )
        return Verdict.REPRODUCIBLE

    @property
    def message(self) -> str:
        failed = self.failed_step
        return failed.message if failed is not None else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "doi": self.doi,
            "kind": self.kind.value,
            "started": _time(self.started),
            "steps": [s.to_dict() for s in self.steps],
            "image": self.image,
            "restored": self.restored,
            "differences": [d.to_dict() for d in self.differences],
            "diff": self.diff,
            "verdict": self.verdict.value,
            "failed_step": self.failed_step.step.value if self.failed_step else None,
            "message": self.message,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        started = _parse_time(data["started"])
        assert started is not None
        return cls(
            doi=data["doi"],
            kind=Kind(data["kind"]),
            started=started,
            steps=tuple(StepResult.from_dict(s) for s in data["steps"]),
            image=data.get("image", ""),
            restored=bool(data.get("restored", False)),
            differences=tuple(Difference.from_dict(d) for d in data.get("differences", ())),
            diff=data.get("diff", ""),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CheckResult:
        return cls.from_dict(json.loads(text))
