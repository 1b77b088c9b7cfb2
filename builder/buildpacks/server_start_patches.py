"""Patches for a faster single-user server start, carried in images: JupyterHub's lazy Hub imports,
JupyterLab's npm registry read on first use, jupyter-lsp's npm prefix from the environment.

Written to be proposed upstream to JupyterHub (``--diff`` prints it as a unified diff against the
installed package); every image carries it until a JupyterHub release has the same change.

Why: a single-user server never opens the Hub's database, yet ``import jupyterhub.singleuser``
imports it all. The package imports its legacy ``mixins``, which (like the server extension) import
``jupyterhub.log``, which imports ``jupyterhub.handlers`` for one ``isinstance`` check and so the
ORM, SQLAlchemy, Alembic, the spawner and the user model; ``jupyterhub.scopes`` (needed for one
scope intersection) and ``jupyterhub.metrics`` import the ORM too, and ``jupyterhub.utils`` imports
``sqlalchemy.exc`` for one ``except`` clause. Measured inside a built image (December 2026): that
added 0.6 s to every server start on top of ``jupyter_server.serverapp``, 0.28 s of it the ORM.

The change, hunk by hunk (behaviour on the Hub's side is unchanged, only *when* modules load):

- ``jupyterhub/_lazy.py`` (new): ``lazy_module(name)``, a module object that loads on first
  attribute access (``importlib.util.LazyLoader``).
- ``jupyterhub.scopes`` and ``jupyterhub.metrics``: ``orm``, ``roles`` and ``sqlalchemy`` are such
  lazy modules; only functions use them, and those run in the Hub.
- ``jupyterhub.log``: ``log_request`` treats a handler as a health check only when the Hub's
  handlers are loaded (a handler cannot be a ``HealthCheckHandler`` otherwise).
- ``jupyterhub.utils``: ``catch_db_error`` imports ``SQLAlchemyError`` when an exception happens.
- ``jupyterhub.singleuser``: ``HubAuthenticatedHandler`` and ``make_singleuser_app`` come from
  ``mixins`` on first use (PEP 562); the default entry point, the server extension, needs neither.

OAuth, activity reports, the Hub version check, ``allow_origin`` and the access log are the
extension's own code and run unchanged. The patch applies to the JupyterHub it was written against:
when any hunk does not match exactly once (another version), nothing is changed and the server
starts as before, only slower.

The same file carries a second patch, to JupyterLab, on the same terms (``LAB_HUNKS``): importing
``jupyterlab.labapp`` asks for the application's version, which makes an ``AppOptions`` whose default
npm registry comes from running ``node yarn.js config --json`` when Node.js is installed (as it is in
every panbinder image, for npm installs): about 1 s of every server start, for a registry only an
extension install or update check uses. With the patch the handler reads the registry on first use.

A third, to jupyter-lsp (``LSP_HUNKS``): after every server start its language server search asks
``npm prefix -g`` for npm's global folder, about 1 s of CPU per server (twenty servers starting at
once wait for each other's npm). npm's global folder is its ``prefix`` setting, which panbinder's
images set in the environment (``NPM_CONFIG_PREFIX``), and npm's own rule puts the environment
before its configuration files; with the patch the search reads it from there without running npm.

Usage (in an image, with the server's Python): ``python server_start_patches.py [--diff]``.
Standard library only: it runs in the image right after the server's packages are installed
(``build_script``); the build packs copy it there (``IN_IMAGE``).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

LAZY_MODULE = '''\
"""Modules loaded on first attribute access, for imports only some processes need."""

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """The module ``name``, loaded when an attribute of it is first used.

    Used for the Hub's database layer, which single-user servers import but never use.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
'''

LIGHT_FETCH = '''\
"""Hub API requests for processes that have not loaded aiohttp: single-user servers, services.

``jupyterhub.httpclient`` (aiohttp) is the Hub's client. Importing aiohttp costs a single-user
server about 0.2 s at start (it builds SSL contexts and its DNS resolver at import), while
Tornado's client is loaded already. ``fetch`` takes the same arguments and returns a response
with the attributes callers use (``status``, ``reason``, ``ok``, ``headers``, ``text()``,
``json()``, ``raise_for_status()``). A process that has loaded ``jupyterhub.httpclient`` (the
Hub) and ``http+unix`` URLs keep using aiohttp.
"""

import json
import sys

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class LightResponse:
    """The parts of ``aiohttp.ClientResponse`` that JupyterHub's callers use."""

    def __init__(self, response):
        self._response = response
        self.status = response.code
        self.reason = response.reason
        self.headers = response.headers
        self.ok = response.code < 400

    async def text(self):
        return (self._response.body or b"").decode("utf8", "replace")

    async def json(self):
        return json.loads(await self.text())

    def raise_for_status(self):
        if not self.ok:
            raise HTTPClientError(self.status, self.reason, self._response)


