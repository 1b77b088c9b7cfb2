"""The preview sandbox (data_mounts/sandbox.py, preview_worker.py, preview_child.py), attacked.

A worker with extra operations (sandbox_attacks.py) does, inside a preview child, what a
crafted HDF5 file could make the HDF5 library do. Each attack is first shown to work in this
(unconfined) process, then shown to fail in the sandbox. These tests run as root, like
`make serve`: they check that the sandbox is enforced, not merely configured.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import pwd
import shutil
import socket
import stat
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from panbinder.command import PanbinderBase
from panbinder.data_mounts import preview, preview_child, preview_worker
from panbinder.data_mounts.frames import parse_frame
from panbinder.data_mounts.preview import ThumbnailCache
from panbinder.data_mounts.sandbox import PreviewSandbox
from panbinder.errors import PanbinderError
from tests.data_mounts import sandbox_attacks
from tests.shared_data import NEXUS

ATTACKS = "tests.data_mounts.sandbox_attacks"
SECRET = "0123456789abcdef-the-launch-signing-key"
MEMORY_LIMIT = 128 << 20


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state folder whose launch signing key is the secret every attack goes for."""
    app = PanbinderBase(state_dir=str(tmp_path / "state"))
    app.secret("launch-signing-key")
    (tmp_path / "state" / "secrets" / "launch-signing-key").write_text(SECRET)
    return tmp_path / "state"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A public dataset's folder, world-writable like the integration tests' fixtures."""
    folder = tmp_path / "storage" / "open-scan"
    folder.mkdir(parents=True)
    with h5py.File(folder / "scan.nxs", "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["counts"] = np.arange(100) * 3
        entry["image"] = np.outer(np.arange(64), np.arange(64)).astype("f4")
    folder.chmod(0o777)
    (folder / "scan.nxs").chmod(0o666)
    return folder


@pytest.fixture
def embargoed(tmp_path: Path) -> Path:
    """Another dataset's file, next to the public one on the same storage."""
    folder = tmp_path / "storage" / "embargoed-scan"
    folder.mkdir(parents=True)
    with h5py.File(folder / "embargoed.nxs", "w") as f:
        f["entry/counts"] = np.full(100, 4242, dtype="i8")
    return folder / "embargoed.nxs"


@pytest.fixture
async def sandbox():
    box = PreviewSandbox(
        worker_module=ATTACKS, memory_limit=MEMORY_LIMIT, timeout=3.0, log=logging.getLogger("test")
    )
    await box.start()
    yield box
    await box.stop()


async def refused(awaitable) -> PanbinderError:
    with pytest.raises(PanbinderError) as caught:
        await awaitable
    return caught.value


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


# ---------------------------------------------------------------- previews still work


async def test_tree_and_thumbnail_are_the_same_as_in_process(sandbox, dataset):
    assert sandbox.hello["enforced"] and sandbox.hello["read_only_mount"]
    assert await sandbox.tree(dataset, "scan.nxs") == json.loads(
        json.dumps(preview.tree(dataset / "scan.nxs"))
    )
    png = await sandbox.thumbnail(dataset, "scan.nxs", "/entry/image", size=64)
    assert png == preview.thumbnail(dataset / "scan.nxs", "/entry/image", size=64)


async def test_real_facility_files_look_the_same_through_the_sandbox(sandbox, tmp_path):
    """Every tree and drawable dataset of the shared NeXus files: nothing the child needs is
    missing after the chroot (a module, a codec, a filter plugin)."""
    from tests.data_mounts.test_preview import EXPECTED, _drawable_datasets

    folder = tmp_path / "nexus"
    folder.mkdir(mode=0o755)
    for name in EXPECTED:
        shutil.copyfile(NEXUS / name, folder / name)
        (folder / name).chmod(0o644)
        expected = json.loads(json.dumps(preview.tree(folder / name, within=folder)))
        assert await sandbox.tree(folder, name) == expected, name
    for name, path in _drawable_datasets():
        png = await sandbox.thumbnail(folder, name, path, size=128)
        assert png == preview.thumbnail(folder / name, path, size=128, within=folder), (name, path)


