"""Archive providers (zenodo, figshare, dataverse, swh) and BinderHub's shorthands (gh, gl, gist):
spec parsing and URL schemes without network, then resolution and fetching against records
served on 127.0.0.1 in each archive's API shape (tests/archive_server.py)."""

from __future__ import annotations

import hashlib

import pytest
from traitlets.config import Config

from panbinder.builder.archives import (
    ArchiveSource,
    DataverseSource,
    FigshareSource,
    SoftwareHeritageSource,
    ZenodoSource,
    archive_kind,
    parse_reference,
    source_for,
)
from panbinder.errors import PanbinderError
from panbinder.providers import get_provider_class
from panbinder.providers.archive import SoftwareHeritageProvider, ZenodoProvider
from panbinder.providers.doi import DoiProvider
from panbinder.registry_cache import image_ref
from panbinder.repo_refs import canonical, resolver
from tests.archive_server import ArchiveServer, zip_of

DIR = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
REV = "1" * 40
FILES = {"README.md": b"paper code\n", "analysis/run.py": b"print(42)\n"}


def refused(call, *args, **kwargs) -> PanbinderError:
    with pytest.raises(PanbinderError) as info:
        call(*args, **kwargs)
    return info.value


# --- spec parsing and URL schemes (no network) ----------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "10.5281/zenodo.3242074",
        "doi:10.5281/zenodo.3242074",
        "https://doi.org/10.5281/ZENODO.3242074",
        "3242074",
        "https://zenodo.org/records/3242074",
        "https://zenodo.org/record/3242074",
    ],
)
def test_zenodo_specs(spec):
    assert ZenodoSource().parse(spec) == ("zenodo:3242074", "3242074")


@pytest.mark.parametrize("spec", ["10.1234/zenodo.1", "10.5281/figshare.1", "zenodo", "", "12a", "../1"])
def test_zenodo_bad_specs_name_the_form(spec):
    e = refused(ZenodoSource().parse, spec)
    assert (e.status_code, e.reason) == (400, "malformed_spec")
    assert "/v2/zenodo/10.5281/zenodo." in e.message


def test_zenodo_doi_prefixes_are_a_setting():
    cfg = Config()
    cfg.ZenodoSource.doi_prefixes = ["10.22002"]
    assert ZenodoSource(config=cfg).parse("10.22002/zenodo.7") == ("zenodo:7", "7")


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("10.6084/m9.figshare.9782777.v1", ("figshare:9782777", "1")),
        ("10.6084/m9.figshare.9782777", ("figshare:9782777", "latest")),
        ("9782777.v3", ("figshare:9782777", "3")),
    ],
)
def test_figshare_specs(spec, expected):
    assert FigshareSource().parse(spec) == expected


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("doi:10.7910/DVN/TJCLKP", ("dataverse:doi:10.7910/DVN/TJCLKP", "latest")),
        ("10.7910/DVN/TJCLKP@1.0", ("dataverse:doi:10.7910/DVN/TJCLKP", "1.0")),
        ("https://doi.org/10.7910/DVN/TJCLKP", ("dataverse:doi:10.7910/DVN/TJCLKP", "latest")),
    ],
)
def test_dataverse_specs(spec, expected):
    assert DataverseSource().parse(spec) == expected


@pytest.mark.parametrize("spec", ["10.7910/DVN/X@latest", "not-a-doi", "doi:10.7910/DVN/X?y=1"])
def test_dataverse_bad_specs(spec):
    assert refused(DataverseSource().parse, spec).reason == "malformed_spec"


def test_swhid_specs():
    s = SoftwareHeritageSource()
    assert s.parse(f"swh:1:dir:{DIR}") == (f"swh:1:dir:{DIR}", DIR)
    assert s.parse(f"SWH:1:REV:{REV};origin=https://example.org/r") == (f"swh:1:rev:{REV}", REV)


@pytest.mark.parametrize(
    "spec", ["swh:1:cnt:" + DIR, "swh:2:dir:" + DIR, "swh:1:dir:abc", "swh:1:dir:" + "g" * 40]
)
def test_bad_swhids_say_what_a_swhid_is(spec):
    e = refused(SoftwareHeritageSource().parse, spec)
    assert (e.status_code, e.reason) == (400, "malformed_spec")
    assert "swh:1:dir:<40 hex digits>" in e.message


