#!/usr/bin/env python3
"""panbinder-publish: register files of your workspace as a derived dataset of the catalogue.

Usage, inside a server launched signed in (with a workspace, ~/work)::

    panbinder-publish results/fit.h5 figures/ --title "Fitted peaks of scan 12" [--description "..."]

The files are copied by the portal into its storage for derived data, hashed and registered
as a closed dataset owned by you, linked to the datasets mounted in this server and to the
publication or image it was launched for. Its files stay closed, but its title, description
and lineage are visible to everyone in the catalogue. Prints the new dataset's PID and address, or the
portal's message (exit status 1).

This file runs *inside* launched servers, so it uses the standard library only. The spawner
writes it to a folder mounted read-only at ``/opt/panbinder`` (``bin/panbinder-publish``) and
mounts it also at ``/usr/local/bin/panbinder-publish`` (on the PATH of login shells too), with
``PANBINDER_API_URL`` set to the portal's registration endpoint; the server's own
``JUPYTERHUB_API_TOKEN`` says who asks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT = 3600  # seconds: the portal copies and hashes before it answers


def request_body(paths: list[str], title: str, description: str) -> bytes:
    """The JSON the portal takes: the paths made absolute as this server sees them (links kept:
    the portal resolves and confines them)."""
    absolute = [os.path.abspath(os.path.expanduser(p)) for p in paths]
    return json.dumps({"paths": absolute, "title": title, "description": description}).encode()


def portal_message(body: bytes, status: int) -> str:
    """The portal's message of an error answer (its JSON ``message``), else a short status line."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"]
    return f"the portal answered {status} without a message; try again later"


def publish(url: str, token: str, body: bytes) -> tuple[int, str]:
    """(exit status, text to print)."""
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return 1, f"panbinder-publish: {portal_message(e.read(), e.code)}"
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return 1, f"panbinder-publish: could not reach the portal at {url}: {reason}; try again later"
    except ValueError:
        return 1, "panbinder-publish: the portal's answer was not readable; try again later"
    lines = [f"Registered derived dataset {data.get('pid')}", f"  {data.get('url')}"]
    for f in data.get("files") or []:
        lines.append(f"  {f.get('sha256')}  {f.get('path')}")
    if data.get("sources"):
        lines.append(f"  derived from: {', '.join(data['sources'])}")
    if data.get("publication"):
        lines.append(f"  publication: {data['publication']}")
    return 0, "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="panbinder-publish",
        description="Register files or folders of your workspace as a derived dataset "
        "(closed, owned by you, linked to this server's datasets and publication).",
        epilog="Only you can open the files, but everyone can see the dataset's title, "
        "description and lineage (the datasets and publication it was made from) in the "
        "catalogue: keep confidential details out of them.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders in your workspace")
    p.add_argument("--title", required=True, help="the dataset's title")
    p.add_argument("--description", default="", help="what the files are and how they were made")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    url, token = os.environ.get("PANBINDER_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not url or not token:
        print(
            "panbinder-publish: run it inside a server launched signed in from the portal "
            "(PANBINDER_API_URL and JUPYTERHUB_API_TOKEN are not set here)",
            file=sys.stderr,
        )
        return 1
    try:
        status, text = publish(url, token, request_body(args.paths, args.title, args.description))
    except Exception as e:  # never a traceback: say what failed
        status, text = 1, f"panbinder-publish: failed: {type(e).__name__}: {e}"
    print(text, file=sys.stdout if status == 0 else sys.stderr)
    return status


def command_files(folder: Path) -> Path:
    """Write ``bin/panbinder-publish`` (this file, executable) under ``folder``, the folder the
    spawner mounts at ``/opt/panbinder``; its bin folder. Idempotent."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    target, text = bin_dir / "panbinder-publish", Path(__file__).read_text()
    if not target.exists() or target.read_text() != text:
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, target)
    for path in (folder, bin_dir):
        path.chmod(0o755)
    return bin_dir


if __name__ == "__main__":
    sys.exit(main())
