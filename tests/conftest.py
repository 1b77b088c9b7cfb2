"""Suite-wide rules: in CI a skipped test is a failure (a silent skip proves nothing)."""

from __future__ import annotations

import os


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not reporter or not os.environ.get("CI"):
        return
    skipped = reporter.stats.get("skipped", [])
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; every marked test must run here", red=True)
        session.exitstatus = 1
