"""Failed builds say why: each rule of builder/failure_causes.py against real build logs.

The files in tests/fixtures/failed_builds/ are the ends of real logs, captured from the builds
that tests/integration/test_build_failures.py makes fail (the failing step and the notices the
build logged before it). Texts of other tools' failures, which those builds do not produce,
are quoted from the tools' own messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from panbinder.builder.failure_causes import MAX_MESSAGE, FailedBuild, explain
from panbinder.builder.r2d import failure_message

FIXTURES = Path(__file__).parent / "fixtures" / "failed_builds"


def captured(name: str) -> FailedBuild:
    """A failed build as the builder sees it: log lines, the engine's error (the last line), notices."""
    lines = (FIXTURES / f"{name}.log").read_text().splitlines()
    notices = [ln for ln in lines if ln.startswith("panbinder notice: ")]
    tail = [ln for ln in lines if ln not in notices]
    return FailedBuild(tail, error=tail[-1], notices=notices, python_version="3.11")


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        (
            "python-version",
            [
                "The requirement numpy==1.21.6 cannot be installed on this image's Python 3.11",
                "1.21.6 Requires-Python >=3.7,<3.11",
                "runtime.txt asks for Python 3.7 and this deployment only has Python 3.11: that is the likely cause",
                "Loosen the pin of numpy",
            ],
        ),
        (
            "pip-host",
            ["A requirement needs the network host data.panbinder-test.invalid", "cannot reach"],
        ),
        ("apt-package", ["apt.txt names the package panbinder-no-such-package"]),
        ("postbuild-command", ["postBuild runs the command make-figures (line 4)", "apt.txt"]),
        ("postbuild-host", ["postBuild needs the network host data.panbinder-test.invalid"]),
    ],
)
def test_real_failures_are_named(name, fragments):
    message = explain(captured(name))
    for fragment in fragments:
        assert fragment in message, message
    assert len(message) < MAX_MESSAGE
    assert "executor failed" not in message
    assert "Traceback" not in message


def test_python_mismatch_without_runtime_txt_does_not_blame_it():
    build = captured("python-version")
    message = explain(FailedBuild(build.lines, build.error, (), "3.11"))
    assert "cannot be installed on this image's Python 3.11" in message
    assert "runtime.txt" not in message.replace("in requirements.txt", "")


def test_a_wrong_pin_is_not_blamed_on_python():
    lines = [
        "#20 4.8 ERROR: Ignored the following versions that require a different python version: 1.21.2 Requires-Python >=3.7,<3.11",
        "#20 4.8 ERROR: Could not find a version that satisfies the requirement numpy==9.9 (from versions: 1.3.0, 2.4.6)",
        "#20 4.8 ERROR: No matching distribution found for numpy==9.9",
    ]
    message = explain(FailedBuild(lines, python_version="3.11"))
    assert message.startswith("pip could not install the requirements: no release of numpy==9.9")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (
            "fatal: unable to access 'https://github.com/a/b.git/': Could not resolve host: github.com",
            "github.com",
        ),
        (
            "ssh: Could not resolve hostname gitlab.example.org: Name or service not known",
            "gitlab.example.org",
        ),
        ("Resolving zenodo.org (zenodo.org)... failed: Temporary failure in name resolution.", "zenodo.org"),
        ("wget: unable to resolve host address ‘figshare.com’", "figshare.com"),
        (
            "npm ERR! request to https://registry.example.org/x failed, reason: getaddrinfo ENOTFOUND registry.example.org",
            "registry.example.org",
        ),
        (
            "curl: (7) Failed to connect to data.example.org port 443 after 3 ms: Couldn't connect to server",
            "data.example.org",
        ),
        (
            "urllib.error.URLError: <urlopen error [Errno -3] Temporary failure in name resolution>",
            "a network host",
        ),
    ],
)
def test_hosts_named_from_other_tools(line, fragment):
    build = FailedBuild(
        [f"#21 1.2 {line}", "#21 ERROR: executor failed running [/bin/sh -c ./postBuild]: exit code: 1"]
    )
    message = explain(build)
    assert message.startswith(
        f"postBuild needs {'the network host ' if '.' in fragment else ''}{fragment}"
    ), message


def test_dash_and_missing_interpreter():
    dash = explain(FailedBuild(["#21 0.5 ./postBuild: 3: jupyter-labextension: not found"]))
    assert "postBuild runs the command jupyter-labextension (line 3)" in dash
    env = explain(FailedBuild(["#21 0.5 /usr/bin/env: ‘python2’: No such file or directory"]))
    assert "interpreter python2" in env


def test_package_requires_other_python():
    line = "ERROR: Package 'oldlib' requires a different Python: 3.11.2 not in '<3.8,>=3.6'"
    notice = "panbinder notice: runtime.txt asks for Python 3.6, but this deployment only has Python 3.11: x"
    message = explain(FailedBuild([line], notices=[notice], python_version="3.11"))
    assert (
        "oldlib cannot be installed on this image's Python 3.11.2: it requires Python <3.8,>=3.6" in message
    )
    assert "runtime.txt asks for Python 3.6" in message


def test_unknown_failure_names_the_step_and_its_last_error():
    lines = [
        "#20 [stage-0 16/19] RUN ./postBuild",
        "#20 3.1 Error: something odd happened",
        "#20 ERROR: executor failed running [/bin/sh -c ./postBuild]: exit code: 3",
    ]
    message = failure_message(lines, lines[-1])
    assert message == (
        "postBuild failed (exit code 3): Error: something odd happened. The build log shows the step's output."
    )


def test_message_is_bounded():
    lines = ["ERROR: Invalid requirement: " + "x" * 5000]
    assert len(explain(FailedBuild(lines))) <= MAX_MESSAGE
