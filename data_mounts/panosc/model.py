"""The PaNOSC search API's data model as the filter parser knows it: each model's fields with
their types, its relations, and the LoopBack operators (from panosc-eu/search-api's
``common/models/*.json``; Dataset's ``documentId``/``instrumentId`` and ``document(s)`` as its
servers answer)."""

from __future__ import annotations

# model -> field -> type; relations: model -> relation -> target model
FIELDS: dict[str, dict[str, str]] = {
    "Dataset": {
        "pid": "string",
        "title": "string",
        "isPublic": "boolean",
        "size": "number",
        "creationDate": "date",
        "score": "number",
        "documentId": "string",
        "instrumentId": "string",
    },
    "Document": {
        "pid": "string",
        "isPublic": "boolean",
        "type": "string",
        "title": "string",
        "summary": "string",
        "doi": "string",
        "startDate": "date",
        "endDate": "date",
        "releaseDate": "date",
        "license": "string",
        "keywords": "string",
        "score": "number",
    },
    "Instrument": {"pid": "string", "name": "string", "facility": "string", "score": "number"},
    "Technique": {"pid": "string", "name": "string", "panetId": "string"},
    "Parameter": {
        "id": "number",
        "name": "string",
        "value": "any",
        "unit": "string",
        "datasetId": "string",
        "documentId": "string",
        "siValue": "number",  # the value in SI units (panbinder), as the parser converts
        "siUnit": "string",  # its dimension, e.g. "m" or "kg m2/s2"
    },
    "File": {"id": "number", "name": "string", "path": "string", "size": "number", "datasetId": "string"},
    "Sample": {"pid": "string", "name": "string", "description": "string"},
    "Member": {"id": "number", "role": "string", "documentId": "string", "personId": "string"},
    "Person": {
        "id": "string",
        "fullName": "string",
        "orcid": "string",
        "researcherId": "string",
        "firstName": "string",
        "lastName": "string",
    },
    "Affiliation": {
        "id": "number",
        "name": "string",
        "address": "string",
        "city": "string",
        "country": "string",
    },
}
RELATIONS: dict[str, dict[str, str]] = {
    "Dataset": {
        "document": "Document",
        "documents": "Document",
        "instrument": "Instrument",
        "parameters": "Parameter",
        "files": "File",
        "samples": "Sample",
        "techniques": "Technique",
        # panbinder: lineage of derived datasets (derived_models.py), listed by include only
        "derivedFrom": "Dataset",
        "derivedDatasets": "Dataset",
    },
    "Document": {"datasets": "Dataset", "members": "Member", "parameters": "Parameter"},
    "Instrument": {"datasets": "Dataset"},
    "Member": {"document": "Document", "person": "Person", "affiliation": "Affiliation"},
}
OPERATORS = {
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "inq",
    "nin",
    "like",
    "nlike",
    "ilike",
    "nilike",
}
