"""A tiny stand-in for JupyterHub's REST API on 127.0.0.1, for the launcher's unit tests.

It keeps the rules the launcher must follow: a server starts after ``spawn_delay`` (pending
'spawn' meanwhile), stops after ``stop_delay`` (pending 'stop'), and a user whose server is
pending cannot be deleted (400). It counts open progress streams and can break them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets


@dataclass
class HubState:
    spawn_delay: float = 0.2
    stop_delay: float = 0.1
    spawn_fails: bool = False
    reset_streams: int = 0  # progress streams to break after their first event
    users: dict[str, dict] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    streams_open: int = 0
    streams_max: int = 0
    streams_total: int = 0
    refused_deletes: int = 0
    failing_deletes: int = 0  # user deletions to answer with 500, as a Hub started again after a crash
    log: list[str] = field(default_factory=list)

    def add_user(self, name: str, *, age: float = 0.0, server: dict | None = None) -> None:
        created = datetime.now(UTC) - timedelta(seconds=age)
        self.users[name] = {
            "name": name,
            "created": created.isoformat().replace("+00:00", "Z"),
            "server": server,
        }

    def model(self, name: str) -> dict:
        u = self.users[name]
        return {"name": name, "created": u["created"], "servers": {"": u["server"]} if u["server"] else {}}


class Base(web.RequestHandler):
    def initialize(self, hub: HubState) -> None:
        self.hub = hub

    def prepare(self) -> None:
        self.hub.log.append(f"{self.request.method} {self.request.path}")

    def user(self, name: str) -> dict:
        if name not in self.hub.users:
            raise web.HTTPError(404)
        return self.hub.users[name]


class Root(Base):
    def get(self) -> None:
        self.write({"version": "fake"})


class Users(Base):
    def get(self) -> None:
        offset, limit = int(self.get_argument("offset", "0")), int(self.get_argument("limit", "2"))
        names = sorted(self.hub.users)
        items = [self.hub.model(n) for n in names[offset : offset + min(limit, 2)]]
        nxt = {"offset": offset + 2} if offset + 2 < len(names) else None
        self.write({"items": items, "_pagination": {"offset": offset, "total": len(names), "next": nxt}})


class User(Base):
    def get(self, name: str) -> None:
        self.user(name)
        self.write(self.hub.model(name))

    def post(self, name: str) -> None:
        self.hub.add_user(name)
        self.set_status(201)
        self.write(self.hub.model(name))

    def delete(self, name: str) -> None:
        server = self.user(name)["server"]
        if self.hub.failing_deletes > 0:
            self.hub.failing_deletes -= 1
            raise web.HTTPError(500)
        if server and server.get("pending"):
            self.hub.refused_deletes += 1
            raise web.HTTPError(400, "pending")
        del self.hub.users[name]
        self.set_status(204)


class Server(Base):
    def post(self, name: str) -> None:
        u = self.user(name)
        u["server"] = {"ready": False, "pending": "spawn", "started": None}
        self.hub.tasks[name] = asyncio.ensure_future(self._start(u))
        self.set_status(202)

    async def _start(self, u: dict) -> None:
        await asyncio.sleep(self.hub.spawn_delay)
        if self.hub.spawn_fails:
            u["server"] = None
        else:
            u["server"] = {"ready": True, "pending": None}

    async def delete(self, name: str) -> None:
        u = self.user(name)
        if not u["server"]:
            self.set_status(204)
            return
        task = self.hub.tasks.pop(name, None)
        if task:
            task.cancel()
        u["server"] = {"ready": False, "pending": "stop"}

        async def stop() -> None:
            await asyncio.sleep(self.hub.stop_delay)
            u["server"] = None

        self.hub.tasks[name] = asyncio.ensure_future(stop())
        self.set_status(202)


class Progress(Base):
    async def get(self, name: str) -> None:
        u = self.user(name)
        hub = self.hub
        hub.streams_open += 1
        hub.streams_total += 1
        hub.streams_max = max(hub.streams_max, hub.streams_open)
        self.set_header("Content-Type", "text/event-stream")
        try:
            await self.send({"progress": 10, "message": "Spawning server..."})
            if hub.reset_streams > 0:
                hub.reset_streams -= 1
                self.request.connection.stream.close()
                return
            task = self.hub.tasks.get(name)
            if task is not None:
                await asyncio.wait([task])
            if u["server"] and u["server"].get("ready"):
                await self.send({"progress": 100, "ready": True, "message": "ready", "url": f"/user/{name}/"})
            else:
                await self.send({"progress": 100, "failed": True, "message": "Spawn failed: no room"})
        finally:
            hub.streams_open -= 1

    async def send(self, event: dict) -> None:
        self.write(f"data: {json.dumps(event)}\n\n")
        await self.flush()


class Tokens(Base):
    def post(self, name: str) -> None:
        self.user(name)
        self.set_status(201)
        self.write({"token": secrets.token_hex(8)})


def make_app(hub: HubState) -> web.Application:
    kw = {"hub": hub}
    return web.Application(
        [
            (r"/hub/api/", Root, kw),
            (r"/hub/api/users", Users, kw),
            (r"/hub/api/users/([^/]+)", User, kw),
            (r"/hub/api/users/([^/]+)/server", Server, kw),
            (r"/hub/api/users/([^/]+)/server/progress", Progress, kw),
            (r"/hub/api/users/([^/]+)/tokens", Tokens, kw),
        ]
    )


async def start_fake_hub(hub: HubState) -> tuple[HTTPServer, str]:
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(make_app(hub))
    server.add_sockets(sockets)
    return server, f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
