"""Derived datasets: the request checks, the confinement of paths to the owner's workspace, the
copy-hash-register step with its clean-up, the server check of the launch options, the lineage
on both dataset cards (JSON, page, PaNOSC include), and the panbinder-publish command's output."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from panbinder.data_mounts import derived_data
from panbinder.data_mounts.derived_data import (
    DerivedData,
    Lineage,
    PublishRequest,
    copy_files,
    parse_request,
    plan_files,
    publish,
    workspace_files,
)
from panbinder.data_mounts.derived_limits import PublishSlots, remove_orphans
from panbinder.data_mounts.derived_models import DatasetOrigin
from panbinder.data_mounts.models import Dataset
from panbinder.errors import PanbinderError
from panbinder.launcher import publish_command, signing
from panbinder.launcher.server_launch import checked_fields, running_options
from panbinder.web.api.derived import bearer
from tests.test_web_escaping import assert_safe_page
from tests.web_app import web_portal

WORK = "/home/jovyan/work"
OWNER_TOKEN, OTHER_TOKEN = "alice-token", "bob-token"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    mount = tmp_path / "mnt"
    (mount / "results").mkdir(parents=True)
    (mount / "fit.txt").write_text("peak at 42\n")
    (mount / "results" / "a.csv").write_text("1,2\n")
    (mount / "results" / "b.csv").write_text("3,4\n")
    (tmp_path / "secret.txt").write_text("not yours\n")
    return mount


def refused(mount: Path, given: str) -> PanbinderError:
    with pytest.raises(PanbinderError) as caught:
        workspace_files(mount, WORK, given)
    assert 400 <= caught.value.status_code < 500
    return caught.value


# request checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason", "words"),
    [
        (b"not json", "bad_body", "Send JSON like"),
        (b'{"paths": "x", "title": "t"}', "bad_body", "Send JSON like"),
        (b'{"paths": [], "title": "t"}', "no_paths", "at least one file"),
        (b'{"paths": ["/home/jovyan/work/x"], "title": "  "}', "no_title", "--title"),
        (b'{"paths": ["/home/jovyan/work/x"]}', "no_title", "--title"),
        (b'{"paths": ["/home/jovyan/work/x"], "title": 3}', "bad_body", "Send JSON like"),
    ],
)
def test_a_bad_request_says_what_to_change(body: bytes, reason: str, words: str) -> None:
    with pytest.raises(PanbinderError) as caught:
        parse_request(body)
    assert caught.value.status_code == 400 and caught.value.reason == reason
    assert words in caught.value.message


def test_a_good_request_keeps_paths_and_tidies_the_title() -> None:
    req = parse_request(
        b'{"paths": ["/home/jovyan/work/x"], "title": " Fit \\n of  scan ", "description": "d"}'
    )
    assert req == PublishRequest(("/home/jovyan/work/x",), "Fit of scan", "d")


def test_the_token_comes_from_the_authorization_header() -> None:
    assert bearer("token abc") == "abc" and bearer("Bearer abc") == "abc"
    assert bearer("") == "" and bearer("Basic abc") == ""


# confinement ---------------------------------------------------------------------------------


def test_files_and_folders_of_the_workspace_are_planned_with_their_names(work: Path) -> None:
    [one] = workspace_files(work, WORK, f"{WORK}/fit.txt")
    assert one.name == "fit.txt" and one.source == work.resolve() / "fit.txt"
    folder = workspace_files(work, WORK, f"{WORK}/results/")
    assert [f.name for f in folder] == ["results/a.csv", "results/b.csv"]
    assert workspace_files(work, WORK, f"{WORK}/results/../fit.txt")[0].name == "fit.txt"


@pytest.mark.parametrize(
    "given", ["/home/jovyan/secret.txt", f"{WORK}/../secret.txt", "/etc/passwd", "/data/x/scan.nxs"]
)
def test_a_path_outside_the_workspace_is_refused(work: Path, given: str) -> None:
    error = refused(work, given)
    assert error.reason == "outside_workspace" and f"copy it into {WORK}" in error.message


def test_a_relative_path_is_refused(work: Path) -> None:
    assert "not an absolute path" in refused(work, "fit.txt").message


def test_a_link_leading_out_of_the_workspace_is_refused_also_inside_a_folder(work: Path) -> None:
    (work / "escape").symlink_to(work.parent / "secret.txt")
    error = refused(work, f"{WORK}/escape")
    assert error.reason == "outside_workspace" and "symbolic link" in error.message
    (work / "results" / "hidden").symlink_to("/etc")
    assert "symbolic link" in refused(work, f"{WORK}/results").message
    (work / "results" / "hidden").unlink()
    (work / "inside").symlink_to(work / "fit.txt")  # a link to a file of the workspace is fine
    assert workspace_files(work, WORK, f"{WORK}/inside")[0].source == work.resolve() / "fit.txt"


def test_devices_pipes_and_missing_paths_are_refused(work: Path) -> None:
    os.mkfifo(work / "pipe")
    assert refused(work, f"{WORK}/pipe").reason == "not_a_file"
    (work / "dev").symlink_to("/dev/null")  # outside the workspace anyway
    assert refused(work, f"{WORK}/dev").reason == "outside_workspace"
    assert refused(work, f"{WORK}/nothing.h5").reason == "missing"


def test_names_that_collide_and_limits_are_refused(work: Path) -> None:
    (work / "results" / "fit.txt").write_text("other\n")
    with pytest.raises(PanbinderError, match=r"would both be 'fit\.txt'"):
        plan_files(work, WORK, (f"{WORK}/fit.txt", f"{WORK}/results/fit.txt"), max_bytes=10**6, max_files=10)
    with pytest.raises(PanbinderError, match="more than a derived dataset may hold") as caught:
        plan_files(work, WORK, (f"{WORK}/fit.txt",), max_bytes=5, max_files=10)
    assert caught.value.status_code == 413
    with pytest.raises(PanbinderError, match="More than 1 files") as caught:
        plan_files(work, WORK, (f"{WORK}/results",), max_bytes=10**6, max_files=1)
    assert caught.value.reason == "too_many_files"


def test_the_walk_of_a_folder_stops_past_the_file_limit(work: Path) -> None:
    (work / "results" / "c.csv").write_text("5,6\n")
    os.mkfifo(work / "results" / "z-pipe")  # after the limit: never reached
    with pytest.raises(PanbinderError) as caught:
        plan_files(work, WORK, (f"{WORK}/results", f"{WORK}/fit.txt"), max_bytes=10**6, max_files=2)
    assert caught.value.reason == "too_many_files" and caught.value.status_code == 413


def test_a_file_named_like_a_folder_of_another_is_a_duplicate(work: Path) -> None:
    (work / "other").mkdir()
    (work / "other" / "results").write_text("a file, not the folder\n")
    with pytest.raises(PanbinderError, match="would both be 'results'") as caught:
        plan_files(work, WORK, (f"{WORK}/results", f"{WORK}/other/results"), max_bytes=10**6, max_files=10)
    assert caught.value.reason == "duplicate_name" and caught.value.status_code == 400


def test_a_file_gone_before_it_is_measured_is_a_409_naming_it(work: Path) -> None:
    [planned] = workspace_files(work, WORK, f"{WORK}/fit.txt")
    (work / "fit.txt").unlink()
    with pytest.raises(PanbinderError, match=f"'{WORK}/fit.txt' changed") as caught:
        derived_data._sized(planned)
    assert caught.value.status_code == 409


def test_a_file_replaced_by_a_link_after_the_check_is_not_copied(work: Path, tmp_path: Path) -> None:
    planned = plan_files(work, WORK, (f"{WORK}/fit.txt",), max_bytes=10**6, max_files=10)
    (work / "fit.txt").unlink()
    (work / "fit.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(PanbinderError, match="changed or could not be read") as caught:
        copy_files(planned, tmp_path / "copy", work.resolve(), 10**6)
    assert caught.value.status_code == 409 and not (tmp_path / "copy" / "fit.txt").exists()


# the launch options of the server -------------------------------------------------------------


def signed(workspace: str = "alice", user: str = "pb-1", expires: int = 1) -> dict:
    fields = signing.SignedFields("reg/img:abc", (), {}, user, expires, None, workspace)
    return signing.signed_options("key", fields)


def test_only_a_running_server_launched_signed_in_may_register() -> None:
    with pytest.raises(PanbinderError, match="No running server"):
        running_options({"servers": {}})
    assert running_options({"servers": {"": {"ready": True, "user_options": {"a": 1}}}}) == {"a": 1}
    with pytest.raises(PanbinderError, match="launched without signing in") as anonymous:
        checked_fields({"image": "reg/img:abc"}, signing_key="key", hub_user="pb-1")
    assert anonymous.value.status_code == 403 and "~/work" in anonymous.value.message
    forged = {**signed(), "workspace": "bob"}
    with pytest.raises(PanbinderError, match="not made by the panbinder portal"):
        checked_fields(forged, signing_key="key", hub_user="pb-1")
    with pytest.raises(PanbinderError, match="another user"):
        checked_fields(signed(), signing_key="key", hub_user="pb-2")
    # long expired: the signature bounded the start, which the spawner checked then
    assert checked_fields(signed(), signing_key="key", hub_user="pb-1").workspace == "alice"


# copy, hash, register ------------------------------------------------------------------------


@pytest.fixture
async def portal(tmp_path):
    async with web_portal(tmp_path) as p:
        p.hub_users[OWNER_TOKEN] = {"name": "alice", "groups": []}
        p.hub_users[OTHER_TOKEN] = {"name": "bob", "groups": []}
        yield p


def derived_settings(portal) -> DerivedData:
    return DerivedData(root=str(portal.storage / "derived"), pid_prefix="test-derived:")


async def test_published_files_are_copied_hashed_and_registered_closed_with_their_lineage(portal, work):
    source = portal.add_dataset("pid:source", facility="ESS")
    portal.add_publication("10.5555/origin", "pid:source")
    lineage = Lineage(owner="alice", image="reg/img:abc", source_paths=(str(source),), doi="10.5555/origin")
    request = PublishRequest((f"{WORK}/fit.txt", f"{WORK}/results"), "Fitted peaks", "from <b>scan</b>")
    out = publish(
        portal.catalogue,
        derived_settings(portal),
        mount=work,
        container_root=WORK,
        request=request,
        lineage=lineage,
    )
    assert out["pid"].startswith("test-derived:") and out["sources"] == ["pid:source"]
    assert out["publication"] == "10.5555/origin"
    sha = hashlib.sha256(b"peak at 42\n").hexdigest()
    assert out["files"][0] == {"path": "fit.txt", "size": 11, "sha256": sha}
    with portal.catalogue.session() as s:
        ds = portal.catalogue.get_dataset(s, out["pid"])
        assert (ds.data_type, ds.owners, ds.is_public, ds.release_date) == ("derived", ["alice"], False, None)
        assert ds.facility == "ESS" and ds.file_count == 3
        location = Path(ds.location)
    assert (location / "results" / "b.csv").read_text() == "3,4\n"
    assert left_in(portal.storage / "derived" / ".incoming") == []

    pid = quote(out["pid"], safe="")
    anonymous = json.loads((await portal.fetch(f"/api/datasets/{pid}")).body)
    assert anonymous["files"] is None and anonymous["origin"]["registered_by"] is None
    mine = json.loads((await portal.fetch(f"/api/datasets/{pid}", token=OWNER_TOKEN)).body)
    assert mine["accessible"] and mine["files"][0]["sha256"] == sha
    assert mine["derived_from"] == [{"pid": "pid:source", "title": "dataset pid:source"}]
    assert (
        mine["origin"]["publication"]["doi"] == "10.5555/origin" and mine["origin"]["image"] == "reg/img:abc"
    )
    assert mine["origin"]["registered_by"] == "alice"
    assert not json.loads((await portal.fetch(f"/api/datasets/{pid}", token=OTHER_TOKEN)).body)["accessible"]
    src = json.loads((await portal.fetch("/api/datasets/pid%3Asource")).body)
    assert src["derived_datasets"] == [{"pid": out["pid"], "title": "Fitted peaks"}] and src["origin"] is None

    page = assert_safe_page(await portal.fetch(f"/datasets/{pid}", accept="text/html", token=OWNER_TOKEN))
    assert "Derived from" in page and "dataset pid:source" in page and "10.5555/origin" in page
    assert "reg/img:abc" in page and "&lt;b&gt;scan&lt;/b&gt;" in page
    src_page = assert_safe_page(await portal.fetch("/datasets/pid%3Asource", accept="text/html"))
    assert "Derived datasets" in src_page and "Fitted peaks" in src_page

    include = quote(json.dumps({"include": ["derivedFrom", "derivedDatasets"]}))
    record = json.loads((await portal.fetch(f"/api/Datasets/{pid}?filter={include}")).body)
    assert [d["pid"] for d in record["derivedFrom"]] == ["pid:source"] and record["derivedDatasets"] == []
    assert record["isPublic"] is False and record["size"] is None
    back = json.loads((await portal.fetch(f"/api/Datasets/pid%3Asource?filter={include}")).body)
    assert [d["pid"] for d in back["derivedDatasets"]] == [out["pid"]]
    scoped = quote(json.dumps({"include": [{"relation": "derivedFrom", "scope": {"where": {"title": "x"}}}]}))
    bad = await portal.fetch(f"/api/Datasets?filter={scoped}")
    assert bad.code == 400 and "can be included but not filtered on" in json.loads(bad.body)["message"]


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_a_failed_registration_leaves_no_copy_and_no_record(portal, work):
    settings = derived_settings(portal)
    settings.root = str(portal.storage.parent / "not-a-storage-root")  # register refuses it
    request = PublishRequest((f"{WORK}/fit.txt",), "Fit")
    with pytest.raises(PanbinderError) as caught:
        publish(
            portal.catalogue,
            settings,
            mount=work,
            container_root=WORK,
            request=request,
            lineage=Lineage("alice"),
        )
    # the operators' configuration: a 503, the detail for their log only
    assert caught.value.status_code == 503 and "tell the operators" in caught.value.message
    assert "storage_roots" not in caught.value.message and "storage_roots" in caught.value.log_message
    assert "not-a-storage-root" not in left_in(portal.storage.parent)  # refused before any copy
    with portal.catalogue.session() as s:
        assert s.query(Dataset).filter(Dataset.data_type == "derived").count() == 0
        assert s.query(DatasetOrigin).count() == 0


async def test_the_endpoint_refuses_requests_without_a_valid_server_token(portal):
    body = json.dumps({"paths": [f"{WORK}/x"], "title": "t"})
    none = await portal.fetch("/api/derived-datasets", method="POST", body=body)
    assert none.code == 403 and "JUPYTERHUB_API_TOKEN" in json.loads(none.body)["message"]
    wrong = await portal.fetch("/api/derived-datasets", method="POST", body=body, token="nobody")
    assert wrong.code == 403 and "not a valid server token" in json.loads(wrong.body)["message"]
    # a valid user token reaches the launcher check: this portal's test launcher takes none
    other = await portal.fetch("/api/derived-datasets", method="POST", body=body, token=OWNER_TOKEN)
    assert other.code == 501 and "does not take derived datasets" in json.loads(other.body)["message"]


# the command inside servers --------------------------------------------------------------------


class _Portal(BaseHTTPRequestHandler):
    answer: tuple[int, dict] = (201, {})
    seen: list = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.seen.append((self.headers["Authorization"], json.loads(self.rfile.read(length))))
        code, body = self.answer
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_portal():
    server = HTTPServer(("127.0.0.1", 0), _Portal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/derived-datasets"
    finally:
        server.shutdown()
        server.server_close()


def run_command(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    bin_dir = publish_command.command_files(tmp_path / "opt")
    env = {
        "PATH": f"{bin_dir}:{os.path.dirname(sys.executable)}:/usr/bin:/bin",
        "JUPYTERHUB_API_TOKEN": "tok",
    }
    if url:
        env["PANBINDER_API_URL"] = url
    return subprocess.run(
        ["panbinder-publish", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )


def test_the_command_prints_the_pid_and_url_or_the_portals_message(tmp_path: Path, fake_portal: str) -> None:
    _Portal.seen = []
    _Portal.answer = (201, {"pid": "derived:1", "url": "http://portal/datasets/derived:1", "files": []})
    ok = run_command(tmp_path, fake_portal, "fit.txt", "--title", "Fit")
    assert ok.returncode == 0 and "Registered derived dataset derived:1" in ok.stdout
    assert "http://portal/datasets/derived:1" in ok.stdout
    assert _Portal.seen == [
        ("token tok", {"paths": [str(tmp_path / "fit.txt")], "title": "Fit", "description": ""})
    ]
    _Portal.answer = (400, {"status": 400, "message": "'/etc/x' is outside your workspace"})
    no = run_command(tmp_path, fake_portal, "/etc/x", "--title", "Fit")
    assert no.returncode == 1 and "outside your workspace" in no.stderr and "Traceback" not in no.stderr
    down = run_command(tmp_path, "http://127.0.0.1:9/api/derived-datasets", "x", "--title", "t")
    assert (
        down.returncode == 1
        and "could not reach the portal" in down.stderr
        and "Traceback" not in down.stderr
    )
    unset = run_command(tmp_path, "", "x", "--title", "t")
    assert unset.returncode == 1 and "inside a server launched signed in" in unset.stderr


def publish_as(
    portal, work: Path, lineage: Lineage, settings: DerivedData | None = None, *paths: str
) -> dict:
    return publish(
        portal.catalogue,
        settings or derived_settings(portal),
        mount=work,
        container_root=WORK,
        request=PublishRequest(paths or (f"{WORK}/fit.txt",), "Fit"),
        lineage=lineage,
    )


def derived_count(portal) -> int:
    with portal.catalogue.session() as s:
        return s.query(Dataset).filter(Dataset.data_type == "derived").count()


async def test_results_of_data_the_owner_may_not_see_by_their_own_rights_are_refused(portal, work):
    locked = portal.add_dataset("pid:locked", public=False, groups=("proposal-42",))
    lineage = Lineage(owner="bob", source_paths=(str(locked.resolve()),))  # e.g. through a review link
    with pytest.raises(PanbinderError, match=r"may not see by your own rights") as caught:
        publish_as(portal, work, lineage)
    assert caught.value.status_code == 403 and caught.value.reason == "source_not_yours"
    assert derived_count(portal) == 0 and left_in(portal.storage / "derived") == [".incoming"]
    member = Lineage(owner="alice", source_paths=(str(locked.resolve()),), groups=frozenset({"proposal-42"}))
    assert publish_as(portal, work, member)["sources"] == ["pid:locked"]


async def test_lineage_and_location_hold_through_a_linked_storage_root(portal, work, tmp_path):
    real = tmp_path / "real-store"
    (real / "scan-1").mkdir(parents=True)
    linked = tmp_path / "linked-store"
    linked.symlink_to(real)
    portal.catalogue.storage_roots = [*portal.catalogue.storage_roots, str(linked)]
    portal.add_dataset("pid:linked", location=str(linked / "scan-1"))  # as the facility wrote it
    portal.add_dataset("pid:listed")  # found by the PID of the signed manifest
    listed = (portal.storage / "pid-listed").resolve()
    settings = DerivedData(root=str(linked / "derived"), pid_prefix="test-derived:")
    # mounts are signed with resolved paths
    lineage = Lineage("alice", source_paths=(str(real / "scan-1"), str(listed)), source_pids=("pid:listed",))
    out = publish_as(portal, work, lineage, settings)
    assert out["sources"] == ["pid:linked", "pid:listed"]
    with portal.catalogue.session() as s:
        location = portal.catalogue.get_dataset(s, out["pid"]).location
    assert location == str((real / "derived").resolve() / Path(location).name)
    # a later server that mounts the derived dataset (signed resolved) links back to it
    again = publish_as(portal, work, Lineage("alice", source_paths=(location,)), settings)
    assert again["sources"] == [out["pid"]]


def test_registrations_take_a_slot_each_and_one_per_owner() -> None:
    slots = PublishSlots(2)
    with slots.claim("alice"):
        with pytest.raises(PanbinderError) as same:
            with slots.claim("alice"):
                pass
        assert same.value.status_code == 409 and "still under way" in same.value.message
        with slots.claim("bob"):
            with pytest.raises(PanbinderError) as full:
                with slots.claim("carol"):
                    pass
            assert full.value.status_code == 429 and "try again" in full.value.message
    with slots.claim("carol"):  # released
        pass
    settings = DerivedData()
    assert settings.max_concurrent == 2 and settings.slots.limit == 2 and settings.slots is settings.slots


async def test_a_copy_that_would_not_fit_is_refused_before_copying(portal, work):
    settings = derived_settings(portal)
    settings.free_space_margin = 2**62
    with pytest.raises(PanbinderError, match="no room for these files") as caught:
        publish_as(portal, work, Lineage("alice"), settings)
    assert caught.value.status_code == 507 and "free" in caught.value.log_message
    assert left_in(portal.storage / "derived" / ".incoming") == [] and derived_count(portal) == 0


async def test_an_unwritable_root_is_a_503(portal, work):
    settings = derived_settings(portal)
    (portal.storage / "derived").write_text("a file where the folder should be\n")
    with pytest.raises(PanbinderError, match="could not store the files") as caught:
        publish_as(portal, work, Lineage("alice"), settings)
    assert caught.value.status_code == 503


async def test_a_catalogue_that_refuses_the_rows_is_a_503_and_the_copy_goes(portal, work, monkeypatch):
    portal.add_dataset("test-derived:taken")
    monkeypatch.setattr(derived_data, "new_pid", lambda prefix: f"{prefix}taken")  # a PID already used
    with pytest.raises(PanbinderError, match="could not record the dataset") as caught:
        publish_as(portal, work, Lineage("alice"))
    assert caught.value.status_code == 503 and caught.value.reason == "catalogue_failed"
    assert left_in(portal.storage / "derived") == [".incoming"]
    assert left_in(portal.storage / "derived" / ".incoming") == []


async def test_unfinished_copies_are_removed_at_start_and_registered_folders_kept(portal, caplog):
    root = portal.storage / "derived"
    (root / ".incoming" / "left-over" / "results").mkdir(parents=True)
    (root / ".incoming" / "left-over" / "results" / "a.csv").write_text("1\n")
    (root / ".incoming" / "named").mkdir()
    (root / ".incoming" / "named" / "scan.nxs").write_text("x")
    (root / "registered").mkdir()
    portal.add_dataset("pid:named", location=str(root / ".incoming" / "named"))
    import logging

    assert remove_orphans(root, portal.catalogue, logging.getLogger("test")) == ["left-over"]
    assert left_in(root / ".incoming") == ["named"] and left_in(root) == [".incoming", "registered"]


async def test_the_second_listener_does_not_trust_forwarded_headers(portal):
    from tornado.netutil import bind_sockets

    serve = portal.serve
    serve._derived_sockets = bind_sockets(0, "127.0.0.1")
    main = serve.http_server(serve.portal_app(portal.identity, cookie_secret="0" * 64))
    try:
        serve._listen_derived(main)
        assert serve._derived_server.xheaders is False and main.xheaders is True
    finally:
        serve._derived_server.stop()


def test_the_help_says_what_everyone_sees(tmp_path: Path) -> None:
    out = run_command(tmp_path, "", "--help")
    text = " ".join(out.stdout.split())
    assert out.returncode == 0 and "everyone can see the dataset's title, description and lineage" in text
    assert "Only you can open the files" in text
