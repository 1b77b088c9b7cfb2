"""One rebuild function (panbinder/rebuilds.py) with given components: it goes through the build
manager it is given (serve's, for a nightly check), waits behind readers' builds as a background
build, and reads the rebuilt lock the build recorded. The builder here stands in for repo2docker
(a build pushes nothing); the manager, its queue and the catalogue are the real ones."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from panbinder.builder.base import Builder, BuildRequest
from panbinder.builder.manager import BuildManager
from panbinder.builder.r2d import Repo2DockerBuilder
from panbinder.check_cli import rebuilder
from panbinder.data_mounts.catalogue import Catalogue
from panbinder.events import Event
from panbinder.rebuilds import FRESH, RebuildResult, rebuild_image
from panbinder.registry_cache import ImageRef

IMAGE = "127.0.0.1:5000/panbinder/v1-git-paper-0123456789:" + "a" * 40
LOCK = {
    "repo": {"url": "git://127.0.0.1:1/paper", "commit": "a" * 40},
    "python": "3.11.2",
    "pip": ["numpy==2.4.6", "tabulate==0.9.0"],
    "dpkg": {"bash": "5.2"},
}
log = logging.getLogger("test-rebuilds")


class LockingBuilder(Builder):
    """Records, for each build, a lock with numpy upgraded (as ``Builder.on_built`` does after a
    push); waits for ``gate`` when the build is a reader's."""

    def __init__(self, catalogue: Catalogue, **kwargs) -> None:
        super().__init__(**kwargs)
        self.catalogue = catalogue
        self.gate = asyncio.Event()
        self.requests: list[BuildRequest] = []

    async def build(self, request: BuildRequest):
        self.requests.append(request)
        yield Event("building", f"building {request.image.tag}\n")
        if request.recipe is None:  # a reader's build
            await self.gate.wait()
        else:
            lock = {**LOCK, "pip": ["numpy==2.5.0", "tabulate==0.9.0"]}
            self.catalogue.record_lock(request.image.full, "sha256:" + "b" * 64, lock)
        yield Event("built", "done\n", {"image": request.image.full})


@pytest.fixture
def catalogue(tmp_path):
    cat = Catalogue(db_url=f"sqlite:///{tmp_path}/catalogue.sqlite")
    cat.start()
    cat.record_lock(IMAGE, "sha256:" + "a" * 64, LOCK)
    yield cat
    cat.close()


def reader_request() -> BuildRequest:
    image = ImageRef("127.0.0.1:5000", "panbinder/v1-git-other-0123456789", "c" * 40)
    return BuildRequest("reader", "git", "git://127.0.0.1:1/other", "c" * 40, "main", image)


async def test_a_checks_rebuild_goes_through_the_given_queue_behind_readers(catalogue):
    builder = LockingBuilder(catalogue)
    manager = BuildManager(builder=builder, concurrent_builds=1)
    reader, _ = manager.attach(reader_request())
    components = SimpleNamespace(builder=Repo2DockerBuilder(), manager=manager, catalogue=catalogue)
    rebuild = rebuilder(SimpleNamespace(log=log), components)  # as make_runner wires serve's parts
    assert rebuild is not None
    task = asyncio.ensure_future(rebuild(IMAGE, FRESH))
    await asyncio.sleep(0.1)
    assert [r.build_id for r in builder.requests] == ["reader"]  # waits for the reader's build
    assert manager.queued == 1 and manager.readers_building == 1  # only the reader's counts
    builder.gate.set()
    result = await asyncio.wait_for(task, 5)
    assert isinstance(result, RebuildResult) and result.ok and not result.failure
    request = builder.requests[-1]
    assert request.recipe is not None and request.recipe.no_cache and not request.recipe.frozen
    assert (request.repo_url, request.resolved_ref) == (LOCK["repo"]["url"], LOCK["repo"]["commit"])
    assert result.image == request.image.full and "-fresh-" in result.image
    assert result.changes == ("pip: ~ numpy 2.4.6 -> 2.5.0",)
    assert result.summary() == "changed upstream: pip: ~ numpy 2.4.6 -> 2.5.0"
    assert result.report()[0] == f"fresh rebuild of {IMAGE}: {result.image}"
    await reader.task


async def test_a_failed_rebuild_is_a_result_with_the_failure(catalogue):
    class Failing(Builder):
        async def build(self, request):
            yield Event("failed", "pip could not find numpy==2.4.6\n")

    manager = BuildManager(builder=Failing(), concurrent_builds=1)
    result = await rebuild_image(
        IMAGE, FRESH, builder=Repo2DockerBuilder(), manager=manager, catalogue=catalogue, log=log
    )
    assert (result.ok, result.failure, result.image) == (False, "pip could not find numpy==2.4.6", "")
    assert result.summary() == "failed: pip could not find numpy==2.4.6"
