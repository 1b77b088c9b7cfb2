"""The user-facing explanation of a failed build (builder/r2d.py failure_message)."""

from __future__ import annotations

from panbinder.builder.r2d import failure_message

PIP_TAIL = [
    "Step 12/20 : RUN pip install -r requirements.txt",
    "Collecting nosuchpkg==1",
    "ERROR: Could not find a version that satisfies the requirement nosuchpkg==1 (from versions: none)",
    "ERROR: No matching distribution found for nosuchpkg==1",
    "The command '/bin/sh -c pip install -r requirements.txt' returned a non-zero code: 1",
]


def test_pip_missing_distribution_names_requirements_and_package():
    msg = failure_message(PIP_TAIL, "The command returned a non-zero code: 1")
    assert "requirements.txt" in msg
    assert "nosuchpkg==1" in msg
    assert msg.startswith("pip could not install the requirements: no release of nosuchpkg==1")


def test_pip_hint_uses_the_latest_matching_line():
    tail = [
        "ERROR: No matching distribution found for first==1",
        "ERROR: No matching distribution found for second==2",
    ]
    msg = failure_message(tail, "")
    assert "second==2" in msg
    assert "first==1" not in msg


def test_pip_invalid_requirement():
    msg = failure_message(["ERROR: Invalid requirement: 'numpy=1.0' (from line 3 of requirements.txt)"], "")
    assert "requirements.txt has a line pip does not understand" in msg
    assert "numpy=1.0" in msg


def test_apt_unable_to_locate_package():
    tail = ["Reading package lists...", "Building dependency tree...", "E: Unable to locate package foo"]
    msg = failure_message(tail, "exit status 100")
    assert "apt.txt" in msg
    assert "apt.txt names the package foo" in msg


def test_checkout_failure():
    msg = failure_message(["Failed to check out ref nosuchbranch"], "")
    assert msg == "Failed to check out ref nosuchbranch Check the repository URL and the ref."


def test_fallback_uses_last_nonblank_line_of_the_error():
    error = "Traceback (most recent call last):\n  File 'x', line 1\nRuntimeError: disk full\n\n"
    msg = failure_message(["Step 3/9 : RUN make", "all fine so far"], error)
    assert msg == "The build failed: RuntimeError: disk full. The build log shows the failing step."


def test_fallback_cuts_long_errors_to_300_characters():
    msg = failure_message([], "x" * 1000)
    assert "x" * 300 in msg
    assert "x" * 301 not in msg
