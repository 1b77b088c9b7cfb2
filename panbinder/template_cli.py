"""``panbinder templates add|list``: analysis templates for "Analyse with" on dataset cards.

``add`` pins the ref once (``git ls-remote``, as a publication) and tags the template with PaNET
techniques and optional formats (NeXus application definitions, file suffixes); ``list`` prints
the registered templates. Errors print ``error: <message>`` and exit with status 2.
"""

from __future__ import annotations

import asyncio
import json

from traitlets import List, Unicode

from .catalogue_cli import CATALOGUE_ALIASES, CatalogueCommand, GroupCommand, git_resolver
from .command import PanbinderBase
from .data_mounts import analysis_templates
from .data_mounts.catalogue import Catalogue
from .providers.template import TemplateProvider


class TemplatesAddApp(CatalogueCommand):
    name = "panbinder-templates-add"
    description = "Register an analysis template: a notebook repository pinned now, tagged with techniques."
    usage = (
        "panbinder templates add --repo URL --ref REF --title TITLE --technique PaNET... "
        "[--technique ...] [--format NXmx|.nxs ...] [--notebook PATH] [--name NAME]"
    )
    repo = Unicode("", help="Git repository URL of the template's notebooks.").tag(config=True)
    ref = Unicode("HEAD", help="Branch, tag or commit; resolved once and pinned.").tag(config=True)
    title = Unicode("", help="Title shown as 'Analyse with <title>'.").tag(config=True)
    template_name = Unicode(
        "", help="Short name used in launch URLs and the search facet (default: from the title)."
    ).tag(config=True)
    techniques = List(
        Unicode(), help="PaNET technique the template analyses: id, purl or label (repeat the option)."
    ).tag(config=True, multiplicity="append")
    formats = List(
        Unicode(),
        help="A NeXus application definition (NXmx) or file suffix (.nxs) the template reads (repeat).",
    ).tag(config=True, multiplicity="append")
    notebook = Unicode("", help="Notebook JupyterLab opens at launch, relative to the repository.").tag(
        config=True
    )
    aliases = {
        **CATALOGUE_ALIASES,
        "repo": "TemplatesAddApp.repo",
        "ref": "TemplatesAddApp.ref",
        "title": "TemplatesAddApp.title",
        "name": "TemplatesAddApp.template_name",
        "technique": "TemplatesAddApp.techniques",
        "format": "TemplatesAddApp.formats",
        "notebook": "TemplatesAddApp.notebook",
    }

    def run(self) -> None:
        if self.extra_args:
            self.fail(f"usage: {self.usage}")
        record = analysis_templates.make_record(
            repo_url=self.repo,
            ref=self.ref,
            title=self.title,
            techniques=self.techniques,
            formats=self.formats,
            name=self.template_name,
            notebook=self.notebook,
        )
        sha = asyncio.run(
            analysis_templates.register(self.make_catalogue(), record, resolve=git_resolver(self))
        )
        print(f"{record.name} {sha}")


class TemplatesListApp(CatalogueCommand):
    name = "panbinder-templates-list"
    description = "List the registered analysis templates (one JSON object per line)."

    def run(self) -> None:
        catalogue = self.make_catalogue()
        with catalogue.session() as session:
            for t in analysis_templates.list_templates(session):
                row = {"name": t.name, "title": t.title, "repo_url": t.repo_url, "commit": t.resolved_sha}
                print(json.dumps(row | {"techniques": t.techniques, "formats": t.formats}))


class TemplatesApp(GroupCommand):
    name = "panbinder-templates"
    description = "Analysis templates ('Analyse with' on dataset cards)."
    subcommands = {
        "add": (TemplatesAddApp, TemplatesAddApp.description),
        "list": (TemplatesListApp, TemplatesListApp.description),
    }
    classes = [PanbinderBase, Catalogue, TemplatesAddApp, TemplatesListApp, TemplateProvider]
