"""Drift injected on purpose: each change below turns a publication's check verdict in one run.

- a dependency's new release changes a printed number: a package index of the test's own on the
  build engine's bridge gateway (``BuildEngine.gateway()``, the one host address build steps
  reach), over HTTPS with a CA of its own in the builds' CA bundle, serves ``panbinder-check-drift`` 1.0 (its ``value()`` is 1); the publication is pinned
  while only 1.0 exists, its requirements.txt leaves the version open. Then 2.0 (``value()`` is 2)
  is published: the frozen check stays ``reproducible`` (the archived image, and a frozen rebuild
  from the lock still installs 1.0), the fresh check is ``runs, results differ`` naming the cell
  and both values;
- a figure: the stored PNG of one publication shows other pixels than the notebook draws
  (``results differ``); the other publication's stored PNG has the same pixels encoded otherwise
  (another compression level, a text chunk), as a re-rendered figure would (``reproducible``).
  The notebook writes its PNG with the standard library, so the image needs no imaging package;
- a locked package withdrawn from the index: the frozen rebuild ``does not build``, naming it;
- the upstream repository deleted (and the registry's image lost) after ``panbinder archive``:
  the check restores the image from the archive and still runs, and the frozen rebuild checks the
  pinned commit out of the archive's repository bundle.

One repository, two commits that change only the notebook, so the requirements layer is built
once; one portal of its own, whose builds also look in the index (``extra_index_urls``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import ipaddress
import json
import shutil
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image, PngImagePlugin

from tests.support import forget_image, machine_build_engine, session_prefix
from tests.wheels import wheel

from .conftest import cli
from .test_conda_mirror import QuietHandler

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.slow]

PREFIX = session_prefix("panbinder-cd")
PACKAGE = "panbinder-check-drift"  # not on PyPI: only this test's index has it
MODULE = "panbinder_check_drift"
REPO = "drift-paper"
DOI_VALUE = "10.5555/panbinder.drift.value"
DOI_FIGURE = "10.5555/panbinder.drift.figure"
SIZE = (24, 16)  # FIGURE_CODE draws this size

# a PNG written with the standard library (zlib level 1, no text chunk), shown with IPython
FIGURE_CODE = """import struct, zlib
from IPython.display import Image, display

def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

def png(width, height, pixel):
    rows = b''.join(b'\\0' + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height))
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    body = chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(rows, 1)) + chunk(b'IEND', b'')
    return b'\\x89PNG\\r\\n\\x1a\\n' + body

display(Image(png(24, 16, lambda x, y: (x * 10, y * 15, 128))))"""


def drawn(x: int, y: int) -> tuple[int, int, int]:
    """The pixels FIGURE_CODE draws."""
    return (x * 10, y * 15, 128)


def changed(x: int, y: int) -> tuple[int, int, int]:
    """A figure that changed: the green ramp runs the other way."""
    return (x * 10, 255 - y * 15, 128)


def stored_png(pixel) -> str:
    """The stored output's PNG (base64), encoded by Pillow: other bytes than FIGURE_CODE's."""
    image = Image.new("RGB", SIZE)
    image.putdata([pixel(x, y) for y in range(SIZE[1]) for x in range(SIZE[0])])
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "a plotting library of another version")
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=9)
    return base64.b64encode(buf.getvalue()).decode()


def cell(source: str, outputs: list[dict], cell_id: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": 1,
        "id": cell_id,
        "metadata": {},
        "outputs": outputs,
        "source": source,
    }


def stored_notebook(value: str, pixel) -> str:
    figure = {
        "output_type": "display_data",
        "data": {"image/png": stored_png(pixel), "text/plain": "<IPython.core.display.Image object>"},
        "metadata": {},
    }
    printed = {"output_type": "stream", "name": "stdout", "text": value}
    cells = [
        cell(f"import {MODULE}\nprint({MODULE}.value())", [printed], "value"),
        cell(FIGURE_CODE, [figure], "figure"),
    ]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.dumps(
        {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    )


# the package index ---------------------------------------------------------------------------


def release(version: str, value: int) -> tuple[str, bytes]:
    """(file name, bytes) of PACKAGE ``version``, whose ``value()`` returns ``value``."""
    return wheel(PACKAGE, version, f"def value():\n    return {value}\n")


class PackageIndex:
    """A PEP 503 simple index in a folder: ``simple/<project>/index.html`` and ``files/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions: dict[str, tuple[str, bytes]] = {}
        (root / "files").mkdir(parents=True)
        (root / "simple" / PACKAGE).mkdir(parents=True)

    def publish(self, version: str, value: int) -> None:
        self.versions[version] = release(version, value)
        self.write()

    def withdraw(self, version: str) -> None:
        filename, _ = self.versions.pop(version)
        (self.root / "files" / filename).unlink()
        self.write()

    def write(self) -> None:
        links = ""
        for filename, data in self.versions.values():
            (self.root / "files" / filename).write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            links += f'<a href="/files/{filename}#sha256={sha}">{filename}</a>\n'
        page = f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n"
        (self.root / "simple" / PACKAGE / "index.html").write_text(page)


