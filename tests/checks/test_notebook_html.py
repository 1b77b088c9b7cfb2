"""The notebook view's sanitiser: every XSS payload in a notebook's outputs, markdown, raw cells,
attachments or metadata comes out inert, and plain outputs (text, errors, PNG/JPEG) still show."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import pytest

from panbinder.errors import PanbinderError
from panbinder.web.notebook_html import IMAGE_SRC, inert_notebook, notebook_html, sanitise

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
ACTIVE_TAGS = {
    "script",
    "iframe",
    "frame",
    "object",
    "embed",
    "form",
    "meta",
    "base",
    "link",
    "style",
    "svg",
    "math",
}
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "data",
    "srcdoc",
    "background",
    "poster",
}

# markup an attacker may put anywhere a notebook holds text
PAYLOADS = [
    "<script>window.__xss=1</script>",
    "<img src=x onerror=window.__xss=1>",
    '<svg onload="window.__xss=1"><script>window.__xss=1</script></svg>',
    '<iframe src="javascript:window.__xss=1"></iframe>',
    '<iframe srcdoc="<script>parent.__xss=1</script>"></iframe>',
    '<a href="javascript:window.__xss=1">click</a>',
    '<a href="JaVaScRiPt:window.__xss=1">click</a>',
    '<a href="jav&#x09;ascript:window.__xss=1">click</a>',
    '<a href="data:text/html,<script>window.__xss=1</script>">click</a>',
    '<a href="vbscript:msgbox(1)">click</a>',
    '<a href="da&#9;ta:text/html,<script>window.__xss=1</script>">click</a>',
    '<a href="d&#10;a&#13;t&#x20;a:text/html,<script>window.__xss=1</script>">click</a>',
    '<a href="&#1;&#x7f;DATA:text/html,<script>window.__xss=1</script>">click</a>',
    '<a href="&#xa0;java&#0;script:window.__xss=1">click</a>',
    '<a href="data&colon;text/html,<script>window.__xss=1</script>">click</a>',
    '<img src="da&#9;ta:image/svg+xml;base64,PHN2Zy8+">',
    '<img src=" data:image/png;base64,AAAA">',
    '<img src="data:image/svg+xml;base64,PHN2Zy8+">',
    '<img src="javascript:window.__xss=1">',
    '<object data="javascript:window.__xss=1"></object><embed src="x.swf">',
    '<form action="javascript:window.__xss=1"><button>go</button></form>',
    '<button formaction="javascript:window.__xss=1">go</button>',
    '<meta http-equiv="refresh" content="0;url=javascript:window.__xss=1">',
    '<base href="https://evil.example/">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<style>@import 'https://evil.example/x.css'; body{background:url(javascript:1)}</style>",
    '<div style="background:url(javascript:window.__xss=1)">x</div>',
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=1></style></mglyph></table></mtext></math>",
    '<noscript><p title="</noscript><img src=x onerror=window.__xss=1>">',
    '<details open ontoggle="window.__xss=1">x</details>',
    '<body onload="window.__xss=1">',
    '<input autofocus onfocus="window.__xss=1">',
    '<video><source onerror="window.__xss=1"></video>',
    '"><script>window.__xss=1</script>',
    '<div id="__xss" name="location">clobber</div>',
    "<!--<img src=x onerror=window.__xss=1>-->",
    "<![CDATA[<script>window.__xss=1</script>]]>",
]


class Inspector(HTMLParser):
    """Collects what could run or load something in parsed HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ACTIVE_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            value = (value or "").strip()
            if name.startswith("on") or name in ("style", "id", "name", "srcdoc"):
                self.problems.append(f"{tag} {name}={value!r}")
            if name in URL_ATTRIBUTES:
                lowered = "".join(value.split()).lower()
                if tag == "img" and name == "src":
                    if not IMAGE_SRC.match(value):
                        self.problems.append(f"img src={value!r}")
                elif ":" in lowered.split("/")[0] and not lowered.startswith(("http:", "https:", "mailto:")):
                    self.problems.append(f"{tag} {name}={value!r}")


def problems(html: str) -> list[str]:
    inspector = Inspector()
    inspector.feed(html)
    inspector.close()
    return inspector.problems


def notebook(*cells: dict, metadata: dict | None = None) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {}, "cells": list(cells)}


def code(*outputs: dict, source: str = "x = 1") -> dict:
    return {
        "cell_type": "code",
        "metadata": {},
        "execution_count": 1,
        "source": source,
        "outputs": list(outputs),
    }


def display(data: dict, kind: str = "display_data") -> dict:
    extra = {"execution_count": 1} if kind == "execute_result" else {}
    return {"output_type": kind, "metadata": {}, "data": data, **extra}


