"""Requirements as of a date: the earliest date from the repository's own that resolves here.

An unpinned ``numpy`` in a repository from 2019 meant 2019's numpy to its authors; today's may
have removed the APIs its notebooks use. So a build resolves requirements as of a date (uv's
``--exclude-newer``, pip's ``--uploaded-prior-to``; both need the upload times that the JSON
simple API gives, PEP 700): by default the date of the last commit that changed the requirements
(``installer.since``). Releases from that date may not install on this deployment's Python (no
wheel for Python 3.11 existed in 2019), so this script, run inside the build step with the
image's own Python and uv, looks for the earliest date that does:

1. the date itself; if it resolves, it is used (one resolution, the usual case);
2. no date at all (today's releases): if even that fails, the requirements cannot resolve here at
   any date; the install then runs as of the requested date and reports the real error;
3. otherwise one-year steps forward (the first day of the month, twelve months apart) until one
   resolves, then halving the months between the last failing and the first resolving date, down
   to one month: at most about 2 + years + 4 resolutions (``earliest``).

"Resolves" is ``uv pip compile`` (resolution only, nothing installed) against the image's Python
with ``--only-binary :all:``: images have no compiler, so a 2019 release whose only form for
Python 3.11 is a source archive with C code resolves but would not install. When even today's
releases need a source archive (a pure-Python package published without wheels), the search runs
again allowing source archives.

The date used goes to stdout (empty: no date, today's releases) for the install command, and
one JSON line per install to ``--record`` (read into the image's lock, lock.py); stepping forward
is said in the build log with a notice line. This file runs inside images with the standard
library alone (it is copied in; see installer.py) and is imported by the tests for ``earliest``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

# The build-log prefix of notices (settings.NOTICE_PREFIX; this file cannot import it in images).
NOTICE_PREFIX = "panbinder notice: "
COMPILE_TIMEOUT = 600  # seconds for one resolution
# Moment -> whether the requirements resolve as of it (None: no date limit, today's releases).
Resolves = Callable[[datetime | None], bool]


def month_start(moment: datetime, months: int) -> datetime:
    """Midnight UTC on the first day of the month ``months`` after the month of ``moment``."""
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


@dataclass
class Search:
    """What ``earliest`` found: the date to use (None: no limit) and every moment it tried."""

    requested: datetime
    used: datetime | None
    resolvable: bool  # False: nothing resolves, not even today's releases
    tried: list[tuple[datetime | None, bool]] = field(default_factory=list)

    @property
    def stepped(self) -> bool:
        return self.resolvable and self.used != self.requested


def earliest(requested: datetime, now: datetime, resolves: Resolves) -> Search:
    """The earliest moment from ``requested`` on (month starts after it) at which ``resolves``;
    resolution is taken to stay possible once possible (newer releases only add choices)."""
    tried: list[tuple[datetime | None, bool]] = []

    def check(moment: datetime | None) -> bool:
        ok = resolves(moment)
        tried.append((moment, ok))
        return ok

    if check(requested):
        return Search(requested, requested, True, tried)
    if not check(None):
        return Search(requested, requested, False, tried)

    def candidate(months: int) -> datetime | None:  # None once past now: no limit
        moment = month_start(requested, months)
        return moment if moment <= now else None

    top = 1
    while candidate(top) is not None:
        top += 1
    low, high = 0, top  # ``low`` fails (the requested date), ``high`` resolves (no limit)
    for months in range(12, top, 12):
        if check(candidate(months)):
            high = months
            break
        low = months
    while high - low > 1:
        middle = (low + high) // 2
        if check(candidate(middle)):
            high = middle
        else:
            low = middle
    return Search(requested, candidate(high), True, tried)


def parse_moment(text: str) -> datetime:
    """An ISO 8601 date or time (UTC when it names no zone)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stamp(moment: datetime | None) -> str:
    """``2019-05-03T14:02:11Z``, as uv and pip take it ("" for no limit)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def day(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d") if moment else "today"


def uv_resolves(uv: str, python: str, inputs: list[str], *, wheels_only: bool) -> Resolves:
    """``uv pip compile`` of ``inputs`` for ``python`` as of a moment (output discarded)."""

    def resolves(moment: datetime | None) -> bool:
        cmd = [uv, "pip", "compile", "--quiet", "--no-header", "--python", python]
        cmd += ["--exclude-newer", stamp(moment)] if moment else []
        cmd += ["--only-binary", ":all:"] if wheels_only else []
        try:
            done = subprocess.run(
                [*cmd, *inputs], capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"panbinder: resolving as of {day(moment)} failed: {e}", file=sys.stderr)
            return False
        print(
            f"panbinder: resolving as of {day(moment)}: {'yes' if done.returncode == 0 else 'no'}",
            file=sys.stderr,
        )
        return done.returncode == 0

    return resolves


def notice_text(search: Search, label: str, python_version: str, why: str) -> str:
    """The build-log notice for a search ("" when the requested date was used)."""
    asked = f"{day(search.requested)}, {why}" if why else day(search.requested)
    if not search.resolvable:
        return (
            f"{label} does not resolve on Python {python_version} as of {asked}, nor with today's "
            "releases; installing as of that date to show why"
        )
    if not search.stepped:
        return ""
    when = f"as of {day(search.used)}" if search.used else "with today's releases"
    return (
        f"resolved {label} {when}: the earliest releases that support Python {python_version} "
        f"(nothing from {asked}{',' if why else ''} does)"
    )


def run(args: argparse.Namespace, now: datetime | None = None) -> Search:
    requested, now = parse_moment(args.since), now or datetime.now(UTC)
    search = earliest(requested, now, uv_resolves(args.uv, args.python, args.inputs, wheels_only=True))
    if not search.resolvable:
        print("panbinder: trying again allowing source archives", file=sys.stderr)
        search = earliest(requested, now, uv_resolves(args.uv, args.python, args.inputs, wheels_only=False))
    return search


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", required=True, help="the requested date (ISO 8601)")
    parser.add_argument("--uv", required=True, help="the uv binary")
    parser.add_argument("--python", required=True, help="the interpreter to resolve for")
    parser.add_argument("--python-version", default="", help="X.Y, for the messages")
    parser.add_argument("--label", required=True, help="what is resolved, for the messages")
    parser.add_argument("--why", default="", help="where the requested date comes from")
    parser.add_argument("--record", default="", help="append a JSON line about the result here")
    parser.add_argument("inputs", nargs="+", help="requirements files")
    args = parser.parse_args(argv)
    search = run(args)
    text = notice_text(search, args.label, args.python_version, args.why)
    if text:
        print(NOTICE_PREFIX + text, file=sys.stderr)
    used = stamp(search.used) if search.resolvable else stamp(search.requested)
    if args.record:
        entry = {"file": args.label, "requested": stamp(search.requested), "used": used or None}
        with open(args.record, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
    print(used)
    return 0


if __name__ == "__main__":
    sys.exit(main())
