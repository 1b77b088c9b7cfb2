"""JupyterHub on Kubernetes for panbinder: panbinder's KubeSpawner (the Hub image installs
panbinder), an external configurable-http-proxy and the idle culler. It reads hub.json (next to this file), which the chart renders from its values
(templates/hub.yaml); edit the values, not this file. Secrets come from the environment."""

import json
import os
import sys

from panbinder.launcher.kube import PanbinderKubeSpawner

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub.json")) as f:
    s = json.load(f)

c.JupyterHub.bind_url = "http://:8000"
c.JupyterHub.hub_bind_url = "http://:8081"
c.JupyterHub.hub_connect_url = s["hub_connect_url"]
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = s["proxy_api_url"]
c.JupyterHub.cookie_secret = os.environ["JPY_COOKIE_SECRET_TEXT"].encode()
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.cleanup_servers = False
c.JupyterHub.log_level = s["log_level"]
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
c.JupyterHub.services = [
    {"name": "panbinder", "api_token": os.environ["PANBINDER_HUB_TOKEN"]},
    {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={s['cull_timeout']}",
            f"--cull-every={s['cull_every']}",
            "--cull-users=True",
            "--remove-named-servers=True",
        ],
    },
]
c.JupyterHub.load_roles = [
    {
        "name": "panbinder",
        "scopes": ["admin:users", "admin:servers", "tokens", "read:users", "access:servers"],
        "services": ["panbinder"],
    },
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers", "admin:users"],
        "services": ["idle-culler"],
    },
]

# the spawner is panbinder's (launcher/kube.py): it checks each launch's signed options as on one
# machine, mounts only that launch's datasets (read-only, a subPath each) and applies its signed
# resource profile (profiles are the portal's Profiles.profiles); uid 1000, non-root, no
# privilege escalation, no capabilities are its defaults
c.JupyterHub.spawner_class = PanbinderKubeSpawner
k = c.PanbinderKubeSpawner
k.signing_key = os.environ["PANBINDER_SIGNING_KEY"]
k.allowed_image_prefixes = [s["image_prefix"]]
k.storage_roots = [v["mountPath"] for v in s["datasets"]]
k.dataset_volumes = [*s["datasets"], s["manifests"]]
k.manifest_dir = s["manifests"]["mountPath"]
k.namespace = s["namespace"]
k.pod_name_template = s["pod_name_prefix"] + "-{username}--{servername}"
k.default_url = s["default_url"]
k.start_timeout = s["start_timeout"]
k.cpu_limit = s["cpu_limit"]
k.mem_limit = s["mem_limit"]
k.node_selector = s["node_selector"]
# the labels the chart's NetworkPolicies select servers by (KubeSpawner's common labels and
# component label win over extra_labels, so these are set, not added)
k.component_label = "server"
k.common_labels = {
    "app.kubernetes.io/name": "panbinder",
    "app.kubernetes.io/instance": s["instance"],
    "app.kubernetes.io/managed-by": "kubespawner",
}
if s["pull_secret"]:
    k.image_pull_secrets = [s["pull_secret"]]
