"""The webhook on a changed verdict, against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from panbinder.checks.notify import CheckNotifier, change
from panbinder.checks.verdict import CheckResult, Kind, Status, Step, StepResult


def result(failing: bool) -> CheckResult:
    steps = (
        StepResult(Step.LAUNCH, Status.PASSED),
        StepResult(Step.RUN, Status.FAILED if failing else Status.PASSED, message="cell 1 raised KeyError"),
    )
    return CheckResult("10.5555/x", Kind.FROZEN, datetime.now(UTC), steps)


class Receiver(web.RequestHandler):
    def initialize(self, received: list, status: int) -> None:
        self.received, self.status = received, status

    def post(self) -> None:
        self.received.append((self.request.headers["Content-Type"], json.loads(self.request.body)))
        self.set_status(self.status)


@pytest.fixture
async def receiver():
    received: list = []
    sock, port = bind_unused_port()
    server = web.Application([(r"/hook", Receiver, {"received": received, "status": 204})])
    http = HTTPServer(server)
    http.add_sockets([sock])
    yield f"http://127.0.0.1:{port}/hook", received
    http.stop()


async def test_webhook_called_only_when_the_verdict_changes(receiver):
    url, received = receiver
    notifier = CheckNotifier(webhook_url=url)
    good, bad = result(False), result(True)
    assert await notifier.changed(None, good)  # a first check is a change from nothing
    assert not await notifier.changed(good, result(False))
    assert await notifier.changed(good, bad)
    assert [body["verdict"] for _, body in received] == ["reproducible", "does not run"]
    content_type, body = received[1]
    assert content_type == "application/json"
    assert body["previous"] == "reproducible" and body["failed_step"] == "runs"
    assert body["message"] == "cell 1 raised KeyError" and body["doi"] == "10.5555/x"


async def test_a_failing_webhook_never_fails_the_check():
    sock, port = bind_unused_port()
    sock.close()  # nothing listens there
    notifier = CheckNotifier(webhook_url=f"http://127.0.0.1:{port}/hook", webhook_timeout=2)
    assert await notifier.changed(None, result(True)) is False
    assert await CheckNotifier().changed(None, result(True)) is False  # no URL: not called
    assert change(result(True), result(True)) is None
