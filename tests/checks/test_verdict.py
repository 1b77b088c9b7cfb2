"""The verdict model: which failure decides, the first failing step, and the JSON round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from panbinder.checks.verdict import CheckResult, Difference, Kind, Status, Step, StepResult, Verdict

STARTED = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
ORDER = [Step.ARCHIVE, Step.LAUNCH, Step.RUN, Step.RESULTS, Step.FROZEN_REBUILD]


def check(failed: dict[Step, str] | None = None, *, skipped: tuple[Step, ...] = (), **kwargs) -> CheckResult:
    failed = failed or {}
    steps = tuple(
        StepResult(
            step,
            Status.FAILED if step in failed else Status.SKIPPED if step in skipped else Status.PASSED,
            seconds=1.5,
            message=failed.get(step, ""),
            started=STARTED,
        )
        for step in ORDER
    )
    return CheckResult("10.5281/zenodo.1", Kind.FROZEN, STARTED, steps, **kwargs)


def test_all_passed_is_reproducible():
    result = check()
    assert (result.verdict, result.failed_step, result.message) == (Verdict.REPRODUCIBLE, None, "")
    assert result.seconds == pytest.approx(7.5)


@pytest.mark.parametrize(
    ("failed", "verdict", "step"),
    [
        ({Step.RESULTS: "cell 3: 1.5 became 1.7"}, Verdict.DIFFERS, Step.RESULTS),
        ({Step.RUN: "cell 2 raised KeyError"}, Verdict.DOES_NOT_RUN, Step.RUN),
        ({Step.LAUNCH: "the server did not start"}, Verdict.DOES_NOT_RUN, Step.LAUNCH),
        (
            {Step.FROZEN_REBUILD: "numpy==1.26.0 is no longer on the index"},
            Verdict.DOES_NOT_BUILD,
            Step.FROZEN_REBUILD,
        ),
        ({Step.ARCHIVE: "blobs/sha256/ab12 does not match"}, Verdict.ARCHIVE_DAMAGED, Step.ARCHIVE),
        # the most severe failure decides, whatever the order the steps ran in
        ({Step.RESULTS: "differs", Step.FROZEN_REBUILD: "gone"}, Verdict.DOES_NOT_BUILD, Step.FROZEN_REBUILD),
        ({Step.RUN: "raised", Step.RESULTS: "differs"}, Verdict.DOES_NOT_RUN, Step.RUN),
        (
            {Step.ARCHIVE: "damaged", Step.RUN: "raised", Step.FROZEN_REBUILD: "gone"},
            Verdict.ARCHIVE_DAMAGED,
            Step.ARCHIVE,
        ),
        # two steps with the same verdict: the first one in run order is named
        ({Step.LAUNCH: "no server", Step.RUN: "not reached"}, Verdict.DOES_NOT_RUN, Step.LAUNCH),
    ],
)
def test_the_most_severe_failure_decides_and_the_first_such_step_is_named(failed, verdict, step):
    result = check(failed)
    assert result.verdict == verdict
    assert result.failed_step is not None and result.failed_step.step == step
    assert result.message == failed[step]


def test_a_fresh_rebuild_that_fails_does_not_build():
    steps = (StepResult(Step.FRESH_REBUILD, Status.FAILED, message="h5py: no matching distribution"),)
    result = CheckResult("10.1/x", Kind.FRESH, STARTED, steps)
    assert result.verdict == Verdict.DOES_NOT_BUILD and "h5py" in result.message


def test_no_failure_but_nothing_ran_has_no_verdict():
    with pytest.raises(ValueError, match="did not run"):
        _ = check(skipped=(Step.RUN,)).verdict


def test_a_step_recorded_twice_is_refused():
    step = StepResult(Step.RUN, Status.PASSED)
    with pytest.raises(ValueError, match="twice"):
        CheckResult("10.1/x", Kind.FROZEN, STARTED, (step, step))


def test_json_round_trip_keeps_everything():
    difference = Difference("fig.ipynb", 3, "c3", "number", "1.5", "1.7", "1.5 became 1.7")
    result = check(
        {Step.RESULTS: "fig.ipynb, cell 3: 1.5 became 1.7"},
        image="127.0.0.1:5000/pb/x:abc",
        restored=True,
        differences=(difference,),
        diff="### fig.ipynb, cell 3\n-  1.5\n+  1.7",
    )
    text = result.to_json()
    again = CheckResult.from_json(text)
    assert again == result
    assert again.to_dict()["verdict"] == "runs, results differ"
    assert again.to_dict()["failed_step"] == "same results"
    assert difference.describe() == "fig.ipynb, cell 3 (c3): number: 1.5 became 1.7"


def test_naive_start_times_are_taken_as_utc():
    result = CheckResult(
        "10.1/x", Kind.FROZEN, datetime(2026, 12, 2, 2, 0), (StepResult(Step.RUN, Status.PASSED),)
    )
    assert result.started == STARTED
    assert CheckResult.from_json(result.to_json()).started == STARTED
