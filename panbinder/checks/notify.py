"""The notification hook: a webhook called with the verdict when a publication's verdict changes.

``CheckNotifier.webhook_url`` gets a POST with a JSON body (``doi``, ``verdict``, ``previous``,
``failed_step``, ``message``, ``started``, ``restored``) when a check's verdict differs from the
publication's previous check of the same kind (a first check counts as a change from nothing).
A webhook that fails or times out is logged and never fails the check.
"""

from __future__ import annotations

import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

from .verdict import CheckResult


def change(previous: CheckResult | None, result: CheckResult) -> dict[str, Any] | None:
    """The webhook's body when the verdict changed, else None."""
    before = previous.verdict.value if previous is not None else None
    if before == result.verdict.value:
        return None
    failed = result.failed_step
    return {
        "doi": result.doi,
        "kind": result.kind.value,
        "verdict": result.verdict.value,
        "previous": before,
        "failed_step": failed.step.value if failed else None,
        "message": result.message,
        "started": result.started.isoformat(),
        "restored": result.restored,
    }


class CheckNotifier(LoggingConfigurable):
    webhook_url = Unicode(
        "",
        help="URL that gets a POST with the verdict (JSON) when a publication's verdict changes "
        "(empty: no notifications).",
    ).tag(config=True)
    webhook_timeout = Float(10.0, help="Seconds the webhook may take to answer.").tag(config=True)

    async def changed(self, previous: CheckResult | None, result: CheckResult) -> bool:
        """Call the webhook if the verdict changed; whether it was called and answered 2xx."""
        body = change(previous, result)
        if body is None or not self.webhook_url:
            return False
        request = HTTPRequest(
            self.webhook_url,
            method="POST",
            body=json.dumps(body),
            headers={"Content-Type": "application/json"},
            request_timeout=self.webhook_timeout,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except Exception as error:  # never fail a check for its notification
            self.log.warning("webhook for %s not called: %s", result.doi, error)
            return False
        if response.code >= 300:
            self.log.warning("webhook for %s answered %s", result.doi, response.code)
            return False
        return True
