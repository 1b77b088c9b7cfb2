"""The Kubernetes spawner (launcher/kube.py): the pod KubeSpawner's own get_pod_manifest() makes
for a signed launch with two datasets, for each kind of dataset volume (hostPath, PVC, NFS), with
the hardening and a GPU profile; every pod is validated, strictly, against the Kubernetes
schemas of each supported version (the chart's KUBE_VERSIONS). No cluster is contacted: only
the manifest is built, and refused launches stop before any cluster call."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from unittest.mock import Mock

import pytest
from jupyterhub.objects import Hub, Server
from kubernetes_asyncio.client import ApiClient
from tornado import web

from panbinder.data_mounts import MountSpec
from panbinder.data_mounts.mounts import MANIFEST_PATH
from panbinder.errors import PanbinderError
from panbinder.launcher import signing
from panbinder.launcher.kube import DatasetVolume, PanbinderKubeSpawner, pod_volumes
from panbinder.launcher.launch_options import CheckedMount
from panbinder.launcher.profiles import Profile
from tests.test_chart import chart_check

KEY = "kube-test-key"
PREFIX = "registry.example.org/panbinder/v1-"
IMAGE = PREFIX + "git-a:abc"
GPU = Profile("gpu-1", cpu=4, memory="16G", gpus=1)


class MockUser(Mock):
    """The Hub's user, as kubespawner's own tests mock it."""

    name = "fake"
    server = Server()

    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        for key, value in kwargs.items():
            setattr(self, key, value)

    @property
    def escaped_name(self) -> str:
        return self.name

    @property
    def url(self) -> str:
        return self.server.url


class MockOrmSpawner(Mock):
    name = ""
    server = None


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner loads the cluster's client configuration when made; there is none here, and
    building a manifest needs none (the API client it makes is never called)."""
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kwargs: None)


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    for run in ("p1/run-7", "p1/run-8", "manifests"):
        (tmp_path / "raw" / run).mkdir(parents=True)
    (tmp_path / "raw" / "p1" / "run-8" / "data.h5").write_bytes(b"\x89HDF")
    return tmp_path


VOLUME_KINDS = {
    "hostPath": (
        {"hostPath": "/gpfs/exfel/raw"},
        {"hostPath": {"path": "/gpfs/exfel/raw", "type": "Directory"}},
    ),
    "pvc": (
        {"pvc": "facility-data", "subPath": "beamtimes"},
        {"persistentVolumeClaim": {"claimName": "facility-data", "readOnly": True}},
    ),
    "nfs": (
        {"nfs": {"server": "nfs.example.org", "path": "/export/raw"}},
        {"nfs": {"server": "nfs.example.org", "path": "/export/raw", "readOnly": True}},
    ),
}


def launch_options(storage: Path, user: str = "pb-alice", profile: Profile | None = None) -> dict:
    mounts = (
        MountSpec(str(storage / "raw" / "p1" / "run-7"), "/data/run-7", True),
        MountSpec(str(storage / "raw" / "p1" / "run-8" / "data.h5"), "/data/run-8/data.h5", True),
    )
    env = {"PANBINDER_DATA": "/data"}
    fields = signing.SignedFields(IMAGE, mounts, env, user, int(time.time()) + 300, profile)
    return signing.signed_options(KEY, fields)


def spawner(
    storage: Path, options: dict, source: dict | None = None, **traits: object
) -> PanbinderKubeSpawner:
    volumes = [{"name": "raw", "mountPath": str(storage / "raw"), **source}] if source else []
    sp = PanbinderKubeSpawner(
        hub=Hub(),
        user=MockUser(name="pb-alice"),
        orm_spawner=MockOrmSpawner(),
        _mock=True,
        signing_key=KEY,
        storage_roots=[str(storage / "raw")],
        allowed_image_prefixes=[PREFIX],
        dataset_volumes=volumes,
        **traits,
    )
    sp.user_options = options
    return sp


async def pod_for(sp: PanbinderKubeSpawner) -> dict:
    sp.apply_launch_options()
    async with ApiClient() as api:
        return api.sanitize_for_serialization(await sp.get_pod_manifest())


