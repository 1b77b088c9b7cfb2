"""Servers on 127.0.0.1 that play the facility's internal network in the SSRF tests.

``LoopbackHTTP`` serves a bare repository over git's dumb HTTP protocol, or redirects every
request elsewhere, or answers every request with one status; each counts what it received, so a
test can show that git never reached it. ``SilentPort`` accepts connections and never answers.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.server.redirect:
            self.send_response(302)
            self.send_header("Location", self.server.redirect + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.server.status:
            body = b"remote: internal secret page\n"
            self.send_response(self.server.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            super().do_GET()

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]
    redirect: str = ""
    status: int = 0


class _Server6(_Server):
    address_family = socket.AF_INET6


class LoopbackHTTP:
    """An HTTP server on loopback (``host``): ``serve`` (a folder), ``redirect`` (to a base URL) or ``status``."""

    def __init__(
        self, *, serve: Path | None = None, redirect: str = "", status: int = 0, host: str = "127.0.0.1"
    ) -> None:
        handler = partial(_Handler, directory=str(serve or Path.cwd()))
        server_class = _Server6 if ":" in host else _Server
        self.server = server_class((host, 0), handler)
        self.host = host
        self.server.requests = []
        self.server.redirect = redirect
        self.server.status = status
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    def url(self, path: str = "") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> LoopbackHTTP:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentPort:
    """A port on 127.0.0.1 that accepts connections and never says anything."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def __enter__(self) -> SilentPort:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


def bare_repo(base: Path, name: str = "repo.git") -> tuple[Path, str]:
    """A bare repository with one commit on main, ready for dumb HTTP; returns (path, sha)."""
    work = base / "work"
    work.mkdir(parents=True)
    env_args = ["-c", "user.name=t", "-c", "user.email=t@panbinder.invalid"]

    def git(*args: str, cwd: Path = work) -> str:
        done = subprocess.run(["git", *env_args, *args], cwd=cwd, check=True, capture_output=True, text=True)
        return done.stdout.strip()

    git("init", "-q", "-b", "main")
    (work / "README.md").write_text("loopback repository\n")
    git("add", "README.md")
    git("commit", "-q", "-m", "one")
    bare = base / name
    git("clone", "-q", "--bare", str(work), str(bare))
    git("update-server-info", cwd=bare)
    return bare, git("rev-parse", "HEAD")
