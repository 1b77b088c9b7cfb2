"""How the Hub waits for a starting server to answer: often, instead of JupyterHub's backoff.

JupyterHub checks a starting server's address after random waits of up to 0.2 s, then up to
0.4 s, 0.8 s, 1.6 s ... (full jitter, doubling, at most 5 s). A panbinder server answers about
1 s after its container starts, when the waits have grown to 0.8 s: the Hub noticed it a few
hundred milliseconds late, and every launch waited for that. Here the first check comes after
``interval`` (25 ms) and each wait grows by ``growth`` (5 %) up to ``max_wait``: a server that
answers 1.2 s after its start is noticed within 80 ms, for about 25 connection attempts (a
refused local connection costs the Hub well under a millisecond).

What counts as up is JupyterHub's: any answer below 500. The answer is returned, as
JupyterHub's ``wait_for_http_server`` does (the Hub reads the server's version from it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

Fetch = Callable[..., Awaitable[Any]]


def waits(interval: float, growth: float, max_wait: float) -> Callable[[int], float]:
    """The wait before check ``n`` (0-based)."""
    return lambda n: min(max_wait, interval * growth**n)


async def wait_for_http_server(
    url: str,
    timeout: float = 10,
    ssl_context: Any = None,
    *,
    fetch: Fetch,
    interval: float = 0.025,
    growth: float = 1.05,
    max_wait: float = 0.5,
    log: Any = None,
) -> Any:
    """The first answer below 500 from ``url``; TimeoutError after ``timeout`` seconds."""
    kwargs: dict[str, Any] = {"allow_redirects": False}
    if ssl_context:
        kwargs["ssl"] = ssl_context
    deadline = time.monotonic() + timeout
    wait = waits(interval, growth, max_wait)
    tries = 0
    while True:
        try:
            resp = await fetch(url, raise_for_status=False, **kwargs)
        except Exception as e:  # refused, reset, timed out: not there yet
            if log is not None:
                log.debug("server at %s not answering yet: %s", url, e)
        else:
            if resp.status < 500:
                return resp
            if log is not None:
                log.warning("server at %s answered %s", url, resp.status)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"Server at {url} didn't respond in {timeout} seconds")
        await asyncio.sleep(min(wait(tries), left))
        tries += 1
