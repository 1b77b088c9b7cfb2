"""The notebooks of a publication's last check: kept bounded (``checks.kept``) and shown read-only
on the publication page, as stored and as executed, under the portal's CSP."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import threading
import types
from datetime import UTC, datetime

import pytest

from panbinder.checks import kept as kept_module
from panbinder.checks.kept import KeptNotebooks
from panbinder.checks.verdict import Kind
from panbinder.errors import PanbinderError
from panbinder.web.handlers import notebooks as views
from tests.checks.test_notebook_html import problems
from tests.web_app import web_portal

DOI = "10.5555/notebooks/paper"  # '/notebooks/' in the DOI itself
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
PAYLOAD = "<script>window.__xss=1</script><img src=x onerror=window.__xss=1>"


def notebook(printed: str, *outputs: dict) -> dict:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": f"# Figure 3 {PAYLOAD}"},
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": 1,
                "source": "print(6 * 7)",
                "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}, *outputs],
            },
        ],
    }


def test_only_the_last_check_is_kept_and_each_notebook_is_capped(tmp_path):
    kept = KeptNotebooks(state=tmp_path, max_notebook_bytes=2000, max_notebooks=2)
    started = datetime(2026, 12, 1, 2, tzinfo=UTC)
    big = notebook("x" * 5000)
    kept.keep(DOI, Kind.FROZEN, started, [("a.ipynb", notebook("1\n"), None), ("b.ipynb", big, big)])
    last = kept.last(DOI)
    assert last is not None and last.started == started
    assert [(n.path, n.stored, n.executed) for n in last.notebooks] == [
        ("a.ipynb", True, False),
        ("b.ipynb", False, False),
    ]
    assert "more than 2000" in last.notebooks[1].note
    kept.keep(DOI, Kind.FROZEN, started, [(f"{i}.ipynb", notebook("2\n"), notebook("2\n")) for i in range(3)])
    last = kept.last(DOI)
    assert [n.path for n in last.notebooks] == ["0.ipynb", "1.ipynb", "2.ipynb"]
    assert last.notebooks[2].note == "not kept: too many notebooks"
    folder = next((tmp_path / "check-notebooks").iterdir()) / "frozen"
    assert sorted(p.name for p in folder.iterdir()) == [
        "0.executed.ipynb",
        "0.stored.ipynb",
        "1.executed.ipynb",
        "1.stored.ipynb",
        "manifest.json",
    ]  # the previous check's files are gone, nothing is named after a repository path
    assert kept.last(DOI, Kind.FRESH) is None


async def test_the_publication_page_shows_the_notebooks_as_stored_and_as_executed(tmp_path, monkeypatch):
    async with web_portal(tmp_path) as p:
        p.add_publication(DOI)
        kept: KeptNotebooks = p.serve.components.kept_notebooks
        stored = notebook(
            "42\n", {"output_type": "display_data", "metadata": {}, "data": {"text/html": PAYLOAD}}
        )
        executed = notebook(
            "43\n",
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG, "text/plain": "fig"}},
        )
        started = datetime.now(UTC)
        kept.keep(DOI, Kind.FROZEN, started, [("figures/fig 3.ipynb", stored, executed)])

        page = (await p.fetch(f"/publications/{DOI}", accept="text/html")).body.decode()
        link = f"/publications/{DOI}/notebooks/figures/fig%203.ipynb"
        assert f'href="{link}?as=executed"' in page and f'href="{link}?as=stored"' in page

        response = await p.fetch(f"{link}?as=stored", accept="text/html")
        assert response.code == 200
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "img-src 'self' blob: data:" in csp and "unsafe" not in csp
        view = response.body.decode()
        assert "As stored in the repository at commit" in view and "42" in view
        body = view[view.index('<div class="notebook-view">') : view.index("</main>")]
        assert problems(body) == [] and "<script" not in body  # as text at most
        assert "not shown here: text/html output" in view

        view = (await p.fetch(f"{link}?as=executed", accept="text/html")).body.decode()
        assert "As the last frozen check executed it" in view and "43" in view
        assert f'src="data:image/png;base64,{PNG}"' in view

        renders = []
        monkeypatch.setattr(views, "notebook_html", lambda nb, **_: renders.append(nb) or "<p>rendered</p>")
        again = (await p.fetch(f"{link}?as=executed", accept="text/html")).body.decode()
        assert renders == [] and f'src="data:image/png;base64,{PNG}"' in again  # rendered once per check
        kept.keep(DOI, Kind.FROZEN, datetime.now(UTC), [("figures/fig 3.ipynb", stored, executed)])
        again = (await p.fetch(f"{link}?as=executed", accept="text/html")).body.decode()
        assert len(renders) == 1 and "<p>rendered</p>" in again  # a new check: rendered afresh

        page_csp = (await p.fetch(f"/publications/{DOI}", accept="text/html")).headers[
            "Content-Security-Policy"
        ]
        assert "data:" not in page_csp  # only the notebook view allows data: images


async def test_a_path_that_is_not_a_checked_notebook_is_refused_clearly(tmp_path):
    async with web_portal(tmp_path) as p:
        p.add_publication(DOI)
        kept: KeptNotebooks = p.serve.components.kept_notebooks
        base = f"/publications/{DOI}/notebooks"
        never = await p.fetch(f"{base}/analysis.ipynb")
        assert never.code == 404 and "are kept here yet" in json.loads(never.body)["message"]

        kept.keep(DOI, Kind.FROZEN, datetime.now(UTC), [("analysis.ipynb", notebook("1\n"), notebook("1\n"))])
        cases = {
            f"{base}/other.ipynb": (404, "is not a notebook the last check of 10.5555/notebooks/paper ran"),
            f"{base}/..%2F..%2Fetc%2Fpasswd": (400, "The notebook path contains"),
            f"{base}/%2Fetc%2Fpasswd": (400, "starts with '/'"),
            f"{base}/analysis.ipynb?as=raw": (400, "'as' must be 'stored' or 'executed'"),
            f"{base}/analysis.ipynb?check=weekly": (400, "'check' must be 'frozen' or 'fresh'"),
            f"{base}/analysis.ipynb?check=fresh": (404, "are kept here yet"),
            "/publications/10.5555/nobody/notebooks/analysis.ipynb": (404, "No publication with DOI"),
        }
        for path, (code, message) in cases.items():
            response = await p.fetch(path)
            body = json.loads(response.body)
            assert (response.code, message in body["message"]) == (code, True), (path, body)
            assert "Traceback" not in response.body.decode()
        listing = json.loads((await p.fetch(f"{base}/other.ipynb")).body)["message"]
        assert listing.endswith("those are: analysis.ipynb.")


def printed(nb: dict) -> str:
    return nb["cells"][1]["outputs"][0]["text"]


def test_a_read_while_a_new_check_is_kept_sees_one_whole_check(tmp_path, monkeypatch):
    """Each rename and removal of a new check's keep is followed by a read: it gets the old
    check's notebook or the new one's, never a 404 nor another notebook at the same index."""
    kept = KeptNotebooks(state=tmp_path)
    first = [("a.ipynb", notebook("first a\n"), None), ("b.ipynb", notebook("first b\n"), None)]
    kept.keep(DOI, Kind.FROZEN, datetime(2026, 12, 1, tzinfo=UTC), first)
    seen = []

    def then_read(call):
        def wrapped(*args, **kwargs):
            result = call(*args, **kwargs)
            try:
                seen.append(printed(kept.read(DOI, "b.ipynb", "stored")))
            except Exception as error:
                seen.append(repr(error))
            return result

        return wrapped

    monkeypatch.setattr(
        kept_module, "os", types.SimpleNamespace(**{**vars(os), "replace": then_read(os.replace)})
    )
    monkeypatch.setattr(kept_module, "shutil", types.SimpleNamespace(rmtree=then_read(shutil.rmtree)))
    second = [("b.ipynb", notebook("second b\n"), None), ("a.ipynb", notebook("second a\n"), None)]
    kept.keep(DOI, Kind.FROZEN, datetime(2026, 12, 2, tzinfo=UTC), second)
    assert seen and set(seen) <= {"first b\n", "second b\n"}, seen
    assert printed(kept.read(DOI, "b.ipynb", "stored")) == "second b\n"


def test_a_version_whose_check_was_replaced_is_read_again(tmp_path):
    kept = KeptNotebooks(state=tmp_path)
    kept.keep(DOI, Kind.FROZEN, datetime(2026, 12, 1, tzinfo=UTC), [("a.ipynb", notebook("1\n"), None)])
    old = kept.version(DOI, "a.ipynb", "stored")
    assert old.keep_rendered("<p>1</p>", 100) and old.rendered() == "<p>1</p>"
    kept.keep(DOI, Kind.FROZEN, datetime(2026, 12, 2, tzinfo=UTC), [("a.ipynb", notebook("2\n"), None)])
    with pytest.raises(FileNotFoundError):
        old.read()
    assert old.rendered() is None and not old.keep_rendered("<p>1</p>", 100)  # gone with its check
    assert printed(kept.read(DOI, "a.ipynb", "stored")) == "2\n"
    assert len(list(kept._publication(DOI).iterdir())) == 2  # the symlink and one check's folder


def test_a_dois_notebooks_splits_are_capped():
    value = "10.5555/x" + "/notebooks/y" * 50
    assert len(views.split_candidates(value)) == views.MAX_SPLITS == 4
    assert views.split_candidates(value)[0] == ("10.5555/x", "y" + "/notebooks/y" * 49)


class Blocked:
    """notebook_html that counts its calls, notes its thread, and waits until released."""

    def __init__(self, body: str = "<p>rendered</p>") -> None:
        self.calls, self.threads, self.body = 0, set(), body
        self.release = threading.Event()

    def __call__(self, nb: dict, **_: object) -> str:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        assert self.release.wait(10)
        return self.body


async def test_concurrent_views_of_a_notebook_render_it_once_on_its_own_thread(tmp_path, monkeypatch):
    kept = KeptNotebooks(state=tmp_path)
    kept.keep(DOI, Kind.FROZEN, datetime.now(UTC), [("a.ipynb", notebook("1\n"), notebook("1\n"))])
    render = Blocked("x" * (views.MAX_CACHED + 1))  # too large for the memory cache
    monkeypatch.setattr(views, "notebook_html", render)
    views_ = [
        asyncio.ensure_future(views.rendered(kept, DOI, "a.ipynb", "executed", Kind.FROZEN)) for _ in range(8)
    ]
    await asyncio.sleep(0.2)
    render.release.set()
    bodies = await asyncio.gather(*views_)
    assert render.calls == 1 and {len(b) for b, _ in bodies} == {views.MAX_CACHED + 1}
    assert all(name.startswith("notebook-render") for name in render.threads), render.threads
    body, check = await views.rendered(kept, DOI, "a.ipynb", "executed", Kind.FROZEN)
    assert render.calls == 1 and len(body) == views.MAX_CACHED + 1  # a large body is kept on disk
    assert check.notebooks[0].path == "a.ipynb"


async def test_too_many_renders_at_once_answer_503(tmp_path, monkeypatch):
    kept = KeptNotebooks(state=tmp_path)
    paths = [f"{i}.ipynb" for i in range(views.MAX_RENDERING + 1)]
    kept.keep(DOI, Kind.FROZEN, datetime.now(UTC), [(p, notebook("1\n"), None) for p in paths])
    render = Blocked()
    monkeypatch.setattr(views, "notebook_html", render)
    try:
        busy = [
            asyncio.ensure_future(views.rendered(kept, DOI, p, "stored", Kind.FROZEN)) for p in paths[:-1]
        ]
        await asyncio.sleep(0.2)
        with pytest.raises(PanbinderError, match="Too many notebooks are being rendered") as caught:
            await asyncio.wait_for(views.rendered(kept, DOI, paths[-1], "stored", Kind.FROZEN), 2)
        assert caught.value.status_code == 503
    finally:
        render.release.set()
    assert len(await asyncio.gather(*busy)) == views.MAX_RENDERING
    assert render.calls == views.MAX_RENDERING
    assert (await views.rendered(kept, DOI, paths[-1], "stored", Kind.FROZEN))[0] == "<p>rendered</p>"


def test_a_check_kept_before_versioned_folders_is_replaced_whole(tmp_path):
    kept = KeptNotebooks(state=tmp_path)
    old = kept._publication(DOI) / "frozen"
    old.mkdir(parents=True)
    manifest = {"doi": DOI, "kind": "frozen", "started": "2026-12-01T00:00:00+00:00", "notebooks": []}
    manifest["notebooks"] = [{"path": "a.ipynb", "index": 0, "stored": True, "executed": False, "note": ""}]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / "0.stored.ipynb").write_text(json.dumps(notebook("old\n")))
    assert printed(kept.read(DOI, "a.ipynb", "stored")) == "old\n"
    kept.keep(DOI, Kind.FROZEN, datetime.now(UTC), [("a.ipynb", notebook("new\n"), None)])
    assert old.is_symlink() and printed(kept.read(DOI, "a.ipynb", "stored")) == "new\n"
    assert len(list(kept._publication(DOI).iterdir())) == 2


async def test_a_malformed_notebook_is_a_clear_422_or_a_notice(tmp_path):
    async with web_portal(tmp_path) as p:
        p.add_publication(DOI)
        kept: KeptNotebooks = p.serve.components.kept_notebooks
        broken = {**notebook("1\n"), "metadata": [], "cells": {"a": 1}}
        odd = {**notebook("1\n"), "metadata": []}
        odd["cells"][1] = {**odd["cells"][1], "outputs": 5}
        kept.keep(DOI, Kind.FROZEN, datetime.now(UTC), [("broken.ipynb", broken, odd)])
        base = f"/publications/{DOI}/notebooks/broken.ipynb"
        response = await p.fetch(f"{base}?as=stored")
        message = json.loads(response.body)["message"]
        assert response.code == 422 and "broken.ipynb is malformed ('cells' is a dict" in message
        view = await p.fetch(f"{base}?as=executed", accept="text/html")
        assert view.code == 200 and "not shown here: malformed output" in view.body.decode()
