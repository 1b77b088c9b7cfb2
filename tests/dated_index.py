"""A package index with dated releases, served on the build engine's bridge gateway.

Tiny wheels (tests/wheels.py) with PEP 700 upload times in the JSON simple API (what uv's
``--exclude-newer`` and pip's ``--uploaded-prior-to`` read), so a build resolves a repository's
unpinned requirements as of its commit date. Build steps reach the host only on the gateway
(``BuildEngine.gateway()``); repositories name the index in requirements.txt
(``--extra-index-url``), so the deployment's settings stay as in every other build. Used by
tests/integration/test_as_of.py and benchmarks/paper_notebooks.py.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support import GitServer, machine_build_engine
from tests.wheels import wheel

# name -> [(version, code, Requires-Python, wheel tag, upload time)]
Releases = dict[str, list[tuple[str, str, str, str, str]]]


def build_index(releases: Releases) -> dict[str, bytes | dict]:
    """URL path -> wheel bytes or a PEP 691/700 project page."""
    served: dict[str, bytes | dict] = {}
    for name, versions in releases.items():
        files = []
        for version, code, requires_python, tag, uploaded in versions:
            filename, data = wheel(
                name,
                version,
                code,
                requires_python=requires_python,
                tag=tag,
                compression=zipfile.ZIP_DEFLATED,
            )
            served[f"/files/{filename}"] = data
            entry = {
                "filename": filename,
                "url": f"/files/{filename}",
                "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                "upload-time": uploaded,
                "size": len(data),
            }
            if requires_python:
                entry["requires-python"] = requires_python
            files.append(entry)
        page = {
            "meta": {"api-version": "1.1"},
            "name": name,
            "versions": [r[0] for r in versions],
            "files": files,
        }
        served[f"/simple/{name}/"] = page
    return served


class IndexHandler(BaseHTTPRequestHandler):
    """Serves ``served``; with ``authorization`` (an Authorization header value) only to requests
    that send it, as a facility's private index does."""

    def __init__(self, *args, served: dict, authorization: str = "", **kwargs) -> None:
        self.served = served
        self.authorization = authorization
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET(body=False)

    def do_GET(self, body: bool = True) -> None:
        if self.authorization and self.headers.get("Authorization") != self.authorization:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="index"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.path.split("?", 1)[0]
        if path.startswith("/simple/") and not path.endswith("/"):
            path += "/"
        found = self.served.get(path)
        if found is None:
            self.send_error(404)
            return
        if isinstance(found, dict):
            data, kind = json.dumps(found).encode(), "application/vnd.pypi.simple.v1+json"
        else:
            data, kind = found, "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


@contextmanager
def serving_index(releases: Releases, *, credentials: tuple[str, str] | None = None) -> Iterator[str]:
    """The index's simple API URL, on the build engine's bridge gateway, for the block; with
    ``credentials`` (user, password) it answers only HTTP basic authentication with them."""
    authorization = ""
    if credentials:
        authorization = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    handler = functools.partial(IndexHandler, served=build_index(releases), authorization=authorization)
    server = ThreadingHTTPServer((machine_build_engine().gateway(), 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{server.server_address[0]}:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()


def dated_repo(git_server: GitServer, name: str, files: dict[str, str], date: str) -> str:
    """A repository whose one commit was written on ``date``; its URL."""
    git_server.commit(name, files, "as of the paper")
    git_server.git(name, "commit", "-q", "--amend", "--no-edit", f"--date={date}")
    return git_server.url(name)
