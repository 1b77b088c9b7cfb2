"""Structured logging: optional JSON lines with phase/build_id/launch_id/image, tokens removed."""

from __future__ import annotations

import json
import logging
import re
import time

TOKEN_RE = re.compile(
    r"((?:token|api_token|auth)=|[Tt]oken\s+|[Bb]earer\s+|\"(?:token|api_token)\"\s*:\s*\")[^&\s\"']+"
)
FIELDS = ("phase", "build_id", "launch_id", "image", "repo")


def scrub(text: str) -> str:
    return TOKEN_RE.sub(r"\1[secret]", text)


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
