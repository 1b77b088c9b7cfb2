"""Write labels into an image that is already built and pushed: a label-only build, a second push.

The label-only build is ``docker build --label KEY=VALUE --tag IMAGE -`` with BuildKit on the
Dockerfile ``FROM IMAGE``: BuildKit takes ``IMAGE`` from the local engine, keeps every layer and
writes a new config, tagged with the same name. The second ``docker push`` then uploads only that
config and the manifest; every layer is already in the registry. Label values travel as one
command-line argument, never through the Dockerfile, so JSON needs no quoting or escaping (a
25 KB value with quotes, backslashes, ``$`` and non-ASCII text comes back byte for byte).

Measured on dockerd 20.10 (code-only rebuilds of a small repository, lock of 6 to 25 KB): the
inspect of the unlabelled image about 0.02 s, the label-only build about 0.10 s, the second push
about 0.08 s, so 0.2 to 0.3 s per build; the unlabelled image is removed in the background.
Rewriting the config blob and manifest through the registry HTTP API and then ``docker pull``
took about 0.08 s less, but needs the registry's URL scheme and credentials beside the docker
client's, and both manifest formats; this way the docker client that pushed the image does it all.

When the build or the push fails, the name points to the unlabelled image again (as pushed
first) and the error is raised for the caller to report.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading

from panbinder.docker_engine import Docker, DockerCommand, as_docker, docker_argv

from .engine import run_streaming
from .lock import image_id, pushed_digest


def label_build_args(
    image: str, labels: dict[str, str], *, docker_cli: Docker | str | DockerCommand
) -> list[str]:
    """``docker build`` arguments that add ``labels`` to ``image`` (Dockerfile on stdin)."""
    command = docker_cli.command() if isinstance(docker_cli, Docker) else docker_argv(docker_cli)
    args = [*command, "build", "--progress=plain"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    return [*args, "--tag", image, "-"]


def _drop(unused: str, kept: str, docker: Docker) -> None:
    """Remove the image ``unused`` unless it is ``kept``; never forced, so an image that another
    name or a container still uses stays (best effort)."""
    if unused and unused != kept:
        with contextlib.suppress(Exception):
            docker.remove_image(unused)


def label_and_push(image: str, labels: dict[str, str], *, docker_cli: Docker | str | DockerCommand) -> str:
    """Add ``labels`` to the local ``image``, push it again and return the pushed manifest digest
    ("" if the push printed none). On failure, ``image`` names the unlabelled image again."""
    docker = as_docker(docker_cli)
    unlabelled = image_id(image, docker_cli=docker)
    labelled = ""
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    with tempfile.TemporaryDirectory(prefix="panbinder-label-") as tmp:
        iidfile = os.path.join(tmp, "iid")
        args = label_build_args(image, labels, docker_cli=docker)
        args[-1:-1] = ["--iidfile", iidfile]
        try:
            for _ in run_streaming(args, stdin_file=io.BytesIO(f"FROM {image}\n".encode()), env=env):
                pass
            with open(iidfile, encoding="ascii") as f:
                labelled = f.read().strip()
            pushed = list(run_streaming(docker.command("push", image)))
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the error below is what matters
                docker.tag(unlabelled, image)
            _drop(labelled, unlabelled, docker)
            raise
    # tidying up need not delay the build (about 0.02 s)
    threading.Thread(target=_drop, args=(unlabelled, labelled, docker), daemon=True).start()
    return pushed_digest(pushed)


__all__ = ["label_and_push", "label_build_args"]
