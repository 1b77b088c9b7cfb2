"""panbinder settings on Kubernetes: the traits the chart rendered (settings.json, next to this
file), then the secrets from the environment. Edit the chart's values, not this file."""

import json
import os

c = get_config()  # noqa: F821  (provided by traitlets when it loads this file)

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "settings.json")) as f:
    for cls, traits in json.load(f).items():
        for name, value in traits.items():
            setattr(c[cls], name, value)

secrets = {
    "PANBINDER_DB_URL": ("Catalogue", "db_url"),
    "PANBINDER_HUB_TOKEN": ("HubLauncher", "api_token"),
    "PANBINDER_SIGNING_KEY": ("HubLauncher", "signing_key"),
    "PANBINDER_REGISTRY_USERNAME": ("Registry", "username"),
    "PANBINDER_REGISTRY_PASSWORD": ("Registry", "password"),
}
for var, (cls, name) in secrets.items():
    if os.environ.get(var):
        setattr(c[cls], name, os.environ[var])
