"""Paper-style repositories, one per way the repositories behind papers fail to build or run,
built through a real portal and each notebook executed headless in the built image with the
nightly check's executor (``checks.in_container``). ``benchmarks/build.py --paper-notebooks``
prints executed / total (target: all).

- forgot-plotting: requirements.txt lists numpy, the notebooks import matplotlib too;
- no-environment: no environment file at all (numpy, h5py);
- removed-api: an unpinned requirement whose newest release removed the function the notebooks
  call (dated releases on a package index of the benchmark's own, on the build bridge); the
  repository was committed in 2021;
- optional-reader: pandas' Excel reader, which imports openpyxl only when called;
- python2-kernel: notebooks saved with a ``python2`` kernelspec, holding Python 3 code;
- repo-data: notebooks in a folder that read the repository's data files by relative path;
- local-package: requirements.txt with ``-r`` and ``-e .`` (the paper's own package, setup.py);
- pipfile: a Pipfile, no lock, one entry with an environment marker.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from panbinder.checks.in_container import collect_repository, execute_in_container
from tests.dated_index import Releases, dated_repo
from tests.support import GitServer, machine_build_engine, notebook, read_stream
from tests.wheels import PURE

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
NOTEBOOK_TIMEOUT = 300.0
RELEASES: Releases = {
    "pbpaper-fitting": [
        (
            "1.0",
            "def fit_line(xs, ys):\n    return round(sum(ys) / sum(xs), 3)\n",
            "",
            PURE,
            "2020-05-04T10:00:00Z",
        ),
        (
            "2.0",
            "def fit(xs, ys):\n    return round(sum(ys) / sum(xs), 3)\n",
            "",
            PURE,
            "2024-02-01T10:00:00Z",
        ),
    ]
}
SPECTRUM = "energy,counts\n" + "".join(f"{e},{100 - (e - 7) ** 2}\n" for e in range(15))


@dataclass(frozen=True)
class PaperRepo:
    """A repository: its files (notebooks among them) and its commit date ("" : now)."""

    name: str
    files: dict[str, str]
    date: str = ""
    notebooks: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "notebooks", tuple(sorted(p for p in self.files if p.endswith(".ipynb"))))


def paper_repos(index: str) -> list[PaperRepo]:
    """The set, with ``index`` the dated package index's simple API URL."""
    fit = "from pbpaper_fitting import fit_line\n"
    return [
        PaperRepo(
            "forgot-plotting",
            {
                "requirements.txt": "numpy\n",
                "analysis.ipynb": notebook(
                    "import numpy as np\nimport matplotlib.pyplot as plt\nx = np.linspace(0, 1, 50)\n"
                    "plt.plot(x, x ** 2)\nplt.savefig('figure1.png')\nprint(round(float((x ** 2).sum()), 2))"
                ),
                "figures.ipynb": notebook(
                    "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.bar([1, 2], [3, 4])\nplt.show()"
                ),
            },
        ),
        PaperRepo(
            "no-environment",
            {
                "reduce.ipynb": notebook("import numpy as np\nprint(np.arange(5).sum())"),
                "export.ipynb": notebook(
                    "import h5py\nimport numpy as np\nwith h5py.File('reduced.h5', 'w') as f:\n"
                    "    f['counts'] = np.arange(3)\nprint(h5py.File('reduced.h5')['counts'][()].sum())"
                ),
            },
        ),
        PaperRepo(
            "removed-api",
            {
                "requirements.txt": f"--extra-index-url {index}\npbpaper-fitting\n",
                "fit.ipynb": notebook(fit + "print(fit_line([1, 2, 3], [2, 4, 6]))"),
                "compare.ipynb": notebook(fit + "assert fit_line([1], [3]) == 3.0"),
            },
            date="2021-03-15T12:00:00+00:00",
        ),
        PaperRepo(
            "optional-reader",
            {
                "requirements.txt": "pandas\n",
                "excel.ipynb": notebook(
                    "import pandas as pd\npd.DataFrame({'run': [1, 2]}).to_excel('runs.xlsx', index=False)\n"
                    "print(pd.read_excel('runs.xlsx')['run'].sum())"
                ),
                "table.ipynb": notebook(
                    "import pandas as pd\nprint(pd.read_csv('runs.csv')['energy'].max())"
                ),
                "runs.csv": SPECTRUM,
            },
        ),
        PaperRepo(
            "python2-kernel",
            {
                "old.ipynb": notebook("print(f'{6 * 7}')", kernel="python2", display_name="Python 2"),
                "older.ipynb": notebook(
                    "values = [*range(3)]\nprint(*values, sep=', ')",
                    kernel="python2",
                    display_name="Python 2",
                ),
            },
        ),
        PaperRepo(
            "repo-data",
            {
                "requirements.txt": "numpy\n",
                "data/spectrum.csv": SPECTRUM,
                "notebooks/peak.ipynb": notebook(
                    "import numpy as np\nd = np.loadtxt('../data/spectrum.csv', delimiter=',', skiprows=1)\n"
                    "print(int(d[d[:, 1].argmax(), 0]))"
                ),
                "notebooks/lines.ipynb": notebook("print(len(open('../data/spectrum.csv').readlines()))"),
            },
        ),
        PaperRepo(
            "local-package",
            {
                "requirements.txt": "-r requirements-base.txt\n-e .\n",
                "requirements-base.txt": "numpy\n",
                "setup.py": "from setuptools import setup\nsetup(name='paperlib', version='0.1', packages=['paperlib'])\n",
                "paperlib/__init__.py": "import numpy as np\n\ndef model(x):\n    return np.asarray(x) * 2\n",
                "model.ipynb": notebook("from paperlib import model\nprint(model([1, 2]).sum())"),
                "model_check.ipynb": notebook("import paperlib, numpy\nassert paperlib.model(1) == 2"),
            },
        ),
        PaperRepo(
            "pipfile",
            {
                "Pipfile": '[packages]\nnumpy = "*"\ntabulate = {version = "*", markers = "python_version >= \'3.8\'"}\n',
                "table.ipynb": notebook("from tabulate import tabulate\nprint(tabulate([[1, 2]]))"),
                "mean.ipynb": notebook("import numpy as np\nprint(np.mean([1, 2, 3]))"),
            },
        ),
    ]