@pytest.mark.parametrize("kind", sorted(VOLUME_KINDS))
async def test_two_datasets_read_only_with_a_subpath_each_hardened_and_valid(
    storage: Path, kind: str
) -> None:
    source, volume = VOLUME_KINDS[kind]
    pod = await pod_for(spawner(storage, launch_options(storage, profile=GPU), source))
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["image"] == IMAGE
    assert spec["volumes"] == [{"name": "pb-data-raw", **volume}]
    base = "beamtimes/" if kind == "pvc" else ""
    assert container["volumeMounts"] == [
        {"name": "pb-data-raw", "mountPath": "/data/run-7", "subPath": base + "p1/run-7", "readOnly": True},
        {
            "name": "pb-data-raw",
            "mountPath": "/data/run-8/data.h5",
            "subPath": base + "p1/run-8/data.h5",
            "readOnly": True,
        },
    ]
    context = container["securityContext"]
    assert context["runAsUser"] == 1000 and context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    limits = container["resources"]["limits"]
    assert limits == {"cpu": 4.0, "memory": 16 * 1024**3, "nvidia.com/gpu": "1"}
    assert container["resources"]["requests"] == limits
    assert {"name": "PANBINDER_DATA", "value": "/data"} in container["env"]
    assert chart_check.validate([pod]) == []
    assert len(chart_check.KUBE_VERSIONS) == 8


async def test_without_a_profile_the_default_limits_apply(storage: Path) -> None:
    pod = await pod_for(spawner(storage, launch_options(storage)))
    [container] = pod["spec"]["containers"]
    assert container["resources"]["limits"] == {"cpu": 1.0, "memory": 2 * 1024**3}
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    # a root not listed in dataset_volumes is a hostPath of the same path
    assert pod["spec"]["volumes"][0]["hostPath"] == {"path": str(storage / "raw"), "type": "Directory"}
    assert chart_check.validate([pod]) == []


async def test_validation_catches_a_wrong_field(storage: Path) -> None:
    pod = await pod_for(spawner(storage, launch_options(storage), VOLUME_KINDS["nfs"][0]))
    misspelt = copy.deepcopy(pod)
    misspelt["spec"]["containers"][0]["volumeMounts"][0]["subpath"] = "p1/run-7"
    mistyped = copy.deepcopy(pod)
    mistyped["spec"]["volumes"][0]["nfs"]["readOnly"] = "yes"
    problems = chart_check.validate([misspelt, mistyped], ["1.30.0", "1.37.0"])
    assert any("subpath" in p and "1.30.0" in p for p in problems)
    assert any("'yes'" in p and "1.37.0" in p for p in problems)


async def test_the_manifest_comes_from_the_manifest_folders_volume(storage: Path) -> None:
    folder = storage / "manifests"
    folder.mkdir()
    (folder / "abc.json").write_text("{}")
    fields = signing.SignedFields(
        IMAGE,
        (MountSpec(str(folder / "abc.json"), MANIFEST_PATH, True),),
        {},
        "pb-alice",
        int(time.time()) + 300,
    )
    sp = spawner(storage, signing.signed_options(KEY, fields), manifest_dir=str(folder))
    sp.dataset_volumes = [{"name": "manifests", "mountPath": str(folder), "pvc": "pb-manifests"}]
    pod = await pod_for(sp)
    [mount] = pod["spec"]["containers"][0]["volumeMounts"]
    assert mount == {
        "name": "pb-data-manifests",
        "mountPath": MANIFEST_PATH,
        "subPath": "abc.json",
        "readOnly": True,
    }
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "pb-manifests"


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"user": "pb-mallory"}, 403, "another user"),
        ({"signature": "0" * 64}, 403, "not made by the panbinder portal"),
        ({"image": "elsewhere.example.org/x:1"}, 400, "not built by this service"),
    ],
)
async def test_refused_options_stop_the_start_before_any_cluster_call(
    storage: Path, change: dict, status: int, words: str
) -> None:
    options = launch_options(storage, user=change.pop("user", "pb-alice"))
    sp = spawner(storage, {**options, **change})
    with pytest.raises(web.HTTPError) as e:
        await sp.start()
    assert e.value.status_code == status and words in e.value.log_message
    assert str(storage) not in e.value.log_message


async def test_a_dataset_under_no_volume_is_refused_and_unlisted_roots_are_host_paths(storage: Path) -> None:
    other = DatasetVolume.from_dict({"name": "other", "mountPath": str(storage / "other"), "pvc": "other"})
    mount = CheckedMount(storage / "raw" / "p1" / "run-7", MountSpec("/x", "/data/run-7"))
    with pytest.raises(PanbinderError) as e:
        pod_volumes([mount], [other])
    assert e.value.reason == "no_dataset_volume" and str(storage) not in e.value.message
    sp = spawner(storage, launch_options(storage))
    sp.dataset_volumes = [{"name": "other", "mountPath": str(storage / "other"), "pvc": "other"}]
    sp.storage_roots = [str(storage / "raw"), str(storage / "other")]
    sp.apply_launch_options()
    [volume] = sp.launch_volumes[0]
    assert volume == {"name": "pb-data-raw", "hostPath": {"path": str(storage / "raw"), "type": "Directory"}}


