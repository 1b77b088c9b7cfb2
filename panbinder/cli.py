"""``panbinder``: one traitlets Application with a subcommand per job.

Every setting is a trait, loadable from ``panbinder_config.py``; ``panbinder --help-all`` lists
them and ``panbinder --generate-config`` writes a commented file. Subcommands are imported when
they run, so each command loads only what it uses (app.py holds serve, build and launch).
"""

from __future__ import annotations

import sys
from pathlib import Path

from traitlets import Bool

from .base import PanbinderBase


class PanbinderApp(PanbinderBase):
    name = "panbinder"
    description = "Reproducible notebooks for photon and neutron research facilities."
    examples = (
        "panbinder serve\npanbinder build https://example.org/group/repo.git main\npanbinder --help-all"
    )
    subcommands = {
        "serve": ("panbinder.app.ServeApp", "Run the portal and JupyterHub in the foreground."),
        "build": ("panbinder.app.BuildApp", "Build and push the image for REPO_URL at REF."),
        "launch": ("panbinder.app.LaunchApp", "Launch a registered publication: launch --doi DOI."),
        "datasets": ("panbinder.data_mounts.cli.DatasetsApp", "Register datasets: import FILE, scan ROOT."),
        "publications": (
            "panbinder.data_mounts.cli.PublicationsApp",
            "Register publications: add, import FILE.",
        ),
        "rebuild": ("panbinder.rebuild.RebuildApp", "Rebuild an image from its lock (--frozen) or afresh."),
        "build-engine": (
            "panbinder.builder.build_engine.BuildEngineApp",
            "The docker engine that runs builds: build-engine start|stop|status.",
        ),
        "archive": ("panbinder.archive_cli.ArchiveApp", "Archive a publication or image: archive DOI|IMAGE."),
        "restore": ("panbinder.archive_cli.RestoreApp", "Restore an archive: restore ARCHIVE."),
        "registry": ("panbinder.archive_cli.RegistryApp", "Registry maintenance: registry gc [--apply]."),
    }
    generate_config = Bool(False, help="Write panbinder_config.py and exit.").tag(config=True)

    def use_all_classes(self) -> None:
        """List every configurable class (for help and generated configuration files)."""
        from .app import ALL_CLASSES

        self.classes = [PanbinderApp, *ALL_CLASSES]

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
        if self.generate_config:
            path = Path(self.config_file)
            if path.exists():
                print(f"{path} exists; move it away first", file=sys.stderr)
                self.exit(1)
            path.write_text(self.generate_config_file())
            print(f"wrote {path}")
            return
        self.print_help()
        self.exit(0)


def main(argv: list[str] | None = None) -> None:
    PanbinderApp.launch_instance(argv)


__all__ = ["PanbinderApp", "main"]
