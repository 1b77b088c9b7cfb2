"""Where the project's shared test data lives: ``shared/data`` beside the repository
(``PANBINDER_SHARED_DATA`` overrides it)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PANBINDER_SHARED_DATA", REPO.parent / "shared" / "data"))
CATALOGUE = SHARED_DATA / "catalogue"
NEXUS = SHARED_DATA / "nexus"
