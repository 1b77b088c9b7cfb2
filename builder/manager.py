"""Share builds: concurrent requests for the same image attach to one running build."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import Any as AnyTrait
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from panbinder.events import Event
from panbinder.executor import log_task_exception, run_blocking

from .base import BuildRequest


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


def log_file_name(request: BuildRequest) -> str:
    """One file per image: <image name with / as _>@<tag>.log (the latest build of it)."""
    return f"{request.image.name.replace('/', '_')}@{request.image.tag}.log"


def _write_log(path: Path, events: list[Event]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for event in events:
            f.write(f"[{event.phase}] {event.message.rstrip()}\n" if event.message else f"[{event.phase}]\n")


class BuildManager(LoggingConfigurable):
    builder = AnyTrait(help="The Builder that does the work.")
    log_dir = Unicode(
        "", help="Where build logs are kept, one per image (empty: <state_dir>/build-logs)."
    ).tag(config=True)

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
            fields = {"build_id": request.build_id, "image": request.image.full, "repo": request.repo_url}
            self.log.info("build started", extra={**fields, "phase": "building"})
            # job.result stays None until the final event is published: followers that attach
            # meanwhile subscribe and receive it
            result: Event | None = None
            try:
                async for event in self.builder.build(request):
                    if event.phase in ("built", "failed"):
                        result = event  # published last, after the log is kept
                        break
                    job.publish(event)
            except Exception as e:  # a bug in a builder must still end the stream
                self.log.exception("builder crashed", extra={"build_id": request.build_id})
                result = Event("failed", f"The build stopped unexpectedly ({type(e).__name__}); try again.")
            finally:
                result = result or Event("failed", "The build ended without a result; try again.")
                if self.log_dir:
                    name = log_file_name(request)
                    if result.phase == "failed":
                        result = Event("failed", result.message, {**result.extra, "build_log": name})
                    try:
                        await run_blocking(_write_log, Path(self.log_dir, name), [*job.history, result])
                    except OSError as e:
                        self.log.warning("could not keep the build log %s: %s", name, e)
                self.jobs.pop(request.image.full, None)
                job.result = result
                job.publish(result)
                seconds = time.monotonic() - job.started
                self.log.info(
                    "build %s in %.1f s", result.phase, seconds, extra={**fields, "phase": result.phase}
                )
                for cb in self.on_finish:
                    cb(job, result.phase, seconds)

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
