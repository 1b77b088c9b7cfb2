"""Build notices are recognised as the builder prints them and as a build step prints them
(BuildKit puts its step number and seconds in front of every line a step prints)."""

from __future__ import annotations

import pytest

from panbinder.builder.failure_causes import is_notice, notice_line


@pytest.mark.parametrize(
    "line",
    [
        "panbinder notice: resolved requirements.txt as of 2020-10-01\n",
        "#12 3.456 panbinder notice: resolved requirements.txt as of 2020-10-01\n",
        "#7 12 panbinder notice: resolved requirements.txt as of 2020-10-01",
    ],
)
def test_notice_with_or_without_the_step_prefix(line: str) -> None:
    assert notice_line(line) == "panbinder notice: resolved requirements.txt as of 2020-10-01"


@pytest.mark.parametrize(
    "line",
    [
        "#12 3.456 Collecting numpy\n",
        "echo panbinder notice: inside a command\n",
        "#12 DONE 0.1s panbinder notice: x",
        "",
    ],
)
def test_other_lines_are_not_notices(line: str) -> None:
    assert notice_line(line) is None
    assert not is_notice(line)
