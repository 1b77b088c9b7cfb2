"""Parse catalogue records into plain frozen dataclasses (pure: no database, no files).

Dataset shapes, detected automatically: the PaNOSC search API (a list of Dataset objects),
the PaNOSC reference server's LoopBack store (``{"ids", "models"}`` whose records are JSON
strings), and SciCat datasets in the v3 (``_id``, ``proposalId``) and v4 (``pid``,
``proposalIds``) shapes, dates possibly in MongoDB extended JSON (``{"$date": ...}``).
Publication shapes: DataCite JSON (REST ``{"data": {"attributes": ...}}`` or bare attributes)
and SciCat PublishedData. A bad record raises PanbinderError naming the record and the field.

Datasets are parsed in dataset_records.py, publications (and DOIs) in publication_records.py,
with the field access of record_fields.py; this module keeps their public names in one place.
"""

from __future__ import annotations

from .dataset_records import (
    SCICAT_TYPES,
    DatasetRecord,
    FileRecord,
    TechniqueRef,
    dataset_shape,
    parse_datasets,
)
from .publication_records import (
    DOI_PREFIXES,
    DOI_RE,
    FLAT_GIT_HOSTS,
    GIT_HOST_PREFIXES,
    GIT_HOSTS,
    LINK_RELATIONS,
    PublicationRecord,
    normalise_doi,
    parse_publications,
    split_repo_url,
)
from .record_fields import Fields, load_json

__all__ = [
    "DOI_PREFIXES",
    "DOI_RE",
    "FLAT_GIT_HOSTS",
    "GIT_HOSTS",
    "GIT_HOST_PREFIXES",
    "LINK_RELATIONS",
    "SCICAT_TYPES",
    "DatasetRecord",
    "Fields",
    "FileRecord",
    "PublicationRecord",
    "TechniqueRef",
    "dataset_shape",
    "load_json",
    "normalise_doi",
    "parse_datasets",
    "parse_publications",
    "split_repo_url",
]
