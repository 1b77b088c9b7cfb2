"""Text outputs without their volatile parts, and the numbers inside them.

Two runs of the same analysis print different memory addresses (``<Foo at 0x7f3a...>``),
timestamps and dates, temporary paths (``/tmp/tmpab12cd34``) and timings (``Wall time:
1.2 s``, ``%timeit``'s ``1.3 ms ± 5 µs per loop``). Each is replaced by a placeholder before
texts are compared. A number followed by a unit is *not* a duration on its own: ``exposure
10 s`` is data, so only durations in timing phrases are replaced (``took``, ``elapsed``, ``Wall
time``, ``CPU times``, ``per loop``, ``in 2.1 s``).

``split_numbers`` then cuts a text into its words and its numbers, so numbers can be compared
with a tolerance and the rest exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_UNIT = r"(?:ns|µs|us|ms|s|sec|secs|seconds?|min|mins|minutes?|h|hours?)"
_NUM = r"[-+]?\d+(?:[.,]\d+)?"
_DURATION = rf"{_NUM}\s?{_UNIT}\b"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"

# (pattern, placeholder), applied in this order
VOLATILE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b0x[0-9a-fA-F]{4,}\b"), "0x<address>"),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|\s?[+-]\d{2}:?\d{2}|\s?UTC)?"
        ),
        "<timestamp>",
    ),
    (
        re.compile(
            rf"\b{_DAY} +{_MONTH} +\d{{1,2}} +\d{{2}}:\d{{2}}:\d{{2}}(?: [A-Z]{{2,5}})?(?: \d{{4}})?"
            rf"|\b{_DAY}, +\d{{1,2}} +{_MONTH} +\d{{4}} +\d{{2}}:\d{{2}}:\d{{2}}(?: [+-]\d{{4}}| [A-Z]{{2,5}})?"
        ),
        "<timestamp>",
    ),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "<date>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<time>"),
    (
        re.compile(
            r"(?:/private)?(?:/tmp|/var/tmp|/var/folders|/dev/shm|/run/user/\d+)/[^\s'\"<>,;:)\]}]*"
            r"|[A-Za-z]:\\(?:Users\\[^\\\s]+\\AppData\\Local\\)?Temp\\[^\s'\"<>,;:)\]}]*"
        ),
        "<tmp>",
    ),
    (re.compile(r"(?m)^(CPU times|Wall time):.*$"), r"\1: <duration>"),
    (
        re.compile(rf"(?i)\b(took|elapsed(?: time)?|time taken|runtime|duration)(\s*[:=]?\s*){_DURATION}"),
        r"\1\2<duration>",
    ),
    (
        re.compile(
            rf"{_DURATION}\s*±\s*{_DURATION} per loop \(mean ± std\. dev\. of [\d,]+ runs?, [\d,]+ loops? each\)"
        ),
        "<duration> per loop",
    ),
    (re.compile(rf"\b(in|after) {_DURATION}"), r"\1 <duration>"),
)

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?\b(?:nan|inf)\b")


def normalise(text: str, extra: Iterable[re.Pattern[str]] = ()) -> str:
    """``text`` with volatile parts replaced by placeholders and line ends unified."""
    text = text.replace("\r\n", "\n")
    for pattern, placeholder in VOLATILE:
        text = pattern.sub(placeholder, text)
    for pattern in extra:
        text = pattern.sub("<volatile>", text)
    return text


def split_numbers(text: str) -> tuple[list[str], list[str]]:
    """The text's words between numbers (len(numbers) + 1 of them) and its numbers as written."""
    words, numbers, last = [], [], 0
    for match in NUMBER.finditer(text):
        words.append(text[last : match.start()])
        numbers.append(match.group())
        last = match.end()
    words.append(text[last:])
    return words, numbers
