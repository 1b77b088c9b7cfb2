"""The JupyterHub that ``panbinder serve`` runs: stock JupyterHub with a portal's stop order.

JupyterHub 6.1.1 stops on SIGTERM in this order (``JupyterHub.cleanup``): every managed service,
one after the other, each given SIGINT, ``interrupt_timeout`` (30 s), SIGTERM, ``term_timeout``
(30 s) and SIGKILL; only then the user servers (when ``cleanup_servers``) and, meanwhile, the
proxy. A culler that ignored SIGINT (inherited from a shell's background job) used up the
portal's whole stop budget, and the Hub was killed before it stopped servers or the proxy. Here
the servers are stopped first, within ``stop_servers_timeout``, then the services, each given 2
seconds per signal, then the proxy (JupyterHub's own code from there on).

A starting server is checked every ``server_poll_interval`` (``hub_wait.py``), not after
JupyterHub's doubling waits, which noticed a server a few hundred milliseconds after it answered.

The Hub also answers ``GET /hub/api/panbinder/identity`` (with the portal's service token) with
its pid and the nonce the portal gave it at start, so the portal's ``/health`` can tell its own
Hub from another process answering on the port.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import os

import jupyterhub.objects
from jupyterhub.app import JupyterHub
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Bool, Float

from . import hub_wait
from .hub_process import IDENTITY_PATH

SERVICE_SIGNAL_TIMEOUT = 2


class IdentityHandler(web.RequestHandler):
    """The Hub's pid and start nonce, for the portal's service token only."""

    def get(self) -> None:
        token = os.environ.get("PANBINDER_HUB_TOKEN", "")
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if not token or scheme.lower() != "token" or not hmac.compare_digest(given.strip(), token):
            raise web.HTTPError(403)
        self.finish({"pid": os.getpid(), "nonce": os.environ.get("PANBINDER_HUB_NONCE", "")})


class PanbinderHub(JupyterHub):
    stop_servers_timeout = Float(
        20.0, help="Seconds the Hub's shutdown waits for user servers to stop, before the rest."
    ).tag(config=True)

    server_poll_interval = Float(
        0.025,
        help="Seconds between the Hub's first checks of a starting server's address (each wait "
        "then grows by 5 %, up to server_poll_max). JupyterHub's own waits double from 0.2 s.",
    ).tag(config=True)
    server_poll_max = Float(0.5, help="The longest wait between two checks of a starting server.").tag(
        config=True
    )

    sqlite_wal = Bool(
        True,
        help="Write-ahead logging for the Hub's SQLite database: every spawn, token and activity "
        "report commits several times, and each commit waited for two disk syncs (about 10 ms "
        "each on the 2-core test machine). Off for a database on a network file system.",
    ).tag(config=True)

    def init_db(self) -> None:
        super().init_db()
        if not (self.sqlite_wal and self.db_url.startswith("sqlite") and ":memory:" not in self.db_url):
            return
        from sqlalchemy import event

        from panbinder.data_mounts.db import sqlite_write_ahead

        engine = self.db.get_bind()
        event.listen(engine, "connect", sqlite_write_ahead)
        self.db.close()
        engine.dispose()  # the connections made so far are closed; new ones write ahead
        self.db = self.session_factory()

    def init_server_poll(self) -> None:
        """Servers' ``wait_up`` (``jupyterhub.objects``) checks at this Hub's intervals."""
        from jupyterhub.httpclient import fetch

        jupyterhub.objects.wait_for_http_server = functools.partial(
            hub_wait.wait_for_http_server,
            fetch=fetch,
            interval=self.server_poll_interval,
            max_wait=self.server_poll_max,
            log=self.log,
        )

    async def initialize(self, *args, **kwargs) -> None:
        await super().initialize(*args, **kwargs)  # the configuration is read here
        self.init_server_poll()

    def init_handlers(self) -> None:
        super().init_handlers()
        self.handlers.insert(0, (url_path_join(self.hub_prefix, IDENTITY_PATH), IdentityHandler))

    async def _stop_servers(self) -> None:
        stops = [
            asyncio.ensure_future(user.stop(name))
            for user in self.users.values()
            for name, spawner in list(user.spawners.items())
            if spawner.active
        ]
        if not stops:
            return
        self.log.info("Stopping %i single-user servers first", len(stops))
        done, pending = await asyncio.wait(stops, timeout=self.stop_servers_timeout)
        for f in pending:
            f.cancel()
        for f in done:
            if f.exception() is not None:
                self.log.error("Failed to stop a server: %s", f.exception())
        if pending:
            self.log.error("%i servers did not stop in %.0f s", len(pending), self.stop_servers_timeout)

    async def cleanup(self) -> None:
        if self.cleanup_servers:
            await self._stop_servers()  # JupyterHub's own pass below finds them stopped
        for service in self._service_map.values():
            spawner = getattr(service, "spawner", None)
            if service.managed and spawner is not None:
                spawner.interrupt_timeout = SERVICE_SIGNAL_TIMEOUT
                spawner.term_timeout = SERVICE_SIGNAL_TIMEOUT
                spawner.kill_timeout = SERVICE_SIGNAL_TIMEOUT
        await super().cleanup()


main = PanbinderHub.launch_instance

if __name__ == "__main__":
    main()
