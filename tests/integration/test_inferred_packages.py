"""What the repository forgot, and Node.js for postBuild, in real builds.

One repository with no environment file: its notebook imports ``panbinder_inferred_probe``, a
package that exists only on this test's own package index (HTTPS on the build engine's bridge
gateway, ``BuildEngine.gateway()``, with a CA of the test's own in the builds' CA bundle) and
that the portal's ``Repo2DockerBuilder.import_map`` names. The build installs it in a layer of
its own, the notice in the build log lists it, the image's lock records it and the notebook runs
headless in the built image. The same build's postBuild runs ``node --version`` and installs a
local npm tarball with ``npm install --global`` (Node.js and npm come from the base image), and
the image has repo2docker's usual variables. A second repository's postBuild runs Node.js out of
its heap: the build fails naming it. One portal, two builds; the second reuses the first's layers.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import json
import shutil
import ssl
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.async_api import async_playwright

from panbinder.builder.buildpacks import NOTICE_PREFIX
from panbinder.builder.lock import image_lock
from tests.support import machine_build_engine, notebook, read_stream, session_prefix
from tests.wheels import wheel

from .test_browser import CHROMIUM_ARGS
from .test_conda_mirror import QuietHandler

pytestmark = [pytest.mark.docker, pytest.mark.slow]
PREFIX = session_prefix("panbinder-inf")
PACKAGE = "panbinder-inferred-probe"  # not on PyPI: only this test's index has it
MODULE = "panbinder_inferred_probe"
BUILD_ENGINE = machine_build_engine().command()

NOTEBOOK_CODE = f"""import os, json
!echo shell escapes are not Python
import {MODULE} as probe
print("probe value", probe.value())"""
POSTBUILD = """#!/bin/bash
set -euo pipefail
node --version > "$HOME/node-version.txt"
(cd hello-panbinder && npm pack --silent) > /dev/null
npm install --global --no-audit --no-fund ./hello-panbinder/hello-panbinder-1.0.0.tgz
hello-panbinder > "$HOME/hello.txt"
"""
HELLO = {
    "hello-panbinder/package.json": json.dumps(
        {"name": "hello-panbinder", "version": "1.0.0", "bin": {"hello-panbinder": "cli.js"}}
    ),
    "hello-panbinder/cli.js": "#!/usr/bin/env node\nconsole.log('hello from npm on node ' + process.version);\n",
}
HUNGRY_POSTBUILD = """#!/bin/bash
node --max-old-space-size=16 -e 'const a = []; for (;;) a.push(new Array(100000).fill(1));'
"""


JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def write_index(root: Path) -> None:
    """A simple index with PACKAGE 1.0, in the JSON form (PEP 691) with its upload time (PEP
    700), which resolving as of a date needs (PackageInstaller.resolve_as_of)."""
    filename, data = wheel(PACKAGE, "1.0", "def value():\n    return 42\n")
    (root / "files").mkdir(parents=True)
    (root / "files" / filename).write_bytes(data)
    (root / "simple" / PACKAGE).mkdir(parents=True)
    page = {
        "meta": {"api-version": "1.1"},
        "name": PACKAGE,
        "versions": ["1.0"],
        "files": [
            {
                "filename": filename,
                "url": f"/files/{filename}",
                "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                "upload-time": "2020-01-01T00:00:00Z",
                "size": len(data),
            }
        ],
    }
    (root / "simple" / PACKAGE / "index.json").write_text(json.dumps(page))


class IndexHandler(QuietHandler):
    """Serves a folder's index.json as the JSON simple API."""

    index_pages = ("index.json",)
    extensions_map = {**QuietHandler.extensions_map, ".json": JSON_TYPE}

    def send_head(self):  # index.json for a folder, as index.html would be
        path = self.translate_path(self.path)
        if Path(path).is_dir() and Path(path, "index.json").is_file():
            self.path = self.path.rstrip("/") + "/index.json"
        return super().send_head()


class TLSServer(ThreadingHTTPServer):
    """HTTPS whose handshakes happen in the request threads: one stalled client cannot block the
    accepting thread (a handshake in ``accept`` did, and builds timed out connecting)."""

    request_queue_size = 64
    context: ssl.SSLContext

    def finish_request(self, request, client_address) -> None:
        request.settimeout(30)
        super().finish_request(self.context.wrap_socket(request, server_side=True), client_address)