def test_the_inspector_sees_each_payload_unsanitised():
    """The check below can fail: each payload is active before the sanitiser (comments and CDATA,
    inert to a browser already, aside)."""
    for payload in PAYLOADS:
        if payload.startswith(("<!--", "<![CDATA[", '<div id="__xss"', "<noscript>")):
            continue
        assert problems(payload) or "window.__xss" not in payload, payload


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_payload_anywhere_in_a_notebook_comes_out_inert(payload):
    nb = notebook(
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": f"# title {payload}\n\n{payload}\n[l]({payload})",
        },
        code(
            display({"text/html": payload, "text/plain": "an HTML object"}),
            display({"text/html": [payload], "application/javascript": payload}, "execute_result"),
            display({"image/svg+xml": payload}),
            display({"text/markdown": payload, "text/latex": payload}),
            display({"application/vnd.jupyter.widget-view+json": {"model_id": payload}}),
            display({"image/png": f'{PNG}"><script>window.__xss=1</script>'}),
            display({"image/png": PNG}),
            {"output_type": "stream", "name": "stdout", "text": payload},
            {"output_type": "stream", "name": payload, "text": "x"},
            {
                "output_type": "error",
                "ename": payload,
                "evalue": payload,
                "traceback": [f"\x1b[31m{payload}"],
            },
            {"output_type": payload, "data": {"text/html": payload}},
            source=payload,
        ),
        {"cell_type": "raw", "metadata": {"raw_mimetype": "text/html"}, "source": payload},
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": "![a](attachment:a.svg)",
            "attachments": {"a.svg": {"image/svg+xml": base64.b64encode(payload.encode()).decode()}},
        },
        metadata={
            "language_info": {"name": payload, "pygments_lexer": payload},
            "widgets": {"application/vnd.jupyter.widget-state+json": {"state": payload}},
        },
    )
    html = notebook_html(nb)
    assert problems(html) == [], html
    assert "window.__xss" not in html or "<script" not in html
    assert f'src="data:image/png;base64,{PNG}"' in html  # the real image still shows
    assert "an HTML object" in html and "not shown here: " in html  # its text form and a notice


def test_plain_outputs_still_show_escaped():
    html = notebook_html(
        notebook(
            {
                "cell_type": "markdown",
                "metadata": {},
                "source": "# Results\n\n*counts* per [scan](https://x.example/s)",
            },
            code(
                {"output_type": "stream", "name": "stdout", "text": "42 < 43 & done\n"},
                display({"text/plain": "array([1, 2])"}, "execute_result"),
                display({"image/jpeg": PNG}),
                {
                    "output_type": "error",
                    "ename": "ValueError",
                    "evalue": "bad",
                    "traceback": ["ValueError: bad"],
                },
            ),
        )
    )
    assert "<h1>Results</h1>" in html and "<em>counts</em>" in html
    assert '<a href="https://x.example/s">scan</a>' in html
    assert "42 &lt; 43 &amp; done" in html and "array([1, 2])" in html and "ValueError: bad" in html
    assert 'src="data:image/jpeg;base64,' in html
    assert "not shown here" not in html


def test_the_sanitiser_alone_keeps_only_the_allow_list():
    assert sanitise('<p class="a" id="b" style="c">x</p>') == '<p class="a">x</p>'
    assert (
        sanitise('<a href="https://ok.example/" onclick="x()">a</a>') == '<a href="https://ok.example/">a</a>'
    )
    assert (
        sanitise('<img src="data:image/png;base64,AAAA" onerror="x()">')
        == '<img src="data:image/png;base64,AAAA">'
    )


def test_a_notebook_that_is_not_nbformat_4_is_refused_with_a_message():
    with pytest.raises(PanbinderError, match="not in nbformat 4") as caught:
        inert_notebook({"nbformat": 3, "worksheets": []})
    assert caught.value.status_code == 422


def test_the_sanitiser_reads_a_link_as_a_browser_does():
    """Whitespace, control characters and entities inside a scheme do not hide it; only http,
    https, mailto and relative links keep their href."""
    for href in ("da&#9;ta:text/html,x", "da\tta:text/html,x", "&#1;javascript:x", "DA&#x0A;TA:x", "ftp://x"):
        assert sanitise(f'<a href="{href}">a</a>') == "<a>a</a>", href
    for href in ("https://x.example/a", "mailto:a@x.example", "figures/a.png", "#results", "?page=2"):
        assert sanitise(f'<a href="{href}">a</a>') == f'<a href="{href}">a</a>', href


def test_lines_stored_as_lists_are_joined():
    """On disk a notebook keeps multi-line text as a list of lines (the 'as stored' view reads it
    so): each shows as its text, never as a Python list."""
    html = notebook_html(
        notebook(
            code(
                {"output_type": "stream", "name": "stdout", "text": ["first line\n", "second line\n"]},
                display({"text/plain": ["array([1,\n", "       2])"]}, "execute_result"),
                {
                    "output_type": "error",
                    "ename": "ValueError",
                    "evalue": ["bad ", "value"],
                    "traceback": [["Traceback part one\n", "part two"], "ValueError: bad value"],
                },
                source=["x = 1\n", "print(x)"],
            )
        )
    )
    assert "first line\nsecond line" in html and "[&#x27;" not in html and "['" not in html
    assert "       2])" in html and "Traceback part one\npart two" in html and "bad value" in html
    assert "print" in html


@pytest.mark.parametrize(
    "broken",
    [
        {"metadata": []},
        {"metadata": {"language_info": []}},
        {"cells": [5, "text", None, code()]},
        {"cells": [{**code(), "outputs": 5}]},
        {"cells": [{**code(), "outputs": [5, "x", display({"text/plain": "kept"})]}]},
        {"cells": [code({"output_type": "error", "ename": "E", "evalue": "v", "traceback": 5})]},
        {"cells": [code({"output_type": "stream", "name": ["x"], "text": 5})]},
        {"cells": [{**code(), "execution_count": "one", "source": 5}]},
    ],
)
def test_parts_of_the_wrong_type_are_left_out_with_a_notice(broken):
    html = notebook_html({**notebook(code(display({"text/plain": "shown"}))), **broken})
    assert problems(html) == []


def test_cells_that_are_not_a_list_are_refused_naming_the_notebook():
    with pytest.raises(PanbinderError, match=r"analysis\.ipynb is malformed \('cells' is a dict") as caught:
        notebook_html({**notebook(), "cells": {"a": 1}}, name="analysis.ipynb")
    assert caught.value.status_code == 422
