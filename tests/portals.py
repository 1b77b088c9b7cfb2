"""Two portals on one catalogue and one Hub, for the integration test and the benchmark.

Portal A runs the Hub; portal B uses it (``ServeApp.start_hub = False`` with A's service token
and launch signing key, and ``HubProcess.port`` naming A's proxy) and has its own temporary-user
prefix, so neither portal's reaper or pool touches the other's users.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support import Portal


def portal_config(catalogue_url: str, users: str, extra: str = "") -> str:
    """Settings of either portal: the shared catalogue and this portal's user prefix."""
    return textwrap.dedent(
        f"""
        c.Catalogue.db_url = {catalogue_url!r}
        c.HubLauncher.user_prefix = {users!r}
        c.GitProvider.allow_local = True
        c.BuildManager.lease_poll_interval = 0.2
        """
    ) + textwrap.dedent(extra)


def shared_hub_config(hub_portal: Portal) -> str:
    """Settings of a portal that launches through ``hub_portal``'s Hub instead of its own; pass
    ``hub_port=hub_portal.hub_port`` to its ``Portal`` too."""
    key = (hub_portal.state / "secrets" / "launch-signing-key").read_text().strip()
    return textwrap.dedent(
        f"""
        c.ServeApp.start_hub = False
        c.HubLauncher.api_token = {hub_portal.service_token!r}
        c.HubLauncher.signing_key = {key!r}
        """
    )


def builds_of(states: list[Path], repo: str) -> int:
    """Builds of ``repo`` that ran, over the portals' kept build logs (one per image and portal; a
    portal that waited for another's build keeps only its waiting events)."""
    logs = [log for state in states for log in (state / "build-logs").glob(f"*{repo}*.log")]
    return sum("[building]" in log.read_text(errors="replace") for log in logs)
