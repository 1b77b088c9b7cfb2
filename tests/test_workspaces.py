"""Persistent workspaces, the pure parts: stable names, retention, the launch's note, the signed
owner, and each back-end's mapping (docker volume, swarm service mount, Kubernetes claim)."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient
from traitlets import TraitError

from panbinder.errors import PanbinderError
from panbinder.launcher import LaunchRequest, signing
from panbinder.launcher.hub_api import HubLauncher
from panbinder.launcher.kube import workspace_storage
from panbinder.launcher.launch_options import check_launch_options
from panbinder.launcher.pool import PoolEntry
from panbinder.launcher.slurm_job import JobSpec, job_script
from panbinder.launcher.swarm import PanbinderSwarmSpawner
from panbinder.launcher.workspaces import (
    WorkspaceRecord,
    Workspaces,
    select_unused,
    usage_note,
    workspace_key,
)
from panbinder.registry_cache import ImageRef
from tests.test_kube_spawner import IMAGE, no_cluster  # noqa: F401  (autouse: no cluster config)
from tests.test_kube_spawner import KEY as KUBE_KEY
from tests.test_kube_spawner import spawner as kube_spawner

KEY = "test-signing-key"
NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def test_workspace_names_are_pinned() -> None:
    """Golden: a changed scheme would orphan every existing workspace."""
    assert workspace_key("alice") == "alice-2bd806c97f0e"
    assert workspace_key("Alice.Smith@example.org") == "alice-smith-example-org-323a0b320181"
    assert workspace_key("../../etc") == "etc-74ccf3c5b4c1"
    assert workspace_key("ü") == "user-607474ca475a"
    assert Workspaces().volume_name("alice") == "panbinder-work-alice-2bd806c97f0e"
    with pytest.raises(PanbinderError):
        workspace_key("")


def test_names_of_similar_owners_differ_and_stay_safe() -> None:
    keys = {workspace_key(n) for n in ("alice", "Alice", "alice ", "a/lice", "x" * 300)}
    assert len(keys) == 5
    for key in keys:
        assert len(key) <= 37 and key.replace("-", "").isalnum() and key == key.lower()


def record(key: str, days_ago: float) -> WorkspaceRecord:
    used = (NOW - timedelta(days=days_ago)).isoformat()
    return WorkspaceRecord(key, key, 2**30, used, used)


def test_unused_workspaces_beyond_retention_are_selected_oldest_first() -> None:
    records = [record("a", 10), record("b", 200), record("c", 400), record("d", 500)]
    chosen = select_unused(records, now=NOW, retention_days=180, in_use={"d"})
    assert [r.key for r in chosen] == ["c", "b"]
    assert select_unused(records, now=NOW, retention_days=0) == []


def test_records_round_trip_and_bad_ones_are_skipped(tmp_path: Path) -> None:
    good = record("alice-1", 1)
    (tmp_path / "alice-1.json").write_text(good.to_json())
    (tmp_path / "broken.json").write_text("{not json")
    assert Workspaces(root=str(tmp_path)).records() == [good]


def test_the_note_says_what_to_do_when_full() -> None:
    assert "No space left" not in usage_note(10 * 2**20, 2**30, "/home/jovyan/work")
    full = usage_note(2**30 - 2**20, 2**30, "/home/jovyan/work")
    assert "It is full" in full and "No space left on device" in full and "delete files" in full


@pytest.mark.parametrize(
    ("name", "value"),
    [("quota", "lots"), ("quota", "1M"), ("container_path", "work"), ("container_path", "/data/x")],
)
def test_bad_settings_are_refused_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(TraitError, match=f"Workspaces.{name}"):
        Workspaces(**{name: value})


def fields(workspace: str = "alice") -> signing.SignedFields:
    return signing.SignedFields("img:1", (), {}, "pb-x", int(time.time()) + 300, None, workspace)


def test_the_owner_is_signed_and_cannot_be_changed() -> None:
    options = signing.signed_options(KEY, fields())
    checked = check_launch_options(options, signing_key=KEY, user="pb-x", storage_roots=[], manifest_dir="")
    assert checked.workspace == "alice" and not checked.empty
    for forged in ({**options, "workspace": "bob"}, {k: v for k, v in options.items() if k != "signature"}):
        with pytest.raises(PanbinderError) as e:
            check_launch_options(forged, signing_key=KEY, user="pb-x", storage_roots=[], manifest_dir="")
        assert e.value.status_code == 403
    unsigned_owner = {"image": "img:1", "workspace": "bob"}  # an image alone needs no signature...
    with pytest.raises(PanbinderError):  # ...but a workspace does
        check_launch_options(unsigned_owner, signing_key=KEY, user="pb-x", storage_roots=[], manifest_dir="")


def test_options_without_a_workspace_sign_as_before() -> None:
    assert b"workspace" not in signing.canonical(fields(""))
    assert "workspace" not in signing.signed_options(KEY, fields(""))


@pytest.mark.parametrize("enabled", [True, False])
def test_the_portal_signs_the_owner_only_when_workspaces_are_on(enabled: bool) -> None:
    launcher = HubLauncher(signing_key=KEY, hub_url="http://127.0.0.1:1", pool_class=None)
    launcher.workspaces.enabled = enabled
    request = LaunchRequest("l1", ImageRef("r", "n", "t"), workspace="alice")
    options = launcher.user_options(request, "pb-x")
    assert options.get("workspace", "") == ("alice" if enabled else "")
    assert launcher.user_options(dataclasses.replace(request, workspace=""), "pb-x") == {"image": "r/n:t"}


class TakenPool:
    """A pool holding one ready server; records what the launcher asked of it."""

    def __init__(self) -> None:
        self.taken: list[str] = []
        self.refilled: list[str] = []
        self.entries: dict = {}

    async def take_entry(self, request: LaunchRequest) -> PoolEntry | None:
        self.taken.append(request.launch_id)
        return PoolEntry("pb-pooled", 0.0)

    def refill_soon(self, request: LaunchRequest) -> None:
        self.refilled.append(request.launch_id)


async def test_a_signed_in_launch_takes_a_pooled_server_when_workspaces_are_off() -> None:
    launcher = HubLauncher(signing_key=KEY, hub_url="http://127.0.0.1:1", pool_class=None)
    launcher.workspaces.enabled = False
    launcher.pool = pool = TakenPool()

    async def token(user: str, request: LaunchRequest) -> str:
        return "t0k"

    launcher._token = token
    request = LaunchRequest("l1", ImageRef("r", "n", "t"), workspace="alice")
    events = [e async for e in launcher.launch(request)]
    assert [e.phase for e in events] == ["ready"] and events[0].extra["prestarted"]
    assert pool.taken == ["l1"] and pool.refilled == ["l1"]


def test_kubernetes_maps_a_workspace_to_a_kept_claim_of_the_quota(tmp_path: Path) -> None:
    storage = workspace_storage(Workspaces(quota="2G"), "alice")
    claim = "panbinder-work-alice-2bd806c97f0e"
    assert storage["pvc_name"] == claim and storage["storage_capacity"] == str(2 * 2**30)
    assert storage["delete_pvc"] is False and storage["storage_pvc_ensure"] is True
    assert storage["volume"]["persistentVolumeClaim"] == {"claimName": claim}


async def test_the_kube_pod_mounts_the_claim_read_write_and_datasets_stay_read_only(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    options = signing.signed_options(
        KUBE_KEY,
        signing.SignedFields(IMAGE, (), {}, "pb-alice", int(time.time()) + 300, None, "alice"),
    )
    sp = kube_spawner(tmp_path, options)
    assert sp.delete_pvc is False
    sp.apply_launch_options()
    assert sp.pvc_name == "panbinder-work-alice-2bd806c97f0e" and sp.storage_pvc_ensure
    async with ApiClient() as api:
        pod = api.sanitize_for_serialization(await sp.get_pod_manifest())
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    work = [m for m in mounts if m["mountPath"] == "/home/jovyan/work"]
    assert work and not work[0].get("readOnly")
    assert {"name": "pb-work", "persistentVolumeClaim": {"claimName": sp.pvc_name}} in pod["spec"]["volumes"]


def test_swarm_mounts_the_workspace_as_a_local_volume_without_copying() -> None:
    sp = PanbinderSwarmSpawner(_mock=True)
    sp.workspace_mount = ("panbinder-work-k", "/srv/ws/mnt/k", "/home/jovyan/work")
    (mount,) = [m for m in sp.mounts if m["Target"] == "/home/jovyan/work"]
    assert mount["Type"] == "volume" and mount["Source"] == "panbinder-work-k" and not mount["ReadOnly"]
    assert mount["VolumeOptions"]["NoCopy"] is True
    assert mount["VolumeOptions"]["DriverConfig"] == {
        "Name": "local",
        "Options": {"type": "none", "o": "bind", "device": "/srv/ws/mnt/k"},
    }


def test_slurm_mounts_the_workspace_folder_read_write() -> None:
    spec = JobSpec(image="img:1", sbatch=(), workspace=("/home/alice/panbinder-work", "/home/jovyan/work"))
    script = job_script(spec)
    assert "mkdir -p /home/alice/panbinder-work" in script
    assert "--volume /home/alice/panbinder-work:/home/jovyan/work:rw" in script
    with pytest.raises(PanbinderError):
        job_script(dataclasses.replace(spec, workspace=("/x:y", "/home/jovyan/work")))


def test_the_changes_zip_holds_files_changed_since_start_within_the_limit(tmp_path: Path) -> None:
    import os
    import zipfile

    from panbinder.launcher.server_changes import changed_files, write_zip

    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    (home / ".cache").mkdir()
    (home / "old.ipynb").write_text("from the image")
    os.utime(home / "old.ipynb", (1000, 1000))
    since = time.time() - 5
    (home / "result.csv").write_text("1,2\n")
    (home / "sub" / "fig.png").write_bytes(b"x" * 100)
    (home / ".cache" / "junk").write_text("cache")
    (home / "link").symlink_to("/etc/passwd")
    taken, skipped = changed_files(home, since, max_bytes=50)
    assert [p.name for p in taken] == ["result.csv"] and [p.name for p in skipped] == ["fig.png"]
    assert write_zip(home, since, tmp_path / "c.zip") == 2
    with zipfile.ZipFile(tmp_path / "c.zip") as zf:
        assert sorted(zf.namelist()) == ["result.csv", "sub/fig.png"]


def test_server_files_enable_the_extension_and_leave_a_notice(tmp_path: Path) -> None:
    import json

    from panbinder.launcher.server_changes import server_files

    notice = server_files(tmp_path / "opt")
    assert server_files(tmp_path / "opt") == notice  # idempotent
    assert "temporary" in notice.read_text() and "panbinder/changes.zip" in notice.read_text()
    config = tmp_path / "opt" / "config" / "jupyter_server_config.d" / "panbinder-changes.json"
    assert json.loads(config.read_text()) == {
        "ServerApp": {"jpserver_extensions": {"panbinder_changes": True}}
    }
    assert "def _load_jupyter_server_extension" in (tmp_path / "opt" / "panbinder_changes.py").read_text()


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A WorkspaceDisk whose system commands are recorded (no loop devices, mkfs or mounts)."""
    from panbinder.launcher import workspace_disk

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(workspace_disk, "_run", lambda *argv, **kw: calls.append(argv) or "")
    monkeypatch.setattr(workspace_disk.os, "geteuid", lambda: 0)
    d = workspace_disk.WorkspaceDisk(Workspaces(root=str(tmp_path), quota="32M"))
    d.calls = calls
    d.attached = []
    monkeypatch.setattr(d, "loop_devices", lambda key: list(d.attached))
    monkeypatch.setattr(d, "_mount", lambda key: calls.append(("mount", key)))
    return d


