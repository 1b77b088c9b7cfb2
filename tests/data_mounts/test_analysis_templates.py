"""Analysis templates on a real SQLite catalogue: registration pinned once, which datasets a
template fits (PaNET narrower terms, formats), the search facet, and the launch selection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from panbinder.data_mounts import analysis_templates as at
from panbinder.data_mounts.access import ANONYMOUS, Identity
from panbinder.data_mounts.models import DatasetFile
from panbinder.data_mounts.mounts import plan_mounts
from panbinder.data_mounts.search_query import parse
from panbinder.errors import PanbinderError
from panbinder.providers.template import TemplateProvider

from .test_search import NOW, SANS, SAS, SAXS, XRD, add, cat, facet, pids, query  # noqa: F401

SHA = "a" * 40


def register(cat, **kw) -> str:  # noqa: F811
    fields = {"repo_url": "https://git.example.org/t.git", "ref": "main", "title": "SAS fit"}
    fields |= {"techniques": [SAS]} | kw
    resolved = []

    async def resolve(repo: str, ref: str) -> str:
        resolved.append((repo, ref))
        return SHA

    record = at.make_record(**fields)
    asyncio.run(at.register(cat, record, resolve=resolve))
    return f"{record.name}:{len(resolved)}"


def fitting_names(cat) -> dict[str, list[str]]:  # noqa: F811
    with cat.session() as s:
        from sqlalchemy import select

        from panbinder.data_mounts.models import Dataset

        ids = dict(s.execute(select(Dataset.id, Dataset.pid)).all())
        return {ids[i]: sorted(t.name for t in ts) for i, ts in at.fitting(s, list(ids)).items()}


def test_a_template_for_a_broader_technique_fits_narrower_datasets(cat):  # noqa: F811
    with cat.session() as s:
        add(s, "saxs", techniques=[SAXS], is_public=True)
        add(s, "sans", techniques=[SANS], is_public=True)
        add(s, "xrd", techniques=[XRD], is_public=True)
    assert register(cat) == "sas-fit:1"
    assert register(cat, title="SAXS only", techniques=["SAXS"]) == "saxs-only:1"
    assert fitting_names(cat) == {"saxs": ["sas-fit", "saxs-only"], "sans": ["sas-fit"]}
    assert sorted(pids(cat, query(filters={"template": ["sas-fit"]}))) == ["sans", "saxs"]
    assert facet(cat, query(), "template") == {"sas-fit": 2, "saxs-only": 1}
    # the template facet ignores its own filter and follows the others
    assert facet(cat, query(filters={"technique": [SANS]}), "template") == {"sas-fit": 1}
    both = query(filters={"technique": [SANS], "template": ["saxs-only"]})
    assert facet(cat, both, "template") == {"sas-fit": 1, "saxs-only": 0}
    assert facet(cat, both, "technique")[SAXS] == 1 and pids(cat, both) == []


def test_the_template_facet_counts_and_finds_only_open_datasets(cat):  # noqa: F811
    # as the size facet: an embargoed dataset's fit may rest on its files, which the embargo hides
    with cat.session() as s:
        add(s, "open", techniques=[SAXS], is_public=True)
        add(s, "released", techniques=[SANS], release_date=NOW - timedelta(days=1))
        add(s, "closed", techniques=[SAXS], release_date=NOW + timedelta(days=1))
        add(s, "no-date", techniques=[SANS])
    register(cat)
    assert facet(cat, query(), "template") == {"sas-fit": 2}
    assert facet(cat, query(), "access") == {"open": 2, "embargoed": 2}
    assert sorted(pids(cat, query(filters={"template": ["sas-fit"]}))) == ["open", "released"]
    assert facet(cat, query(filters={"template": ["sas-fit"]}), "access") == {"open": 2}


def test_formats_need_a_matching_file_or_application_definition(cat):  # noqa: F811
    with cat.session() as s:
        nxs = add(s, "with-nxs", techniques=[SAXS], is_public=True)
        nxs.files = [DatasetFile(path="run/Scan_1.NXS", size=1)]
        tif = add(s, "with-tif", techniques=[SAXS], is_public=True)
        tif.files = [DatasetFile(path="run/a.tif", size=1)]
    register(cat, title="NeXus SAS", formats=[".nxs"])
    register(cat, title="canSAS", formats=["NXcanSAS"])  # SAS and narrower terms
    register(cat, title="Crystals", formats=["NXmx"])  # macromolecular crystallography only
    assert fitting_names(cat) == {"with-nxs": ["cansas", "nexus-sas"], "with-tif": ["cansas"]}


def test_a_registration_is_pinned_once_and_never_changed(cat):  # noqa: F811
    assert register(cat) == "sas-fit:1"
    assert register(cat) == "sas-fit:0"  # the same again: not resolved again
    with pytest.raises(PanbinderError) as e:
        register(cat, ref="other")
    assert e.value.status_code == 409 and "--name" in e.value.message


@pytest.mark.parametrize(
    ("repo_url", "version"),
    [("zenodo:1000", "1001"), ("figshare:55", "2"), ("dataverse:doi:10.7910/DVN/ABC", "1.2")],
)
def test_a_template_from_an_archive_record_is_pinned_to_its_version(cat, repo_url, version):  # noqa: F811
    """An archive record resolves to a record version (the cache key), not a commit sha."""

    async def resolve(repo: str, ref: str) -> str:
        return version

    record = at.make_record(repo_url=repo_url, ref="HEAD", title="SAS fit", techniques=[SAS])
    assert asyncio.run(at.register(cat, record, resolve=resolve)) == version


def test_a_ref_resolving_to_neither_sha_nor_version_is_refused(cat):  # noqa: F811
    async def resolve(repo: str, ref: str) -> str:
        return "not-a-sha"

    record = at.make_record(repo_url="https://git.example.org/t.git", ref="x", title="T", techniques=[SAS])
    with pytest.raises(PanbinderError) as e:
        asyncio.run(at.register(cat, record, resolve=resolve))
    assert "did not resolve" in e.value.message


@pytest.mark.parametrize(
    ("fields", "wrong"),
    [
        ({"techniques": []}, "--technique"),
        ({"techniques": ["PaNET99999"]}, "not a PaNET technique"),
        ({"formats": ["NXnothing"]}, "application definition"),
        ({"formats": [".n%s"]}, "not a file suffix"),
        ({"notebook": "../x.ipynb"}, "inside the repository"),
        ({"name": "Bad Name"}, "--name"),
        ({"title": " "}, "--title"),
        ({"repo_url": "https://user:secret@git.example.org/t.git"}, "without them"),
        ({"repo_url": "https://ghp_token@git.example.org/t.git"}, "without them"),
    ],
)
def test_bad_registrations_say_what_to_change(fields, wrong):
    base = {"repo_url": "https://git.example.org/t.git", "ref": "main", "title": "T", "techniques": [SAS]}
    with pytest.raises(PanbinderError) as e:
        at.make_record(**(base | fields))
    assert wrong in e.value.message


def test_an_ssh_user_is_not_a_credential():
    record = at.make_record(
        repo_url="ssh://git@git.example.org/t.git", ref="main", title="T", techniques=[SAS]
    )
    assert record.repo_url == "ssh://git@git.example.org/t.git"


def test_template_facet_values_are_checked():
    with pytest.raises(PanbinderError) as e:
        parse(lambda n: ["<script>"] if n == "template" else [])
    assert e.value.status_code == 400 and "template" in e.value.message


def test_a_selection_mounts_each_dataset_and_refuses_an_embargoed_one(cat, tmp_path):  # noqa: F811
    storage = tmp_path / "storage"
    for name in ("open", "locked"):
        (storage / name).mkdir(parents=True)
    cat.storage_roots = [str(storage)]
    with cat.session() as s:
        add(s, "open", techniques=[SAXS], is_public=True, location=str(storage / "open"))
        add(
            s,
            "locked",
            techniques=[SAXS],
            location=str(storage / "locked"),
            groups=["p1"],
            release_date=datetime.now(UTC) + timedelta(days=9),
        )
    register(cat)
    with cat.session() as s:
        chosen = at.select_datasets(s, "sas-fit", ["open"])
        plan = plan_mounts(chosen, ANONYMOUS, roots=[str(storage)], manifest_dir=tmp_path / "m")
        assert next(m.container_path for m in plan.mounts).startswith("/data/open-")
        both = at.select_datasets(s, "sas-fit", ["open", "locked"])
        with pytest.raises(PanbinderError) as e:
            plan_mounts(both, ANONYMOUS, roots=[str(storage)], manifest_dir=tmp_path / "m")
        assert e.value.status_code == 403 and "locked" in e.value.message
        member = Identity("bob", frozenset({"p1"}))
        assert len(plan_mounts(both, member, roots=[str(storage)], manifest_dir=tmp_path / "m").mounts) == 3
        with pytest.raises(PanbinderError) as e:
            at.select_datasets(s, "nothing", ["open"])
        assert e.value.status_code == 404


@pytest.mark.parametrize(
    ("spec", "wrong"),
    [
        ("sas-fit", "at least one dataset"),
        ("Bad/x", "no analysis template"),
        ("t/" + "/".join("x" * 21), "at most"),
    ],
)
def test_template_launch_addresses_are_checked(spec, wrong):
    with pytest.raises(PanbinderError) as e:
        TemplateProvider(spec)
    assert wrong in e.value.message


def test_each_pid_is_one_encoded_segment():
    p = TemplateProvider("sas-fit/10.5555%2Fa%2Fb/local%3Aopen-scan")
    assert (p.template, p.pids) == ("sas-fit", ["10.5555/a/b", "local:open-scan"])


def test_a_stored_application_definition_fits_a_format_whatever_the_technique_terms(cat):  # noqa: F811
    from panbinder.data_mounts.models import dataset_definitions

    with cat.session() as s:
        mx = add(s, "declares-nxmx", techniques=[SAXS], is_public=True)
        add(s, "declares-nothing", techniques=[SAXS], is_public=True)
        s.flush()
        s.execute(dataset_definitions.insert(), [{"dataset_id": mx.id, "definition": "NXmx"}])
    register(cat, title="Crystals", formats=["NXmx"])  # SAS technique, MX format terms
    assert fitting_names(cat) == {"declares-nxmx": ["crystals"]}
    assert pids(cat, query(filters={"template": ["crystals"]})) == ["declares-nxmx"]
