"""The deployment's package index credentials reach the build steps and nothing else, for real.

``Repo2DockerBuilder.index_url`` names a private HTTPS index (a test CA, on the build engine's
bridge gateway) with its user and token; the index answers only requests that send them. The
builder builds a tiny repository in the build engine and pushes it to the machine's registry. The build must install from the index (so the credentials were used), and the token must be
in none of: the image's configuration (``docker image inspect``: variables, labels), its history
(``docker history --no-trunc``), any file of any layer (``docker save``, searched byte by byte,
deleted files included), and the build's events.

Cheap on purpose: the image's "server" is two tiny wheels from that index (no Jupyter), pip only,
no dates, no pip upgrade, so every layer above the base image builds in a few seconds.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import threading
import uuid
from http.server import ThreadingHTTPServer

import pytest
from traitlets.config import Config

from panbinder.builder.base import BuildRequest
from panbinder.builder.buildpacks import index_auth
from panbinder.builder.r2d import Repo2DockerBuilder
from panbinder.registry_cache.naming import ImageRef
from panbinder.registry_cache.registry import Registry
from tests.dated_index import IndexHandler, Releases, build_index
from tests.support import machine_build_engine
from tests.wheels import PURE

from .test_check_drift import facility_tls

pytestmark = [pytest.mark.docker, pytest.mark.slow]

USER, TOKEN = "reader", f"idx-{uuid.uuid4().hex}"
RELEASES: Releases = {
    "pbsecret-probe": [
        ("1.0", 'VALUE = "1.0"\n', "", PURE, "2020-06-01T10:00:00Z"),
        ("2.0", 'VALUE = "2.0"\n', "", PURE, "2021-06-01T10:00:00Z"),
    ],
    # a stand-in, so that steps every image has after the server layer find a jupyterhub
    "jupyterhub": [("6.1.1", '__version__ = "6.1.1 (stand-in)"\n', "", PURE, "2020-06-01T10:00:00Z")],
}


@pytest.fixture(scope="module")
def private_index(tmp_path_factory):
    """(the index URL with the credentials, the CA bundle that trusts it)."""
    folder = tmp_path_factory.mktemp("private-index")
    address = machine_build_engine().gateway()
    bundle, context = facility_tls(folder, address)
    authorization = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
    handler = functools.partial(IndexHandler, served=build_index(RELEASES), authorization=authorization)
    server = ThreadingHTTPServer((address, 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://{USER}:{TOKEN}@{address}:{server.server_address[1]}/simple/", bundle
    server.shutdown()
    server.server_close()


def builder_for(index_url: str, bundle) -> Repo2DockerBuilder:
    c = Config()
    c.Repo2DockerBuilder.index_url = index_url
    c.Repo2DockerBuilder.ca_bundle = str(bundle)
    c.Repo2DockerBuilder.server_requirements = ["jupyterhub==6.1.1", "pbsecret-probe==1.0"]
    c.Repo2DockerBuilder.label_lock = False
    c.Repo2DockerBuilder.infer_packages = False
    c.PackageInstaller.tool = "pip"
    c.PackageInstaller.resolve_as_of = "off"
    c.PackageInstaller.pip_requirement = ""
    builder = Repo2DockerBuilder(config=c)
    builder.use_build_engine(machine_build_engine())
    return builder


async def test_index_credentials_are_used_and_in_no_layer_variable_history_or_log(private_index, git_server):
    index_url, bundle = private_index
    name = f"index-secret-{uuid.uuid4().hex[:8]}"
    sha = git_server.commit(name, {"requirements.txt": "pbsecret-probe==2.0\n", "README.md": "x\n"})
    # the machine's registry, which has the base image's layers already (a new one took minutes)
    image = ImageRef(registry=Registry().host, name=f"pbtest/{name}", tag=sha[:12])
    request = BuildRequest("b-" + name, "git", f"file://{git_server.base / name}", sha, "main", image)
    events = [e.to_dict() async for e in builder_for(index_url, bundle).build(request)]
    log = "".join(e.get("message", "") for e in events)
    assert events[-1]["phase"] == "built", log[-4000:]
    assert TOKEN not in json.dumps(events), "the token reached the build's events"

    engine = machine_build_engine()

    def docker(*args: str, text: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(engine.command(*args), capture_output=True, text=text, timeout=300, check=True)

    inspected = json.loads(docker("image", "inspect", image.full).stdout)[0]
    env = inspected["Config"]["Env"]
    assert f"PIP_INDEX_URL={index_auth.public_url(index_url)}" in env, env
    assert "pbsecret-probe==2.0" in docker("run", "--rm", image.full, "/srv/venv/bin/pip", "freeze").stdout
    assert TOKEN not in json.dumps(inspected), "the token is in the image's configuration"
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image.full).stdout
    assert "pbsecret-probe==1.0" in history and TOKEN not in history, history[-3000:]
    saved = docker("save", image.full, text=False).stdout
    assert len(saved) > 1_000_000 and TOKEN.encode() not in saved, "the token is in a layer's files"
    docker("rmi", image.full)