@dataclass
class Outcome:
    repo: str
    built: bool
    detail: str = ""
    executed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def execute_all(image: str, prefix: str) -> tuple[list[str], dict[str, str]]:
    """Run every notebook of ``image`` headless in a container of the build engine, offline, with
    the check's executor: (notebooks that ran through, notebook -> its first error)."""
    docker = machine_build_engine().docker()
    container = f"{prefix}-{uuid.uuid4().hex[:8]}"
    proc = docker.run_cli("run", "-d", "--name", container, "--network=none", image, "sleep", "infinity")
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    try:
        with tempfile.TemporaryDirectory(prefix="panbinder-bench-nb-") as tmp:
            collect_repository(docker, container, Path(tmp), max_bytes=MAX_NOTEBOOK_BYTES)
            paths = sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*.ipynb"))
            ok, failed = [], {}
            for path in paths:
                nb = json.loads(Path(tmp, path).read_text())
                run = execute_in_container(docker, container, path, nb, timeout=NOTEBOOK_TIMEOUT)
                if run.ok:
                    ok.append(path)
                else:
                    failed[path] = run.error.describe() if run.error else "failed"
            return ok, failed
    finally:
        docker.run_cli("rm", "-f", container)


async def build_and_execute(
    portal_url: Callable[[str], str], git: GitServer, repo: PaperRepo, prefix: str
) -> Outcome:
    name = f"paper-{repo.name}-{int(time.time())}"
    if repo.date:
        url = dated_repo(git, name, repo.files, repo.date)
    else:
        git.commit(name, repo.files, "as the paper shipped it")
        url = git.url(name)
    stream = await read_stream(portal_url(url) + "?build_only=true", timeout=1800)
    if stream.last.get("phase") != "ready":
        return Outcome(repo.name, False, stream.last.get("message", "") or stream.log()[-2000:])
    ok, failed = execute_all(stream.last["imageName"], prefix)
    return Outcome(repo.name, True, executed=ok, failed=failed)