@pytest.mark.parametrize(
    "raw",
    [
        {"mountPath": "/data/raw"},
        {"mountPath": "/data/raw", "pvc": "a", "hostPath": "/b"},
        {"mountPath": "relative", "pvc": "a"},
        {"mountPath": "/data/raw", "nfs": {"server": "nfs.example.org"}},
    ],
)
def test_a_bad_dataset_volume_setting_is_refused_clearly(raw: dict) -> None:
    with pytest.raises(PanbinderError) as e:
        DatasetVolume.from_dict(raw)
    assert e.value.reason == "bad_dataset_volume"


async def test_the_next_launch_starts_from_the_configured_settings(storage: Path) -> None:
    sp = spawner(storage, launch_options(storage, profile=GPU), VOLUME_KINDS["nfs"][0])
    await pod_for(sp)
    sp.user_options = launch_options(storage)
    [container] = (await pod_for(sp))["spec"]["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert len(container["volumeMounts"]) == 2 and sp.volumes == [] and sp.cpu_limit == 1.0


def test_volume_names_are_dns_labels_and_unique(tmp_path: Path) -> None:
    roots = [
        DatasetVolume.from_dict({"mountPath": str(tmp_path / "a" / "Raw_Data"), "pvc": "one"}),
        DatasetVolume.from_dict({"mountPath": str(tmp_path / "b" / "raw-data"), "pvc": "two"}),
    ]
    mounts = [
        CheckedMount(tmp_path / "a" / "Raw_Data" / "x", MountSpec("/x", "/data/x")),
        CheckedMount(tmp_path / "b" / "raw-data" / "y", MountSpec("/y", "/data/y")),
    ]
    volumes, _ = pod_volumes(mounts, roots)
    assert [v["name"] for v in volumes] == ["pb-data-raw-data", "pb-data-1-raw-data"]


async def test_the_charts_hub_makes_this_spawner_from_the_values(
    tmp_path: Path, storage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's files/jupyterhub_config.py, rendered, names this spawner and sets it from the
    values: datasets (NFS, and a PVC with a subPath), the image prefix, the signing key, and
    the labels the chart's NetworkPolicies select servers by."""
    from traitlets.config.loader import PyFileConfigLoader

    from panbinder.launcher.profiles import Profiles

    values = {
        "singleuser": {"profiles": [{"name": "gpu-1", "cpu": 4, "memory": "16G", "gpu": 1}]},
        "datasets": {
            "volumes": [
                {
                    "name": "raw",
                    "mountPath": str(storage / "raw" / "p1"),
                    "nfs": {"server": "nfs", "path": "/x"},
                },
                {"name": "old", "mountPath": str(storage / "old"), "pvc": "facility-data", "subPath": "b"},
            ]
        },
    }
    (storage / "old" / "run-1").mkdir(parents=True)
    objects = chart_check.render(values)
    settings = json.loads(
        next(o for o in objects if o["metadata"]["name"] == "pb-config")["data"]["settings.json"]
    )
    hub_files = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "pb-hub")[
        "data"
    ]
    for name, text in hub_files.items():
        (tmp_path / name).write_text(text)
    for var in ("PANBINDER_SIGNING_KEY", "PANBINDER_HUB_TOKEN", "JPY_COOKIE_SECRET_TEXT"):
        monkeypatch.setenv(var, KEY)
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(tmp_path)).load_config()
    assert config.JupyterHub.spawner_class is PanbinderKubeSpawner

    profile = Profiles(profiles=settings["Profiles"]["profiles"]).get("gpu-1")
    image = "pb-registry:5000/panbinder/v1-git-a:abc"
    mounts = (
        MountSpec(str(storage / "raw" / "p1" / "run-7"), "/data/run-7"),
        MountSpec(str(storage / "old" / "run-1"), "/data/run-1"),
    )
    fields = signing.SignedFields(image, mounts, {}, "pb-alice", int(time.time()) + 300, profile)
    sp = PanbinderKubeSpawner(
        config=config, hub=Hub(), user=MockUser(name="pb-alice"), orm_spawner=MockOrmSpawner(), _mock=True
    )
    sp.user_options = signing.signed_options(KEY, fields)
    pod = await pod_for(sp)
    policy = next(
        o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "pb-servers"
    )
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    hub_policy = next(
        o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "pb-hub"
    )
    server_peers = [p["podSelector"]["matchLabels"] for p in hub_policy["spec"]["ingress"][0]["from"]]
    assert any(peer.items() <= pod["metadata"]["labels"].items() for peer in server_peers)
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["pb-data-raw", "pb-data-old"]
    assert pod["spec"]["volumes"][1]["persistentVolumeClaim"] == {
        "claimName": "facility-data",
        "readOnly": True,
    }
    assert [(m["subPath"], m["readOnly"]) for m in pod["spec"]["containers"][0]["volumeMounts"]] == [
        ("run-7", True),
        ("b/run-1", True),
    ]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert chart_check.validate([pod]) == []
