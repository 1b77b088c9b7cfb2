"""The docker wrapper: one engine per host, its command line and image names (no docker needed)."""

from __future__ import annotations

from traitlets.config import Config

from panbinder.docker_engine import Docker, as_docker, split_image

SOCK = "unix:///srv/panbinder/build-engine/build.sock"


def test_the_command_line_names_the_engine_only_when_a_host_is_set():
    assert Docker(cli="/usr/bin/docker").command("ps") == ["/usr/bin/docker", "ps"]
    assert Docker(cli="docker", host=SOCK).command("ps") == ["docker", "--host", SOCK, "ps"]


def test_settings_come_from_the_configuration():
    docker = Docker(config=Config({"Docker": {"cli": "/opt/docker", "host": SOCK, "timeout": 7.0}}))
    assert (docker.cli, docker.host, docker.timeout) == ("/opt/docker", SOCK, 7.0)


def test_a_command_line_becomes_the_engine_it_talks_to():
    docker = as_docker(["/usr/bin/docker", "--host", SOCK])
    assert (docker.cli, docker.host) == ("/usr/bin/docker", SOCK)
    assert as_docker("/usr/bin/docker").host == ""
    assert as_docker(docker) is docker


def test_image_names_split_into_repository_and_tag():
    assert split_image("127.0.0.1:5000/panbinder/x:abc") == ("127.0.0.1:5000/panbinder/x", "abc")
    assert split_image("127.0.0.1:5000/panbinder/x") == ("127.0.0.1:5000/panbinder/x", "latest")
    assert split_image("r/x@sha256:" + "a" * 64) == ("r/x", "sha256:" + "a" * 64)
    assert split_image("base") == ("base", "latest")
