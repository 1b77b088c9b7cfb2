"""A notebook as inert HTML: nbconvert's HTML exporter on a copy stripped of active content, then
an allow-list sanitiser over the result.

A notebook's outputs and markdown are hostile input (the repository's author, or whatever the
code printed, chose them). Two layers, so one mistake is not enough:

1. ``inert_notebook``: only outputs that cannot run anything are kept: streams, errors (both
   escaped by nbconvert), ``text/plain``, and ``image/png`` / ``image/jpeg`` whose data is base64.
   HTML, JavaScript, SVG, Markdown, LaTeX and widget outputs are dropped, and a notice in their
   place names what was left out (their ``text/plain`` form, if any, still shows). Raw cells,
   attachments and the notebook's metadata (widget state among it) are dropped too. Text kept as
   a list of lines (as on disk) is joined; parts of the wrong type are left out with a notice.
2. ``sanitise``: the exporter's HTML (markdown cells may hold raw HTML) goes through bleach with
   an allow-list of tags; attributes are ``class`` everywhere, ``href``/``title`` on links (no
   scheme other than http, https and mailto, read as a browser reads it: entities decoded,
   whitespace and control characters removed, so ``da&#9;ta:`` is ``data:``) and ``src``/``alt``
   on images (a ``data:`` URL of a PNG or JPEG only, base64). Scripts, event handlers, styles, iframes, forms, ``javascript:`` URLs and
   ids (DOM clobbering) do not survive.

The page that embeds the result is served under the portal's CSP (no inline script), with
``img-src`` widened to ``data:`` on that page alone (``web/handlers/notebooks.py``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import html
import re
import threading
from typing import Any

import bleach
import nbformat
from nbconvert import HTMLExporter

from panbinder.errors import PanbinderError

SAFE_DATA = ("text/plain", "image/png", "image/jpeg")
IMAGES = ("image/png", "image/jpeg")
IMAGE_SRC = re.compile(r"^data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+$")
SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
# what browsers (and bleach) drop from a URL before reading its scheme: 'da&#9;ta:' is 'data:'
URL_NOISE = re.compile(r"[\x00-\x20\x7f-\xa0\s]+")
LINK_SCHEMES = ("http", "https", "mailto")
ATTACHMENT = re.compile(r"attachment:([^\s)\"'<>]*)")
TAGS = frozenset(
    {
        *bleach.sanitizer.ALLOWED_TAGS,
        *("div", "span", "p", "pre", "br", "hr", "img", "del", "s", "sub", "sup", "kbd", "samp"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "dl", "dt", "dd", "q", "cite", "var"),
        *("table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption"),
    }
)
_lock = threading.Lock()
_exporter: HTMLExporter | None = None


def _notice(left_out: list[str]) -> dict[str, Any]:
    text = (
        f"[not shown here: {', '.join(sorted(set(left_out)))} output — untrusted content is shown "
        "only as text or images; launch the publication to see it]\n"
    )
    return nbformat.v4.new_output("stream", name="stderr", text=text)


def _image_ok(value: Any) -> bool:
    text = "".join(value) if isinstance(value, list) else value
    if not isinstance(text, str):
        return False
    try:
        base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _inert_output(output: dict[str, Any]) -> list[dict[str, Any]]:
    kind = output.get("output_type")
    if kind == "stream":
        text = _text(output.get("text", ""))  # a list of lines as stored on disk
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return [nbformat.v4.new_output("stream", name=name, text=text)]
    if kind == "error":
        fields = {k: _text(output.get(k, "")) for k in ("ename", "evalue")}
        lines = output.get("traceback", [])
        lines = lines if isinstance(lines, list) else [lines] if isinstance(lines, str) else []
        traceback = [_text(line) for line in lines]
        return [nbformat.v4.new_output("error", traceback=traceback, **fields)]
    if kind not in ("display_data", "execute_result"):
        return [_notice([f"'{str(kind)[:40]}'"])]
    data = output.get("data", {}) if isinstance(output.get("data"), dict) else {}
    kept = {k: v for k, v in data.items() if k in SAFE_DATA and (k not in IMAGES or _image_ok(v))}
    kept = {
        k: ("".join(v.split()) if k in IMAGES else v) for k, v in ((k, _text(v)) for k, v in kept.items())
    }
    left_out = [k[:60] for k in data if k not in kept]
    shown = []
    if kept:
        shown.append(nbformat.v4.new_output("display_data", data=kept))
    return shown + ([_notice(left_out)] if left_out else [])


def _text(value: Any) -> str:
    return "".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _markdown(source: str, attachments: Any) -> nbformat.NotebookNode:
    """A markdown cell with only its PNG and JPEG attachments (nbconvert embeds them as ``data:``
    images); a reference to any other (or a missing one) becomes a plain, broken link."""
    kept: dict[str, dict[str, str]] = {}
    for name, data in (attachments if isinstance(attachments, dict) else {}).items():
        images = {k: "".join(_text(v).split()) for k, v in (data if isinstance(data, dict) else {}).items()}
        images = {k: v for k, v in images.items() if k in IMAGES and _image_ok(v)}
        if images and isinstance(name, str):
            kept[name] = dict(list(images.items())[:1])
    source = ATTACHMENT.sub(lambda m: m.group(0) if m.group(1) in kept else "attachment-not-shown", source)
    cell = nbformat.v4.new_markdown_cell(source)
    if kept:
        cell.attachments = kept
    return cell


def _malformed(what: str, name: str) -> PanbinderError:
    return PanbinderError(
        f"The notebook{f' {name[:200]}' if name else ''} is malformed ({what}), so this page cannot "
        "show it; fix it in the repository or launch the publication to open it.",
        reason="bad_notebook",
        status_code=422,
    )


def _code_cell(cell: dict[str, Any], source: str) -> nbformat.NotebookNode:
    raw = cell.get("outputs", [])
    bad = not isinstance(raw, list) or any(not isinstance(out, dict) for out in raw)
    outputs = [
        o
        for out in (raw if isinstance(raw, list) else [])
        if isinstance(out, dict)
        for o in _inert_output(out)
    ]
    if bad:
        outputs.append(_notice(["malformed"]))
    count = cell.get("execution_count")
    count = count if isinstance(count, int) and not isinstance(count, bool) else None
    return nbformat.v4.new_code_cell(source, outputs=outputs, execution_count=count)


def inert_notebook(notebook: dict[str, Any], *, name: str = "") -> nbformat.NotebookNode:
    """A copy of ``notebook`` (nbformat 4) with only inert content (see the module's docstring).
    Parts of the wrong type (the repository chose them) are left out with a notice; a notebook
    whose cells are not a list is refused (422, naming ``name``)."""
    if not isinstance(notebook, dict) or notebook.get("nbformat") != 4:
        raise PanbinderError(
            "This notebook is not in nbformat 4, which is all this page shows; launch the publication to open it.",
            reason="bad_notebook",
            status_code=422,
        )
    raw_cells = notebook.get("cells", [])
    if not isinstance(raw_cells, list):
        raise _malformed(f"'cells' is a {type(raw_cells).__name__}, not a list", name)
    cells = []
    for cell in raw_cells:
        if not isinstance(cell, dict):
            cells.append(nbformat.v4.new_markdown_cell("*(a malformed cell, not shown here)*"))
            continue
        source = _text(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            cells.append(_markdown(source, cell.get("attachments")))
        elif cell.get("cell_type") == "code":
            cells.append(_code_cell(cell, source))
        else:
            cells.append(nbformat.v4.new_markdown_cell("*(a raw cell, not shown here)*"))
    inert = nbformat.v4.new_notebook(cells=copy.deepcopy(cells))
    metadata = notebook.get("metadata")
    language = metadata.get("language_info") if isinstance(metadata, dict) else None
    lexer = (language.get("pygments_lexer") or language.get("name")) if isinstance(language, dict) else ""
    if isinstance(lexer, str) and re.fullmatch(r"[A-Za-z0-9+_-]{1,40}", lexer):
        inert.metadata["language_info"] = {"name": lexer, "pygments_lexer": lexer}
    return inert


def _href_ok(value: str) -> bool:
    """A link to http, https, mailto or a relative URL / fragment, read as a browser reads it:
    entities decoded, control characters and whitespace removed, lower case."""
    normal = URL_NOISE.sub("", html.unescape(value)).lower()
    scheme = SCHEME.match(normal)
    return scheme is None or scheme.group(1) in LINK_SCHEMES


def _attribute(tag: str, name: str, value: str) -> bool:
    if name == "class":
        return True
    if tag == "a" and name == "title":
        return True
    if tag == "a" and name == "href":
        return _href_ok(value)
    if tag == "img" and name == "alt":
        return True
    if tag == "img" and name == "src":
        return bool(IMAGE_SRC.match(value))
    return False


def sanitise(html: str) -> str:
    """``html`` with only the allow-listed tags and attributes (see the module's docstring)."""
    return bleach.clean(
        html,
        tags=TAGS,
        attributes=_attribute,
        protocols=[*LINK_SCHEMES, "data"],  # data: passes only where _attribute allows it (images)
        strip=True,
        strip_comments=True,
    )


def notebook_html(notebook: dict[str, Any], *, name: str = "") -> str:
    """``notebook`` (its path: ``name``) rendered read-only as inert HTML (a fragment, no scripts,
    no styles)."""
    global _exporter
    inert = inert_notebook(notebook, name=name)
    with _lock:  # one exporter, made once (loading its templates takes about 0.4 s)
        if _exporter is None:
            _exporter = HTMLExporter(template_name="basic", exclude_anchor_links=True)
        try:
            body, _ = _exporter.from_notebook_node(inert)
        except Exception as error:  # a malformed notebook: say so, no traceback
            raise PanbinderError(
                "This notebook could not be rendered; launch the publication to open it.",
                reason="bad_notebook",
                log_message=f"nbconvert: {error!r}",
                status_code=422,
            ) from error
    return sanitise(body)


__all__ = ["inert_notebook", "notebook_html", "sanitise"]
