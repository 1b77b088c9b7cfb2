"""Dataset parameters: read from PaNOSC records, stored with their SI value, rendered, queried.

A search API response lists each dataset's ``parameters`` as ``{name, value, unit}`` (ESRF's
server writes ``units``; ``"NA"``/``"None"`` mean no unit); the reference server's store keeps
them in its ``Parameter`` table by ``datasetId``. Each is stored as written, plus its value in
SI and the SI dimension when the value is a number in a known unit (``units.py``). A query
that gives a unit (``{"name": "wavelength", "value": {"between": [1000, 1100]}, "unit":
"nm"}``) was turned into an SI comparison by the filter parser (``siValue``/``siUnit``), so
it is one range on the (name, SI dimension, SI value) index here.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, select

from .. import units
from ..models import Dataset, DatasetParameter

NO_UNIT = {"", "na", "none", "null", "n/a", "-"}
MAX_PARAMETERS = 1000  # per dataset


def parameter_rows(record: Any, pid: str) -> list[dict]:
    """``{name, value, unit}`` of each parameter a record (response or one-dataset store) gives."""
    if isinstance(record, dict) and isinstance(record.get("models"), dict):
        table = record["models"].get("Parameter") or {}
        rows = [_decoded(r) for r in (table.values() if isinstance(table, dict) else [])]
        rows = [r for r in rows if str(r.get("datasetId")) == pid]
    else:
        listed = record.get("parameters") if isinstance(record, dict) else None
        rows = [r for r in listed if isinstance(r, dict)] if isinstance(listed, list) else []
    out = []
    for row in rows[:MAX_PARAMETERS]:
        name = row.get("name")
        if not isinstance(name, str) or not name.strip():
            continue
        unit = row.get("unit", row.get("units"))
        unit = unit.strip() if isinstance(unit, str) else ""
        out.append({"name": name.strip()[:255], "value": row.get("value"), "unit": unit[:64]})
    return out


def _decoded(raw: Any) -> dict:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def stored(name: str, value: Any, unit: str) -> DatasetParameter:
    """A parameter row: text as written, the number, and SI value/dimension when known."""
    text = value if isinstance(value, str) else json.dumps(value)
    number = units.number(value)
    unit = "" if unit.lower() in NO_UNIT else unit
    si = units.to_si(number, unit) if number is not None and unit else None
    return DatasetParameter(
        name=name,
        value_text=text[:10_000],
        value_number=number,
        unit=unit,
        si_value=si[0] if si else None,
        si_unit=si[1] if si else "",
    )


def replace_parameters(session: Any, pid: str, rows: list[dict]) -> None:
    """Set the parameters of dataset ``pid`` to ``rows`` (a re-import replaces them)."""
    ds = session.scalar(select(Dataset).where(Dataset.pid == pid))
    if ds is None:
        return
    session.execute(delete(DatasetParameter).where(DatasetParameter.dataset_id == ds.id))
    session.add_all([_with_dataset(stored(r["name"], r["value"], r["unit"]), ds.id) for r in rows])


def _with_dataset(row: DatasetParameter, dataset_id: int) -> DatasetParameter:
    row.dataset_id = dataset_id
    return row


def parameter_record(p: DatasetParameter, pid: str) -> dict:
    """As the search API answers: numbers (numeric strings too) as numbers, JSON objects, lists
    and constants as such (a text that reads as one comes back as one), else as written."""
    value: Any = p.value_text
    if p.value_text[:1] in ("{", "[", "t", "f", "n"):  # objects, lists, true/false/null as sent
        value = _json_or_text(p.value_text)
    if p.value_number is not None:
        whole = p.value_number.is_integer() and not any(c in p.value_text for c in ".eE")
        value = int(p.value_number) if whole else p.value_number
    return {"id": p.id, "name": p.name, "value": value, "unit": p.unit, "datasetId": pid}


def with_si(record: dict) -> dict:
    """A rendered parameter with its ``siValue``/``siUnit`` (for matching in ``match.py``)."""
    record = dict(record)
    number = units.number(record.get("value"))
    unit = str(record.get("unit") or "")
    si = units.to_si(number, unit) if number is not None and unit else None
    record["siValue"], record["siUnit"] = (si[0], si[1]) if si else (None, "")
    return record


def _json_or_text(text: str) -> Any:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text
    return value if isinstance(value, dict | list | bool) or value is None else text
