"""Which notebooks a check runs: the repository's panbinder.yml (validated) or every notebook with outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from panbinder.checks.notebooks import load_plan
from panbinder.errors import PanbinderError

from .material import notebook, stdout, write


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    write(root / "figures" / "fig1.ipynb", notebook([stdout("1\n")]))
    write(root / "figures" / "fig2.ipynb", notebook([stdout("2\n")]))
    write(root / "analysis.ipynb", notebook([stdout("3\n")]))
    write(root / "scratch.ipynb", notebook([]))  # stored without outputs
    write(root / "figures" / ".ipynb_checkpoints" / "fig1-checkpoint.ipynb", notebook([stdout("1\n")]))
    return root


def plan_file(repo: Path, text: str, name: str = "binder/panbinder.yml") -> None:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)


def test_without_a_plan_every_notebook_with_outputs_is_checked(repo):
    write(repo / "broken.ipynb", "{not json")
    plan = load_plan(repo, default_timeout=300)
    assert plan.notebooks == ("analysis.ipynb", "figures/fig1.ipynb", "figures/fig2.ipynb")
    assert plan.source == "" and plan.timeout == 300 and plan.commands == ()
    assert [name for name, _ in plan.unreadable] == ["broken.ipynb"]


def test_a_plan_names_notebooks_by_path_and_glob_with_commands_and_timeout(repo):
    plan_file(
        repo,
        "check:\n  notebooks: [analysis.ipynb, 'figures/fig*.ipynb', figures/fig1.ipynb]\n"
        "  commands: ['python make_table.py']\n  timeout: 90\n",
    )
    plan = load_plan(repo)
    assert plan.notebooks == ("analysis.ipynb", "figures/fig1.ipynb", "figures/fig2.ipynb")
    assert plan.commands == ("python make_table.py",) and plan.timeout == 90.0
    assert plan.source == "binder/panbinder.yml"


def test_a_plan_may_name_a_notebook_stored_without_outputs(repo):
    plan_file(repo, "check: {notebooks: [scratch.ipynb]}\n", ".panbinder.yml")
    assert load_plan(repo).notebooks == ("scratch.ipynb",)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("check:\n  notebook: [analysis.ipynb]\n", ["check has unknown keys ['notebook']"]),
        ("checks: {}\n", ["the top level has unknown keys ['checks']"]),
        ("- analysis.ipynb\n", ["the top level must be a mapping"]),
        ("check: [analysis.ipynb]\n", ["check must be a mapping"]),
        ("check: {notebooks: analysis.ipynb}\n", ["check.notebooks must be a list"]),
        (
            "check: {notebooks: [missing.ipynb]}\n",
            ["check.notebooks[0] matches no notebook", "missing.ipynb"],
        ),
        ("check: {notebooks: [analysis.ipynb, 3]}\n", ["check.notebooks[1] must be a notebook path"]),
        ("check: {notebooks: [../other/a.ipynb]}\n", ["check.notebooks[0] must be a relative path inside"]),
        ("check: {notebooks: [/etc/a.ipynb]}\n", ["check.notebooks[0] must be a relative path inside"]),
        ("check: {notebooks: ['~/a.ipynb']}\n", ["check.notebooks[0] must be a relative path inside"]),
        ("check: {notebooks: [analysis.py]}\n", ["check.notebooks[0] must name .ipynb files"]),
        ("check: {commands: python x.py}\n", ["check.commands must be a list"]),
        ("check: {commands: ['']}\n", ["check.commands[0] must be a command line"]),
        (
            "check: {notebooks: [analysis.ipynb], timeout: ten}\n",
            ["check.timeout must be a positive number", "'ten'"],
        ),
        ("check: {notebooks: [analysis.ipynb], timeout: -5}\n", ["check.timeout must be a positive number"]),
        (
            "check: {notebooks: [analysis.ipynb], timeout: true}\n",
            ["check.timeout must be a positive number"],
        ),
        ("check: {}\n", ["check names no notebooks and no commands"]),
        ("check: {notebooks: [a\n", ["cannot be read as YAML"]),
    ],
)
def test_a_bad_plan_is_refused_naming_the_file_and_the_key(repo, text, words):
    plan_file(repo, text)
    with pytest.raises(PanbinderError) as caught:
        load_plan(repo)
    assert caught.value.message.startswith("binder/panbinder.yml: ")
    for word in words:
        assert word in caught.value.message
    assert caught.value.reason == "bad_check_plan"


def test_two_plan_files_are_refused(repo):
    plan_file(repo, "check: {notebooks: [analysis.ipynb]}\n")
    plan_file(repo, "check: {notebooks: [figures/fig1.ipynb]}\n", ".panbinder.yml")
    with pytest.raises(PanbinderError, match=r"binder/panbinder.yml and .panbinder.yml both exist"):
        load_plan(repo)


def test_links_out_of_the_repository_are_not_followed(repo, tmp_path):
    outside = write(tmp_path / "outside" / "secret.ipynb", notebook([stdout("secret\n")]))
    os.symlink(outside, repo / "linked.ipynb")
    plan = load_plan(repo)
    assert "linked.ipynb" not in plan.notebooks
    assert ("linked.ipynb", "a link to a file outside the repository") in plan.unreadable
    plan_file(repo, "check: {notebooks: [linked.ipynb]}\n")
    with pytest.raises(PanbinderError, match="matches no notebook"):
        load_plan(repo)
