"""Progress events (panbinder/events.py): the BinderHub-compatible wire format."""

from __future__ import annotations

import json

import pytest

from panbinder.events import PHASES, SSE_KEEPALIVE, TERMINAL_PHASES, Event, sse_event


def test_to_dict_phase_only():
    assert Event("building").to_dict() == {"phase": "building"}


def test_to_dict_with_message_and_extra():
    event = Event("ready", "server running\n", {"url": "http://h/user/x/", "token": "t"})
    assert event.to_dict() == {
        "phase": "ready",
        "message": "server running\n",
        "url": "http://h/user/x/",
        "token": "t",
    }


def test_to_dict_returns_a_copy_of_extra():
    event = Event("built", "", {"image": "r/x:1"})
    event.to_dict()["image"] = "changed"
    assert event.extra == {"image": "r/x:1"}


@pytest.mark.parametrize("phase", ["done", "", "Building", "error"])
def test_unknown_phase_raises(phase):
    with pytest.raises(ValueError, match="unknown phase"):
        Event(phase)


def test_every_binderhub_phase_is_known():
    for phase in ("waiting", "fetching", "building", "pushing", "built", "launching", "ready", "failed"):
        assert phase in PHASES
        Event(phase)


def test_sse_event_is_one_data_line_and_a_blank_line():
    text = sse_event(Event("building", "Step 1/9\n"))
    assert text.startswith("data: ")
    assert text.endswith("\n\n")
    assert text.count("\n") == 2  # the JSON escapes the newline of the message
    assert json.loads(text[len("data: ") : -2]) == {"phase": "building", "message": "Step 1/9\n"}


def test_sse_event_carries_extra_fields():
    text = sse_event(Event("built", "", {"imageName": "r/x:abc"}))
    assert text == 'data: {"phase": "built", "imageName": "r/x:abc"}\n\n'


def test_keepalive_is_an_sse_comment():
    assert SSE_KEEPALIVE.startswith(":")
    assert SSE_KEEPALIVE.endswith("\n\n")


@pytest.mark.parametrize("phase", PHASES)
def test_terminal_only_for_ready_and_failed(phase):
    assert Event(phase).terminal is (phase in ("ready", "failed"))


def test_terminal_phases_constant():
    assert frozenset({"ready", "failed"}) == TERMINAL_PHASES
