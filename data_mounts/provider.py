"""The ``doi`` repository provider: a registered publication's pinned repository and datasets.

``/v2/doi/<doi>`` launches the commit that was pinned when the publication was registered
(never re-resolved), with each dataset mounted read-only under /data.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from panbinder.builder.providers import RepoProvider
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking

from .access import Identity
from .importers import normalise_doi
from .mounts import MountPlan, plan_mounts


class DoiProvider(RepoProvider):
    name = "doi"
    image_provider = "git"  # the very image a launch of the repository URL at that commit uses

    def parse(self, spec: str) -> tuple[str, str]:
        doi = normalise_doi(unquote(spec))
        self.doi = doi
        self.resolved_sha = ""
        self.title = ""
        return "", doi

    @property
    def catalogue(self):
        catalogue = getattr(self.parent, "catalogue", None)
        if catalogue is None:
            raise PanbinderError(
                "This service has no dataset catalogue.", reason="no_catalogue", status_code=501
            )
        return catalogue

    def _plan(self, who: Identity) -> MountPlan:
        catalogue = self.catalogue
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
                manifest_dir=Path(getattr(self.parent, "state_dir", ".state"), "manifests"),
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
