"""The Hub side's check of a launch's options, shared by every spawner (docker, Kubernetes).

The portal signs the options (``signing.py``); each spawner checks them here, once, in the same
way: the signature (made for this Hub user, not expired), then every dataset mount again with
the same confinement as the portal (``panbinder.paths.confine``). A spawner then turns the
checked mounts into its own volumes (bind mounts, or pod volumes with a subPath each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import List, Unicode
from traitlets.config import LoggingConfigurable

from panbinder.data_mounts import MountSpec
from panbinder.errors import PanbinderError
from panbinder.launcher.profiles import Profile


@dataclass(frozen=True)
class CheckedMount:
    """A signed mount whose host path was confined (symlinks followed) to its roots."""

    path: Path
    spec: MountSpec


@dataclass(frozen=True)
class CheckedLaunch:
    mounts: tuple[CheckedMount, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    profile: Profile | None = None  # the signed resource profile (None: the spawner's limits)
    workspace: str = ""  # the signed owner of the persistent workspace to mount ("": none)

    @property
    def empty(self) -> bool:
        return not self.mounts and not self.environment and self.profile is None and not self.workspace


def check_launch_options(
    options: dict,
    *,
    signing_key: str,
    user: str,
    storage_roots: Sequence[str],
    manifest_dir: str,
) -> CheckedLaunch:
    """The mounts, environment, profile and workspace owner of ``options`` once signature and
    confinement pass; options with none of them (an image alone) need no signature. Else
    PanbinderError."""
    from panbinder.data_mounts.mounts import MANIFEST_PATH
    from panbinder.launcher import signing
    from panbinder.paths import confine

    fields = signing.fields_from_options(options or {})
    if not fields.mounts and not fields.environment and fields.profile is None and not fields.workspace:
        return CheckedLaunch()
    signing.verify(signing_key, options.get("signature", ""), fields, user=user)
    mounts = []
    for m in fields.mounts:
        if not m.read_only or not m.container_path.startswith("/data/"):
            raise PanbinderError(
                "Datasets are mounted read-only under /data/; launch again from the portal.",
                reason="bad_mounts",
                status_code=400,
                log_message=f"mount {m.container_path!r} (read_only={m.read_only}) refused",
            )
        roots = [manifest_dir] if m.container_path == MANIFEST_PATH else list(storage_roots)
        mounts.append(CheckedMount(confine(m.host_path, roots), m))
    return CheckedLaunch(tuple(mounts), dict(fields.environment), fields.profile, fields.workspace)


class SignedLaunch(LoggingConfigurable):
    """The settings of the launch check, for every panbinder spawner (a mixin)."""

    signing_key = Unicode(help="Key that launch options must be signed with (shared with the portal).").tag(
        config=True
    )
    storage_roots = List(Unicode(), help="Only paths under these roots may be mounted.").tag(config=True)
    manifest_dir = Unicode("", help="Folder of the portal's MANIFEST.json files (mountable too).").tag(
        config=True
    )
    allowed_image_prefixes = List(
        Unicode(),
        help="Only images whose full name starts with one of these may be launched.",
    ).tag(config=True)

    def image_allowed(self, image: str) -> bool:
        return any(image.startswith(p) for p in self.allowed_image_prefixes)

    def checked_launch(self, options: dict | None, user: str) -> CheckedLaunch:
        return check_launch_options(
            options or {},
            signing_key=self.signing_key,
            user=user,
            storage_roots=self.storage_roots,
            manifest_dir=self.manifest_dir,
        )


def refusal(log: object, user: str, error: Exception) -> Exception:
    """The tornado HTTPError a spawner raises for refused options: the user's message only,
    the operator's detail to the log."""
    from tornado import web

    if isinstance(error, PanbinderError):
        log.warning("launch options refused for %s: %s", user, error.log_message)
        return web.HTTPError(error.status_code, f"launch options refused: {error.message}")
    log.warning("launch options refused for %s: %s", user, error)
    return web.HTTPError(403, "launch options refused: they are malformed")