async def test_the_previews_own_refusal_passes_through(sandbox, dataset):
    error = await refused(sandbox.thumbnail(dataset, "scan.nxs", "/entry/missing"))
    assert (error.status_code, error.reason) == (404, "dataset-not-found")
    assert "There is no dataset /entry/missing in scan.nxs" in error.message
    assert str(dataset) in error.log_message  # the operator sees where


async def test_thumbnail_cache_is_written_by_the_portal(sandbox, dataset, tmp_path):
    cache = ThumbnailCache(tmp_path / "thumbnails")
    first = await sandbox.cached_thumbnail(cache, dataset, "scan.nxs", "/entry/counts", 64)
    assert first.startswith(b"\x89PNG") and len(list(cache.cache_dir.glob("*.png"))) == 1
    assert all(p.stat().st_uid == os.getuid() for p in cache.cache_dir.iterdir())
    await sandbox.stop()
    sandbox.worker_module = "no.such.worker"  # a second request must not need the worker
    assert await sandbox.cached_thumbnail(cache, dataset, "scan.nxs", "/entry/counts", 64) == first


# ---------------------------------------------------------------- who the child is


async def test_child_runs_as_the_preview_user_with_nothing_inherited(sandbox, dataset):
    facts = json.loads(await sandbox.run("whoami", dataset, "scan.nxs"))
    user = pwd.getpwnam(sandbox.hello["user"])
    assert sandbox.hello["user"] in ("panbinder-preview", "nobody")
    assert facts["ids"] == [user.pw_uid, user.pw_uid, user.pw_gid, user.pw_gid]
    assert 0 not in facts["ids"] and os.getuid() not in facts["ids"]
    assert facts["groups"] == []
    assert facts["environment"] == {}
    assert facts["root_listing"] == ["scan.nxs"]  # the dataset's folder is all there is
    assert (facts["path"], facts["within"]) == ("/scan.nxs", "/")
    assert facts["open_fds"] == [0, 1, 2, 3]  # /dev/null x 3 and the result pipe
    assert facts["no_new_privs"] == 1 and facts["dumpable"] == 0
    limits = facts["limits"]
    assert limits["RLIMIT_NPROC"] == [0, 0] and limits["RLIMIT_FSIZE"] == [0, 0]
    assert limits["RLIMIT_CPU"] == [3, 3] and limits["RLIMIT_NOFILE"] == [64, 64]
    assert limits["RLIMIT_AS"][0] == limits["RLIMIT_AS"][1] < 1 << 30


async def test_a_one_file_dataset_sees_only_its_file(sandbox, dataset, embargoed):
    """A dataset whose location is one file: its neighbours on the storage are not there."""
    neighbour = dataset.parent / "single.nxs"
    (dataset / "scan.nxs").rename(neighbour)
    (dataset / "scan.nxs").symlink_to(embargoed)  # a same-named neighbour must not matter
    facts = json.loads(await sandbox.run("whoami", neighbour, None))
    assert facts["root_listing"] == ["single.nxs"]
    assert (facts["path"], facts["within"]) == ("/single.nxs", "/single.nxs")
    for target in ("/open-scan/scan.nxs", "/embargoed-scan/embargoed.nxs", str(embargoed)):
        error = await refused(sandbox.run("read", neighbour, None, target=target))
        assert "FileNotFoundError" in error.log_message
    error = await refused(sandbox.run("write", neighbour, None))
    assert "Read-only file system" in error.log_message
    tree = await sandbox.tree(neighbour)
    assert tree["file"] == "single.nxs" and tree == json.loads(
        json.dumps(preview.tree(neighbour, within=neighbour))
    )
    assert (await sandbox.thumbnail(neighbour, None, "/entry/counts", size=32)).startswith(b"\x89PNG")


# ---------------------------------------------------------------- reading what is not the dataset


async def test_secrets_and_system_files_cannot_be_read(sandbox, dataset, state):
    key = state / "secrets" / "launch-signing-key"
    assert sandbox_attacks.read("", "", target=str(key)) == SECRET.encode()  # unconfined: it works
    for target in (str(key), "/etc/passwd", "/proc/self/environ", f"/proc/{os.getpid()}/environ", "../x"):
        error = await refused(sandbox.run("read", dataset, "scan.nxs", target=target))
        assert error.status_code == 422 and error.reason == "preview-failed", target
        assert "FileNotFoundError" in error.log_message, error.log_message
        assert SECRET not in error.message + error.log_message