def test_archive_kind_and_references():
    assert archive_kind("zenodo:1") == "zenodo"
    assert archive_kind(f"swh:1:dir:{DIR}") == "swh"
    assert archive_kind("dataverse:doi:10.7910/DVN/X") == "dataverse"
    for git in ("https://github.com/a/b", "git://127.0.0.1/zenodo", "zenodo://x/y", "file:///zenodo"):
        assert archive_kind(git) == "" and source_for(git) is None
    assert parse_reference("zenodo:10.5281/zenodo.12") == ("zenodo:12", "12")
    assert parse_reference(f"swh:1:rev:{REV}") == (f"swh:1:rev:{REV}", REV)
    assert parse_reference("https://github.com/a/b") is None
    assert canonical("figshare:10.6084/m9.figshare.5.v2", "HEAD", ZenodoSource()) == ("figshare:5", "2")
    assert canonical("https://example.org/r.git", "main", ZenodoSource()) == (
        "https://example.org/r.git",
        "main",
    )


def test_providers_are_installed_under_binderhubs_names():
    for name in ("zenodo", "figshare", "dataverse", "swh", "gh", "gl", "gist"):
        assert get_provider_class(name).name == name


def test_image_names_carry_the_version_as_tag():
    """Golden: a record's version is the tag, as a commit sha is for git."""
    ref = image_ref(
        registry="r:5000", prefix="panbinder/v1-", provider="zenodo", repo_url="zenodo:12", ref="13"
    )
    assert (
        ref.full
        == "r:5000/panbinder/v1-zenodo-zenodo-12-"
        + hashlib.sha256(b"zenodo:zenodo:12").hexdigest()[:10]
        + ":13"
    )
    swh = image_ref(registry="r", prefix="p-", provider="swh", repo_url=f"swh:1:rev:{REV}", ref=DIR)
    assert swh.tag == DIR


@pytest.mark.parametrize(
    "name, spec, repo_url, ref, persistent",
    [
        (
            "gh",
            "jupyterhub/binderhub/main",
            "https://github.com/jupyterhub/binderhub",
            "main",
            "jupyterhub/binderhub/",
        ),
        ("gh", "owner/repo.git/feature/x", "https://github.com/owner/repo", "feature/x", "owner/repo/"),
        ("gh", "owner/repo", "https://github.com/owner/repo", "HEAD", "owner/repo/"),
        (
            "gl",
            "group%2Fsub%2Frepo/v1.0",
            "https://gitlab.com/group/sub/repo.git",
            "v1.0",
            "group%2Fsub%2Frepo/",
        ),
        ("gist", "someone/8f6a/main", "https://gist.github.com/someone/8f6a.git", "main", "someone/8f6a/"),
    ],
)
def test_shorthands(name, spec, repo_url, ref, persistent):
    p = get_provider_class(name)(spec)
    assert (p.repo_url, p.unresolved_ref, p.image_provider) == (repo_url, ref, "git")
    assert p.persistent_spec("a" * 40) == persistent + "a" * 40


@pytest.mark.parametrize(
    "name, spec",
    [
        ("gh", "owner"),
        ("gh", "own er/repo/main"),
        ("gh", "a/../main"),
        ("gl", "repo/main"),
        ("gist", "u/not-hex/main"),
        ("gh", "a/b/..bad"),
    ],
)
def test_bad_shorthands(name, spec):
    e = refused(get_provider_class(name), spec)
    assert e.status_code == 400 and e.reason in ("malformed_spec", "malformed_ref")


def test_shorthand_base_url_is_a_setting():
    cfg = Config()
    cfg.GitHubProvider.base_url = "https://github.facility.example.org/"
    assert (
        get_provider_class("gh")("a/b/main", config=cfg).repo_url == "https://github.facility.example.org/a/b"
    )


# --- resolution and fetching against served records ------------------------------------------


@pytest.fixture
def server():
    with ArchiveServer() as s:
        yield s


async def test_zenodo_concept_resolves_to_its_latest_version(server, tmp_path):
    server.zenodo(1001, FILES, concept=1000)
    p = ZenodoProvider("10.5281/zenodo.1000", config=server.config())
    assert (p.repo_url, p.unresolved_ref) == ("zenodo:1000", "1000")
    assert await p.resolve() == "1001"
    assert p.persistent_spec("1001") == "1001"
    ZenodoSource(config=server.config()).fetch("zenodo:1000", "1001", str(tmp_path / "c"))
    assert (tmp_path / "c/analysis/run.py").read_bytes() == b"print(42)\n"


