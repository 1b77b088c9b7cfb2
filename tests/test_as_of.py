"""The search for the earliest date whose releases resolve on this Python (builder/buildpacks/as_of.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from panbinder.builder.buildpacks import as_of
from panbinder.builder.buildpacks.as_of import Search, earliest, month_start, notice_text

NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def supported_from(first: datetime | None):
    """A resolver for requirements that resolve from ``first`` on (None: never, not even today)."""
    calls: list[datetime | None] = []

    def resolves(moment: datetime | None) -> bool:
        calls.append(moment)
        if first is None:
            return False
        return moment is None or moment >= first

    return resolves, calls


def test_month_start_rolls_over_years():
    start = datetime(2019, 11, 17, 8, 30, tzinfo=UTC)
    assert month_start(start, 1) == datetime(2019, 12, 1, tzinfo=UTC)
    assert month_start(start, 2) == datetime(2020, 1, 1, tzinfo=UTC)
    assert month_start(start, 14) == datetime(2021, 1, 1, tzinfo=UTC)


def test_the_requested_date_is_used_when_it_resolves_with_one_resolution():
    requested = datetime(2019, 3, 4, 9, tzinfo=UTC)
    resolves, calls = supported_from(datetime(2018, 1, 1, tzinfo=UTC))
    found = earliest(requested, NOW, resolves)
    assert found.used == requested and found.resolvable and not found.stepped
    assert calls == [requested]


def test_steps_forward_to_the_first_month_that_resolves():
    # the first release supporting this Python came out on 2022-09-15: as of 2022-10-01 it resolves
    requested = datetime(2019, 3, 4, 9, tzinfo=UTC)
    resolves, calls = supported_from(datetime(2022, 9, 15, tzinfo=UTC))
    found = earliest(requested, NOW, resolves)
    assert found.stepped and found.used == datetime(2022, 10, 1, tzinfo=UTC)
    # bounded: the date, today, yearly steps to 2023, then halving the months of the last year
    assert len(calls) <= 2 + 4 + 4, calls
    assert calls[:2] == [requested, None]
    assert calls[2:6] == [datetime(y, 3, 1, tzinfo=UTC) for y in (2020, 2021, 2022, 2023)]


def test_every_earlier_month_fails_and_the_found_one_resolves():
    requested = datetime(2015, 6, 30, 23, tzinfo=UTC)
    for first in (
        datetime(2015, 7, 1, tzinfo=UTC),
        datetime(2017, 2, 10, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    ):
        resolves, calls = supported_from(first)
        found = earliest(requested, NOW, resolves)
        assert found.used is not None and found.used >= first
        assert found.used == month_start(first, 0 if first.day == 1 else 1)
        assert len(calls) <= 2 + 12 + 4


def test_releases_newer_than_every_month_start_mean_no_date():
    # only something uploaded after the first of this month resolves: today's releases
    resolves, _ = supported_from(datetime(2026, 12, 2, tzinfo=UTC))
    found = earliest(datetime(2024, 1, 1, tzinfo=UTC), NOW, resolves)
    assert found.resolvable and found.stepped and found.used is None


def test_nothing_resolves_keeps_the_requested_date_after_two_resolutions():
    requested = datetime(2020, 1, 1, tzinfo=UTC)
    resolves, calls = supported_from(None)
    found = earliest(requested, NOW, resolves)
    assert not found.resolvable and found.used == requested and not found.stepped
    assert calls == [requested, None]


def test_notice_names_the_date_used_and_the_python():
    search = Search(datetime(2019, 3, 4, tzinfo=UTC), datetime(2022, 10, 1, tzinfo=UTC), True)
    text = notice_text(search, "requirements.txt", "3.11", "the last commit that changed it")
    assert text.startswith(
        "resolved requirements.txt as of 2022-10-01: the earliest releases that support Python 3.11"
    )
    assert "(nothing from 2019-03-04, the last commit that changed it, does)" in text
    same = Search(search.requested, search.requested, True)
    assert notice_text(same, "requirements.txt", "3.11", "") == ""


def test_main_prints_the_date_and_records_it(tmp_path, monkeypatch, capsys):
    # uv is replaced by a resolver; main's output is what the install command reads
    first = datetime(2021, 5, 20, tzinfo=UTC)
    monkeypatch.setattr(as_of, "uv_resolves", lambda *a, **k: supported_from(first)[0])
    record = tmp_path / "as-of.jsonl"
    args = ["--since=2020-02-03T04:05:06Z", "--uv=uv", "--python=python", "--python-version=3.11"]
    args += ["--label=requirements.txt", f"--record={record}", "requirements.txt"]
    assert as_of.main(args) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "2021-06-01T00:00:00Z"
    assert "panbinder notice: resolved requirements.txt as of 2021-06-01" in err
    entry = json.loads(record.read_text())
    assert entry == {
        "file": "requirements.txt",
        "requested": "2020-02-03T04:05:06Z",
        "used": "2021-06-01T00:00:00Z",
    }