async def fetch(url, *, method="GET", raise_for_status=True, headers=None, data=None, ssl=None, **kwargs):
    """Make an HTTP request (see ``jupyterhub.httpclient.fetch``)."""
    if "jupyterhub.httpclient" in sys.modules or kwargs or url.startswith("http+unix"):
        from .httpclient import fetch as aiohttp_fetch

        return await aiohttp_fetch(
            url, method=method, raise_for_status=raise_for_status, headers=headers, data=data, ssl=ssl, **kwargs
        )
    if data is None and method in {"POST", "PUT", "PATCH"}:
        data = b""
    request = HTTPRequest(url, method=method, headers=headers, body=data, ssl_options=ssl, follow_redirects=False)
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except HTTPClientError as e:
        if e.response is None:
            raise
        response = e.response
    if response.code == 599:  # no response: connection failed or timed out
        raise response.error
    result = LightResponse(response)
    if raise_for_status:
        result.raise_for_status()
    return result
'''

SOURCE = str(Path(__file__).resolve())
IN_IMAGE = "/etc/panbinder/server_start_patches.py"


def build_script(venv: str) -> str:
    """The build step that applies the patch to the JupyterHub installed in ``venv``."""
    return f"{venv}/bin/python {IN_IMAGE}"


# (file in the jupyterhub package, text it has exactly once, replacement); "" old text: a new file
HUNKS: tuple[tuple[str, str, str], ...] = (
    ("_lazy.py", "", LAZY_MODULE),
    ("_light_fetch.py", "", LIGHT_FETCH),
    (
        "services/auth.py",
        "from ..httpclient import fetch\n",
        "from .._light_fetch import fetch\n",
    ),
    (
        "singleuser/extension.py",
        "from jupyterhub.httpclient import fetch\n",
        "from jupyterhub._light_fetch import fetch\n",
    ),
    (
        "utils.py",
        "import aiohttp\nimport idna\n",
        "import idna\n",
    ),
    (
        "utils.py",
        "from tornado.log import app_log\n\nfrom .httpclient import fetch\n",
        "from tornado.log import app_log\n",
    ),
    (
        "utils.py",
        "    async def is_reachable():\n        try:\n            r = await fetch(url,",
        "    # the Hub's aiohttp client: single-user servers import this module without it\n"
        "    import aiohttp\n\n    from .httpclient import fetch\n\n"
        "    async def is_reachable():\n        try:\n            r = await fetch(url,",
    ),
    (
        "scopes.py",
        "import sqlalchemy as sa\nfrom tornado import web\nfrom tornado.log import app_log\n\n"
        "from . import orm, roles\nfrom ._memoize import",
        "from tornado import web\nfrom tornado.log import app_log\n\n"
        "from ._lazy import lazy_module\nfrom ._memoize import",
    ),
    (
        "scopes.py",
        '"""when modifying the scope definitions',
        "# the Hub's database layer, loaded on first use: single-user servers import this module\n"
        "# for scope checks that need no database\n"
        'sa = lazy_module("sqlalchemy")\norm = lazy_module("jupyterhub.orm")\n'
        'roles = lazy_module("jupyterhub.roles")\n\n"""when modifying the scope definitions',
    ),
    (
        "metrics.py",
        "from . import orm\nfrom .utils import utcnow\n",
        "from ._lazy import lazy_module\nfrom .utils import utcnow\n\n"
        'orm = lazy_module("jupyterhub.orm")  # used by the Hub only, not by single-user servers\n',
    ),
    (
        "log.py",
        "import json\nimport logging\n",
        "import json\nimport logging\nimport sys\n",
    ),
    (
        "log.py",
        "from .handlers.pages import HealthCheckHandler\nfrom .metrics import prometheus_log_method\n",
        "from .metrics import prometheus_log_method\n\n\n"
        "def _is_health_check(handler):\n"
        '    """Whether ``handler`` is the Hub\'s health check (single-user servers never load it)."""\n'
        '    pages = sys.modules.get("jupyterhub.handlers.pages")\n'
        "    return pages is not None and isinstance(handler, pages.HealthCheckHandler)\n",
    ),
    (
        "log.py",
        "status < 300 and isinstance(handler, StaticFileHandler | HealthCheckHandler)",
        "status < 300\n        and (isinstance(handler, StaticFileHandler) or _is_health_check(handler))",
    ),
    (
        "utils.py",
        "import idna\nfrom sqlalchemy.exc import SQLAlchemyError\n",
        "import idna\n",
    ),
    (
        "utils.py",
        '        except SQLAlchemyError:\n            self.log.exception("Rolling back session',
        "        except Exception as e:\n"
        "            from sqlalchemy.exc import SQLAlchemyError  # the Hub's only, loaded late\n\n"
        "            if not isinstance(e, SQLAlchemyError):\n"
        "                raise\n"
        '            self.log.exception("Rolling back session',
    ),
    (
        "singleuser/__init__.py",
        "import os\n\nfrom .mixins import HubAuthenticatedHandler, make_singleuser_app\n",
        "import os\n\n\ndef __getattr__(name):\n"
        '    """The legacy app\'s mixins, imported on first use: the server extension (the default)\n'
        '    needs neither, and importing them loads the Hub\'s handlers and database layer."""\n'
        '    if name in {"HubAuthenticatedHandler", "make_singleuser_app"}:\n'
        "        from . import mixins\n\n"
        "        return getattr(mixins, name)\n"
        '    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")\n\n',
    ),
)


# JupyterLab's handler reads the npm registry (which runs yarn) when it is made; on first use instead
LAB_HUNKS: tuple[tuple[str, str, str], ...] = (
    (
        "commands.py",
        "        self.kill_event = options.kill_event\n        self.registry = options.registry\n",
        "        self.kill_event = options.kill_event\n",
    ),
    (
        "commands.py",
        '    def __init__(self, options):\n        """Create a new _AppHandler object"""\n',
        "    @property\n"
        "    def registry(self):\n"
        '        """The npm registry, read on first use: the default runs yarn (about 1 s), and most\n'
        '        handlers (the server start makes one for the version) never fetch a package."""\n'
        "        return self._options.registry\n\n"
        "    @registry.setter\n"
        "    def registry(self, value):\n"
        "        self._options.registry = value\n\n"
        '    def __init__(self, options):\n        """Create a new _AppHandler object"""\n',
    ),
)

# jupyter-lsp: npm's global folder from the environment, when npm would read it from there
LSP_HUNKS: tuple[tuple[str, str, str], ...] = (
    (
        "types.py",
        "import json\nimport pathlib\n",
        "import json\nimport os\nimport pathlib\n",
    ),
    (
        "types.py",
        "    def _npm_prefix(self, npm: Text):\n        try:\n",
        "    def _npm_prefix(self, npm: Text):\n"
        "        # npm's global folder is its prefix setting, which the environment comes before in\n"
        "        # npm's own order: from there, no need to run npm (about 1 s at every server start)\n"
        '        configured = os.environ.get("npm_config_prefix") or os.environ.get("NPM_CONFIG_PREFIX")\n'
        "        if configured:\n"
        "            return os.path.abspath(os.path.expanduser(configured))\n"
        "        try:\n",
    ),
)

# (package, hunks, what the patch is called in the build's output)
PATCHES = (
    ("jupyterhub", HUNKS, "lazy Hub imports"),
    ("jupyterlab", LAB_HUNKS, "lazy npm registry"),
    ("jupyter_lsp", LSP_HUNKS, "npm prefix from the environment"),
)


def patched(package: Path, hunks: tuple[tuple[str, str, str], ...] = HUNKS) -> dict[Path, tuple[str, str]]:
    """{file: (old text, new text)} for every file the hunks touch; ValueError when one does
    not apply (then nothing is changed)."""
    files: dict[Path, tuple[str, str]] = {}
    for name, old, new in hunks:
        path = package / name
        if path not in files:
            files[path] = (path.read_text() if path.exists() else "",) * 2
        before, text = files[path]
        if not old:
            if path.exists():
                raise ValueError(f"{name} exists already")
            text = new
        elif text.count(old) != 1:
            raise ValueError(f"{name}: a hunk matches {text.count(old)} times, not once")
        else:
            text = text.replace(old, new)
        files[path] = (before, text)
    return files


def main(argv: list[str]) -> int:
    for name, hunks, label in PATCHES:
        apply(name, hunks, label, diff="--diff" in argv)
    return 0


def apply(name: str, hunks: tuple[tuple[str, str, str], ...], label: str, *, diff: bool) -> None:
    """Apply (or print with ``diff``) one package's patch, whole or not at all."""
    import importlib
    import os
    import py_compile

    try:
        module = importlib.import_module(name)
    except ImportError:
        print(f"{name} is not installed: {label} not applied")
        return
    what = f"{name} {getattr(module, '__version__', '')}".rstrip()
    package = Path(module.__file__).parent
    try:
        files = patched(package, hunks)
    except (OSError, ValueError) as e:
        print(f"{what}: {label} not applied ({e})")
        return
    if diff:
        for path, (before, after) in files.items():
            shown = f"{name}/{path.relative_to(package)}"
            sys.stdout.writelines(
                difflib.unified_diff(
                    before.splitlines(True),
                    after.splitlines(True),
                    f"a/{shown}" if before else "/dev/null",
                    f"b/{shown}",
                )
            )
        return
    unwritable = sorted({str(p.parent) for p in files if not os.access(p.parent, os.W_OK)})
    if unwritable:
        print(f"{what}: {label} not applied (cannot write {unwritable})")
        return
    for path, (_, after) in files.items():
        path.write_text(after)
        py_compile.compile(str(path), doraise=True)
    print(f"{what}: {label} applied to {len(files)} files")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