async def test_zenodo_files_listed_apart_and_a_lone_zip_unpacked(server, tmp_path):
    server.zenodo(2001, {"code-v1.zip": zip_of(FILES, top="code-v1")}, listed=True)
    ZenodoSource(config=server.config()).fetch("zenodo:2001", "2001", str(tmp_path / "c"))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["README.md", "analysis"]


async def test_unknown_record_is_a_404_that_says_what_to_check(server):
    p = ZenodoProvider("4040", config=server.config())
    with pytest.raises(PanbinderError) as info:
        await p.resolve()
    assert (info.value.status_code, info.value.reason) == (404, "unknown_record")
    assert "check the DOI" in info.value.message and "Zenodo" in info.value.message


def test_declared_size_over_the_limit_fails_before_downloading(server, tmp_path):
    server.zenodo(3001, {"big.bin": b"x" * 5000})
    cfg = server.config(ArchiveDownloads__max_download_size=1000)
    e = refused(ZenodoSource(config=cfg).fetch, "zenodo:3001", "3001", str(tmp_path / "c"))
    assert (e.status_code, e.reason) == (413, "archive_too_large")
    assert "ArchiveDownloads.max_download_size" in e.message
    assert not any("/content" in path for _, path in server.requests)


def test_undeclared_size_is_counted_while_downloading(server, tmp_path):
    server.figshare(7, 1, {"big.bin": b"x" * 300_000})
    server.routes["/figshare/v2/articles/7/versions/1"][0] = (
        200,
        b'{"files": [{"name": "big.bin", "download_url": "%s/figshare/files/7/1/big.bin"}]}'
        % server.url.encode(),
        {},
    )
    cfg = server.config(ArchiveDownloads__max_download_size=100_000)
    e = refused(FigshareSource(config=cfg).fetch, "figshare:7", "1", str(tmp_path / "c"))
    assert e.reason == "archive_too_large"


def test_zip_bomb_is_bounded_by_the_unpack_limit(server, tmp_path):
    server.zenodo(3101, {"bomb.zip": zip_of({"zeros": b"\0" * 2_000_000})})
    cfg = server.config(ArchiveDownloads__max_download_size=100_000)
    e = refused(ZenodoSource(config=cfg).fetch, "zenodo:3101", "3101", str(tmp_path / "c"))
    assert (e.status_code, e.reason) == (413, "archive_too_large")


def test_checksum_mismatch_fails(server, tmp_path):
    server.zenodo(3201, {"a.txt": b"one"})
    server.routes["/zenodo/api/records/3201/files/a.txt/content"] = [(200, b"two", {})]
    e = refused(ZenodoSource(config=server.config()).fetch, "zenodo:3201", "3201", str(tmp_path / "c"))
    assert e.reason == "archive_checksum"


def test_file_names_leaving_the_checkout_are_refused(server, tmp_path):
    server.zenodo(3301, {"../escape.txt": b"x", "ok.txt": b"y"})
    e = refused(ZenodoSource(config=server.config()).fetch, "zenodo:3301", "3301", str(tmp_path / "c"))
    assert e.reason == "archive_bad_member"
    assert not (tmp_path / "escape.txt").exists()


def test_archive_fetches_follow_the_url_guard(server, tmp_path):
    """Without the setting that opens 127.0.0.1 the look-up is refused before any connection;
    plain http needs its own setting; a redirect to a blocked address is refused too."""
    server.zenodo(4001, FILES)
    cfg = server.config()
    cfg.RepoGuard.allowed_hosts = []
    e = refused(ZenodoSource(config=cfg).resolve, "zenodo:4001", "4001")
    assert (e.status_code, e.reason) == (403, "blocked_address")
    cfg = server.config(ArchiveDownloads__allow_http=False)
    assert refused(ZenodoSource(config=cfg).resolve, "zenodo:4001", "4001").reason == "http_not_allowed"
    assert server.requests == []
    server.redirect("/zenodo/api/records/4002", "http://10.0.0.1/records/4001")
    e = refused(ZenodoSource(config=server.config()).resolve, "zenodo:4002", "4002")
    assert e.reason == "blocked_address" and "10.0.0.1" not in e.message and "Zenodo record 4002" in e.message


