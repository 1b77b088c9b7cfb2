"""What every ``panbinder`` command shares: configuration file, state folder, logs and secrets.

It imports only what every command needs (no other part of panbinder than the shared helpers),
so that ``panbinder restore``, ``panbinder datasets`` and the other maintenance commands start
without loading the builder, the Hub launcher or the portal. The components of the commands that
build and launch are made in components.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import tempfile
import traceback
from pathlib import Path

from traitlets import Bool, Int, Unicode, default
from traitlets.config import Application

from . import __version__, executor, logs
from .state import default_state_dir


class PanbinderBase(Application):
    version = __version__
    config_file = Unicode("panbinder_config.py", help="Configuration file to load.").tag(config=True)
    generate_config = Bool(
        False, help="Write the configuration file with every setting and its default, then exit."
    ).tag(config=True)
    raise_config_file_errors = True  # a broken config file stops the command (see load_config)
    state_dir = Unicode(help="Directory for state: hub database, logs, pid files, secrets.").tag(config=True)
    log_json = Bool(False, help="Write logs as JSON lines.").tag(config=True)
    executor_threads = Int(
        16,
        help="Threads for blocking calls (docker, git, the catalogue, repo2docker builds) that leave "
        "the event loop, shared by the whole command.",
    ).tag(config=True)
    image_prefix = Unicode(
        "panbinder/v1-",
        help="Prefix of image names in the registry (see registry_cache/naming.py).",
    ).tag(config=True)
    aliases = {
        "config": "PanbinderBase.config_file",
        "log-level": "Application.log_level",
        "state-dir": "PanbinderBase.state_dir",
    }
    flags = {
        "json-logs": ({"PanbinderBase": {"log_json": True}}, "Write logs as JSON lines."),
        "generate-config": (
            {"PanbinderBase": {"generate_config": True}},
            "Write a commented panbinder_config.py with every setting and its default, then exit.",
        ),
    }

    usage = ""  # the command line with its positional arguments, shown first by -h

    def emit_description(self):
        if self.usage:
            yield f"Usage: {self.usage}\n"
        yield from super().emit_description()

    @default("state_dir")
    def _state_default(self) -> str:
        return default_state_dir()

    def initialize(self, argv=None) -> None:
        super().initialize(argv)
        if self.subapp is not None:
            return
        if self.generate_config:
            self.write_config_file()
            self.exit(0)
        if self.config_file and os.path.exists(self.config_file):
            self.load_config()
        elif self.config_file != "panbinder_config.py":
            self.log.error("configuration file %s not found", self.config_file)
            self.exit(1)
        self.update_config(self.cli_config)
        executor.configure(self.executor_threads)
        self.log = logging.getLogger("panbinder")
        self.log.setLevel(self.log_level)
        logs.configure(self.log, json_format=self.log_json)

    def load_config(self) -> None:
        """Load ``config_file``; one that fails (syntax, a bad value) stops the command, naming the
        file and line, rather than starting on defaults."""
        try:
            self.load_config_file(self.config_file)
        except Exception as e:
            self.log.error(
                "configuration file %s: %s; fix it and start again",
                config_error_place(self.config_file, e),
                e,
            )
            self.exit(1)

    def write_config_file(self) -> None:
        """Write ``config_file`` with every setting of every command (the root command lists them)."""
        path = Path(self.config_file)
        if path.exists():
            print(f"{path} exists; move it away first", file=sys.stderr)
            self.exit(1)
        root = self
        while isinstance(root.parent, Application):
            root = root.parent
        path.write_text(root.generate_config_file())
        print(f"wrote {path}")

    @property
    def state(self) -> Path:
        path = Path(self.state_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def secret(self, name: str) -> str:
        """The secret `name` from the state folder, made on first use.

        The folder is 0700 and each file 0600 from the moment it exists (and tightened if an
        older version left them looser), so no other user (the preview sandbox's, a
        container's) can read the Hub token or the launch signing key.
        """
        folder = self.state / "secrets"
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
        path = folder / name
        if path.exists():
            path.chmod(0o600)
        else:  # written in full under a temporary name (mkstemp: 0600), then linked in place
            fd, temporary = tempfile.mkstemp(dir=folder, prefix=".new-")
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):  # another command made it first
                os.link(temporary, path)
            os.unlink(temporary)
        return path.read_text().strip()


def config_error_place(path: str, error: BaseException) -> str:
    """``path, line N`` where ``error`` arose in the config file ``path`` (``path`` if unknown)."""
    line = error.lineno if isinstance(error, SyntaxError) else None
    target = os.path.abspath(path)
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename and os.path.abspath(frame.filename) == target:
            line = frame.lineno
    return f"{target}, line {line}" if line else target
