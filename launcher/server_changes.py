"""In an anonymous server: a zip of the files changed since the server started.

This module runs *inside* launched servers, as a Jupyter server extension, so it imports only
the standard library, tornado and jupyter_server (every image has them). The spawner mounts a
folder read-only at ``/opt/panbinder`` holding this file and a configuration that enables it
(``JUPYTER_CONFIG_PATH``), so images need nothing of panbinder. ``GET <server>/panbinder/changes.zip``
(the server's own authentication) answers a zip of every regular file under the server's root
folder modified since the server started, without hidden files and folders (logs, caches, checkpoints), without
following symbolic links, and at most ``MAX_BYTES`` in all (the rest is listed in
``SKIPPED.txt`` inside the zip). The file ``CHANGES-ARE-TEMPORARY.md`` the spawner puts in the
home folder tells the reader, in JupyterLab's file browser, that changes are lost and where this
download is.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import zipfile
from pathlib import Path

STARTED = time.time()  # imported when the server starts
MAX_BYTES = 512 * 2**20
ROUTE = "/panbinder/changes.zip"


def changed_files(root: Path, since: float, max_bytes: int = MAX_BYTES) -> tuple[list[Path], list[Path]]:
    """(files to zip, files left out for size): regular files under ``root`` modified after
    ``since``, hidden folders and symbolic links skipped, oldest first, up to ``max_bytes``."""
    found: list[tuple[float, Path, int]] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(folder, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            if name.startswith(".") or path.is_symlink() or not path.is_file() or st.st_mtime <= since:
                continue
            found.append((st.st_mtime, path, st.st_size))
    taken, skipped, total = [], [], 0
    for _, path, size in sorted(found):
        if total + size > max_bytes:
            skipped.append(path)
            continue
        taken.append(path)
        total += size
    return taken, skipped


def write_zip(root: Path, since: float, target: Path, max_bytes: int = MAX_BYTES) -> int:
    """Write the zip of ``changed_files`` to ``target``; the number of files in it."""
    taken, skipped = changed_files(root, since, max_bytes)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in taken:
            zf.write(path, path.relative_to(root).as_posix())
        if skipped:
            lines = [p.relative_to(root).as_posix() for p in skipped]
            zf.writestr("SKIPPED.txt", "Left out (the download's size limit):\n" + "\n".join(lines) + "\n")
    return len(taken)


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp) -> None:  # the name jupyter_server looks for
    from jupyter_server.base.handlers import JupyterHandler
    from tornado import web

    root = Path(os.path.expanduser(serverapp.root_dir)).resolve()

    class ChangesHandler(JupyterHandler):
        @web.authenticated
        async def get(self) -> None:
            loop = asyncio.get_running_loop()
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp, "changes.zip")
                await loop.run_in_executor(None, write_zip, root, STARTED, target)
                self.set_header("Content-Type", "application/zip")
                self.set_header("Content-Disposition", 'attachment; filename="changes.zip"')
                f = await loop.run_in_executor(None, target.open, "rb")
                try:
                    while chunk := await loop.run_in_executor(None, f.read, 2**20):
                        self.write(chunk)
                        await self.flush()
                finally:
                    f.close()

    base = serverapp.web_app.settings["base_url"].rstrip("/")
    serverapp.web_app.add_handlers(".*$", [(base + ROUTE, ChangesHandler)])


NOTICE = """# Changes in this server are temporary

This server was launched without signing in: everything you change here is lost when it stops
(after a while without use, or when you close it).

To keep what you changed, download the files changed since the server started as one zip:
open `{route}` under this server's address (the part of the address up to and including
`/user/<name>`), e.g. by replacing `lab...` in the address bar with `panbinder/changes.zip`.

Signed-in users get a workspace, `~/work`, kept for their next servers.
"""


# The server's own configuration file in the mounted config folder puts this module's folder on
# the server's sys.path, so no PYTHONPATH is set (that would replace the image's and reach the
# kernels); the JSON file in jupyter_server_config.d enables it (a setting of jpserver_extensions in
# a .py file would be replaced by an image's own JSON setting of it later in JUPYTER_CONFIG_PATH).
SERVER_CONFIG = """# panbinder: the download of changed files (panbinder_changes.py, one folder up)
import os.path as _path
import sys as _sys

_folder = _path.dirname(_path.dirname(_path.abspath(__file__)))
if _folder not in _sys.path:
    _sys.path.append(_folder)
"""


def server_files(folder: Path) -> Path:
    """Write the folder the spawner mounts at ``/opt/panbinder`` (this module and the server
    configuration that finds and enables it) and the notice; returns the notice's path. Idempotent."""
    config = folder / "config" / "jupyter_server_config.d"
    config.mkdir(parents=True, exist_ok=True)
    files = {
        folder / "panbinder_changes.py": Path(__file__).read_text(),
        folder / "config" / "jupyter_server_config.py": SERVER_CONFIG,
        config
        / "panbinder-changes.json": '{"ServerApp": {"jpserver_extensions": {"panbinder_changes": true}}}\n',
        folder.parent / "CHANGES-ARE-TEMPORARY.md": NOTICE.format(route=ROUTE.lstrip("/")),
    }
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.chmod(0o644)
            os.replace(tmp, path)
    for path in (folder, folder / "config", config):
        path.chmod(0o755)
    return folder.parent / "CHANGES-ARE-TEMPORARY.md"
