"""``panbinder``: one traitlets Application with a subcommand per job.

Every setting is a trait, loadable from ``panbinder_config.py``; ``panbinder --help-all`` lists
them and ``panbinder --generate-config`` writes a commented file. Subcommands are imported when
they run, so each command loads only what it uses (serve.py holds serve; service_cli.py build and launch).
"""

from __future__ import annotations

import sys

from traitlets.config import Application, Configurable
from traitlets.utils.importstring import import_item

from .command import PanbinderBase


class PanbinderApp(PanbinderBase):
    name = "panbinder"
    description = "Reproducible notebooks for photon and neutron research facilities."
    examples = (
        "panbinder serve\npanbinder build https://example.org/group/repo.git main\npanbinder --help-all"
    )
    subcommands = {
        "serve": ("panbinder.serve.ServeApp", "Run the portal and JupyterHub in the foreground."),
        "build": ("panbinder.service_cli.BuildApp", "Build and push the image for REPO_URL at REF."),
        "launch": ("panbinder.service_cli.LaunchApp", "Launch a registered publication: launch --doi DOI."),
        "datasets": ("panbinder.catalogue_cli.DatasetsApp", "Register datasets: import FILE, scan ROOT."),
        "publications": (
            "panbinder.catalogue_cli.PublicationsApp",
            "Register publications: add, import FILE; review links: share, shares, unshare.",
        ),
        "templates": (
            "panbinder.template_cli.TemplatesApp",
            "Analysis templates ('Analyse with'): add, list.",
        ),
        "catalogue": (
            "panbinder.catalogue_cli.CatalogueApp",
            "Catalogue imports: import-panosc FILE|DIR (PaNOSC search API, SciCat).",
        ),
        "rebuild": ("panbinder.rebuild.RebuildApp", "Rebuild an image from its lock (--frozen) or afresh."),
        "build-engine": (
            "panbinder.builder.build_engine.BuildEngineApp",
            "The docker engine that runs builds: build-engine start|stop|status.",
        ),
        "archive": ("panbinder.archive_cli.ArchiveApp", "Archive a publication or image: archive DOI|IMAGE."),
        "restore": ("panbinder.archive_cli.RestoreApp", "Restore an archive: restore ARCHIVE."),
        "registry": ("panbinder.archive_cli.RegistryApp", "Registry maintenance: registry gc [--apply]."),
        "check": ("panbinder.check_cli.CheckApp", "Reproducibility checks: check DOI | --all [--json]."),
        "workspaces": (
            "panbinder.workspace_cli.WorkspacesApp",
            "Persistent workspaces: list them; remove unused ones with --apply.",
        ),
    }

    def use_all_classes(self) -> None:
        """List every configurable class: those of every command (for help and generated
        configuration files). A class is listed by adding it to its command's ``classes``."""
        self.classes = command_classes(PanbinderApp)

    def initialize(self, argv: list[str] | None = None) -> None:
        args = sys.argv[1:] if argv is None else argv
        if not (args and args[0] in self.subcommands):  # help, --generate-config: every setting
            self.use_all_classes()
        super().initialize(argv)

    def generate_config_file(self, classes: list | None = None) -> str:
        if classes is None:
            self.use_all_classes()
        return super().generate_config_file(classes)

    def start(self) -> None:
        if self.subapp is not None:
            return self.subapp.start()
        self.print_help()
        self.exit(0)


def command_classes(app: type[Application]) -> list[type[Configurable]]:
    """``app``, its ``classes`` and those of its subcommands (recursively), once each, in order."""
    found: list[type[Configurable]] = [app]
    listed = app.classes if isinstance(app.classes, list) else []  # else the trait: none listed
    subcommands = app.subcommands if isinstance(app.subcommands, dict) else {}
    for cls in listed:
        if cls not in found:
            found.append(cls)
    for sub, _ in subcommands.values():
        sub = import_item(sub) if isinstance(sub, str) else sub
        for cls in command_classes(sub) if isinstance(sub, type) else []:
            if cls not in found:
                found.append(cls)
    return found


def main(argv: list[str] | None = None) -> None:
    PanbinderApp.launch_instance(argv)


__all__ = ["PanbinderApp", "command_classes", "main"]
