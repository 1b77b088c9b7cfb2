"""Pure parts of the check runner and the check command: names, messages, exit status."""

from __future__ import annotations

from datetime import UTC, datetime

from panbinder.check_cli import EXIT_STATUS, describe
from panbinder.checks.runner import user_of
from panbinder.checks.verdict import CheckResult, Kind, Status, Step, StepResult, Verdict


def test_user_of_a_server_url():
    assert user_of("http://127.0.0.1:8000/user/pb-0a1b2c/") == "pb-0a1b2c"
    assert user_of("https://hub.example/base/user/pb-%C3%A9x/") == "pb-éx"


def test_every_verdict_has_its_own_exit_status_worse_is_higher():
    codes = [EXIT_STATUS[v] for v in (Verdict.REPRODUCIBLE, Verdict.DIFFERS, Verdict.DOES_NOT_RUN)]
    codes += [EXIT_STATUS[Verdict.DOES_NOT_BUILD], EXIT_STATUS[Verdict.ARCHIVE_DAMAGED]]
    assert codes == sorted(codes) and len(set(codes)) == len(Verdict) and codes[0] == 0
    assert 1 not in codes and 2 not in codes  # a check not made, a usage error


def test_describe_names_the_verdict_and_the_failing_step_message():
    steps = (
        StepResult(Step.ARCHIVE, Status.PASSED, message="restored"),
        StepResult(Step.LAUNCH, Status.PASSED),
        StepResult(Step.RUN, Status.FAILED, message="a.ipynb: cell 2 raised ValueError: no"),
        StepResult(Step.RESULTS, Status.SKIPPED, message="not run"),
    )
    result = CheckResult("10.5555/x", Kind.FROZEN, datetime.now(UTC), steps, restored=True)
    line = describe(result.to_dict())
    assert line == (
        "10.5555/x: does not run: a.ipynb: cell 2 raised ValueError: no (image restored from the archive)"
    )
    assert (
        describe({"doi": "10.5555/y", "error": "No publication"}) == "10.5555/y: not checked: No publication"
    )
