"""Requirements resolve as of their date, for real: a package index with dated releases.

The test builds tiny wheels itself and serves them with PEP 700 upload times in the JSON simple
API (what uv's ``--exclude-newer`` and pip's ``--uploaded-prior-to`` read) on the build engine's
bridge gateway, where build steps reach the host (as test_conda_mirror.py serves its channel). The
repositories name the index in requirements.txt (``--extra-index-url``), so the deployment's
settings, and with them the shared server layer, stay as in every other build:

- ``pbasof-probe`` 1.0 (uploaded 2020-06-01) has ``VALUE``; 2.0 (2024-06-01) removed it. A
  repository committed in 2021 with an unpinned ``pbasof-probe`` gets 1.0 and its code runs.
- The same index behind basic authentication, named with its credentials
  (``--index-url http://user:token@host/simple``): the build installs from it, and the token is in
  no build log line, event or lock, also when the token is wrong and the build fails.
- ``pbasof-stepper`` 1.0 (2018-03-01) has a wheel for CPython 3.9 only (and says Python < 3.10);
  1.1 (2020-09-15) is pure Python. A
  repository committed on 2019-01-01 steps forward: the log says it resolved as of 2020-10-01,
  and 1.1 is installed. The image's lock records both dates.
"""

from __future__ import annotations

import json
import uuid

import pytest

from panbinder.builder.buildpacks import NOTICE_PREFIX
from tests.dated_index import Releases, build_index, dated_repo, serving_index
from tests.support import notebook, read_stream, run_code
from tests.wheels import PURE

from .conftest import catalogue_of

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

# name -> [(version, code, Requires-Python, wheel tag, upload time)]
RELEASES: Releases = {
    "pbasof-probe": [
        ("1.0", 'VALUE = "pbasof-probe 1.0"\n', "", PURE, "2020-06-01T10:00:00Z"),
        ("2.0", "# 2.0 removed VALUE\n", "", PURE, "2024-06-01T10:00:00Z"),
    ],
    # like numpy: the 2018 release has wheels for older Pythons only
    "pbasof-stepper": [
        (
            "1.0",
            'VALUE = "stepper 1.0"\n',
            ">=3.6,<3.10",
            "cp39-cp39-manylinux_2_17_x86_64",
            "2018-03-01T10:00:00Z",
        ),
        ("1.1", 'VALUE = "stepper 1.1"\n', ">=3.8", PURE, "2020-09-15T10:00:00Z"),
    ],
}


@pytest.fixture(scope="module")
def dated_index():
    """The index's simple API URL, on the build engine's bridge gateway."""
    with serving_index(RELEASES) as url:
        yield url


def requirements(index: str, requirement: str) -> str:
    return f"--extra-index-url {index}\n{requirement}\n"


async def test_unpinned_requirement_gets_the_release_of_the_commit_date(portal, git_server, dated_index):
    name = f"asof-probe-{uuid.uuid4().hex[:8]}"
    code = "import pbasof_probe; print(pbasof_probe.VALUE)"
    files = {"requirements.txt": requirements(dated_index, "pbasof-probe"), "analysis.ipynb": notebook(code)}
    url = dated_repo(git_server, name, files, "2021-03-15T12:00:00+00:00")
    s = await read_stream(portal.build_url(url, "main"))
    assert s.last["phase"] == "ready", s.log()[-5000:]
    log = s.log()
    assert NOTICE_PREFIX + "requirements.txt resolves as of 2021-03-15 (the last commit that changed" in log
    assert "resolved requirements.txt as of" not in log  # the date itself resolves: no stepping
    assert (await run_code(s.last["url"], s.last["token"], code)).strip() == "pbasof-probe 1.0"


async def test_a_commit_older_than_every_supporting_release_steps_forward(
    portal, git_server, dated_index, storage_root
):
    name = f"asof-stepper-{uuid.uuid4().hex[:8]}"
    files = {"requirements.txt": requirements(dated_index, "pbasof-stepper"), "README.md": "2019\n"}
    url = dated_repo(git_server, name, files, "2019-01-01T12:00:00+00:00")
    s = await read_stream(portal.build_url(url, "main", "build_only=true"))
    assert s.last["phase"] == "ready", s.log()[-5000:]
    expected = (
        NOTICE_PREFIX + "resolved requirements.txt as of 2020-10-01: the earliest releases that support "
        "Python 3.11 (nothing from 2019-01-01, the last commit that changed requirements.txt, does)"
    )
    assert expected in s.log(), s.log()[-5000:]
    cat = catalogue_of(portal, storage_root)
    try:
        lock = cat.get_lock(s.last["imageName"])
    finally:
        cat.close()
    assert lock is not None, "no lock recorded"
    assert "pbasof-stepper==1.1" in lock["pip"]
    assert lock["resolved_as_of"] == [
        {"file": "requirements.txt", "requested": "2019-01-01T12:00:00Z", "used": "2020-10-01T00:00:00Z"}
    ]


def test_index_pages_carry_upload_times():
    page = build_index(RELEASES)["/simple/pbasof-probe/"]
    assert isinstance(page, dict) and page["meta"]["api-version"] == "1.1"
    assert [f["upload-time"] for f in page["files"]] == ["2020-06-01T10:00:00Z", "2024-06-01T10:00:00Z"]


TOKEN, WRONG = "s3cr3t-index-token", "wr0ng-index-token"


@pytest.fixture(scope="module")
def private_index():
    """The index's URL; it answers only the user "reader" with TOKEN."""
    with serving_index(RELEASES, credentials=("reader", TOKEN)) as url:
        yield url


async def private_build(portal, git_server, index: str, token: str):
    """Build a repository whose requirements.txt names ``index`` with ``token``: its stream."""
    named = index.replace("http://", f"http://reader:{token}@")
    files = {"requirements.txt": f"--index-url {named}\npbasof-probe\n", "README.md": "private\n"}
    url = dated_repo(git_server, f"asof-private-{uuid.uuid4().hex[:8]}", files, "2021-03-15T12:00:00+00:00")
    return await read_stream(portal.build_url(url, "main", "build_only=true"))


async def test_index_credentials_in_requirements_work_and_stay_secret(
    portal, git_server, private_index, storage_root
):
    s = await private_build(portal, git_server, private_index, TOKEN)
    assert s.last["phase"] == "ready", s.log()[-5000:]
    assert TOKEN not in json.dumps(s.events), "the token reached the build's events"
    cat = catalogue_of(portal, storage_root)
    try:
        lock = cat.get_lock(s.last["imageName"])
    finally:
        cat.close()
    assert lock is not None and "pbasof-probe==1.0" in lock["pip"]
    assert TOKEN not in json.dumps(lock)

    s = await private_build(portal, git_server, private_index, WRONG)
    assert s.last["phase"] == "failed", s.log()[-5000:]
    assert WRONG not in json.dumps(s.events), "the wrong token reached the failed build's events"
    assert TOKEN not in portal.logs() and WRONG not in portal.logs()