async def test_swh_revision_resolves_to_its_directory_and_the_vault_tarball_is_unpacked(server, tmp_path):
    server.swh(DIR, FILES, revision=REV, links={"link": "/etc/passwd"})
    p = SoftwareHeritageProvider(f"swh:1:rev:{REV}", config=server.config())
    assert await p.resolve() == DIR
    assert p.persistent_spec(DIR) == f"swh:1:dir:{DIR}"
    SoftwareHeritageSource(config=server.config()).fetch(p.repo_url, DIR, str(tmp_path / "c"))
    assert sorted(x.name for x in (tmp_path / "c").iterdir()) == ["README.md", "analysis"]  # link skipped
    posts = [path for method, path in server.requests if method == "POST"]
    assert posts == [f"/swh/api/1/vault/flat/swh:1:dir:{DIR}/"]


def test_swh_tarball_climbing_out_is_refused(server, tmp_path):
    server.swh(DIR, {"../../outside": b"x"})
    e = refused(
        SoftwareHeritageSource(config=server.config()).fetch, f"swh:1:dir:{DIR}", DIR, str(tmp_path / "c")
    )
    assert e.reason == "archive_bad_member"


def test_unknown_swh_revision(server):
    e = refused(SoftwareHeritageSource(config=server.config()).resolve, f"swh:1:rev:{REV}", REV)
    assert (e.status_code, e.reason) == (404, "unknown_record")


async def test_figshare_and_dataverse_versions(server, tmp_path):
    server.figshare(55, 2, FILES)
    f = FigshareSource(config=server.config())
    assert f.resolve("figshare:55", "latest") == "2"
    assert refused(f.resolve, "figshare:55", "9").reason == "unknown_record"
    f.fetch("figshare:55", "2", str(tmp_path / "f"))
    assert (tmp_path / "f/run.py").exists() is False and (tmp_path / "f/README.md").exists()
    pid = "doi:10.7910/DVN/ABC"
    server.dataverse(pid, "1.2", FILES)
    d = DataverseSource(config=server.config())
    assert d.resolve(f"dataverse:{pid}", "latest") == "1.2"
    d.fetch(f"dataverse:{pid}", "1.2", str(tmp_path / "d"))
    assert (tmp_path / "d/analysis/run.py").read_bytes() == b"print(42)\n"


async def test_publication_resolver_pins_an_archive_version(server):
    server.zenodo(5001, FILES, concept=5000)
    holder = ArchiveSource(config=server.config())
    repo, ref = canonical("zenodo:10.5281/zenodo.5000", "HEAD", holder)
    assert await resolver(holder)(repo, ref) == "5001"


def test_a_publication_on_an_archive_launches_the_archives_image():
    p = DoiProvider("10.5555/x")
    p.repo_url = "zenodo:12"
    assert p.image_provider == "zenodo"
    p.repo_url = "https://example.org/r.git"
    assert p.image_provider == "git"


def test_a_record_is_bundled_as_one_reproducible_commit(server, tmp_path):
    """``panbinder archive`` keeps an archive record's files as a git bundle (one commit, fixed
    author and date: two bundles of one version hold the same commit)."""
    import subprocess

    from panbinder.builder.archives.bundle import bundle_record
    from panbinder.registry_cache.archive import ARCHIVED_REF

    server.zenodo(6001, FILES)
    commits = []
    for n in (1, 2):
        dest = tmp_path / f"{n}.bundle"
        bundle_record(ZenodoSource(config=server.config()), "zenodo:6001", "6001", dest, ref=ARCHIVED_REF)
        heads = subprocess.run(["git", "bundle", "list-heads", str(dest)], capture_output=True, text=True)
        commits.append(dict(line.split()[::-1] for line in heads.stdout.splitlines()))
    assert commits[0] == commits[1] and ARCHIVED_REF in commits[0]
    subprocess.run(["git", "clone", "-q", str(tmp_path / "1.bundle"), str(tmp_path / "c")], check=True)
    assert (tmp_path / "c/analysis/run.py").read_bytes() == b"print(42)\n"


def test_checks_and_rebuilds_name_an_archive_publications_image_for_its_archive():
    from panbinder.rebuilds import pinned_image

    image = pinned_image(registry="r:5000", prefix="p/v1-", repo_url="zenodo:12", sha="13")
    assert image.name.startswith("p/v1-zenodo-zenodo-12-") and image.tag == "13"
    git = pinned_image(registry="r:5000", prefix="p/v1-", repo_url="https://e.org/r.git", sha="a" * 40)
    assert git.name.startswith("p/v1-git-")
