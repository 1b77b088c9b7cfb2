"""Image naming scheme 1 (registry_cache/naming.py).

The golden values below were computed once from the scheme; if one of them changes, every
image already cached in a registry is orphaned. Add a new scheme instead of editing these.
"""

from __future__ import annotations

import hashlib

import pytest

from panbinder.registry_cache import ImageRef, image_ref
from panbinder.registry_cache.naming import SCHEME, repo_slug

SHA = "0123456789abcdef0123456789abcdef01234567"


def _name(repo_url: str, *, registry: str = "127.0.0.1:5000", ref: str = SHA) -> ImageRef:
    return image_ref(registry=registry, prefix="panbinder/v1-", provider="git", repo_url=repo_url, ref=ref)


def test_scheme_number_is_pinned():
    assert SCHEME == 1


@pytest.mark.parametrize(
    ("repo_url", "expected"),
    [
        (
            "https://github.com/jupyterhub/binderhub.git",
            "127.0.0.1:5000/panbinder/v1-git-github-com-jupyterhub-binderhub-284e2b3cb6:" + SHA,
        ),
        (
            "git://git.example.org:9418/group/Repo.git",
            "127.0.0.1:5000/panbinder/v1-git-git-example-org-9418-group-repo-43be752344:" + SHA,
        ),
        (
            "git@gitlab.example.org:group/sub/repo.git",
            "127.0.0.1:5000/panbinder/v1-git-git-gitlab-example-org-group-sub-repo-07a030cf2d:" + SHA,
        ),
        (
            "HTTPS://GitHub.com/Org/Repo",
            "127.0.0.1:5000/panbinder/v1-git-github-com-org-repo-8bb8db4078:" + SHA,
        ),
    ],
    ids=["https-dot-git", "git-with-port", "scp-like-ssh", "uppercase"],
)
def test_golden_image_names(repo_url, expected):
    assert _name(repo_url).full == expected


def test_hash_is_sha256_of_provider_and_url_as_given():
    url = "https://github.com/jupyterhub/binderhub.git"
    digest = hashlib.sha256(f"git:{url}".encode()).hexdigest()[:10]
    assert digest == "284e2b3cb6"
    assert _name(url).name.endswith(f"-{digest}")


def test_slug_is_lowercased_without_scheme_and_dot_git():
    assert repo_slug("HTTPS://GitHub.com/Org/My_Repo.git") == "github-com-org-my-repo"


def test_slug_is_cut_to_40_characters_without_trailing_dash():
    url = "https://example.org/" + "a" * 30 + "/" + "b" * 30 + ".git"
    slug = repo_slug(url)
    assert len(slug) <= 40
    assert slug == "example-org-" + "a" * 28
    # a cut that lands right after a separator drops the dangling dash
    assert repo_slug("https://example.org/" + "a" * 28 + "-/b") == "example-org-" + "a" * 28


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/" + "x" * 200,
        "git@host.example.org:" + "group/" * 20 + "repo.git",
        "https://a.b/" + "-._" * 50 + "z",
    ],
)
def test_slug_never_longer_than_40(url):
    slug = repo_slug(url)
    assert 0 < len(slug) <= 40
    assert not slug.startswith("-")
    assert not slug.endswith("-")


def test_slug_of_url_without_letters_falls_back_to_repo():
    assert repo_slug("https://___") == "repo"


def test_colliding_slugs_get_distinct_hashes():
    a, b = "https://x.org/a--b", "https://x.org/a..b"
    assert repo_slug(a) == repo_slug(b) == "x-org-a-b"
    name_a, name_b = _name(a).name, _name(b).name
    assert name_a != name_b
    assert name_a.rsplit("-", 1)[0] == name_b.rsplit("-", 1)[0]


def test_long_urls_sharing_a_prefix_get_distinct_names():
    base = "https://example.org/" + "p" * 50
    assert repo_slug(base + "/one") == repo_slug(base + "/two")
    assert _name(base + "/one").name != _name(base + "/two").name


def test_provider_is_part_of_name_and_hash():
    url = "https://example.org/r.git"
    git = image_ref(registry="", prefix="p/", provider="git", repo_url=url, ref="x")
    other = image_ref(registry="", prefix="p/", provider="zenodo", repo_url=url, ref="x")
    assert git.name.startswith("p/git-example-org-r-")
    assert other.name.startswith("p/zenodo-example-org-r-")
    assert git.name.rsplit("-", 1)[1] != other.name.rsplit("-", 1)[1]


@pytest.mark.parametrize(
    ("ref", "tag"),
    [
        (SHA, SHA),
        ("Feature/X_1.0", "feature-x-1-0"),
        ("v1.2.3", "v1-2-3"),
        ("refs/heads/main", "refs-heads-main"),
    ],
)
def test_tag_is_sanitised(ref, tag):
    assert _name("https://x.org/r", ref=ref).tag == tag


def test_tag_is_cut_to_128_characters():
    assert len(_name("https://x.org/r", ref="a" * 300).tag) == 128


def test_image_ref_with_registry():
    ref = ImageRef(registry="registry.example.org:5443", name="panbinder/v1-git-x-abc", tag="deadbeef")
    assert ref.repository == "registry.example.org:5443/panbinder/v1-git-x-abc"
    assert ref.full == "registry.example.org:5443/panbinder/v1-git-x-abc:deadbeef"
    assert str(ref) == ref.full


def test_image_ref_without_registry_is_local_name():
    ref = ImageRef(registry="", name="panbinder/v1-git-x-abc", tag="deadbeef")
    assert ref.repository == "panbinder/v1-git-x-abc"
    assert ref.full == "panbinder/v1-git-x-abc:deadbeef"


def test_image_ref_is_hashable_and_frozen():
    a = _name("https://x.org/r")
    assert a == _name("https://x.org/r")
    assert len({a, _name("https://x.org/r")}) == 1
    with pytest.raises(AttributeError):
        a.tag = "other"  # type: ignore[misc]
