"""JupyterHub configuration file used by ``panbinder serve``.

It reads the settings that the portal wrote (``PANBINDER_HUB_SETTINGS``, a JSON file) and
applies them, so the Hub and the portal share one source of configuration: the portal's
traitlets. Nothing here is meant to be edited per deployment.
"""

import json
import os
import sys

from panbinder.lifeline import exec_prefix

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
s = json.load(open(os.environ["PANBINDER_HUB_SETTINGS"]))

c.JupyterHub.bind_url = s["bind_url"]
c.JupyterHub.hub_ip = s["hub_ip"]
c.JupyterHub.hub_port = s["hub_port"]
c.JupyterHub.hub_connect_ip = s["hub_connect_ip"]
c.ConfigurableHTTPProxy.api_url = s["proxy_api_url"]
# the proxy and the culler die with the Hub (parent-death signal), whatever stops it
lifeline = exec_prefix(os.getpid())
c.ConfigurableHTTPProxy.command = [*lifeline, "--", *s["proxy_command"]]
c.ConfigurableHTTPProxy.pid_file = s["proxy_pid_file"]
c.JupyterHub.db_url = s["db_url"]
c.JupyterHub.cookie_secret_file = s["cookie_secret_file"]
c.JupyterHub.pid_file = s["pid_file"]
c.JupyterHub.authenticator_class = s["authenticator_class"]
c.Authenticator.allow_all = True
c.JupyterHub.cleanup_servers = s["cleanup_servers"]
c.PanbinderHub.stop_servers_timeout = s["stop_servers_timeout"]
c.PanbinderHub.server_poll_interval = s.get("start_check_interval", 0.025)
c.PanbinderHub.sqlite_wal = s.get("sqlite_wal", True)
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
c.JupyterHub.log_level = s.get("log_level", "INFO")

c.JupyterHub.services = [
    {
        "name": "panbinder",
        "api_token": os.environ["PANBINDER_HUB_TOKEN"],
        # the portal signs users in through the Hub (whatever authenticator it runs)
        "oauth_redirect_uri": s["portal_oauth_callback"],
        "oauth_no_confirm": True,
    },
    {
        "name": "idle-culler",
        "command": [
            *lifeline,
            f"--pid-file={s['culler_pid_file']}",
            "--",
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={s['cull_timeout']}",
            f"--cull-every={s['cull_every']}",
            "--cull-users=True",
            "--remove-named-servers=True",
        ],
        # marks it as the portal's, as every other process the portal starts (see processes.py)
        "environment": {k: v for k, v in os.environ.items() if k.startswith("PANBINDER_SERVE_")},
    },
]
c.JupyterHub.load_roles = [
    # every signed-in user may sign in to the portal (it only learns their name and groups)
    {"name": "user", "scopes": ["self", "access:services!service=panbinder"]},
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

sp = s["spawner"]
c.JupyterHub.spawner_class = sp.get("class", "panbinder.launcher.spawner.PanbinderSpawner")
# the swarm back-end (launcher/swarm.py): its network and the nodes of labelled dataset roots
c.PanbinderSwarmSpawner.network_name = sp.get("network", "panbinder-swarm")
c.PanbinderSwarmSpawner.node_labels = sp.get("node_labels", {})
c.PanbinderSpawner.allowed_image_prefixes = sp["allowed_image_prefixes"]
c.PanbinderSpawner.image = sp["default_image"]
c.PanbinderSpawner.cmd = ["jupyterhub-singleuser"]
c.PanbinderSpawner.default_url = sp["default_url"]
c.PanbinderSpawner.remove = True
c.PanbinderSpawner.pull_policy = "ifnotpresent"
c.PanbinderSpawner.host_ip = "127.0.0.1"
c.PanbinderSpawner.mem_limit = sp["mem_limit"]
c.PanbinderSpawner.cpu_limit = sp["cpu_limit"]
c.PanbinderSpawner.start_timeout = sp["start_timeout"]
c.PanbinderSpawner.poll_interval = s.get("poll_interval", 30)
# the spawner's start() returns once the server answers, so the Hub's own wait after it is short;
# it is also how long a restarted Hub waits for a server whose start the old Hub never finished
# (its address was never recorded) before it stops it and frees its user
c.PanbinderSpawner.http_timeout = min(sp["start_timeout"], 30)
c.PanbinderSpawner.prefix = sp["container_prefix"]
c.PanbinderSpawner.extra_host_config = {
    "security_opt": ["no-new-privileges"],
    "cap_drop": ["ALL"],
    "pids_limit": sp["pids_limit"],
}
c.PanbinderSpawner.environment = sp["environment"]
c.PanbinderSpawner.args = sp["args"]
c.PanbinderSpawner.storage_roots = sp.get("storage_roots", [])
c.PanbinderSpawner.manifest_dir = sp.get("manifest_dir", "")
c.PanbinderSpawner.signing_key = os.environ.get("PANBINDER_SIGNING_KEY", "")
# panbinder-publish in servers with a workspace: the portal's registration of derived datasets
c.PanbinderSpawner.publish_api_url = sp.get("publish_api_url", "")
# persistent workspaces of signed-in users (launcher/workspaces.py): the portal's settings
for name, value in sp.get("workspaces", {}).items():
    setattr(c.Workspaces, name, value)
c.JupyterHub.load_groups = {group: {"users": members} for group, members in s.get("groups", {}).items()}
# the deployment's own Hub settings, e.g. its authenticator: {"Class": {"trait": value}}
for cls, traits in s.get("extra_config", {}).items():
    for name, value in traits.items():
        setattr(c[cls], name, value)
