"""Failed builds explain themselves: each cause of failure made to happen once, for real.

The repositories are written by the test; none needs a network host other than the package
index and Debian's archive, except the ones that fail because they do. The log text these
builds produced is kept as fixtures of tests/test_failure_causes.py.
"""

from __future__ import annotations

import pytest

from tests.support import read_stream

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

UNREACHABLE = "data.panbinder-test.invalid"  # .invalid never resolves (RFC 2606)

CASES = {
    "fail-python-version": (
        {"runtime.txt": "python-3.7\n", "requirements.txt": "numpy==1.21.6\n"},
        [
            "The requirement numpy==1.21.6 cannot be installed on this image's Python 3.11",
            "runtime.txt asks for Python 3.7 and this deployment only has Python 3.11: that is the likely cause",
        ],
    ),
    "fail-pip-host": (
        {"requirements.txt": f"tabulate==0.9.0\nhttps://{UNREACHABLE}/pkgs/helper-1.0.tar.gz\n"},
        [f"A requirement needs the network host {UNREACHABLE}"],
    ),
    "fail-apt-package": (
        {"apt.txt": "jq\npanbinder-no-such-package\n"},
        ["apt.txt names the package panbinder-no-such-package"],
    ),
    "fail-postbuild-command": (
        {"postBuild": "#!/bin/bash\nset -e\necho preparing\nmake-figures --all\n"},
        ["postBuild runs the command make-figures (line 4)"],
    ),
    "fail-postbuild-host": (
        {
            "apt.txt": "curl\n",
            "postBuild": f"#!/bin/bash\nset -e\ncurl -fsSL https://{UNREACHABLE}/record/1/data.h5 -o data.h5\n",
        },
        [f"postBuild needs the network host {UNREACHABLE}"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_failed_build_names_its_cause(portal, git_server, name):
    files, fragments = CASES[name]
    git_server.commit(name, files, "fixture")
    s = await read_stream(portal.build_url(git_server.url(name), "main") + "?build_only=true")
    failed = s.last
    assert failed["phase"] == "failed", s.log()
    for fragment in fragments:
        assert fragment in failed["message"], failed["message"]
    assert len(failed["message"]) < 2000
    assert "executor failed" not in failed["message"] and "Traceback" not in failed["message"]
    # the log stays apart from the message: its tail in the event, all of it in the kept log
    assert any("executor failed" in line for line in failed["log_tail"])
    assert failed["build_log_url"]
