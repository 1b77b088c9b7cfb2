"""What a repository forgot (imports.py): imports read from notebooks and scripts, the shipped
map, what is left out, and the layer and notice the build pack makes of it."""

from __future__ import annotations

import json
import logging
import re

import pytest
from packaging.utils import canonicalize_name

from panbinder.builder.buildpacks import NOTICE_PREFIX, PackSettings, configure
from panbinder.builder.buildpacks import imports as im
from panbinder.builder.buildpacks.python_pip import DebianPipBuildPack

BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}


def notebook(*cells: str) -> str:
    return json.dumps(
        {
            "cells": [{"cell_type": "code", "source": c.splitlines(True), "metadata": {}} for c in cells]
            + [{"cell_type": "markdown", "source": "import notcode", "metadata": {}}],
            "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_magics_and_shell_lines_are_blanked_and_their_cell_still_parses():
    cell = "%matplotlib inline\n!pip install foo\n%pip install bar\nx = !ls\nimport numpy as np\nnp?\n"
    source, written = im.python_source(cell)
    assert im.imports_in(source) == {"numpy"}
    assert "pip" not in im.imports_in(source) and written == ""
    # a cell magic whose body is not Python is skipped; a timed cell is read
    assert im.python_source("%%bash\nimport yaml\n") == ("", "")
    assert im.imports_in(im.python_source("%%time\nimport yaml\n")[0]) == {"yaml"}
    assert im.python_source("%%writefile helpers.py\nimport yaml\n") == ("import yaml", "helpers")


def test_a_cell_that_does_not_parse_is_read_line_by_line():
    python2 = "print 'hello'\nimport cv2, PIL.Image as I\nfrom skimage import io\nexec 'x'\n"
    assert im.imports_in(python2) == {"cv2", "PIL", "skimage"}


def test_relative_and_guarded_imports_are_left_out():
    code = (
        "from . import helpers\nfrom .util import x\n"
        "try:\n    import tqdm\nexcept ImportError:\n    tqdm = None\n"
        "try:\n    import seaborn\nfinally:\n    pass\n"
        "def f():\n    import h5py.h5\n"
    )
    assert im.imports_in(code) == {"seaborn", "h5py"}


def test_the_map_names_real_distributions_and_the_usual_renames():
    imap = im.load_map()
    assert imap.modules["sklearn"] == "scikit-learn"
    assert imap.modules["cv2"] == "opencv-python-headless"
    assert imap.modules["PIL"] == "Pillow"
    assert imap.modules["skimage"] == "scikit-image"
    assert imap.modules["yaml"] == "PyYAML"
    for module, dist in imap.modules.items():
        assert module.isidentifier(), module
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", dist), dist
    for rule in imap.optional:
        assert not rule.module or rule.module in imap.modules or rule.module in imap.provided
        assert canonicalize_name(rule.install) in {canonicalize_name(d) for d in imap.modules.values()}


def test_scan_infers_what_is_missing_and_leaves_out_stdlib_own_and_listed(repo):
    (repo / "analysis.ipynb").write_text(
        notebook(
            "%matplotlib inline\nimport os, sys, json\nimport numpy as np\nimport pandas as pd",
            "from sklearn.linear_model import LinearRegression\nimport cv2\nfrom mylib import tools\n",
            "import helpers\nimport notapackage_xyz\ndf = pd.read_excel('data.xlsx')\n",
            "print 'python 2 cell'\nimport h5py\n",
            "import IPython\nfrom tornado import web\n",  # the server layer has them
        )
    )
    (repo / "helpers.py").write_text("import scipy.optimize\n")
    (repo / "mylib").mkdir()
    (repo / "mylib" / "tools.py").write_text("from . import other\nimport yaml\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "conf.py").write_text("import sphinx_rtd_theme\n")
    (repo / "requirements.txt").write_text("pandas>=1\nNumPy==1.26 ; python_version>'3'\n-e .\n")
    found = im.scan(".")
    assert {"helpers", "mylib", "tools", "conf"} <= found.own
    inference = im.infer(found, im.requirements_file_names("requirements.txt"))
    assert set(inference.install) == {
        "scikit-learn",
        "opencv-python-headless",
        "h5py",
        "scipy",
        "openpyxl",
        "matplotlib",  # %matplotlib inline needs it
    }
    assert inference.install["scikit-learn"] == "import sklearn in analysis.ipynb"
    assert inference.install["openpyxl"] == "pandas' Excel reader and writer in analysis.ipynb"
    assert set(inference.unknown) == {"notapackage_xyz"}  # never guessed; docs/ is not read
    text = inference.notice()
    assert "scikit-learn (import sklearn in analysis.ipynb)" in text
    assert "notapackage_xyz (analysis.ipynb)" in text


def test_matplotlib_magics_bring_their_back_ends(repo):
    (repo / "a.ipynb").write_text(notebook("%matplotlib widget\nimport matplotlib.pyplot as plt"))
    inference = im.infer(im.scan("."), set())
    assert set(inference.install) == {"matplotlib", "ipympl"}


def test_an_optional_dependency_of_a_module_nobody_imports_is_not_installed(repo):
    (repo / "a.py").write_text("x.read_excel('a.xlsx')\n")
    assert im.infer(im.scan("."), set()).install == {}


def test_installed_names_use_canonical_names(repo):
    (repo / "a.py").write_text("import yaml, PIL, sklearn\n")
    (repo / "more.txt").write_text("scikit_learn\n")
    (repo / "requirements.txt").write_text("pillow  # images\n-r more.txt\ngit+https://x/y.git#egg=foo\n")
    installed = im.requirements_file_names("requirements.txt")
    assert installed == {"pillow", "scikit-learn", "foo"}
    assert im.infer(im.scan("."), installed).install == {}  # yaml: the server layer has PyYAML


def test_requirements_files_that_include_each_other_are_read_once(repo):
    (repo / "requirements.txt").write_text("numpy\n-r ./requirements.txt\n-r binder/more.txt\n")
    (repo / "binder").mkdir()
    (repo / "binder" / "more.txt").write_text("scipy\n-r ../requirements.txt\n--requirement=more.txt\n")
    assert im.requirements_file_names("requirements.txt") == {"numpy", "scipy"}


def test_included_requirements_outside_the_checkout_are_not_read(tmp_path, monkeypatch):
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.txt").write_text("hostonlypackage\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    (repo / "link.txt").symlink_to(host / "secret.txt")
    (repo / "requirements.txt").write_text(
        f"numpy\n-r link.txt\n-r ../host/secret.txt\n-r {host / 'secret.txt'}\n"
    )
    refused: list[str] = []
    assert im.requirements_file_names("requirements.txt", refused=refused) == {"numpy"}
    assert sorted(set(refused)) == ["../host/secret.txt", "link.txt"]


def test_the_build_log_names_a_refused_include(repo, caplog):
    outside = repo.parent / f"{repo.name}-outside.txt"
    outside.write_text("pandas\n")
    (repo / "requirements.txt").write_text(f"numpy\n-r ../{outside.name}\n")
    (repo / "a.py").write_text("import numpy\n")
    _, log = render(caplog)
    assert f"not read, as it is outside the repository: ../{outside.name}" in log


def render(caplog, settings: PackSettings | None = None) -> tuple[str, str]:
    log = logging.getLogger("test.imports")
    pack = configure(DebianPipBuildPack, settings or PackSettings(), log)(base_image="b")
    with caplog.at_level(logging.INFO, logger="test.imports"):
        dockerfile = pack.render(BUILD_ARGS)
    return dockerfile, "\n".join(r.getMessage() for r in caplog.records if r.name == "test.imports")


def test_the_inferred_layer_follows_the_requirements_before_the_repository_copy(repo, caplog):
    (repo / "requirements.txt").write_text("numpy\n")
    (repo / "a.ipynb").write_text(notebook("import numpy\nimport skimage"))
    dockerfile, log = render(caplog)
    lines = dockerfile.splitlines()
    req = next(i for i, ln in enumerate(lines) if "-r requirements.txt" in ln)
    inferred = next(i for i, ln in enumerate(lines) if "-r .panbinder/inferred-requirements.txt" in ln)
    assert req < inferred < lines.index("COPY --chown=1000:1000 src/ ${REPO_DIR}/")
    assert "panbinder-inferred-requirements.txt" in lines[inferred]
    assert (repo / ".panbinder" / "inferred-requirements.txt").read_text() == "scikit-image\n"
    assert NOTICE_PREFIX + "the notebooks and scripts use packages that no requirements" in log
    assert "scikit-image (import skimage in a.ipynb)" in log


def test_a_package_repository_gets_the_layer_after_its_install(repo, caplog):
    (repo / "setup.py").write_text("from setuptools import setup\nsetup(name='x')\n")
    (repo / "a.py").write_text("import seaborn\n")
    dockerfile, _ = render(caplog)
    lines = dockerfile.splitlines()
    own = next(i for i, ln in enumerate(lines) if ln.rstrip().endswith("install --no-warn-script-location ."))
    inferred = next(i for i, ln in enumerate(lines) if "inferred-requirements.txt" in ln and "RUN" in ln)
    assert own < inferred


def test_the_setting_turns_it_off(repo, caplog):
    (repo / "a.ipynb").write_text(notebook("import sklearn"))
    dockerfile, log = render(caplog, PackSettings(infer_packages=False))
    assert "inferred-requirements" not in dockerfile and NOTICE_PREFIX not in log
    assert not (repo / ".panbinder").exists()


def test_the_lock_records_the_inferred_distributions():
    from panbinder.builder.lock import PROBE, SEPARATOR, parse_probe

    assert "panbinder-inferred-requirements.txt" in PROBE
    out = f"3.11.2\n{SEPARATOR}\nh5py==3.1\n{SEPARATOR}\nbash=5.2\n{SEPARATOR}\n{SEPARATOR}\n{SEPARATOR}\nscikit-image\nh5py\n"
    assert parse_probe(out)["inferred"] == ["h5py", "scikit-image"]
    assert "inferred" not in parse_probe(out.rsplit(SEPARATOR, 1)[0] + f"{SEPARATOR}\n")


def test_the_deployment_adds_its_own_packages_to_the_map(repo, caplog):
    (repo / "a.ipynb").write_text(notebook("import facility_tools\nimport yaml"))
    settings = PackSettings(extra_import_map=(("facility_tools", "facility-tools"), ("yaml", "PyYAML")))
    render(caplog, settings)
    assert (repo / ".panbinder" / "inferred-requirements.txt").read_text() == "facility-tools\nPyYAML\n"
    assert im.infer(im.scan("."), set()).unknown == {"facility_tools": "a.ipynb"}  # not in the shipped map