async def test_hdf5_external_storage_cannot_reach_the_signing_key(sandbox, dataset, state):
    """The issue's critical finding, with every check of panbinder's own bypassed (raw h5py)."""
    key = state / "secrets" / "launch-signing-key"
    with h5py.File(dataset / "crafted.h5", "w") as f:
        f.create_dataset("leak", shape=(len(SECRET),), dtype="u1", external=[(str(key), 0, len(SECRET))])
    assert sandbox_attacks.h5_read(str(dataset / "crafted.h5"), "", dataset="/leak") == SECRET.encode()
    error = await refused(sandbox.run("h5_read", dataset, "crafted.h5", dataset="/leak"))
    assert error.status_code == 422 and SECRET not in error.log_message
    try:  # the real tree: whatever it shows of /leak, it is not the key
        shown = json.dumps(await sandbox.tree(dataset, "crafted.h5"))
    except PanbinderError as refusal:
        shown = refusal.message + refusal.log_message
    assert SECRET not in shown


async def test_external_links_and_virtual_sources_stay_in_the_folder(sandbox, dataset, embargoed):
    with h5py.File(dataset / "links.h5", "w") as f:
        f["linked"] = h5py.ExternalLink(str(embargoed), "/entry/counts")
        layout = h5py.VirtualLayout(shape=(100,), dtype="i8")
        layout[:] = h5py.VirtualSource(str(embargoed), "/entry/counts", shape=(100,))
        f.create_virtual_dataset("virtual", layout, fillvalue=-1)
    unconfined = sandbox_attacks.h5_read(str(dataset / "links.h5"), "", dataset="/linked")
    assert np.frombuffer(unconfined, "i8")[0] == 4242
    error = await refused(sandbox.run("h5_read", dataset, "links.h5", dataset="/linked"))
    assert error.status_code == 422 and "4242" not in error.log_message
    # HDF5 fills a virtual dataset's unreachable sources: the embargoed values never arrive
    assert set(
        np.frombuffer(await sandbox.run("h5_read", dataset, "links.h5", dataset="/virtual"), "i8")
    ) == {-1}


async def test_no_network_not_even_loopback(sandbox, dataset):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert sandbox_attacks.connect("", "", port=port) == b"connected"  # unconfined: it works
        error = await refused(sandbox.run("connect", dataset, "scan.nxs", port=port))
    assert error.status_code == 422 and "Network is unreachable" in error.log_message


async def test_dataset_files_cannot_be_changed_and_no_process_started(sandbox, dataset):
    error = await refused(sandbox.run("write", dataset, "scan.nxs"))
    assert "Read-only file system" in error.log_message
    assert not (dataset / "planted.txt").exists()
    error = await refused(sandbox.run("spawn", dataset, "scan.nxs"))
    assert "BlockingIOError" in error.log_message or "Resource temporarily unavailable" in error.log_message


# ---------------------------------------------------------------- limits