def old_workspace(disk, owner: str, days: int) -> str:
    key = workspace_key(owner)
    disk.root.mkdir(parents=True, exist_ok=True)
    disk.image(key).write_bytes(b"files")
    used = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")
    disk.record_path(key).write_text(WorkspaceRecord(key, owner, 5, used, used).to_json())
    return key


def test_removal_keeps_a_workspace_used_since_the_listing(disk) -> None:
    key = old_workspace(disk, "alice", days=0)  # a launch wrote its use after the listing
    assert disk.remove(key, unused_before=datetime.now(UTC) - timedelta(days=30)) is False
    assert disk.image(key).exists() and disk.record_path(key).exists()


def test_removal_keeps_a_workspace_a_server_still_attaches(disk) -> None:
    key = old_workspace(disk, "alice", days=400)
    disk.attached = ["/dev/loop7"]
    assert disk.remove(key, unused_before=datetime.now(UTC) - timedelta(days=30)) is False
    assert disk.image(key).exists() and ("mount", key) in disk.calls  # mounted again as it was
    disk.attached = []
    assert disk.remove(key, unused_before=datetime.now(UTC) - timedelta(days=30)) is True
    assert not disk.image(key).exists() and not disk.record_path(key).exists()


def test_a_lost_record_is_rebuilt_from_the_image_not_a_new_filesystem(disk) -> None:
    key = old_workspace(disk, "alice", days=3)
    disk.record_path(key).unlink()
    record = disk.ensure("alice")
    assert disk.image(key).read_bytes().startswith(b"files")  # the files are still there (grown)
    assert not any(call[0] == "mkfs.ext4" for call in disk.calls)
    assert record.owner == "alice" and record.quota_bytes >= 5
    assert WorkspaceRecord.from_json(disk.record_path(key).read_text()).created <= record.last_used


@pytest.mark.parametrize(
    ("euid", "backend", "enabled"),
    [(1000, "docker", False), (1000, "swarm", False), (0, "docker", True), (1000, "slurm", True)],
)
def test_workspaces_are_off_with_one_warning_when_the_hub_cannot_loop_mount(
    euid: int, backend: str, enabled: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from panbinder.launcher import workspaces
    from panbinder.launcher.hub_process import HubProcess

    monkeypatch.setattr(workspaces.os, "geteuid", lambda: euid)
    hub = HubProcess(backend=backend, log=logging.getLogger("test-hub"))
    with caplog.at_level(logging.WARNING, logger="test-hub"):
        assert hub.workspaces.enabled is enabled and hub.workspaces.enabled is enabled
    warnings = [r for r in caplog.records if "Workspaces turned off" in r.getMessage()]
    assert len(warnings) == (0 if enabled else 1)
    assert Workspaces().enabled  # the default stays on