def tls(folder: Path, address: str) -> tuple[Path, ssl.SSLContext]:
    """A CA of the test's own and a certificate for ``address``: (the builds' CA bundle with the
    host's CAs and this one, the server's context). pip refuses a plain-HTTP index that is not a
    trusted host; a facility's internal index is HTTPS with an internal CA."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "panbinder test index CA")])

    def sign(subject: x509.Name, public_key, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    ca = sign(name, ca_key.public_key(), ca=True)
    server = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    pem = serialization.Encoding.PEM
    (folder / "server.pem").write_bytes(sign(server, key.public_key(), ca=False).public_bytes(pem))
    private = serialization.PrivateFormat.PKCS8
    (folder / "server.key").write_bytes(key.private_bytes(pem, private, serialization.NoEncryption()))
    host = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle = folder / "ca-bundle.crt"
    bundle.write_bytes((host.read_bytes() if host.exists() else b"") + ca.public_bytes(pem))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return bundle, context


@pytest.fixture(scope="module")
def package_index(tmp_path_factory):
    """(URL of the index on the build engine's bridge gateway, the CA bundle that trusts it)."""
    root = tmp_path_factory.mktemp("inferred-index")
    write_index(root / "index")
    address = machine_build_engine().gateway()
    bundle, context = tls(root, address)
    server = TLSServer((address, 0), functools.partial(IndexHandler, directory=str(root / "index")))
    server.context = context
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://{address}:{server.server_address[1]}/simple", bundle
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def service(portal_factory, package_index):
    url, bundle = package_index
    config = f"""
        c.GitProvider.allow_local = True
        c.ServeApp.start_hub = False
        c.Repo2DockerBuilder.extra_index_urls = [{url!r}]
        c.Repo2DockerBuilder.ca_bundle = {str(bundle)!r}
        c.Repo2DockerBuilder.import_map = {{{MODULE!r}: {PACKAGE!r}}}
        """
    with portal_factory("inf", config, prefix=PREFIX) as p:
        yield p


def in_image(image: str, script: str) -> str:
    """Run ``script`` in the built image (the build engine has it), offline, as the image's user."""
    proc = subprocess.run(
        [*BUILD_ENGINE, "run", "--rm", "--network=none", image, "bash", "-lc", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def forgetful(service, git_server):
    """The forgetful repository built: (image, build log)."""
    files = {"analysis.ipynb": notebook(NOTEBOOK_CODE), "postBuild": POSTBUILD, **HELLO}
    git_server.commit("forgetful", files, "a paper's notebook, no environment file")
    url = service.build_url(git_server.url("forgetful"), "main") + "?build_only=true"
    s = asyncio.run(read_stream(url, timeout=900))
    assert s.last["phase"] == "ready", s.log()
    return s.last["imageName"], s.log()


def test_the_forgotten_package_is_installed_and_listed(forgetful):
    image, log = forgetful
    notice = next(line for line in log.splitlines() if line.startswith(NOTICE_PREFIX + "the notebooks"))
    assert f"{PACKAGE} (import {MODULE} in analysis.ipynb)" in notice
    assert "json" not in notice and "os (" not in notice  # the standard library is left out
    assert image_lock(image, docker_cli=BUILD_ENGINE)["inferred"] == [PACKAGE]


def test_the_notebook_executes_headless_in_the_built_image(forgetful):
    image, _ = forgetful
    out = in_image(
        image,
        "jupyter nbconvert --to notebook --execute analysis.ipynb --output /tmp/out.ipynb >/dev/null 2>&1"
        " && python3 -c \"import nbformat; nb = nbformat.read('/tmp/out.ipynb', 4);"
        " print(''.join(o.get('text', '') for c in nb['cells'] for o in c.get('outputs', [])))\"",
    )
    assert "probe value 42" in out


def test_postbuild_has_node_and_npm_install_global(forgetful):
    image, _ = forgetful
    out = in_image(image, 'cat "$HOME/node-version.txt" "$HOME/hello.txt"; hello-panbinder')
    version, hello, again = out.splitlines()
    assert version.startswith("v") and int(version[1:].split(".")[0]) >= 18
    assert hello == again == f"hello from npm on node {version}"


def test_the_image_has_repo2dockers_variables(forgetful):
    image, _ = forgetful
    env = dict(line.split("=", 1) for line in in_image(image, "env").splitlines() if "=" in line)
    assert env["REPO_DIR"] == env["HOME"] == "/home/jovyan"
    assert env["APP_BASE"] == "/srv" and env["NB_USER"] == "jovyan" and env["NB_UID"] == "1000"
    assert env["NB_PYTHON_PREFIX"] == env["KERNEL_PYTHON_PREFIX"] == "/srv/venv"
    assert env["NPM_CONFIG_PREFIX"] == env["NPM_DIR"] == "/home/jovyan/.local"


async def test_node_out_of_heap_in_postbuild_names_it(service, git_server):
    git_server.commit("hungry-node", {"postBuild": HUNGRY_POSTBUILD, "README.md": "x\n"}, "hungry")
    url = service.build_url(git_server.url("hungry-node"), "main") + "?build_only=true"
    s = await read_stream(url, timeout=900)
    last = s.last
    assert last["phase"] == "failed", s.log()
    assert last["message"].startswith("Node.js ran out of memory in the build"), last["message"]
    assert "NODE_OPTIONS" in last["message"] and "BuildManager.build_memory_limit" in last["message"]
    assert len(last["message"]) < 2000 and "Traceback" not in last["message"]
    assert any("JavaScript heap out of memory" in line for line in last["log_tail"])


@pytest.mark.browser
async def test_the_launch_page_lists_the_notice(service, git_server):
    """The reader sees the notice above the log (the launch then fails: this portal has no Hub)."""
    git_server.commit("forgetful-page", {"analysis.ipynb": notebook(NOTEBOOK_CODE)}, "page")
    link = f"{service.url}/v2/git/{quote(git_server.url('forgetful-page'), safe='')}/main"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(link)
            item = page.locator("#notices li").filter(has_text=PACKAGE)
            await item.wait_for(timeout=600_000)
            text = await item.inner_text()
        finally:
            await browser.close()
    assert text.startswith("the notebooks and scripts use packages that no requirements file installs")
    assert f"{PACKAGE} (import {MODULE} in analysis.ipynb)" in text
