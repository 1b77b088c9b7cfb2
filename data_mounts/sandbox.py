"""Previews run outside the portal: in confined children of a worker process (preview_worker.py).

The portal holds the Hub's service token, the launch signing key and the catalogue; a preview
reads files facility users wrote. So the portal never opens an HDF5 file for a preview: it
sends (the dataset's location, the file in it, what to draw) to the worker, whose child sees
only that location, read-only, as `/`, runs as an unprivileged user with no network, and is
killed at its memory, CPU and wall-clock limits. The outcome comes back as a `PanbinderError`
the user can act on: too large (413), too slow (504), busy (503), the preview's own refusals
unchanged. Without root, the children keep the limits only, and the log says so once.

`ThumbnailCache` files are read and written here, in the portal: the children cannot write.
A preview costs 7 to 15 ms more this way (measured in preview_worker.py and by
`benchmarks/preview.py`); the worker starts in about 0.2 s (imports and a warm-up), at `serve`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from traitlets import Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking

from .frames import FRAME, frame

WORKER_MODULE = "panbinder.data_mounts.preview_worker"
PASSED_ENVIRONMENT = ("HDF5_PLUGIN_PATH", "PYTHONPATH", "LANG", "LC_ALL")


class PreviewSandbox(LoggingConfigurable):
    """Runs `preview.tree` and `preview.thumbnail` in confined, short-lived processes."""

    user = Unicode(
        "panbinder-preview",
        help="Unprivileged user previews run as (scripts/setup.sh creates it, with no home and no "
        "login); 'nobody' when it does not exist. The dataset files must be readable by it.",
    ).tag(config=True)
    memory_limit = Int(
        512 << 20,
        min=16 << 20,
        help="Bytes of memory (address space) one preview may allocate beyond the worker's own "
        "(about 120 MiB); a preview that needs more is refused with 'too large to preview'.",
    ).tag(config=True)
    timeout = Float(
        20.0, min=0.5, help="Seconds (wall clock, and CPU) one preview may take before it is stopped."
    ).tag(config=True)
    max_concurrent = Int(4, min=1, help="Previews run at the same time; more requests wait their turn.").tag(
        config=True
    )
    max_wait = Float(
        10.0,
        min=0.0,
        help="Seconds a preview waits for a turn when max_concurrent are running; then 'busy' (503).",
    ).tag(config=True)
    max_open_files = Int(
        64, min=8, help="Open files per preview (the file, its linked files and virtual-dataset sources)."
    ).tag(config=True)
    start_timeout = Float(
        60.0, min=1.0, help="Seconds the preview worker may take to start (it loads h5py and numpy)."
    ).tag(config=True)
    stop_timeout = Float(
        5.0, min=0.0, help="Seconds the preview worker may take to exit when stopped before it is killed."
    ).tag(config=True)

    def __init__(self, *, worker_module: str = WORKER_MODULE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.worker_module = worker_module  # tests run a worker with extra operations
        self.hello: dict = {}
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._starting: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self._warned = False

    # -------------------------------------------------------------- previews

    # A dataset's `location` is a folder (then `relative` names the file in it) or one file
    # (then `relative` is None). The child sees only the location, read-only, as `/`.

    async def tree(self, location: Path, relative: str | None = None) -> dict:
        """`preview.tree` of the file, read in the sandbox."""
        return json.loads(await self.run("tree", location, relative))

    async def thumbnail(
        self,
        location: Path,
        relative: str | None,
        dataset_path: str,
        *,
        size: int = 256,
        max_read_elements: int = 4_000_000,
    ) -> bytes:
        """`preview.thumbnail` of the file, drawn in the sandbox."""
        args = {"dataset_path": dataset_path, "size": size, "max_read_elements": max_read_elements}
        return await self.run("thumbnail", location, relative, **args)

    async def cached_thumbnail(
        self, cache, location: Path, relative: str | None, dataset_path: str, size: int = 256
    ) -> bytes:
        """The thumbnail from `cache` (a ThumbnailCache), drawn in the sandbox when missing."""
        path = location if relative is None else location / relative
        target = await run_blocking(cache.file_for, path, dataset_path, size, location)
        try:
            return await run_blocking(target.read_bytes)
        except FileNotFoundError:
            pass
        png = await self.thumbnail(
            location, relative, dataset_path, size=size, max_read_elements=cache.max_read_elements
        )
        await run_blocking(cache.store, target, png)
        return png

    async def run(self, op: str, location: Path, relative: str | None, **args) -> bytes:
        """Run operation `op` on the file in a confined child: its bytes, or PanbinderError."""
        root, file = (location.parent, location.name) if relative is None else (location, relative)
        request = {"op": op, "root": str(root), "file": file, "one_file": relative is None, "args": args}
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.max_wait)
        except TimeoutError:
            raise self._busy() from None
        try:
            header, body = await self._ask(request)
        finally:
            self._slots.release()
        if header.get("ok"):
            return body
        raise self._error(header, f"{root}/{file}", op)

    async def _ask(self, request: dict) -> tuple[dict, bytes]:
        await self.start()
        request["id"] = self._next_id = self._next_id + 1
        future = asyncio.get_running_loop().create_future()
        self._pending[request["id"]] = future
        try:
            self._process.stdin.write(frame(request))
            await self._process.stdin.drain()
            return await asyncio.wait_for(future, self.timeout + 10)
        except TimeoutError:
            await self.stop()  # a worker that does not answer is replaced
            raise self._unavailable("the worker did not answer; stopped it") from None
        except ConnectionError as error:  # it exited: the next request starts another
            raise self._unavailable(f"the worker left: {error!r}") from None
        finally:
            self._pending.pop(request["id"], None)

    # -------------------------------------------------------------- the worker process

    async def start(self) -> None:
        """Start the worker (once; again after it died) and log what it enforces."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._process is not None and self._process.returncode is None:
                return
            settings = {
                "user": self.user,
                "memory_limit": self.memory_limit,
                "timeout": self.timeout,
                "open_files": self.max_open_files,
            }
            environment = {k: os.environ[k] for k in PASSED_ENVIRONMENT if k in os.environ}
            environment.update(PATH=os.defpath, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.worker_module,
                json.dumps(settings),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=environment,
                start_new_session=True,
            )
            try:
                header, _ = await asyncio.wait_for(_read_frame(self._process.stdout), self.start_timeout)
            except (TimeoutError, asyncio.IncompleteReadError) as error:
                await self.stop()
                raise self._unavailable(f"worker did not start: {error!r}") from None
            self.hello = header["hello"]
            self._report(self.hello)
            self._reader = asyncio.create_task(self._read(self._process), name="preview-worker-reader")

    async def stop(self) -> None:
        """Stop the worker (its children are killed when it leaves)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("preview worker stopped"))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        """Hand each result frame to the request waiting for it, until the worker leaves."""
        try:
            while True:
                header, body = await _read_frame(process.stdout)
                future = self._pending.get(header.get("id"))
                if future is not None and not future.done():
                    future.set_result((header, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        code = await process.wait()
        if self._process is process:
            self.log.warning("preview worker exited with status %s; the next preview starts another", code)
            self._process = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("preview worker exited"))

    def _report(self, hello: dict) -> None:
        if hello["user"] != self.user:
            self.log.warning(
                "preview sandbox: user %s does not exist; previews run as %s", self.user, hello["user"]
            )
        if not hello["enforced"]:
            if not self._warned:
                self.log.warning("preview sandbox: not enforced (%s)", hello["why"])
                self._warned = True
            return
        isolation = [
            "read-only" if hello["read_only_mount"] else "writable where the files are",
            "no network" if hello["network_namespace"] else "network not isolated",
        ]
        self.log.info(
            "preview sandbox: enforced (user %s, uid %s, chroot to the dataset folder, %s, %d MiB, %g s)",
            hello["user"],
            hello["uid"],
            ", ".join(isolation),
            self.memory_limit >> 20,
            self.timeout,
        )

    # -------------------------------------------------------------- outcomes

    def _error(self, header: dict, where: str, op: str) -> PanbinderError:
        reason = header.get("reason")
        peak = f" (peak memory {header.get('peak_kib', 0) >> 10} MiB)"
        log_message = f"preview {op} of {where}: {header.get('log_message', reason)}{peak}"
        if "error" in header:  # the preview's own refusal, passed through
            error = header["error"]
            return PanbinderError(
                error["message"],
                reason=error["reason"],
                log_message=f"preview {op} of {where}: {error['log_message']}{peak}",
                status_code=error["status_code"],
            )
        if reason == "out-of-memory":
            return PanbinderError(
                f"This file is too large to preview here (a preview may use {self.memory_limit >> 20} MiB); "
                "download it instead, or pick a smaller dataset",
                reason="preview-too-large",
                log_message=log_message,
                status_code=413,
            )
        if reason == "result-too-large":
            return PanbinderError(
                "This file's preview is too large to show; download the file instead",
                reason="preview-too-large",
                log_message=log_message,
                status_code=413,
            )
        if reason == "timeout":
            return PanbinderError(
                f"The preview took longer than {self.timeout:g} s and was stopped; download the file "
                "instead, or try again later",
                reason="preview-timeout",
                log_message=log_message,
                status_code=504,
            )
        return PanbinderError(
            "This file could not be previewed; download it instead, or tell the facility",
            reason="preview-failed",
            log_message=log_message,
            status_code=422,
        )

    def _busy(self) -> PanbinderError:
        return PanbinderError(
            "Previews are busy right now; try again in a minute",
            reason="preview-busy",
            log_message=f"preview: {self.max_concurrent} previews running, waited {self.max_wait:g} s",
            status_code=503,
        )

    def _unavailable(self, log_message: str) -> PanbinderError:
        self.log.error("preview sandbox: %s", log_message)
        return PanbinderError(
            "Previews are unavailable right now; try again in a minute",
            reason="preview-unavailable",
            log_message=log_message,
            status_code=503,
        )


async def _read_frame(stream: asyncio.StreamReader) -> tuple[dict, bytes]:
    head_length, body_length = FRAME.unpack(await stream.readexactly(FRAME.size))
    header = json.loads(await stream.readexactly(head_length))
    return header, await stream.readexactly(body_length)
