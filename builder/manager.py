"""Share builds: concurrent requests for the same image attach to one running build."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from traitlets import Any as AnyTrait
from traitlets.config import LoggingConfigurable

from panbinder.events import Event
from panbinder.executor import log_task_exception

from .base import Builder, BuildRequest


@dataclass
class BuildJob:
    request: BuildRequest
    history: list[Event] = field(default_factory=list)
    listeners: set[asyncio.Queue] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task | None = None
    result: Event | None = None

    def publish(self, event: Event) -> None:
        self.history.append(event)
        for q in self.listeners:
            q.put_nowait(event)


class BuildManager(LoggingConfigurable):
    builder = AnyTrait(help="The Builder that does the work.")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.jobs: dict[str, BuildJob] = {}
        self.on_finish: list = []  # callbacks(job, outcome, seconds) for metrics

    @property
    def running(self) -> int:
        return len(self.jobs)

    def _start(self, request: BuildRequest) -> BuildJob:
        job = BuildJob(request)
        self.jobs[request.image.full] = job

        async def run() -> None:
            builder: Builder = self.builder
            try:
                async for event in builder.build(request):
                    job.publish(event)
                    if event.phase in ("built", "failed"):
                        job.result = event
            except Exception as e:  # a bug in a builder must still end the stream
                self.log.exception("builder crashed", extra={"build_id": request.build_id})
                job.result = Event(
                    "failed", f"The build stopped unexpectedly ({type(e).__name__}); try again."
                )
                job.publish(job.result)
            finally:
                if job.result is None:
                    job.result = Event("failed", "The build ended without a result; try again.")
                    job.publish(job.result)
                self.jobs.pop(request.image.full, None)
                for cb in self.on_finish:
                    cb(job, job.result.phase, time.monotonic() - job.started)

        job.task = asyncio.create_task(run(), name=f"build-{request.build_id}")
        job.task.add_done_callback(lambda t: log_task_exception(t, self.log))
        return job

    def attach(self, request: BuildRequest) -> tuple[BuildJob, bool]:
        """The running job for this image, or a new one. Returns (job, joined_existing)."""
        job = self.jobs.get(request.image.full)
        if job is not None:
            return job, True
        return self._start(request), False

    async def follow(self, job: BuildJob) -> AsyncIterator[Event]:
        """Every event of the job so far, then new ones, ending with built or failed."""
        queue: asyncio.Queue = asyncio.Queue()
        backlog = list(job.history)
        if job.result is None:
            job.listeners.add(queue)
        try:
            for event in backlog:
                yield event
                if event.phase in ("built", "failed"):
                    return
            while True:
                event = await queue.get()
                yield event
                if event.phase in ("built", "failed"):
                    return
        finally:
            job.listeners.discard(queue)
