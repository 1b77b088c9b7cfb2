"""Hub-side spawner for Kubernetes: KubeSpawner with panbinder's launch check and hardening.

The chart's Hub (``helm/panbinder/files/jupyterhub_config.py``) names this class. A launch's
options pass the same check as on one machine (``launch_options.check_launch_options``: the
portal's signature for this user, then confinement of every dataset). Each checked dataset
becomes a read-only volumeMount with its own subPath into the pod volume of the storage root
it lies under; ``dataset_volumes`` says what each root is on the cluster (hostPath, a
PersistentVolumeClaim or an NFS export). Servers run as uid 1000, non-root, without privilege
escalation or capabilities, under CPU and memory limits; the launch's signed resource profile
(``profiles.py``) sets the limits and requests and asks for ``nvidia.com/gpu``. A signed-in
user's workspace is a PersistentVolumeClaim of kubespawner's own storage options
(``workspace_storage``, see ``workspaces.py``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubespawner import KubeSpawner
from traitlets import Dict, List, default

from panbinder.errors import PanbinderError
from panbinder.launcher.launch_options import CheckedMount, SignedLaunch, refusal
from panbinder.launcher.profiles import Profile, kubernetes_resources
from panbinder.launcher.workspaces import Workspaces

KINDS = ("hostPath", "pvc", "nfs")


@dataclass(frozen=True)
class DatasetVolume:
    """What one storage root (``mountPath``, as the portal and Hub see it) is on the cluster."""

    name: str
    mount_path: str
    source: dict
    sub_path: str = ""

    @classmethod
    def from_dict(cls, raw: object) -> DatasetVolume:
        """An entry of ``dataset_volumes`` (the chart's ``datasets.volumes`` shape)."""
        kinds = [k for k in KINDS if isinstance(raw, dict) and raw.get(k)]
        if not isinstance(raw, dict) or len(kinds) != 1 or not str(raw.get("mountPath", "")).startswith("/"):
            raise PanbinderError(
                "each dataset volume has a mountPath and exactly one of hostPath, pvc or nfs",
                reason="bad_dataset_volume",
                log_message=f"bad dataset volume {raw!r}",
            )
        kind = kinds[0]
        if kind == "hostPath":
            source = {"hostPath": {"path": raw["hostPath"], "type": "Directory"}}
        elif kind == "pvc":
            source = {"persistentVolumeClaim": {"claimName": raw["pvc"], "readOnly": True}}
        else:
            nfs = raw["nfs"]
            if not isinstance(nfs, dict) or not nfs.get("server") or not nfs.get("path"):
                raise PanbinderError(
                    "an nfs dataset volume needs a server and a path", reason="bad_dataset_volume"
                )
            source = {"nfs": {"server": nfs["server"], "path": nfs["path"], "readOnly": True}}
        name = str(raw.get("name") or posixpath.basename(raw["mountPath"].rstrip("/")) or "root")
        return cls(name, raw["mountPath"], source, str(raw.get("subPath") or ""))


def volume_name(name: str, index: int, *, taken: set[str]) -> str:
    """``pb-data-NAME`` as a DNS label (what pod volume names must be), unique among ``taken``."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40] or "root"
    candidate = f"pb-data-{label}"
    return candidate if candidate not in taken else f"pb-data-{index}-{label}"


def pod_volumes(
    mounts: Sequence[CheckedMount], roots: Sequence[DatasetVolume]
) -> tuple[list[dict], list[dict]]:
    """Pod volumes (one per storage root used) and read-only volumeMounts (one per dataset,
    with the dataset's path under its root as subPath) for checked mounts."""
    volumes: dict[str, dict] = {}
    names: dict[int, str] = {}  # root (by identity) -> its volume's name, unique in the pod
    volume_mounts = []
    by_depth = sorted(roots, key=lambda r: len(Path(r.mount_path).resolve().parts), reverse=True)
    for m in mounts:
        root = next((r for r in by_depth if m.path.is_relative_to(Path(r.mount_path).resolve())), None)
        if root is None:
            raise PanbinderError(
                "This dataset's storage is not available to servers on this cluster; contact the facility.",
                reason="no_dataset_volume",
                status_code=409,
                log_message=f"{m.path} lies under none of the dataset volumes' mountPaths",
            )
        if id(root) not in names:
            name = volume_name(root.name, len(names), taken=set(names.values()))
            names[id(root)] = name
            volumes[name] = {"name": name, **root.source}
        name = names[id(root)]
        relative = m.path.relative_to(Path(root.mount_path).resolve()).as_posix()
        sub_path = posixpath.normpath(posixpath.join(root.sub_path, relative))
        mount = {"name": name, "mountPath": m.spec.container_path, "readOnly": True}
        if sub_path != ".":
            mount["subPath"] = sub_path
        volume_mounts.append(mount)
    return list(volumes.values()), volume_mounts


def profile_traits(profile: Profile) -> dict:
    """KubeSpawner's resource settings for ``profile`` (``kubernetes_resources``: limits and
    equal requests, GPUs as ``nvidia.com/gpu``)."""
    resources = kubernetes_resources(profile)
    limits, requests = dict(resources["limits"]), dict(resources["requests"])
    return {
        "cpu_limit": float(limits.pop("cpu")),
        "mem_limit": int(limits.pop("memory")),
        "cpu_guarantee": float(requests.pop("cpu")),
        "mem_guarantee": int(requests.pop("memory")),
        "extra_resource_limits": {name: str(value) for name, value in limits.items()},
        "extra_resource_guarantees": {name: str(value) for name, value in requests.items()},
    }


def workspace_storage(settings: Workspaces, owner: str) -> dict:
    """``owner``'s workspace through kubespawner's own storage options: a claim of the quota's
    size, made when missing (``storage_pvc_ensure``) and kept when the temporary Hub user is
    deleted (``delete_pvc`` off), mounted read-write at ``container_path``."""
    claim = settings.volume_name(owner)
    return {
        "pvc_name": claim,
        "storage_pvc_ensure": True,
        "storage_capacity": str(settings.quota_bytes),
        "delete_pvc": False,
        "volume": {"name": "pb-work", "persistentVolumeClaim": {"claimName": claim}},
        "volume_mount": {"name": "pb-work", "mountPath": settings.container_path},
    }


class PanbinderKubeSpawner(SignedLaunch, KubeSpawner):
    dataset_volumes = List(
        Dict(),
        help="""What each storage root is on the cluster, as the chart's datasets.volumes: dicts
        with mountPath (the root, as in storage_roots), an optional subPath, and one of hostPath
        (the node's path), pvc (a claim name) or nfs ({server, path}). A root not listed is a
        hostPath of the same path (one node, or the same mount on every node).""",
    ).tag(config=True)

    @default("default_url")
    def _default_url_default(self) -> str:
        return "/lab"

    @default("uid")
    def _uid_default(self) -> int:
        return 1000

    @default("gid")
    def _gid_default(self) -> int:
        return 1000

    @default("fs_gid")
    def _fs_gid_default(self) -> int:
        return 1000

    @default("container_security_context")
    def _container_security_context_default(self) -> dict:
        return {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }

    @default("cpu_limit")
    def _cpu_limit_default(self) -> float:
        return 1.0

    @default("mem_limit")
    def _mem_limit_default(self) -> str:
        return "2G"

    @default("automount_service_account_token")
    def _automount_default(self) -> bool:
        return False

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return ["jupyterhub-singleuser"]

    @default("delete_pvc")
    def _delete_pvc_default(self) -> bool:
        return False  # a workspace's claim outlives the temporary Hub user of each launch

    launch_volumes: tuple[list[dict], list[dict]] = ([], [])
    launch_profile: Profile | None = None
    launch_workspace: dict | None = None  # workspace_storage() of this launch

    def apply_launch_options(self) -> None:
        """The image, the checked datasets as pod volumes, the environment and the profile."""
        options = self.user_options or {}
        image = options.get("image", "")
        if not isinstance(image, str) or not self.image_allowed(image):
            raise PanbinderError(
                "This image was not built by this service; launch it from the portal.",
                reason="image_refused",
                log_message=f"image {image!r} outside {self.allowed_image_prefixes}",
            )
        checked = self.checked_launch(options, self.user.name)
        roots = [DatasetVolume.from_dict(raw) for raw in self.dataset_volumes]
        listed = {r.mount_path.rstrip("/") for r in roots}
        for path in [*self.storage_roots, self.manifest_dir]:
            if path and path.rstrip("/") not in listed:
                roots.append(DatasetVolume.from_dict({"mountPath": path, "hostPath": path}))
        self.launch_volumes = pod_volumes(checked.mounts, roots)
        self.launch_profile = checked.profile
        self.image = image
        self.environment = {**self.environment, **checked.environment}
        settings = Workspaces(parent=self, log=self.log)
        if checked.workspace and settings.enabled:
            storage = workspace_storage(settings, checked.workspace)
            self.launch_workspace = storage
            self.pvc_name = storage["pvc_name"]
            self.storage_pvc_ensure, self.storage_capacity = True, storage["storage_capacity"]
            self.environment = {**self.environment, "PANBINDER_WORKSPACE": settings.container_path}

    def launch_traits(self) -> dict:
        """KubeSpawner settings of this launch: its dataset volumes after the configured ones,
        and its profile's resources."""
        volumes, mounts = self.launch_volumes
        if self.launch_workspace is not None:
            volumes = [*volumes, self.launch_workspace["volume"]]
            mounts = [*mounts, self.launch_workspace["volume_mount"]]
        traits = {"volumes": [*self.volumes, *volumes], "volume_mounts": [*self.volume_mounts, *mounts]}
        if self.launch_profile is not None:
            traits.update(profile_traits(self.launch_profile))
        return traits

    async def get_pod_manifest(self) -> object:
        """KubeSpawner's own pod (a kubernetes_asyncio V1Pod), made with the launch's settings;
        the configured ones are restored after, so the next launch starts from them."""
        traits = self.launch_traits()
        configured = {name: getattr(self, name) for name in traits}
        try:
            for name, value in traits.items():
                setattr(self, name, value)
            return await super().get_pod_manifest()
        finally:
            for name, value in configured.items():
                setattr(self, name, value)

    async def start(self) -> tuple[str, int]:
        try:
            self.apply_launch_options()
        except Exception as e:  # refused or malformed options: the operator's detail goes to the log only
            raise refusal(self.log, self.user.name, e) from e
        return await super().start()


__all__ = ["DatasetVolume", "PanbinderKubeSpawner", "pod_volumes", "profile_traits", "workspace_storage"]
