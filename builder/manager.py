"""Share and schedule builds: one build per image, a bounded number at once, each time-limited.

Concurrent requests for the same image attach to one build. New builds wait in a FIFO for one
of ``concurrent_builds`` slots and their followers see ``waiting`` events with their position.
A repository may have at most ``builds_per_repo`` builds running or waiting. A build that runs
longer than ``build_timeout`` is stopped through ``Builder.cancel`` (which kills its processes)
and ends with a failed event; so is a build nobody follows any more, if
``cancel_when_abandoned`` is set. Each ``RUN`` step of a build runs under
``build_memory_limit``, ``build_cpu_limit`` and ``build_pids_limit`` (see ``limits.py``); a
build killed for memory ends with a failed event that says so.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from jupyterhub.traitlets import ByteSpecification
from traitlets import Any as AnyTrait
from traitlets import Bool, Float, Instance, Int, Unicode, default, observe
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError
from panbinder.events import Event
from panbinder.executor import log_task_exception, run_blocking
from panbinder.state import command_state_dir

from .base import BuildRequest
from .build_engine import BuildEngine
from .build_logs import log_file_name, write_log
from .inflight import InflightRecords
from .limits import LimitReport, StepLimiter, StepLimits, limit_failure_message
from .queue import SlotQueue
from .shared import LeaseStore, LeaseTimes, SharedBuild

__all__ = ["BuildJob", "BuildManager", "log_file_name"]


@dataclass(eq=False)
class BuildJob:
    request: BuildRequest
    history: list[Event] = field(default_factory=list)
    listeners: set[asyncio.Queue] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    created: float = field(default_factory=time.time)  # wall clock, compared across portals
    task: asyncio.Task | None = None
    result: Event | None = None
    slot: asyncio.Future | None = None
    consumer: asyncio.Task | None = None
    stop_reason: str = ""  # "timeout" or "abandoned" once stopped
    position: tuple[int, int] | None = None

    def publish(self, event: Event) -> None:
        self.history.append(event)
        for q in self.listeners:
            q.put_nowait(event)


class BuildManager(LoggingConfigurable):
    builder = AnyTrait(help="The Builder that does the work.")
    build_engine = Instance(
        BuildEngine, help="The build engine whose build steps get the step limits (the composition root's)."
    )
    log_dir = Unicode(
        help="Where build logs are kept, one per image (default: <state_dir>/build-logs of the command; "
        "empty: none are kept, as for a manager made outside a command)."
    ).tag(config=True)
    stop_timeout = Float(
        10.0, help="Seconds the portal waits, when it stops, for the builds it stopped to end."
    ).tag(config=True)
    log_max_bytes = Int(
        2 * 1024 * 1024, help="Largest kept build log in bytes; a longer log keeps its start and its end."
    ).tag(config=True)
    logs_kept = Int(500, help="Number of build logs kept; the oldest are removed (0: keep all).").tag(
        config=True
    )
    concurrent_builds = Int(2, help="Builds that run at once; later builds wait for a slot.").tag(config=True)
    builds_per_repo = Int(
        3, help="Builds (running and waiting) one repository URL may have at once; more are refused."
    ).tag(config=True)
    build_timeout = Float(
        3600.0, help="Seconds a build may run (not counting the wait for a slot) before it is stopped."
    ).tag(config=True)
    cancel_when_abandoned = Bool(
        False,
        help="""Stop a build when the last request following it goes away.

        Off by default, as in BinderHub, whose builds run to the end: a finished build fills the
        image cache, so the reader who reloads the page or comes back later launches at once
        instead of waiting for the same build again, and the build timeout still bounds every
        build. Turn it on where build capacity is scarcer than readers' patience. A request
        that arrives after the stop starts a new build.""",
    ).tag(config=True)

    build_memory_limit = ByteSpecification(
        4 * 1024**3,
        help="""Memory each RUN step of a build may use, in bytes or like "512M" or "4G" (K, M, G,
        T: powers of 1024; 0 or None: no limit). Enforced by the kernel: the limit is written into the cgroup of
        each step's container (memory.limit_in_bytes and, with swap accounting, no swap beyond
        it on cgroup v1; memory.max and memory.swap.max = 0 on cgroup v2), so a step that needs
        more is killed and the build fails with a message naming this setting. COPY and the
        image export are done by dockerd and are not counted. Needs root on the docker host
        (the BuildKit state folder and the cgroup file system); otherwise a warning is logged
        and builds run without memory, CPU or process limits.""",
    ).tag(config=True)
    build_cpu_limit = Float(
        help="""CPUs each RUN step of a build may use, like 1.5 (0: no limit; default: the number
        of cores). Enforced as a CFS quota in the step's cgroup (cpu.cfs_quota_us per 100 ms
        cpu.cfs_period_us on cgroup v1, cpu.max on v2): a step that wants more runs slower.""",
    ).tag(config=True)
    build_pids_limit = Int(
        4096,
        help="""Processes and threads each RUN step of a build may have at once (pids.max of the
        step's cgroup; 0: no limit). A fork beyond it fails and the build fails with a message
        naming this setting.""",
    ).tag(config=True)
    inflight_dir = Unicode(
        "",
        help="""Folder where each running build is recorded until it ends (empty: not recorded).
        `serve` uses <state_dir>/run/builds: the next run stops the builds a portal that died left
        running (see inflight.py).""",
    ).tag(config=True)
    leases = AnyTrait(
        None,
        allow_none=True,
        help="The build leases shared by portals on one catalogue (a LeaseStore, see shared.py; "
        "the composition root's). None: builds are shared within this process only.",
    )
    lease_seconds = Float(
        60.0,
        help="""Seconds a portal's lease on building an image lasts unless renewed. Portals on one
        catalogue build each image once: the others wait for it. If the building portal stops
        renewing (it crashed), a waiting portal takes the build over this long after the last
        renewal.""",
    ).tag(config=True)
    lease_renew_interval = Float(
        10.0, help="Seconds between renewals of a build lease (well below lease_seconds)."
    ).tag(config=True)
    lease_poll_interval = Float(
        1.0,
        help="Seconds between reads of a build lease another portal holds, to learn that its build "
        "ended (the waiting readers' launches start at most this much later).",
    ).tag(config=True)
    buildkit_executor_dir = Unicode(
        "",
        help="""The folder where dockerd's BuildKit writes the runc bundle of each RUN step, which
        is how build limits find a build's steps (empty: <docker root dir>/buildkit/executor,
        with the root dir from the build engine's `docker info`, see BuildEngine).""",
    ).tag(config=True)

    @default("log_dir")
    def _log_dir_default(self) -> str:
        state = command_state_dir(self)
        return str(state / "build-logs") if state is not None else ""

    @default("build_cpu_limit")
    def _cpu_default(self) -> float:
        return float(os.cpu_count() or 1)

    @default("build_engine")
    def _build_engine_default(self) -> BuildEngine:
        return BuildEngine(parent=self, log=self.log)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.jobs: dict[str, BuildJob] = {}
        self._limiter: StepLimiter | None = None
        self.queue = SlotQueue(self.concurrent_builds)
        self.on_finish: list[Callable[[BuildJob, str, float], None]] = []  # (job, outcome, seconds)

    @property
    def inflight(self) -> InflightRecords:
        return InflightRecords(self.inflight_dir, self.log)

    def stop_interrupted(self) -> int:
        """Stop the builds an earlier run left running (logged); returns how many it found."""
        return len(self.inflight.stop_left())

    async def stop_all(self, reason: str = "shutdown", timeout: float | None = None) -> None:
        """Stop every build (the portal is stopping) and wait up to ``timeout`` (default:
        ``stop_timeout``) for them to end."""
        timeout = self.stop_timeout if timeout is None else timeout
        jobs = list(self.jobs.values())
        for job in jobs:
            self.stop(job, reason)
        tasks = [j.task for j in jobs if j.task is not None and not j.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    @observe("concurrent_builds")
    def _resize(self, change) -> None:
        if hasattr(self, "queue"):  # set later in __init__ when this comes from the config
            self.queue.resize(change["new"])

    @property
    def running(self) -> int:
        return len(self.queue.running)

    @property
    def queued(self) -> int:
        return len(self.queue.waiting)

    @property
    def readers_building(self) -> int:
        """Builds running or waiting that are not background builds (readers' builds)."""
        return self.queue.foreground()

    def attach(self, request: BuildRequest, *, background: bool = False) -> tuple[BuildJob, bool]:
        """The running or waiting job for this image, or a new one. Returns (job, joined_existing).
        A new ``background`` build (a check's rebuild) waits behind every reader's build.

        Raises PanbinderError (429) when the repository already has ``builds_per_repo`` builds.
        """
        job = self.jobs.get(request.image.full)
        if job is not None:
            return job, True
        same_repo = sum(1 for j in self.jobs.values() if j.request.repo_url == request.repo_url)
        if same_repo >= self.builds_per_repo:
            raise PanbinderError(
                f"This repository already has {same_repo} builds running or waiting, the most this "
                "service allows at once; try again when one of them has finished.",
                reason="build_quota",
                log_message=f"quota: {same_repo} builds of {request.repo_url}",
                status_code=429,
            )
        return self._start(request, background), False

    def _start(self, request: BuildRequest, background: bool = False) -> BuildJob:
        job = BuildJob(request)
        self.jobs[request.image.full] = job
        job.slot = self.queue.enter(job, background=background)
        self._announce_positions()
        job.task = asyncio.create_task(self._run(job), name=f"build-{request.build_id}")
        job.task.add_done_callback(lambda t: log_task_exception(t, self.log))
        return job

    def _announce_positions(self) -> None:
        total = len(self.queue.waiting)
        for job in self.queue.waiting:
            place = (self.queue.position(job) or 0, total)
            if place != job.position:
                job.position = place
                job.publish(
                    Event(
                        "waiting",
                        f"Waiting for a build slot: position {place[0]} of {total}\n",
                        {"position": place[0], "queue_length": total},
                    )
                )

    def stop(self, job: BuildJob, reason: str) -> None:
        """Stop a waiting or running build; it ends with a failed event saying why."""
        if job.result is not None or job.stop_reason or (job.consumer and job.consumer.done()):
            return
        job.stop_reason = reason
        self.log.info("stopping build (%s)", reason, extra={"build_id": job.request.build_id})
        if self.jobs.get(job.request.image.full) is job:
            del self.jobs[job.request.image.full]  # a new request starts a new build
        if job.consumer is None:
            self.queue.leave(job)
            self._announce_positions()
            return
        try:
            self.builder.cancel(job.request)
        except Exception:
            self.log.exception("cancelling build %s failed", job.request.build_id)
        job.consumer.cancel()

    def step_limits(self) -> StepLimits:
        return StepLimits(
            memory=max(0, self.build_memory_limit or 0),
            cpu=max(0.0, self.build_cpu_limit),
            pids=max(0, self.build_pids_limit),
        )

    def _limit(self, request: BuildRequest) -> LimitReport | None:
        limits = self.step_limits()
        if limits.empty:
            return None
        if self._limiter is None:
            docker = self.build_engine.docker()
            self._limiter = StepLimiter(self.buildkit_executor_dir, docker=docker, log=self.log)
        return self._limiter.register(request.image.full, request.build_id, limits)

    def _shared(self, job: BuildJob) -> SharedBuild | None:
        store: LeaseStore | None = self.leases
        if store is None:
            return None
        times = LeaseTimes(self.lease_seconds, self.lease_renew_interval, self.lease_poll_interval)
        request = job.request
        return SharedBuild(store, request.image.full, request.build_id, times, self.log, since=job.created)

    async def _consume(self, job: BuildJob) -> Event | None:
        """The build's final event: this portal's build, or another portal's that held the lease."""
        shared, result = self._shared(job), None
        if shared is not None:
            final = await shared.claim(job.publish)
            if final is not None:
                return final
        ended: Event | None = None  # what the other portals see; None: stopped, they take over
        try:
            result = await self._build_here(job)
            ended = self._final_event(job, result)
        except asyncio.CancelledError:
            if job.stop_reason == "timeout":
                ended = self._final_event(job, None)
            raise
        except Exception as e:
            ended = Event("failed", f"The build stopped unexpectedly ({type(e).__name__}); try again.")
            raise
        finally:
            if shared is not None:
                await shared.release(ended)
        return result

    async def _build_here(self, job: BuildJob) -> Event | None:
        request, result = job.request, None
        report = self._limit(request)
        try:
            async for event in self.builder.build(request):
                if event.phase in ("built", "failed"):
                    result = event  # published last, after the log is kept
                    break
                job.publish(event)
        finally:
            if report is not None:  # a few reads of cgroup files: quick
                self._limiter.unregister(request.image.full, request.build_id)
                for problem in dict.fromkeys(report.problems):
                    self.log.warning("build limits: %s", problem, extra={"build_id": request.build_id})
        if report is not None and result is not None and result.phase == "failed":
            result = self._explain_limits(result, report)
        return result

    def _explain_limits(self, result: Event, report: LimitReport) -> Event:
        message = limit_failure_message(report, list(result.extra.get("log_tail", [])))
        if not message:
            return result
        return Event("failed", message, {**result.extra, "reason": "build_limit"})

    async def _build(self, job: BuildJob) -> Event | None:
        await asyncio.wait([job.slot])
        if job.slot.cancelled() or job.stop_reason:
            return None
        job.started = time.monotonic()
        fields = {"build_id": job.request.build_id, "image": job.request.image.full, "phase": "building"}
        self.log.info("build started", extra={**fields, "repo": job.request.repo_url})
        self.inflight.add(job.request.build_id, job.request.image.full, job.request.repo_url)
        timer = asyncio.get_running_loop().call_later(self.build_timeout, self.stop, job, "timeout")
        job.consumer = asyncio.create_task(self._consume(job), name=f"consume-{job.request.build_id}")
        try:
            await asyncio.wait([job.consumer])
        finally:
            timer.cancel()
            if not job.consumer.done():  # the manager itself is being cancelled
                self.builder.cancel(job.request)
                job.consumer.cancel()
            self.queue.leave(job)
            self._announce_positions()
            self.inflight.remove(job.request.build_id)
        return None if job.consumer.cancelled() else job.consumer.result()

    async def _run(self, job: BuildJob) -> None:
        # job.result stays None until the final event is published: followers that attach
        # meanwhile subscribe and receive it
        result: Event | None = None
        try:
            result = await self._build(job)
        except Exception as e:  # a bug in a builder must still end the stream
            self.log.exception("builder crashed", extra={"build_id": job.request.build_id})
            result = Event("failed", f"The build stopped unexpectedly ({type(e).__name__}); try again.")
        finally:
            await self._finish(job, self._final_event(job, result))

    @staticmethod
    def _log_tail(job: BuildJob, lines: int = 40) -> list[str]:
        """The last log lines the build printed, kept apart from the message (as the builder does)."""
        printed = [e.message for e in job.history if e.phase in ("fetching", "building", "pushing")]
        return "".join(printed[-lines:]).splitlines()[-lines:]

    def _final_event(self, job: BuildJob, result: Event | None) -> Event:
        if job.stop_reason == "timeout":
            minutes = self.build_timeout / 60
            limit = f"{minutes:g} minutes" if minutes >= 1 else f"{self.build_timeout:g} seconds"
            return Event(
                "failed",
                f"The build took longer than this service's limit of {limit} and was stopped "
                "(BuildManager.build_timeout). Make it "
                "faster (fewer or lighter dependencies, less work in postBuild) or ask the operators "
                "for a longer limit.",
                {"reason": "build_timeout", "log_tail": self._log_tail(job)},
            )
        if job.stop_reason == "abandoned":
            return Event(
                "failed",
                "The build was cancelled because nobody was waiting for it any more; open the link "
                "again to start it anew.",
                {"reason": "build_cancelled"},
            )
        if job.stop_reason == "shutdown":
            return Event(
                "failed",
                "The build was stopped because the service is restarting; open the link again in a "
                "minute to start it anew.",
                {"reason": "build_cancelled"},
            )
        return result or Event("failed", "The build ended without a result; try again.")

    async def _finish(self, job: BuildJob, result: Event) -> None:
        request = job.request
        if self.log_dir:
            name = log_file_name(request)
            if result.phase == "failed":
                result = Event("failed", result.message, {**result.extra, "build_log": name})
            try:
                await run_blocking(
                    write_log,
                    Path(self.log_dir),
                    name,
                    [*job.history, result],
                    max_bytes=self.log_max_bytes,
                    keep=self.logs_kept,
                )
            except OSError as e:
                self.log.warning("could not keep the build log %s: %s", name, e)
        if self.jobs.get(request.image.full) is job:
            del self.jobs[request.image.full]
        job.result = result
        job.publish(result)
        seconds = time.monotonic() - job.started
        # "shared": another portal built it (or failed to); this one only waited
        outcome = job.stop_reason or ("shared" if result.extra.get("shared") else result.phase)
        fields = {"build_id": request.build_id, "image": request.image.full, "phase": result.phase}
        self.log.info("build %s in %.1f s", outcome, seconds, extra=fields)
        for cb in self.on_finish:
            try:
                cb(job, outcome, seconds)
            except Exception:
                self.log.exception("build finish callback failed")

    async def follow(self, job: BuildJob, *, until: asyncio.Event | None = None) -> AsyncIterator[Event]:
        """Every event of the job so far, then new ones, ending with built or failed.

        Ends early, without a final event, when ``until`` is set (the requester went away).
        """
        queue: asyncio.Queue = asyncio.Queue()
        backlog = list(job.history)
        if job.result is None:
            job.listeners.add(queue)
        stopper = asyncio.ensure_future(until.wait()) if until is not None else None
        try:
            for event in backlog:
                yield event
                if event.phase in ("built", "failed"):
                    return
            while True:
                if stopper is None:
                    event = await queue.get()
                else:
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        return
                    event = getter.result()
                yield event
                if event.phase in ("built", "failed"):
                    return
        finally:
            if stopper is not None:
                stopper.cancel()
            job.listeners.discard(queue)
            if self.cancel_when_abandoned and job.result is None and not job.listeners:
                self.stop(job, "abandoned")
