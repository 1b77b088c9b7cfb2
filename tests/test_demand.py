"""Demand ranking and the pool's plan (pure functions of ``launcher/demand.py``)."""

from __future__ import annotations

import json

from panbinder.launcher.demand import WEEK, Demand, DemandLog, allocate, peak, score, select_evictions

DAY = 86400.0
NOW = 1_800_000_000.0


def s(demand: Demand) -> float:
    return score(demand, NOW, decay=3 * DAY, registration_weight=1.0)


def test_recent_launches_count_more_than_old_ones_and_many_beat_one():
    just_now = Demand(launches=[NOW - 60])
    yesterday = Demand(launches=[NOW - DAY])
    busy_week = Demand(launches=[NOW - d * DAY for d in (1, 2, 3, 4, 5, 6)])
    assert s(just_now) > s(yesterday) > 0
    assert s(busy_week) > s(just_now)
    assert s(Demand(launches=[NOW - WEEK - 1])) == 0  # older than a week: forgotten
    assert s(Demand()) == 0


def test_a_newly_registered_publication_ranks_like_a_fresh_launch():
    new = Demand(registered=NOW - 600)
    old = Demand(registered=NOW - 60 * DAY)
    assert s(new) > s(Demand(launches=[NOW - 3 * 3600])) > s(old) > 0


def test_peak_is_the_largest_burst_within_the_window():
    d = Demand(launches=[NOW - 3000, NOW - 100, NOW - 90, NOW - 80, NOW - 10])
    assert peak(d, NOW, 60) == 3
    assert peak(d, NOW, 0) == 1
    assert peak(Demand(), NOW, 60) == 1


def test_allocate_gives_one_each_by_score_then_the_bursts():
    scores = {"a": 5.0, "b": 3.0, "c": 1.0, "d": 0.0}
    wanted = {"a": 4, "b": 1, "c": 2, "d": 1}
    assert allocate(scores, wanted, 10) == {"a": 4, "b": 1, "c": 2}
    assert allocate(scores, wanted, 5) == {"a": 3, "b": 1, "c": 1}
    assert allocate(scores, wanted, 2) == {"a": 1, "b": 1}
    assert allocate(scores, wanted, 0) == {}


def test_evictions_take_what_is_beyond_the_plan_lowest_demand_first():
    held = {"a": 2, "b": 3, "c": 1}
    plan = {"a": 2, "b": 1}
    scores = {"a": 5.0, "b": 3.0, "c": 1.0}
    assert select_evictions(held, plan, scores) == ["c", "b", "b"]
    assert select_evictions({"a": 1}, {"a": 1}, scores) == []


def test_the_log_keeps_a_week_across_restarts_and_survives_damage(tmp_path):
    path = tmp_path / "demand.json"
    log = DemandLog(path)
    log.record("k1", NOW - WEEK - 10, image="reg/img:1")
    log.record("k2", NOW - 5, image="reg/img:2", profile="small")
    log.record("k2", NOW)
    again = DemandLog(path)
    assert set(again.kinds) == {"k2"}
    assert again.kinds["k2"].launches == [NOW - 5, NOW]
    assert (again.kinds["k2"].image, again.kinds["k2"].profile) == ("reg/img:2", "small")
    path.write_text("{not json")
    assert DemandLog(path).kinds == {}
    path.write_text(json.dumps({"k": {"launches": ["x"]}}))
    assert DemandLog(path).kinds == {}
