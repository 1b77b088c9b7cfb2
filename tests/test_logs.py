"""Secrets never reach the logs (panbinder/logs.py)."""

from __future__ import annotations

import json
import logging

import pytest

from panbinder.logs import JSONFormatter, TextFormatter, scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /user/pb-1/lab?token=abc123", "GET /user/pb-1/lab?token=[secret]"),
        ("GET /user/pb-1/lab?token=abc123&x=1", "GET /user/pb-1/lab?token=[secret]&x=1"),
        ("Authorization: token abc123", "Authorization: token [secret]"),
        ("Authorization: Token abc123", "Authorization: Token [secret]"),
        ("api_token=s3cr3t done", "api_token=[secret] done"),
        ("http://hub/?auth=xyz zz", "http://hub/?auth=[secret] zz"),
        ("url='http://h/?token=abc'", "url='http://h/?token=[secret]'"),
    ],
)
def test_scrub_removes_tokens(text, expected):
    assert scrub(text) == expected


def test_scrub_removes_every_occurrence():
    out = scrub("a?token=one b?token=two")
    assert "one" not in out
    assert "two" not in out
    assert out.count("[secret]") == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "--index-url https://alice:s3cr3t@pypi.example.org/simple",
            "--index-url https://alice:[secret]@pypi.example.org/simple",
        ),
        (
            "ERROR: 401 for https://gl-token@h.example/simple/x/",
            "ERROR: 401 for https://[secret]@h.example/simple/x/",
        ),
        ("mypkg @ https://u:p%40ss@h/mypkg-1.0.whl", "mypkg @ https://u:[secret]@h/mypkg-1.0.whl"),
        ("'http://a:b@h/' and `https://c:d@i/`", "'http://a:[secret]@h/' and `https://c:[secret]@i/`"),
        ("ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"),
    ],
)
def test_scrub_removes_url_credentials(text, expected):
    assert scrub(text) == expected


def test_scrub_leaves_ordinary_text_alone():
    text = "building image r/panbinder/v1-git-x-abc:0123 for https://example.org/repo.git"
    assert scrub(text) == text


def _record(msg: str, *args, **extra) -> logging.LogRecord:
    record = logging.LogRecord("panbinder", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_scrubs_message_and_keeps_fields():
    line = JSONFormatter().format(_record("open %s", "http://h/lab?token=abc", build_id="b1", phase="ready"))
    data = json.loads(line)
    assert data["message"] == "open http://h/lab?token=[secret]"
    assert data["build_id"] == "b1"
    assert data["phase"] == "ready"
    assert data["level"] == "INFO"
    assert "abc" not in line


def test_text_formatter_scrubs_and_appends_tags():
    line = TextFormatter("%(message)s").format(_record("Authorization: token abc", image="r/x:1"))
    assert line == "Authorization: token [secret] [image=r/x:1]"
