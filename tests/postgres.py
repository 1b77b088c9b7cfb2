"""A throwaway PostgreSQL server in a folder, for tests (catalogue, several portals) and benchmarks.

Uses Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``); ``initdb`` refuses root, so
the cluster belongs to the ``postgres`` user when run as root. The server listens on
127.0.0.1 on a free port with trust authentication, and is stopped and removed on exit.
The URL uses the ``psycopg`` (3) driver.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found; install Debian's postgresql package")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextlib.contextmanager
def temporary_cluster() -> Iterator[str]:
    """A running server in a new folder under the temporary directory; yields its SQLAlchemy URL."""
    folder = Path(tempfile.mkdtemp(prefix="panbinder-pg-"))  # the postgres user must reach it
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", _free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = _binary("pg_ctl")
    try:  # a failed or slow start is stopped and its folder removed too
        subprocess.run(
            _as_owner([_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]), **run
        )
        subprocess.run(
            _as_owner([ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o", options, "start"]), **run
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_owner([ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new empty database on the server of ``server_url`` for the block; yields its URL."""
    from sqlalchemy import create_engine, make_url, text

    name = f"t_{secrets.token_hex(6)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:  # also when the block failed: a server given by URL keeps no test databases
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        admin.dispose()
