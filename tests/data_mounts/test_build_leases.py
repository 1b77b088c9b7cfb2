"""Build leases on SQLite and PostgreSQL: one holder at a time, outcomes seen by waiters, expiry."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from panbinder.builder.shared import WAITING_MESSAGE, LeaseTimes, SharedBuild
from panbinder.data_mounts.build_leases import BuildLeases
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.events import Event

IMAGE = "127.0.0.1:5000/pb/repo:abc"
QUICK = LeaseTimes(seconds=30, renew=0.05, poll=0.05)
LOG = logging.getLogger("test")


@pytest.fixture
def leases(any_db_url):
    cat = Catalogue(db_url=any_db_url)
    cat.start()
    yield BuildLeases(cat)
    cat.close()


def test_one_holder_at_a_time(leases):
    assert leases.take(IMAGE, "a", 30).holder == "a"
    seen = leases.take(IMAGE, "b", 30)
    assert (seen.holder, seen.state) == ("a", "building")
    assert leases.renew(IMAGE, "a", 30)
    assert not leases.renew(IMAGE, "b", 30)
    leases.release(IMAGE, "a", "built")
    assert leases.take(IMAGE, "b", 30, since=time.time() - 5).state == "built"  # b looked before
    assert leases.take(IMAGE, "b", 30, since=time.time() + 1).holder == "b"  # b looked after
    leases.release(IMAGE, "b", "failed", "no such package")
    assert leases.take(IMAGE, "c", 30).holder == "c"  # a new request after a failure builds again


def test_concurrent_takes_have_one_winner(leases):
    with ThreadPoolExecutor(10) as pool:
        seen = list(pool.map(lambda i: leases.take(IMAGE, f"h{i}", 30).holder, range(20)))
    assert len(set(seen)) == 1
    assert leases.read(IMAGE).holder == seen[0]


def test_expired_lease_is_taken_over(leases):
    leases.take(IMAGE, "crashed", 0.2)
    assert leases.take(IMAGE, "b", 30).holder == "crashed"
    time.sleep(0.3)
    assert leases.take(IMAGE, "b", 30).holder == "b"
    assert not leases.renew(IMAGE, "crashed", 30)


def shared(leases, build_id: str, times: LeaseTimes = QUICK) -> SharedBuild:
    return SharedBuild(leases, IMAGE, build_id, times, LOG, since=time.time())


async def test_waiter_sees_the_build_of_another_portal(leases):
    holder = shared(leases, "one")
    assert await holder.claim(lambda e: None) is None
    events: list[Event] = []
    waiter = asyncio.create_task(shared(leases, "two").claim(events.append))
    await asyncio.sleep(0.3)
    assert not waiter.done() and [e.message for e in events] == [WAITING_MESSAGE]
    await holder.release(Event("built", "done"))
    final = await asyncio.wait_for(waiter, 5)
    assert final.phase == "built"


async def test_request_just_before_a_build_elsewhere_ended_does_not_build_again(leases):
    holder, late = shared(leases, "one"), shared(leases, "two")  # both found no image
    await holder.claim(lambda e: None)
    await holder.release(Event("built", "done"))
    events: list[Event] = []
    final = await asyncio.wait_for(late.claim(events.append), 5)
    assert final.phase == "built" and events == []
    assert await shared(leases, "three").claim(lambda e: None) is None  # looked later: builds


async def test_waiter_sees_the_failure_instead_of_building_again(leases):
    holder = shared(leases, "one")
    await holder.claim(lambda e: None)
    waiter = asyncio.create_task(shared(leases, "two").claim(lambda e: None))
    await asyncio.sleep(0.2)
    await holder.release(Event("failed", "requirements.txt names no such package"))
    final = await asyncio.wait_for(waiter, 5)
    assert (final.phase, final.message) == ("failed", "requirements.txt names no such package")


async def test_holder_renews_and_a_stopped_build_hands_over_at_once(leases):
    holder = shared(leases, "one", LeaseTimes(seconds=0.5, renew=0.1, poll=0.05))
    await holder.claim(lambda e: None)
    other = shared(leases, "two")
    waiter = asyncio.create_task(other.claim(lambda e: None))
    await asyncio.sleep(1.0)  # twice the lease: only renewals keep it
    assert not waiter.done()
    await holder.release(None)  # stopped (restart, abandoned): no outcome recorded
    assert await asyncio.wait_for(waiter, 5) is None  # the waiter holds it and builds
    assert leases.read(IMAGE).holder == other.holder
    await other.release(Event("built", "done"))


async def test_crashed_holder_is_taken_over_after_expiry(leases):
    leases.take(IMAGE, "gone/1", 0.3)  # never renewed
    started = time.monotonic()
    assert await asyncio.wait_for(shared(leases, "two").claim(lambda e: None), 5) is None
    assert time.monotonic() - started >= 0.2


def test_rows_of_old_builds_are_removed_when_a_build_ends(any_db_url):
    cat = Catalogue(db_url=any_db_url)
    cat.start()
    try:
        leases = BuildLeases(cat, keep_seconds=0.2)
        leases.take("old/built", "a", 30)
        leases.release("old/built", "a", "built")
        leases.take("old/crashed", "b", 0.1)  # its portal died: never released
        leases.take("running", "c", 30)
        time.sleep(0.4)
        leases.take(IMAGE, "d", 30)
        leases.release(IMAGE, "d", "failed", "no such package")
        assert leases.read("old/built") is None and leases.read("old/crashed") is None
        assert leases.read("running").state == "building"  # renewed builds stay
        assert leases.read(IMAGE).message == "no such package"  # the outcome just recorded stays
    finally:
        cat.close()