async def test_memory_limit_stops_the_child_not_the_portal(sandbox, dataset):
    before = rss_kib()
    error = await refused(sandbox.run("allocate", dataset, "scan.nxs", size=4 * MEMORY_LIMIT))
    assert error.status_code == 413 and error.reason == "preview-too-large"
    assert "too large to preview" in error.message
    assert rss_kib() - before < 20 << 10
    assert await sandbox.run("allocate", dataset, "scan.nxs", size=MEMORY_LIMIT // 2) == b"allocated"


async def test_gzip_bomb_is_stopped_in_the_child_and_the_portal_stays_small(sandbox, dataset):
    """One 1 GiB chunk of zeros, 1 MB compressed (the issue's portal grew to 1.19 GB): read
    with raw h5py, so only the sandbox's memory limit stands in the way."""
    with h5py.File(dataset / "bomb.h5", "w") as f:
        shape = (1 << 15, 1 << 13)  # float32: 1 GiB in one chunk
        ds = f.create_dataset("data", shape=shape, dtype="f4", chunks=shape, compression="gzip")
        ds.id.write_direct_chunk((0, 0), _gzip_zeros(1 << 30), filter_mask=0)
    before = rss_kib()
    for one_value in (False, True):  # numpy's array, then HDF5's own chunk buffer
        error = await refused(
            sandbox.run("h5_read", dataset, "bomb.h5", dataset="/data", one_value=one_value)
        )
        assert error.status_code in (413, 422), error.log_message
        assert "MemoryError" in error.log_message or "filter returned failure" in error.log_message
        peak_mib = int(error.log_message.rsplit("peak memory ", 1)[1].split(" MiB")[0])
        assert peak_mib < (MEMORY_LIMIT >> 20) + 200, error.log_message
    error = await refused(sandbox.thumbnail(dataset, "bomb.h5", "/data"))  # the preview's own check
    assert error.status_code in (413, 422)
    assert rss_kib() - before < 20 << 10


async def test_hung_and_spinning_previews_are_killed_at_the_timeout(sandbox, dataset):
    for op in ("sleep", "spin"):
        started = time.monotonic()
        error = await refused(sandbox.run(op, dataset, "scan.nxs"))
        assert (error.status_code, error.reason) == (504, "preview-timeout"), op
        assert "took longer than 3 s" in error.message
        assert time.monotonic() - started < 6
    assert (await sandbox.tree(dataset, "scan.nxs"))["file"] == "scan.nxs"  # the worker serves on


async def test_crash_is_a_clear_error_and_the_worker_survives(sandbox, dataset):
    error = await refused(sandbox.run("crash", dataset, "scan.nxs"))
    assert (error.status_code, error.reason) == (422, "preview-failed")
    assert "SIGSEGV" in error.log_message
    assert (await sandbox.tree(dataset, "scan.nxs"))["file"] == "scan.nxs"


async def test_concurrent_previews_are_bounded(dataset):
    box = PreviewSandbox(
        worker_module=ATTACKS, timeout=1.0, max_concurrent=2, max_wait=1.5, log=logging.getLogger("test")
    )
    await box.start()
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(box.run("sleep", dataset, "scan.nxs") for _ in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, PanbinderError) and r.status_code == 504 for r in results)
        assert time.monotonic() - started >= 2.0  # two rounds of two
        results = await asyncio.gather(
            *(box.run("sleep", dataset, "scan.nxs") for _ in range(6)), return_exceptions=True
        )  # the last two would wait 2 s for their turn, more than max_wait: turned away
        assert sorted(r.status_code for r in results) == [503, 503, 504, 504, 504, 504]
        assert "Previews are busy" in next(r.message for r in results if r.status_code == 503)
    finally:
        await box.stop()


async def test_a_dead_worker_is_replaced(sandbox, dataset):
    os.kill(sandbox._process.pid, 9)
    await asyncio.sleep(0.2)
    os.rmdir(sandbox.hello["stage"])  # what a killed worker leaves: an empty folder
    assert (await sandbox.tree(dataset, "scan.nxs"))["file"] == "scan.nxs"


# ---------------------------------------------------------------- settings, without root, secrets


def test_settings_are_documented_traits():
    from traitlets import TraitError
    from traitlets.config import Config

    from panbinder.components import COMPONENTS

    assert PreviewSandbox in COMPONENTS  # listed by --help-all and --generate-config
    traits = PreviewSandbox.class_traits(config=True)
    assert set(traits) == {
        "user",
        "memory_limit",
        "timeout",
        "max_concurrent",
        "max_wait",
        "max_open_files",
        "start_timeout",
        "stop_timeout",
    }
    assert all(trait.help for trait in traits.values())
    assert "c.PreviewSandbox.memory_limit" in PreviewSandbox.class_config_section()
    config = Config({"PreviewSandbox": {"timeout": 5.0, "user": "someone"}})
    assert (PreviewSandbox(config=config).timeout, PreviewSandbox(config=config).user) == (5.0, "someone")
    with pytest.raises(TraitError, match="memory_limit"):
        PreviewSandbox(memory_limit=1024)  # a value no preview could work with is refused at start


