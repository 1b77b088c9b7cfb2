"""Structured logging: optional JSON lines with phase/build_id/launch_id/image, tokens removed."""

from __future__ import annotations

import json
import logging
import re
import time

TOKEN_RE = re.compile(
    r"((?:token|api_token|auth)=|[Tt]oken\s+|[Bb]earer\s+|\"(?:token|api_token)\"\s*:\s*\")[^&\s\"']+"
)
# The credentials in a URL (https://user:token@host/simple, a private index in requirements.txt):
# the password, or a user name that stands alone (a token), as pip's redact_auth_from_url does.
URL_CREDENTIALS_RE = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)([^\s/@:'\"<>]*)(:[^\s/@'\"<>]*)?@")
FIELDS = ("phase", "build_id", "launch_id", "image", "repo")


def _redact_userinfo(m: re.Match[str]) -> str:
    scheme, user, password = m.group(1), m.group(2), m.group(3)
    if password:
        return f"{scheme}{user}:[secret]@"
    return m.group(0) if user == "git" else f"{scheme}[secret]@"  # ssh://git@host: no secret


def scrub(text: str) -> str:
    """``text`` without tokens and without the credentials of URLs in it."""
    return URL_CREDENTIALS_RE.sub(_redact_userinfo, TOKEN_RE.sub(r"\1[secret]", text))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for name in FIELDS:
            if hasattr(record, name):
                data[name] = getattr(record, name)
        if record.exc_info:
            data["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(data)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        tags = " ".join(f"{n}={getattr(record, n)}" for n in FIELDS if hasattr(record, n))
        return scrub(f"{base} [{tags}]" if tags else base)


def configure(log: logging.Logger, *, json_format: bool) -> None:
    handler = logging.StreamHandler()
    if json_format:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter("[%(levelname).1s %(asctime)s %(name)s] %(message)s", "%H:%M:%S"))
    log.handlers[:] = [handler]
    log.propagate = False
