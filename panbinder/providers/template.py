"""The ``template`` provider: an analysis template's pinned repository with chosen datasets.

``/v2/template/<name>/<pid>[/<pid>...]`` ("Analyse with") launches the commit pinned when the
template was registered, with each dataset mounted read-only at ``/data/<slug>/``; each PID is
one percent-encoded path segment. Access checks, the manifest and the signed launch options are
those of a launch by DOI (``mounts.plan_mounts``): a dataset under embargo that the user may not
open refuses the whole launch with a 403 that names it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from traitlets import Int

from panbinder.data_mounts.access import Identity
from panbinder.data_mounts.analysis_templates import NAME_RE, select_datasets
from panbinder.data_mounts.mounts import MountPlan, plan_mounts
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking
from panbinder.state import state_dir

from .base import RepoProvider

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TemplateProvider(RepoProvider):
    name = "template"
    image_provider = "git"  # the image a launch of the repository URL at that commit uses

    max_datasets = Int(
        20,
        help="Most datasets one 'Analyse with' launch (a basket) may mount; a larger basket is "
        "refused with a message to choose fewer.",
    ).tag(config=True)

    def parse(self, spec: str) -> tuple[str, str]:
        name, *pids = spec.split("/")
        self.template = unquote(name)
        self.pids = [unquote(p) for p in pids if p]
        self.resolved_sha = ""
        if not NAME_RE.match(self.template):
            raise PanbinderError(
                "The address names no analysis template; pick 'Analyse with' on a dataset card.",
                reason="malformed_spec",
            )
        if not self.pids or any(_CONTROL.search(p) or len(p) > 512 for p in self.pids):
            raise PanbinderError(
                "Choose at least one dataset to analyse (add datasets to the basket, or use a "
                "dataset card's 'Analyse with').",
                reason="malformed_spec",
            )
        if len(self.pids) > self.max_datasets:
            raise PanbinderError(
                f"{len(self.pids)} datasets were chosen; one launch mounts at most "
                f"{self.max_datasets}. Remove some from the basket.",
                reason="too_many_datasets",
            )
        return "", self.template

    def _plan(self, who: Identity) -> MountPlan:
        catalogue = self.catalogue
        if catalogue is None:
            raise PanbinderError(
                "This service has no dataset catalogue.", reason="no_catalogue", status_code=501
            )
        with catalogue.session() as session:
            chosen = select_datasets(session, self.template, self.pids)
            plan = plan_mounts(
                chosen, who, roots=list(catalogue.storage_roots), manifest_dir=state_dir(self) / "manifests"
            )
            tpl = chosen.template
            self.repo_url, self.resolved_sha = tpl.repo_url, tpl.resolved_sha
            self.unresolved_ref = tpl.ref or tpl.resolved_sha
            return plan

    async def prepare(self, who: Identity) -> MountPlan:
        return await run_blocking(self._plan, who)

    async def resolve(self) -> str:
        if not self.resolved_sha:
            await self.prepare(Identity())
        return self.resolved_sha