def test_without_root_the_sandbox_says_it_is_not_enforced(caplog):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            nobody = pwd.getpwnam("nobody")
            os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
            os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)
            settings = {"user": "panbinder-preview", "memory_limit": 1 << 20, "timeout": 1, "open_files": 8}
            os.write(write_end, json.dumps(preview_worker.confinement_for(settings, "")[1]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    hello = json.loads(os.read(read_end, 4096))
    os.waitpid(pid, 0)
    assert hello["enforced"] is False and hello["why"] == "not root"
    box = PreviewSandbox(log=logging.getLogger("test.sandbox"))
    with caplog.at_level(logging.INFO, "test.sandbox"):
        box._report(hello)
        box._report(hello)
    assert [r.getMessage() for r in caplog.records].count("preview sandbox: not enforced (not root)") == 1


def test_without_root_a_child_still_gets_limits_and_its_files(dataset):
    """The fallback: no chroot or user change, but the same limits, and paths that work."""
    confinement = preview_child.Confinement(
        enforce=False,
        namespaces=0,
        uid=os.getuid(),
        gid=os.getgid(),
        memory_limit=64 << 20,
        cpu_seconds=2,
        open_files=32,
        devnull=os.open(os.devnull, os.O_RDWR),
        libc=ctypes.CDLL(None, use_errno=True),
    )
    answers = {}
    for op in ("whoami", "tree"):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            preview_child.run_child(
                {"op": op, "root": str(dataset), "file": "scan.nxs"}, write_end, confinement
            )
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            header, answers[op], _ = parse_frame(pipe.read())
        os.waitpid(pid, 0)
        assert header["ok"], header
    facts = json.loads(answers["whoami"])
    assert (facts["path"], facts["within"]) == (str(dataset / "scan.nxs"), str(dataset))
    assert facts["environment"] == {} and facts["open_fds"] == [0, 1, 2, 3]
    assert facts["limits"]["RLIMIT_NPROC"] == [0, 0] and facts["limits"]["RLIMIT_CPU"] == [2, 2]
    assert json.loads(answers["tree"])["file"] == "scan.nxs"


def test_secrets_are_private_even_without_a_chroot(tmp_path):
    secrets = tmp_path / "state" / "secrets"
    secrets.mkdir(parents=True, mode=0o755)  # as an older version left it
    (secrets / "hub-service-token").write_text("old-token")
    (secrets / "hub-service-token").chmod(0o644)
    app = PanbinderBase(state_dir=str(tmp_path / "state"))
    assert app.secret("hub-service-token") == "old-token"
    key = app.secret("launch-signing-key")
    assert len(key) == 64 and app.secret("launch-signing-key") == key
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for path in secrets.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert [p.name for p in secrets.iterdir() if p.name.startswith(".")] == []
    assert _readable_as_preview_user(secrets / "launch-signing-key") is False
    secrets.chmod(0o755)  # even with the folder opened up, the file stays closed
    assert _readable_as_preview_user(secrets / "launch-signing-key") is False


def _readable_as_preview_user(path: Path) -> bool:
    user = pwd.getpwnam(preview_worker.identity("panbinder-preview")[0])
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
            os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
            path.read_bytes()
            os._exit(0)
        finally:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def _gzip_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    return b"".join(compressor.compress(block) for _ in range(size >> 20)) + compressor.flush()


async def test_plugin_compressed_detector_data_previews_through_the_sandbox(sandbox, tmp_path):
    """hdf5plugin's filters are loaded before the chroot: a Blosc or bitshuffle chunk decodes in
    the child, and a filter nothing provides is named in the refusal."""
    from tests.data_mounts.test_compressed_preview import UNREGISTERED, write_detector_file

    folder = tmp_path / "detector"
    folder.mkdir(mode=0o755)
    path = write_detector_file(folder / "detector.h5")
    path.chmod(0o644)
    for name in ("bitshuffle_lz4", "blosc", "zstd"):
        png = await sandbox.thumbnail(folder, path.name, f"/{name}", size=64)
        assert png == preview.thumbnail(path, "/plain", size=64), name
    error = await refused(sandbox.thumbnail(folder, path.name, "/unknown"))
    assert error.reason == "filter-unavailable" and f"HDF5 filter {UNREGISTERED}" in error.message
