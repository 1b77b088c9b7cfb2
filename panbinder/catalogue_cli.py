"""``panbinder datasets import|scan``, ``panbinder publications add|import`` (``share|shares|unshare``
in ``review_cli.py``) and
``panbinder catalogue import-panosc``.

Each command is a traitlets Application built on ``PanbinderBase`` (same config file and
state directory as the other subcommands). Errors print ``error: <message>`` to stderr and
exit with status 2, without a traceback; the operator running the command also sees the
error's log detail (absolute paths), which users of the portal never see. A scan that skipped
entries lists each one and exits with status 1.
"""

from __future__ import annotations

import asyncio
import sys
from typing import NoReturn

from sqlalchemy.exc import SQLAlchemyError
from traitlets import Bool, Int, List, Unicode

from .command import PanbinderBase
from .data_mounts.catalogue import Catalogue, Resolver
from .data_mounts.importers import load_json
from .data_mounts.panosc.importer import import_panosc
from .errors import PanbinderError
from .progress import terminal_progress

CATALOGUE_ALIASES = {
    **PanbinderBase.aliases,
    "db-url": "Catalogue.db_url",
    "storage-root": "Catalogue.storage_roots",
}


def git_resolver(parent: PanbinderBase) -> Resolver:
    """Resolve a ref as a build would: ``git ls-remote``, or an archive record's version."""
    return canonical_refs().resolver(parent)


def canonical_refs():
    """``repo_refs``, imported when a command names a repository: it loads the builder's archive
    sources, which the other catalogue and maintenance commands never need."""
    from . import repo_refs

    return repo_refs


class CatalogueCommand(PanbinderBase):
    """Base of the catalogue commands: a Catalogue from config, errors without tracebacks."""

    classes = [PanbinderBase, Catalogue]
    aliases = CATALOGUE_ALIASES
    usage = ""

    def make_catalogue(self) -> Catalogue:
        return Catalogue(parent=self, log=self.log)

    def fail(self, message: str, *, detail: str = "") -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        if detail:
            print(f"detail: {detail}", file=sys.stderr)
        self.exit(2)
        raise SystemExit(2)  # for type checkers: exit() does not return

    def one_file(self) -> str:
        if len(self.extra_args) != 1:
            self.fail(f"usage: {self.usage}")
        return self.extra_args[0]

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        try:
            self.run()
        except PanbinderError as e:
            self.log.debug("details", exc_info=True)
            self.fail(e.message, detail=e.log_message if e.log_message != e.message else "")
        except SQLAlchemyError as e:
            self.log.debug("details", exc_info=True)
            cause = getattr(e, "orig", None) or e
            self.fail(f"the catalogue database failed ({cause}); check Catalogue.db_url and the database.")


class GroupCommand(PanbinderBase):
    """A command that only dispatches to its subcommands."""

    def start(self) -> None:
        if self.subapp is not None:
            return self.subapp.start()
        self.print_subcommands()
        print(f"error: give one of: {', '.join(self.subcommands)}", file=sys.stderr)
        self.exit(2)


class DatasetsImportApp(CatalogueCommand):
    name = "panbinder-datasets-import"
    description = "Import dataset records (PaNOSC search API, its LoopBack store, SciCat v3/v4) from FILE."
    usage = "panbinder datasets import FILE [--root DIR]"
    root = Unicode(
        "",
        help="Folder under a storage root; each imported dataset is located at DIR/<slug>. "
        "Without it, new datasets have no location and cannot be mounted.",
    ).tag(config=True)
    aliases = {**CATALOGUE_ALIASES, "root": "DatasetsImportApp.root"}

    def run(self) -> None:
        data = load_json(self.one_file())
        pids = self.make_catalogue().import_datasets(data, root=self.root or None, progress=terminal_progress)
        for pid in pids:
            print(pid)
        print(f"imported {len(pids)} datasets", file=sys.stderr)


class DatasetsScanApp(CatalogueCommand):
    name = "panbinder-datasets-scan"
    description = "Register the HDF5/NeXus files under ROOT: one dataset per top-level folder or file."
    usage = "panbinder datasets scan ROOT"
    public = Bool(
        False,
        help="Register the scanned datasets as public (open data for everyone); without it "
        "new datasets are embargoed until a release date is set, and existing ones keep theirs.",
    ).tag(config=True)
    flags = {
        **PanbinderBase.flags,
        "public": ({"DatasetsScanApp": {"public": True}}, "Register the scanned datasets as public."),
    }

    def run(self) -> None:
        catalogue = self.make_catalogue()
        report = catalogue.scan(self.one_file(), progress=terminal_progress, public=self.public)
        for pid in report.pids:
            print(pid)
        print(
            f"{report.datasets} datasets, {report.files} files: {report.hashed} hashed, "
            f"{report.skipped_unchanged} unchanged",
            file=sys.stderr,
        )
        for path in report.unreadable:
            print(
                f"warning: {path} is not a readable HDF5 file; registered without metadata", file=sys.stderr
            )
        for what in report.refused:
            print(f"warning: {what} keeps its values in another file; not read", file=sys.stderr)
        for entry in report.skipped:
            print(f"skipped: {entry.name}: {entry.why}", file=sys.stderr)
        if report.skipped:
            print(f"{len(report.skipped)} entries skipped; the rest was registered", file=sys.stderr)
            self.exit(1)