def facility_tls(folder: Path, address: str) -> tuple[Path, ssl.SSLContext]:
    """A facility CA of the test's own and a certificate for ``address`` signed by it: (a CA
    bundle with the host's CAs and this one, the server's TLS context). pip trusts a plain-HTTP
    index only as a trusted host, which the builds do not set; an internal HTTPS index with an
    internal CA (``Repo2DockerBuilder.ca_bundle``) is what a facility has."""
    now = datetime.now(UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("panbinder test facility CA", ca_key, "panbinder test facility CA", ca_key, ca=True)
    cert = certificate(address, key, "panbinder test facility CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (folder / "server.pem").write_bytes(cert.public_bytes(pem))
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
    """(the index, its URL, the CA bundle that trusts it) on the build engine's bridge gateway,
    with 1.0 published."""
    root = tmp_path_factory.mktemp("drift-index")
    index = PackageIndex(root / "index")
    index.publish("1.0", 1)
    address = machine_build_engine().gateway()
    bundle, context = facility_tls(root, address)
    handler = functools.partial(QuietHandler, directory=str(index.root))
    server = ThreadingHTTPServer((address, 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield index, f"https://{address}:{server.server_address[1]}/simple", bundle
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def drift_portal(portal_factory, package_index):
    _, url, bundle = package_index
    config = f"""
        c.GitProvider.allow_local = True
        c.ServeApp.keepalive_interval = 1.0
        c.Repo2DockerBuilder.extra_index_urls = [{url!r}]
        c.Repo2DockerBuilder.ca_bundle = {str(bundle)!r}
        # today's releases: the default resolves as of the requirements' date (and needs the
        # upload times this index does not serve), which is what keeps a fresh rebuild stable
        c.PackageInstaller.resolve_as_of = "off"
        c.HubProcess.mem_limit = "1G"
        c.HubProcess.cpu_limit = 1.0
        """
    with portal_factory("cd", config, prefix=PREFIX) as p:
        yield p


@pytest.fixture(scope="module")
def drift(drift_portal, git_server):
    """Two publications of one repository, built while only 1.0 of the package exists: the
    portal and each publication's commit."""
    base = {"requirements.txt": f"{PACKAGE}\n", "README.md": "drift paper\n"}
    shas = {}
    for doi, pixel in ((DOI_VALUE, drawn), (DOI_FIGURE, changed)):
        sha = git_server.commit(REPO, {**base, "analysis.ipynb": stored_notebook("1\n", pixel)}, doi)
        add = ("publications", "add", f"--doi={doi}", f"--repo={git_server.url(REPO)}", f"--ref={sha}")
        cli(drift_portal, *add)
        cli(drift_portal, "build", git_server.url(REPO), sha, timeout=900)
        shas[doi] = sha
    return drift_portal, shas


@pytest.fixture(scope="module")
def release_2(package_index):
    """2.0 published (after the publications were built)."""
    index = package_index[0]
    index.publish("2.0", 2)
    return index


def check(portal, doi: str, *args: str, rebuild: bool = False) -> tuple[int, dict]:
    options = () if rebuild else ("--CheckRunner.frozen_rebuild=False",)
    proc = cli(portal, "check", doi, "--json", *options, *args, check=False, timeout=1800)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert "error" not in result, (result, proc.stderr[-3000:])
    return proc.returncode, result


def steps_of(result: dict) -> dict[str, dict]:
    return {s["step"]: s for s in result["steps"]}


def test_changed_figure_differs(drift):
    status, result = check(drift[0], DOI_FIGURE)
    assert (status, result["verdict"], result["failed_step"]) == (3, "runs, results differ", "same results")
    (difference,) = result["differences"]
    assert (difference["cell"], difference["cell_id"], difference["kind"]) == (1, "figure", "image")
    assert "of pixels changed" in difference["detail"], difference


def test_new_release_frozen_check_stays_reproducible(drift, release_2):
    """The archived image still prints 1, its re-rendered figure matches, and the frozen rebuild
    installs 1.0 from the lock although 2.0 is out."""
    status, result = check(drift[0], DOI_VALUE, rebuild=True)
    steps = steps_of(result)
    assert (status, result["verdict"]) == (0, "reproducible"), (result["message"], steps)
    assert steps["frozen rebuild"]["message"] == "lock: identical"
    assert result["differences"] == []


def test_new_release_fresh_check_differs(drift, release_2):
    status, result = check(drift[0], DOI_VALUE, "--fresh")
    steps = steps_of(result)
    assert steps["fresh rebuild"]["status"] == "passed", steps["fresh rebuild"]
    assert f"{PACKAGE}" in steps["fresh rebuild"]["message"], steps["fresh rebuild"]
    assert (status, result["verdict"], result["failed_step"]) == (3, "runs, results differ", "same results")
    (difference,) = result["differences"]  # the figure is drawn the same: only the value changed
    assert (difference["notebook"], difference["cell"], difference["cell_id"]) == (
        "analysis.ipynb",
        0,
        "value",
    )
    assert difference["stored"].strip() == "1" and difference["executed"].strip() == "2", difference
    assert "cell 0 (value)" in result["message"], result["message"]


def test_withdrawn_locked_package_does_not_build(drift, package_index):
    index = package_index[0]
    index.withdraw("1.0")
    status, result = check(drift[0], DOI_VALUE, rebuild=True)
    steps = steps_of(result)
    assert [steps[s]["status"] for s in ("launches", "runs", "same results")] == ["passed"] * 3, steps
    assert (status, result["verdict"], result["failed_step"]) == (5, "does not build", "frozen rebuild")
    assert PACKAGE in result["message"] and "1.0" in result["message"], result["message"]


def test_upstream_deleted_check_runs_from_the_archive(drift, git_server, package_index):
    """The repository is gone upstream and the registry lost the image: the archive has both, and
    the frozen rebuild checks the pinned commit out of the archive's repository bundle."""
    portal, _ = drift
    index = package_index[0]
    if "1.0" not in index.versions:  # withdrawn by the test before: the lock installs 1.0
        index.publish("1.0", 1)
    bag = Path(cli(portal, "archive", DOI_VALUE, timeout=900).stdout.strip().splitlines()[-1])
    assert (bag / "data" / "repo.bundle").is_file()
    image = json.loads((bag / "data" / "archive.json").read_text())["image"]  # the image it archived
    shutil.rmtree(git_server.base / REPO)
    forget_image(image, blobs=False, docker="/usr/bin/docker")
    status, result = check(portal, DOI_VALUE, rebuild=True)
    assert result["image"] == image
    assert (status, result["verdict"], result["restored"]) == (0, "reproducible", True), result
    assert "restored from" in result["steps"][0]["message"]
    rebuilt = steps_of(result)["frozen rebuild"]
    assert rebuilt["status"] == "passed", rebuilt
    upstream = git_server.url(REPO)
    assert rebuilt["message"].startswith("lock: identical; "), rebuilt
    assert (
        f"rebuilt from the archive's repository bundle; upstream {upstream} is unreachable"
        in rebuilt["message"]
    ), rebuilt
