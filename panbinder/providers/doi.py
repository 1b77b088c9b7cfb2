"""The ``doi`` repository provider: a registered publication's pinned repository and datasets.

``/v2/doi/<doi>`` launches the commit that was pinned when the publication was registered
(never re-resolved), with each dataset mounted read-only under /data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from panbinder.builder.archives import archive_kind
from panbinder.data_mounts.access import Identity
from panbinder.data_mounts.importers import normalise_doi
from panbinder.data_mounts.mounts import MountPlan, plan_mounts
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking
from panbinder.state import state_dir

from .base import RepoProvider

if TYPE_CHECKING:
    from panbinder.data_mounts.catalogue import Catalogue


class DoiProvider(RepoProvider):
    name = "doi"

    @property
    def image_provider(self) -> str:
        """The very image a launch of the repository at that commit (or archive version) uses."""
        return archive_kind(self.repo_url) or "git"

    def parse(self, spec: str) -> tuple[str, str]:
        doi = normalise_doi(unquote(spec))
        self.doi = doi
        self.resolved_sha = ""
        self.title = ""
        return "", doi

    def _registered(self) -> Catalogue:
        if self.catalogue is None:
            raise PanbinderError(
                "This service has no dataset catalogue.", reason="no_catalogue", status_code=501
            )
        return self.catalogue

    def _plan(self, who: Identity) -> MountPlan:
        catalogue = self._registered()
        with catalogue.session() as session:
            pub = catalogue.get_publication(session, self.doi)
            if pub is None:
                raise PanbinderError(
                    f"No publication with DOI {self.doi} is registered here; check the DOI, "
                    "or ask its authors or the facility to register it.",
                    reason="unknown_doi",
                    status_code=404,
                )
            plan = plan_mounts(
                pub,
                who,
                roots=list(catalogue.storage_roots),
                manifest_dir=state_dir(self) / "manifests",
            )
            self.repo_url, self.resolved_sha, self.title = pub.repo_url, pub.resolved_sha, pub.title
            self.unresolved_ref = pub.ref or pub.resolved_sha
            return plan

    async def prepare(self, who: Identity) -> MountPlan:
        return await run_blocking(self._plan, who)

    async def resolve(self) -> str:
        if not self.resolved_sha:
            await self.prepare(Identity())
        return self.resolved_sha
