"""Dataset and publication cards, the DOI badge, and the HDF5 preview of a dataset's files."""

from __future__ import annotations

from pathlib import Path

from panbinder.checks.kept import KeptNotebooks
from panbinder.checks.records import CheckRecords
from panbinder.data_mounts import analysis_templates
from panbinder.data_mounts.access import may_access
from panbinder.data_mounts.preview import ThumbnailCache
from panbinder.data_mounts.review_links import may_share
from panbinder.data_mounts.sandbox import PreviewSandbox
from panbinder.data_mounts.scan import SUFFIXES as HDF5_SUFFIXES
from panbinder.data_mounts.search import count_dataset_view, count_publication_view
from panbinder.errors import PanbinderError
from panbinder.executor import run_blocking
from panbinder.paths import confine, safe_join

from ..api.catalogue import CatalogueHandler, _not_found
from ..api.search import template_link
from .badge import badge_svg
from .reproducible import page_checks


class DatasetPage(CatalogueHandler):
    async def get(self, pid: str) -> None:
        data = await self.dataset_card(pid)
        await self.query(lambda _cat, session: count_dataset_view(session, data["pid"]))
        data["views"] += 1
        previewable = [f["path"] for f in data["files"] or () if f["path"].lower().endswith(HDF5_SUFFIXES)]
        templates = await self.fitting_templates(data) if data["accessible"] else []
        self.render("dataset.html", ds=data, previewable=previewable[:50], templates=templates)

    async def fitting_templates(self, data: dict) -> list[dict]:
        """The analysis templates that fit the dataset, as its card lists them (the caller asks
        only when the files are accessible: a fit may rest on their suffixes, which an embargo hides)."""
        public = self.public_base

        def fn(cat, session):
            ds = cat.get_dataset(session, data["pid"])
            fits = analysis_templates.fitting(session, [ds.id]).get(ds.id, ()) if ds is not None else ()
            return [template_link(t, [ds.pid], public) for t in fits]

        return await self.query(fn)


class PublicationPage(CatalogueHandler):
    async def get(self, doi: str) -> None:
        card = await self.publication_card(doi)
        who = await self.who()
        can_share = await self.query(
            lambda cat, session: may_share(cat.get_publication(session, card["doi"]), who)
        )
        await self.query(lambda _cat, session: count_publication_view(session, card["doi"]))
        records = CheckRecords(catalogue=self.catalogue, log=self.log)
        checks = await run_blocking(page_checks, records, card["doi"])
        kept: KeptNotebooks | None = self.settings.get("kept_notebooks")
        checks["notebooks"] = await run_blocking(kept.last, card["doi"]) if kept is not None else None
        self.render("publication.html", pub=card, checks=checks, can_share=can_share)


class DoiBadge(CatalogueHandler):
    def get(self, doi: str) -> None:
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "max-age=3600")
        self.set_cors()
        self.finish(badge_svg("launch", "data + notebook"))


class PreviewHandler(CatalogueHandler):
    """?file=<relative path in the dataset>[&path=<HDF5 dataset path>&size=N]"""

    async def located_file(self, pid: str) -> tuple[Path, str | None]:
        """The dataset's location and the file's path in it (None: the location is the file)."""
        who = await self.who()
        rel = self.get_argument("file", "")
        if not rel:
            raise PanbinderError(
                "Say which file to preview: ?file=<path inside the dataset>.", reason="no_file"
            )

        def fn(cat, session):
            ds = cat.get_dataset(session, pid)
            if ds is None:
                raise _not_found("dataset", pid)
            if not may_access(ds, who):
                raise PanbinderError(
                    "The files of this dataset are under embargo.", reason="embargo", status_code=403
                )
            if not ds.location:
                raise PanbinderError(
                    "This dataset has no storage location here.", reason="no_location", status_code=409
                )
            if rel not in {f.path for f in ds.files}:
                raise PanbinderError(
                    f"'{rel}' is not a file of this dataset.", reason="not_found", status_code=404
                )
            roots = list(cat.storage_roots)
            location = confine(ds.location, roots)
            if location.is_file():
                return location, None
            return location, confine(safe_join(location, rel), roots).relative_to(location).as_posix()

        return await self.query(fn)


class TreeAPI(PreviewHandler):
    async def get(self, pid: str) -> None:
        location, relative = await self.located_file(pid)
        self.set_cors()
        sandbox: PreviewSandbox = self.settings["preview_sandbox"]
        self.finish(await sandbox.tree(location, relative))


class ThumbnailAPI(PreviewHandler):
    async def get(self, pid: str) -> None:
        location, relative = await self.located_file(pid)
        dataset_path = self.get_argument("path", "")
        if not dataset_path:
            raise PanbinderError("Say which HDF5 dataset to draw: &path=/entry/data/data.", reason="no_path")
        size = max(self.int_arg("size", 256, 1024), 16)
        sandbox: PreviewSandbox = self.settings["preview_sandbox"]
        cache: ThumbnailCache | None = self.settings.get("thumbnail_cache")
        if cache is not None:
            png = await sandbox.cached_thumbnail(cache, location, relative, dataset_path, size)
        else:
            png = await sandbox.thumbnail(location, relative, dataset_path, size=size)
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "max-age=600")
        self.finish(png)


routes = [
    (r"/datasets/(.+)", DatasetPage),
    (r"/publications/(.+)", PublicationPage),
    (r"/badge/doi/(.+)\.svg", DoiBadge),
    (r"/api/preview/tree/(.+)", TreeAPI),
    (r"/api/preview/thumbnail/(.+)", ThumbnailAPI),
]