class DatasetsApp(GroupCommand):
    name = "panbinder-datasets"
    description = "Manage the dataset catalogue."
    subcommands = {
        "import": (DatasetsImportApp, DatasetsImportApp.description),
        "scan": (DatasetsScanApp, DatasetsScanApp.description),
    }
    classes = [PanbinderBase, Catalogue, DatasetsImportApp, DatasetsScanApp]


class PublicationsAddApp(CatalogueCommand):
    name = "panbinder-publications-add"
    description = "Register a publication: DOI, repository, ref (pinned to its commit now) and datasets."
    usage = "panbinder publications add --doi DOI --repo URL --ref REF --dataset PID [--dataset PID ...]"
    doi = Unicode("", help="DOI of the publication.").tag(config=True)
    repo = Unicode(
        "",
        help="Where the publication's code lives: a git repository URL, or an archive record "
        "(zenodo:<DOI or record id>, figshare:<DOI>, dataverse:<DOI>, or a SWHID swh:1:dir:/rev:...).",
    ).tag(config=True)
    ref = Unicode(
        "HEAD", help="Branch, tag or commit (an archive record: its version); resolved once and pinned."
    ).tag(config=True)
    datasets = List(Unicode(), help="PID of a dataset the publication uses (repeat the option).").tag(
        config=True, multiplicity="append"
    )
    title = Unicode("", help="Title of the publication.").tag(config=True)
    authors = List(Unicode(), help="An author (repeat the option).").tag(config=True, multiplicity="append")
    year = Int(0, help="Publication year (0: unknown).").tag(config=True)
    aliases = {
        **CATALOGUE_ALIASES,
        "doi": "PublicationsAddApp.doi",
        "repo": "PublicationsAddApp.repo",
        "ref": "PublicationsAddApp.ref",
        "dataset": "PublicationsAddApp.datasets",
        "title": "PublicationsAddApp.title",
        "author": "PublicationsAddApp.authors",
        "year": "PublicationsAddApp.year",
    }

    def run(self) -> None:
        if self.extra_args or not self.doi or not self.repo:
            self.fail(f"usage: {self.usage}")
        repo, ref = canonical_refs().canonical(self.repo, self.ref, self)
        doi = asyncio.run(
            self.make_catalogue().add_publication(
                doi=self.doi,
                repo_url=repo,
                ref=ref,
                dataset_pids=self.datasets,
                title=self.title,
                authors=self.authors,
                year=self.year or None,
                resolve=git_resolver(self),
            )
        )
        print(doi)


class PublicationsImportApp(CatalogueCommand):
    name = "panbinder-publications-import"
    description = "Register publications from a DataCite JSON or SciCat PublishedData FILE."
    usage = "panbinder publications import FILE [--doi DOI] [--repo URL] [--ref REF]"
    doi = Unicode("", help="Only the record with this DOI.").tag(config=True)
    repo = Unicode("", help="Repository URL, when the record names none.").tag(config=True)
    ref = Unicode("", help="Ref to pin (default: the record's, else HEAD).").tag(config=True)
    aliases = {
        **CATALOGUE_ALIASES,
        "doi": "PublicationsImportApp.doi",
        "repo": "PublicationsImportApp.repo",
        "ref": "PublicationsImportApp.ref",
    }

    def run(self) -> None:
        data = load_json(self.one_file())
        repo, ref = canonical_refs().canonical(self.repo, self.ref, self) if self.repo else ("", self.ref)
        dois = asyncio.run(
            self.make_catalogue().import_publications(
                data, resolve=git_resolver(self), repo_url=repo, ref=ref, doi=self.doi
            )
        )
        for doi in dois:
            print(doi)


class PublicationsApp(GroupCommand):
    name = "panbinder-publications"
    description = "Register publications (DOI -> pinned repository commit + datasets)."
    subcommands = {
        "add": (PublicationsAddApp, PublicationsAddApp.description),
        "import": (PublicationsImportApp, PublicationsImportApp.description),
        "share": ("panbinder.review_cli.ShareApp", "Make a review link: share DOI --expires 30d [--note N]."),
        "shares": ("panbinder.review_cli.SharesApp", "List the review links of DOI."),
        "unshare": ("panbinder.review_cli.UnshareApp", "Revoke review link ID."),
    }
    classes = [PanbinderBase, Catalogue, PublicationsAddApp, PublicationsImportApp]


class CatalogueImportPanoscApp(CatalogueCommand):
    name = "panbinder-catalogue-import-panosc"
    description = (
        "Import the datasets of PaNOSC search API responses, its LoopBack store or SciCat dataset "
        "files (FILE, or every .json file under DIR), record by record."
    )
    usage = "panbinder catalogue import-panosc FILE|DIR"

    def run(self) -> None:
        report = import_panosc(self.make_catalogue(), self.one_file(), progress=terminal_progress)
        for pid in report.imported:
            print(pid)
        for where, why in report.skipped:
            print(f"skipped: {where}: {why}", file=sys.stderr)
        for where, why in report.failed:
            print(f"failed: {where}: {why}", file=sys.stderr)
        files = f" and {report.files} files" if report.files else ""
        print(
            f"imported {len(report.imported)} datasets{files}, {len(report.failed)} failed", file=sys.stderr
        )
        if report.failed:
            self.exit(1)


class CatalogueApp(GroupCommand):
    name = "panbinder-catalogue"
    description = "Catalogue imports from other catalogues (PaNOSC search API, SciCat)."
    subcommands = {
        "import-panosc": (CatalogueImportPanoscApp, CatalogueImportPanoscApp.description),
    }
    classes = [PanbinderBase, Catalogue, CatalogueImportPanoscApp]
