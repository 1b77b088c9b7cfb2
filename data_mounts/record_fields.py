"""Reading catalogue files: JSON loading and typed field access for one record.

Every failure raises PanbinderError naming the record and the field, so an import can say
exactly what to fix.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from panbinder.errors import PanbinderError


def load_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise PanbinderError(f"{path} does not exist; check the file name.", reason="no_file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PanbinderError(f"{path} is not valid JSON ({e}); fix the file.", reason="bad_json") from None
    except OSError as e:
        raise PanbinderError(f"{path} cannot be read ({e.strerror}).", reason="no_file") from None


class Fields:
    """Typed access to one record's fields; every failure names the record and the field."""

    def __init__(self, where: str, data: Any) -> None:
        self.where = where
        if not isinstance(data, dict):
            self.fail("", f"must be a JSON object, got {type(data).__name__}")
        self.data = data

    def fail(self, field: str, problem: str) -> NoReturn:
        what = f"field '{field}' {problem}" if field else problem
        raise PanbinderError(
            f"{self.where}: {what}. Fix the file and run the import again; nothing was imported.",
            reason="bad_record",
        )

    def get(self, field: str) -> Any:
        value: Any = self.data
        for key in field.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def text(self, field: str, *, required: bool = False) -> str:
        value = self.get(field)
        if value is None or value == "":
            if required:
                self.fail(field, "is missing")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(field, f"must be a string, got {type(value).__name__}")
        return str(value).strip()

    def texts(self, field: str) -> tuple[str, ...]:
        value = self.get(field)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(field, "must be a list of strings")
        return tuple(v.strip() for v in value if v.strip())

    def boolean(self, field: str) -> bool:
        value = self.get(field)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {value!r}")
        return value

    def count(self, field: str) -> int | None:
        value = self.get(field)
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
            self.fail(field, f"must be a whole number of at least 0, got {value!r}")
        return int(value)

    def date(self, field: str) -> datetime | None:
        value = self.get(field)
        if isinstance(value, dict) and "$date" in value:  # MongoDB extended JSON
            value = value["$date"]
            if isinstance(value, dict) and "$numberLong" in value:
                value = int(value["$numberLong"])
        if value is None or value == "":
            return None
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value / 1000, UTC)
            if isinstance(value, str):
                parsed = datetime.fromisoformat(value.strip())
                return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError, OSError):
            pass
        self.fail(field, f"must be an ISO 8601 date, got {value!r}")

    def objects(self, field: str) -> list[dict]:
        value = self.get(field)
        if value is None:
            return []
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(field, "must be a list of objects")
        return value


def record_label(kind: str, index: int | str, data: Any) -> str:
    """How errors name a record: its kind, index and pid, e.g. "record 3 (pid 'abc')"."""
    pid = None
    if isinstance(data, dict):
        pid = data.get("pid") or data.get("_id") or data.get("doi")
    shown = f"pid '{pid}'" if isinstance(pid, str) and pid else "no pid"
    return f"{kind} {index} ({shown})"
