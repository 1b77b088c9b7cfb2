"""A stand-in for Zenodo, Figshare, Dataverse and Software Heritage on 127.0.0.1, in each
archive's API shape: the test builds the record (its JSON and its files) and the server answers
it, so no test contacts the real services. ``config`` gives the settings that point the archive
sources at it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

from traitlets.config import Config


def zip_of(files: dict[str, bytes], top: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"{top}/{name}" if top else name, data)
    return buf.getvalue()


def tar_of(files: dict[str, bytes], top: str = "", *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, to in (links or {}).items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.type, info.linkname = tarfile.SYMTYPE, to
            tf.addfile(info)
    return buf.getvalue()


class ArchiveServer:
    """Routes ``path[?query]`` -> answers (status, body, headers), given in turn (the last one
    stays); every request is recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[int, bytes, dict[str, str]]]] = {}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                server.requests.append((self.command, self.path))
                found = server.routes.get(self.path) or server.routes.get(self.path.split("?", 1)[0])
                status, body, headers = (
                    (found.pop(0) if len(found) > 1 else found[0]) if found else (404, b"{}", {})
                )
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> ArchiveServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ArchiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # routes

    def json(self, path: str, data: Any, status: int = 200) -> None:
        self.routes[path] = [(status, json.dumps(data).encode(), {})]

    def file(self, path: str, data: bytes) -> str:
        self.routes[path] = [(200, data, {"Content-Type": "application/octet-stream"})]
        return self.url + path

    def redirect(self, path: str, to: str) -> None:
        self.routes[path] = [(302, b"", {"Location": to})]

    # settings

    def config(self, **extra: Any) -> Config:
        cfg = Config()
        cfg.RepoGuard.allowed_hosts = ["127.0.0.1"]
        cfg.ArchiveDownloads.allow_http = True
        cfg.ZenodoSource.base_url = f"{self.url}/zenodo/api"
        cfg.FigshareSource.base_url = f"{self.url}/figshare/v2"
        cfg.DataverseSource.base_url = f"{self.url}/dataverse"
        cfg.SoftwareHeritageSource.base_url = f"{self.url}/swh/api/1"
        cfg.SoftwareHeritageSource.vault_poll_interval = 0.05
        for key, value in extra.items():
            cls, _, trait = key.partition("__")
            cfg[cls][trait] = value
        return cfg

    def portal_config(self) -> str:
        """The same settings as lines of a configuration file (RepoGuard.allowed_hosts is the
        portal's own: its tests open 127.0.0.1 for git as well)."""
        cfg = self.config()
        return "".join(
            f"c.{cls}.{trait} = {value!r}\n"
            for cls, traits in cfg.items()
            if cls != "RepoGuard"
            for trait, value in traits.items()
        )

    # records in each archive's shape

    def zenodo(
        self, record_id: int, files: dict[str, bytes], *, concept: int = 0, listed: bool = False
    ) -> None:
        """Zenodo record ``record_id``; ``concept`` redirects to it (the latest version);
        ``listed`` puts the files at links.files (InvenioRDM) instead of inline."""
        base = f"{self.url}/zenodo/api/records/{record_id}"
        entries = []
        for name, data in files.items():
            content = self.file(f"/zenodo/api/records/{record_id}/files/{quote(name)}/content", data)
            entries.append(
                {
                    "key": name,
                    "size": len(data),
                    "checksum": "md5:" + hashlib.md5(data).hexdigest(),
                    "links": {"self": content.removesuffix("/content"), "content": content},
                }
            )
        record: dict[str, Any] = {"id": record_id, "doi": f"10.5281/zenodo.{record_id}", "links": {}}
        if listed:
            record["links"]["files"] = f"{base}/files"
            self.json(f"/zenodo/api/records/{record_id}/files", {"entries": entries})
        else:
            record["files"] = entries
        self.json(f"/zenodo/api/records/{record_id}", record)
        if concept:
            self.redirect(f"/zenodo/api/records/{concept}", base)

    def figshare(self, article: int, version: int, files: dict[str, bytes], *, latest: bool = True) -> None:
        listed = [
            {
                "name": name,
                "size": len(data),
                "computed_md5": hashlib.md5(data).hexdigest(),
                "download_url": self.file(f"/figshare/files/{article}/{version}/{name}", data),
            }
            for name, data in files.items()
        ]
        record = {"id": article, "version": version, "files": listed}
        self.json(f"/figshare/v2/articles/{article}/versions/{version}", record)
        if latest:
            self.json(f"/figshare/v2/articles/{article}", record)

    def dataverse(self, pid: str, version: str, files: dict[str, bytes], *, latest: bool = True) -> None:
        major, minor = version.split(".")
        listed = []
        for i, (name, data) in enumerate(files.items()):
            file_id = abs(hash((pid, version, name))) % 10**6 + i
            folder, _, filename = name.rpartition("/")
            self.file(f"/dataverse/api/access/datafile/{file_id}", data)
            listed.append(
                {
                    "directoryLabel": folder,
                    "dataFile": {
                        "id": file_id,
                        "filename": filename,
                        "filesize": len(data),
                        "md5": hashlib.md5(data).hexdigest(),
                    },
                }
            )
        body = {
            "status": "OK",
            "data": {"versionNumber": int(major), "versionMinorNumber": int(minor), "files": listed},
        }
        query = f"?persistentId={quote(pid, safe=':/')}"
        self.json(f"/dataverse/api/datasets/:persistentId/versions/{version}{query}", body)
        if latest:
            self.json(f"/dataverse/api/datasets/:persistentId/versions/:latest-published{query}", body)

    def swh(
        self, directory: str, files: dict[str, bytes], *, revision: str = "", links: dict | None = None
    ) -> None:
        """A directory the vault serves as a tarball whose top folder is its SWHID (first asked:
        pending, then done), and optionally a revision pointing at it."""
        swhid = f"swh:1:dir:{directory}"
        tarball = self.file(f"/swh/tarballs/{directory}.tar.gz", tar_of(files, swhid, links=links))
        vault = f"/swh/api/1/vault/flat/{swhid}/"
        pending = (200, json.dumps({"status": "pending"}).encode(), {})
        self.routes[vault] = [
            pending,
            pending,
            (200, json.dumps({"status": "done", "fetch_url": tarball}).encode(), {}),
        ]
        if revision:
            self.json(f"/swh/api/1/revision/{revision}/", {"id": revision, "directory": directory})


__all__ = ["ArchiveServer", "tar_of", "zip_of"]
