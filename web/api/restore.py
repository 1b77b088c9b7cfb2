"""``POST /api/archives/restore``: restore an archive under ``Archive.root`` inside the portal
(operators only: the portal's Hub service token or a Hub admin).

Body ``{"archive": "<name>"}``, the folder or tarball name ``panbinder archive`` printed. The
answer (200) comes once the image is launchable: ``images``, ``digest``, ``blobs``,
``repository``, ``publication``, ``upload`` ("in progress" while the registry still receives it,
see ``panbinder/restores.py``). A damaged archive is a 400 naming the file; nothing is restored.
"""

from __future__ import annotations

import json

from tornado import web

from panbinder.errors import PanbinderError
from panbinder.registry_cache.archive import Archive
from panbinder.restores import Restorer

from ..handlers.base import BaseHandler
from ..handlers.health import is_operator


def restorer(handler: BaseHandler) -> Restorer:
    """The portal's one Restorer, made on first use from its settings (like ``desktop_buttons``)."""
    made = handler.settings.get("restorer")
    if made is None:
        pipeline, app = handler.settings["pipeline"], handler.settings["app"]
        archive = Archive(parent=app, log=handler.log, docker=handler.settings["docker"])
        made = Restorer(
            parent=app,
            log=handler.log,
            archive=archive,
            registry=pipeline.registry,
            image_prefix=pipeline.image_prefix,
            catalogue=pipeline.catalogue,
        )
        handler.settings["restorer"] = made
    return made


class RestoreAPI(BaseHandler):
    def wants_json(self) -> bool:
        return True

    async def post(self) -> None:
        if not await is_operator(self):
            raise web.HTTPError(403, reason="Only operators may restore archives.")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            body = None
        name = body.get("archive") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise PanbinderError(
                'Send {"archive": "<name>"}: the archive folder or tarball name under the archive folder.',
                reason="bad_request",
            )
        result = await restorer(self).restore(name.strip())
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result.to_dict()))


routes = [(r"/api/archives/restore", RestoreAPI)]
