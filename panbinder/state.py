"""The state folder: one resolution for every command and component.

The folder is the ``state_dir`` setting of the running command (``--state-dir``, the config file,
else ``$PANBINDER_STATE``, else ``./.state``). Components read it from the command they belong to
(their ``parent`` chain) in their ``@default`` methods, so a path under the state folder follows
``--state-dir`` everywhere, and a value set in the config file wins over it.
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets.config import Application, Configurable

STATE_ENV = "PANBINDER_STATE"


def default_state_dir() -> str:
    """``$PANBINDER_STATE``, else ``./.state``, as an absolute path (the default of ``state_dir``)."""
    return os.path.abspath(os.environ.get(STATE_ENV, ".state"))


def command_state_dir(configurable: Configurable | None) -> Path | None:
    """The ``state_dir`` of the nearest application among ``configurable``'s parents (None when
    it belongs to no command, e.g. a component a test made on its own)."""
    node = configurable
    while node is not None:
        if isinstance(node, Application) and node.has_trait("state_dir"):
            return Path(os.path.abspath(node.state_dir))
        node = node.parent
    return None


def state_dir(configurable: Configurable | None) -> Path:
    """The state folder of the command ``configurable`` belongs to, else the default."""
    return command_state_dir(configurable) or Path(default_state_dir())


__all__ = ["STATE_ENV", "command_state_dir", "default_state_dir", "state_dir"]
