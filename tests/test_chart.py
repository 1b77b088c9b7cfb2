"""The Helm chart (helm/panbinder): rendered without a helm binary, linted, and every object
validated against the Kubernetes schemas of each supported version (helm/chart_check.py, which
`make chart-check` runs too); plus what the objects must say: read-only datasets, the GPU
profile, the network rules for readers' servers, and settings that panbinder really has."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("chart_check", ROOT / "helm" / "chart_check.py")
chart_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chart_check)
VALUES = {path.name: path for path in chart_check.VALUES_FILES}


def rendered(name: str) -> list[dict[str, Any]]:
    return chart_check.render(chart_check.load_values(VALUES[name]))


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def test_three_values_files_and_eight_versions() -> None:
    assert set(VALUES) == {
        "default-values.yaml",
        "external-registry-pvc-values.yaml",
        "nfs-gpu-monitor-values.yaml",
    }
    assert chart_check.KUBE_VERSIONS == [f"1.{m}.0" for m in range(30, 38)]


@pytest.mark.parametrize("name", sorted(VALUES))
def test_chart_renders_lints_and_validates(name: str) -> None:
    count, problems = chart_check.check(VALUES[name])
    assert count > 20
    assert problems == []


def test_a_broken_manifest_fails_validation() -> None:
    objects = rendered("default-values.yaml")
    misspelt = copy.deepcopy(one(objects, "Deployment", "pb-portal"))
    misspelt["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    mistyped = copy.deepcopy(one(objects, "Deployment", "pb-hub"))
    mistyped["spec"]["replicas"] = "two"
    problems = chart_check.validate([misspelt, mistyped], ["1.30.0", "1.37.0"])
    assert any("imagePulPolicy" in p and "1.30.0" in p for p in problems)
    assert any("'two'" in p and "1.37.0" in p for p in problems)
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"}}
    assert chart_check.validate([monitor], ["1.30.0"]) != []


def test_the_schema_refuses_a_dataset_without_a_source() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match="datasets"):
        chart_check.render({"datasets": {"volumes": [{"name": "raw", "mountPath": "/data/raw"}]}})
    with pytest.raises(helm_python.HelmError, match="registry"):
        chart_check.render({"registry": {"externel": {"url": "https://r.example.org"}}})


def test_settings_are_real_panbinder_traits() -> None:
    from panbinder.check_cli import CheckApp
    from panbinder.serve import ServeApp

    known = {
        cls.__name__: set(cls.class_traits(config=True))
        for app in (ServeApp(), CheckApp())
        for cls in app._classes_inc_parents()
    }
    for name in VALUES:
        config = one(rendered(name), "ConfigMap", "pb-config")
        settings = json.loads(config["data"]["settings.json"])
        for cls, traits in settings.items():
            assert set(traits) <= known.get(cls, set()), (name, cls, set(traits) - known.get(cls, set()))
    settings = json.loads(
        one(rendered("nfs-gpu-monitor-values.yaml"), "ConfigMap", "pb-config")["data"]["settings.json"]
    )
    assert settings["Catalogue"]["storage_roots"] == ["/data/raw", "/data/gpfs"]
    assert settings["ServeApp"]["start_hub"] is False
    assert settings["Registry"]["url"] == "http://pb-registry:5000"


def test_datasets_are_read_only_and_the_gpu_profile_asks_for_a_gpu() -> None:
    objects = rendered("nfs-gpu-monitor-values.yaml")
    hub = json.loads(one(objects, "ConfigMap", "pb-hub")["data"]["hub.json"])
    assert hub["datasets"][0]["nfs"] == {"server": "nfs.example.org", "path": "/export/raw"}
    assert hub["datasets"][1]["hostPath"] == "/gpfs/exfel/data"
    settings = json.loads(one(objects, "ConfigMap", "pb-config")["data"]["settings.json"])
    assert [p["gpus"] for p in settings["Profiles"]["profiles"]] == [0, 1]
    assert [p.get("groups") for p in settings["Profiles"]["profiles"]] == [None, ["gpu-users"]]
    for name in ("pb-portal", "pb-hub"):  # the Hub confines each launch's datasets again
        pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["data-nfs-raw"]["readOnly"] and mounts["data-scratch"]["readOnly"]
    assert mounts["manifests"] == {
        "name": "manifests",
        "mountPath": "/srv/panbinder/manifests",
        "subPath": "manifests",
        "readOnly": True,
    }
    assert one(objects, "ServiceMonitor", "pb-portal")["spec"]["endpoints"][0]["path"] == "/metrics"

    pvc = rendered("external-registry-pvc-values.yaml")
    hub = json.loads(one(pvc, "ConfigMap", "pb-hub")["data"]["hub.json"])
    assert hub["datasets"][1] == {
        "name": "beamtime-b",
        "pvc": "facility-data",
        "mountPath": "/data/beamtime-b",
        "subPath": "proposals/b",
    }
    assert hub["image_prefix"] == "registry.example.org/panbinder/v1-"
    assert not [o for o in pvc if o["metadata"]["name"] == "pb-registry"]


def test_readers_servers_reach_only_the_hubs_api_port_and_never_cloud_metadata() -> None:
    objects = rendered("default-values.yaml")
    servers = one(objects, "NetworkPolicy", "pb-servers")["spec"]
    assert servers["policyTypes"] == ["Ingress", "Egress"]
    pods = []
    for rule in servers["egress"]:
        for peer in rule.get("to", []):
            assert "namespaceSelector" not in peer
            if "podSelector" in peer:  # the Hub's API port only: jupyterhub-singleuser checks tokens there
                pods.append(peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"])
                assert rule["ports"] == [{"protocol": "TCP", "port": 8081}]
                continue
            closed = peer["ipBlock"]["except"]
            assert "169.254.169.254/32" in closed and "10.0.0.0/8" in closed  # the pod network
    assert pods == ["hub"]
    hub = one(objects, "NetworkPolicy", "pb-hub")["spec"]
    allowed = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in hub["ingress"][0]["from"]
    }
    assert allowed == {"proxy", "portal", "checks", "server"}
    closed_off = chart_check.render({"networkPolicy": {"serversReachHub": False}})
    hub = one(closed_off, "NetworkPolicy", "pb-hub")["spec"]
    assert "server" not in {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in hub["ingress"][0]["from"]
    }
    for rule in one(closed_off, "NetworkPolicy", "pb-servers")["spec"]["egress"]:
        assert all("podSelector" not in peer for peer in rule.get("to", []))
    build = one(objects, "NetworkPolicy", "pb-build")["spec"]
    assert "169.254.169.254/32" in build["egress"][0]["to"][0]["ipBlock"]["except"]


def test_build_engine_is_privileged_with_limits_and_checks_run_nightly() -> None:
    objects = rendered("default-values.yaml")
    engine = one(objects, "Deployment", "pb-build")["spec"]["template"]["spec"]["containers"][0]
    assert engine["securityContext"] == {"privileged": True}
    assert engine["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    job = one(objects, "CronJob", "pb-checks")["spec"]
    assert job["schedule"] == "0 2 * * *"
    assert job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][:3] == [
        "panbinder",
        "check",
        "--all",
    ]
    for kind, name in [("Deployment", "pb-portal"), ("Deployment", "pb-hub"), ("Deployment", "pb-proxy")]:
        context = one(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        assert context["runAsNonRoot"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"] == {"drop": ["ALL"]}


def test_the_rendered_config_file_loads_with_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from traitlets.config.loader import PyFileConfigLoader

    config = one(rendered("nfs-gpu-monitor-values.yaml"), "ConfigMap", "pb-config")
    for name, text in config["data"].items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv("PANBINDER_DB_URL", "postgresql://panbinder@db.example.org/panbinder")
    monkeypatch.setenv("PANBINDER_HUB_TOKEN", "token-from-the-secret")
    monkeypatch.delenv("PANBINDER_REGISTRY_PASSWORD", raising=False)
    loaded = PyFileConfigLoader("panbinder_config.py", path=str(tmp_path)).load_config()
    assert loaded.Catalogue.db_url == "postgresql://panbinder@db.example.org/panbinder"
    assert loaded.HubLauncher.api_token == "token-from-the-secret"
    assert loaded.HubLauncher.hub_url == "http://pb-hub:8081"
    assert loaded.ServeApp.start_hub is False
    assert "password" not in loaded.Registry
