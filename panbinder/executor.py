"""The one place where blocking calls leave the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
_executor: ThreadPoolExecutor | None = None
_threads = 16


def configure(threads: int) -> None:
    """Size the executor (PanbinderBase.executor_threads); only before its first use."""
    global _threads
    _threads = max(1, threads)


def executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="panbinder")
    return _executor


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor(), functools.partial(fn, *args, **kwargs))


def log_task_exception(task: asyncio.Task, log: Any) -> None:
    """Done-callback: log the exception of a background task instead of losing it."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background task %s failed", task.get_name(), exc_info=exc)


def run_every(
    name: str, interval: float, sweep: Callable[[], Awaitable[Any]], log: Any, failed: str
) -> asyncio.Task:
    """A background task that awaits ``sweep()`` now and then every ``interval`` seconds; a sweep
    that raises is logged as ``"<failed>: <error>"`` and the next one tries again."""

    async def loop() -> None:
        while True:
            try:
                await sweep()
            except Exception as e:
                log.warning("%s: %s", failed, e)
            await asyncio.sleep(interval)

    task = asyncio.get_running_loop().create_task(loop(), name=name)
    task.add_done_callback(lambda t: log_task_exception(t, log))
    return task


async def cancel_task(task: asyncio.Task | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
