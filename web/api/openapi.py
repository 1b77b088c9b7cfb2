"""GET /api/openapi.json: the OpenAPI description of the portal's API, event stream and health.

The description is a file (``openapi.yaml`` next to this module) so that it reads as a document
and can be checked by a validator and driven by a fuzzer; only ``servers`` is filled in per
portal, from the configured public URL (never from the request's Host header).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from ..handlers.base import BaseHandler

DESCRIPTION_FILE = Path(__file__).with_name("openapi.yaml")


@functools.cache
def _loaded() -> dict[str, Any]:
    with DESCRIPTION_FILE.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def description(public_base: str = "/") -> dict[str, Any]:
    """The OpenAPI description with ``public_base`` (the portal's URL and base path) as its server."""
    doc = copy.deepcopy(_loaded())
    doc["servers"] = [{"url": public_base.rstrip("/") or "/"}]
    return doc


class OpenAPIHandler(BaseHandler):
    def get(self) -> None:
        self.set_cors()
        self.set_header("Content-Type", "application/json")
        self.finish(description(self.public_base))


routes = [(r"/api/openapi\.json", OpenAPIHandler)]
