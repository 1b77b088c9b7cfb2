"""Catalogue tables: datasets (with techniques and a per-file manifest), publications, image locks,
reproducibility checks.

Dates are stored as naive UTC in portable ``DATETIME``/``TIMESTAMP`` columns and always read
back as timezone-aware UTC datetimes (``UTCDateTime``); naive datetimes given to the models
are taken as UTC. Lists (owners, groups, authors) are JSON columns. Every change to these
classes needs a migration in ``migrations/versions/``; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from panbinder.paths import slug as _slug

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
DATA_TYPES = ("raw", "processed", "simulated", "derived")  # derived: registered from a server


class UTCDateTime(TypeDecorator):
    """Naive UTC in the database, aware UTC in Python."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


dataset_techniques = Table(
    "dataset_techniques",
    Base.metadata,
    Column("dataset_id", ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True),
    Column("technique_id", ForeignKey("techniques.id", ondelete="CASCADE"), primary_key=True, index=True),
)

dataset_definitions = Table(
    "dataset_definitions",
    Base.metadata,
    Column("dataset_id", ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True),
    Column("definition", String(64), primary_key=True, index=True),
)
"""The NeXus application definitions (``NXmx``...) a scan found in a dataset's files (revision
0011); analysis templates with ``--format NXmx`` fit on them (analysis_templates.py)."""

search_state = Table(
    "search_state",
    Base.metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False, server_default="0"),
)
"""One row; its ``version`` goes up with every write a search reads (triggers, revision 0010)."""

publication_datasets = Table(
    "publication_datasets",
    Base.metadata,
    Column("publication_id", ForeignKey("publications.id", ondelete="CASCADE"), primary_key=True),
    Column("dataset_id", ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True),
)


class Technique(Base):
    """A PaNET technique term: ``panet_id`` like ``PaNET01188`` and its label."""

    __tablename__ = "techniques"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    panet_id: Mapped[str] = mapped_column(String(32), unique=True)
    label: Mapped[str] = mapped_column(String(255), default="")

    def __repr__(self) -> str:
        return f"<Technique {self.panet_id} {self.label!r}>"


class Dataset(Base):
    """One dataset. ``location`` is an absolute path under a storage root, or None (not mountable).

    ``location`` may name a folder (mounted at ``/data/<slug>/``) or a single file (a scanned
    file directly under the scanned root). ``creation_date`` and ``release_date`` (embargo end)
    are timezone-aware UTC when read back. ``data_type`` is "raw", "processed", "simulated",
    "derived" (registered from a launched server, ``derived_data.py``) or "" when the source
    does not say. ``probe`` is "neutron", "x-ray", ... from a NeXus source;
    ``preview`` is "<file>::<HDF5 dataset>" of the default plot ("" when there is none);
    ``views`` and ``launches`` count page views and launches.
    """

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pid: Mapped[str] = mapped_column(String(512), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    facility: Mapped[str] = mapped_column(String(255), default="", index=True)
    instrument: Mapped[str] = mapped_column(String(255), default="", index=True)
    scientific_field: Mapped[str] = mapped_column(String(255), default="", index=True)
    data_type: Mapped[str] = mapped_column(String(32), default="", index=True)
    proposal_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)  # revision 0014
    owners: Mapped[list[str]] = mapped_column(JSON, default=list)
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    creation_date: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    release_date: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    is_public: Mapped[bool] = mapped_column(default=False)
    location: Mapped[str | None] = mapped_column(Text, default=None)
    size: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # revision 0004: search text, NeXus details, counters (see search.py and fts.py)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    sample: Mapped[str] = mapped_column(String(255), default="", server_default="")
    probe: Mapped[str] = mapped_column(String(32), default="", server_default="")
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    preview: Mapped[str] = mapped_column(Text, default="", server_default="")
    # revision 0005: technique row ids, sorted, comma-separated; written by database triggers only
    technique_key: Mapped[str] = mapped_column(Text, default="", server_default="")
    views: Mapped[int] = mapped_column(Integer, default=0, server_default="0", index=True)
    launches: Mapped[int] = mapped_column(Integer, default=0, server_default="0", index=True)

    techniques: Mapped[list[Technique]] = relationship(
        secondary=dataset_techniques, order_by=Technique.panet_id, lazy="selectin"
    )
    files: Mapped[list[DatasetFile]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", order_by="DatasetFile.path"
    )
    publications: Mapped[list[Publication]] = relationship(
        secondary=publication_datasets, back_populates="datasets", order_by="Publication.doi"
    )
    parameters: Mapped[list[DatasetParameter]] = relationship(
        cascade="all, delete-orphan", order_by="DatasetParameter.id"
    )

    @property
    def slug(self) -> str:
        """Folder name under /data for this dataset (see ``paths.slug``)."""
        return _slug(self.pid)

    def __repr__(self) -> str:
        return f"<Dataset {self.pid!r}>"


class DatasetFile(Base):
    """One file of a dataset: POSIX path relative to the dataset location, size, sha256, mtime.

    ``sha256`` and ``mtime_ns`` are None for files listed by an imported record and not yet
    scanned. ``mtime`` is the modification time as an aware UTC datetime.
    """

    __tablename__ = "dataset_files"
    __table_args__ = (UniqueConstraint("dataset_id", "path", name="uq_dataset_files_dataset_id_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(4096))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)

    dataset: Mapped[Dataset] = relationship(back_populates="files")

    @property
    def mtime(self) -> datetime | None:
        if self.mtime_ns is None:
            return None
        return datetime.fromtimestamp(self.mtime_ns / 1e9, UTC)

    def __repr__(self) -> str:
        return f"<DatasetFile {self.path!r}>"


class DatasetParameter(Base):
    """One named parameter of a dataset (PaNOSC ``Parameter``): its value as written (number
    or text), its unit, and, when the unit is known (``units.py``), the value in SI with its
    dimension, so a query in nm finds a wavelength stored in angstrom."""

    __tablename__ = "dataset_parameters"
    __table_args__ = (Index("ix_dataset_parameters_name_si", "name", "si_unit", "si_value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    value_text: Mapped[str] = mapped_column(Text, default="")
    value_number: Mapped[float | None] = mapped_column(Float, default=None)
    unit: Mapped[str] = mapped_column(String(64), default="")
    si_value: Mapped[float | None] = mapped_column(Float, default=None)
    si_unit: Mapped[str] = mapped_column(String(32), default="")

    def __repr__(self) -> str:
        return f"<DatasetParameter {self.name}={self.value_text!r} {self.unit}>"


class Publication(Base):
    """A publication (by normalised DOI) with its repository pinned to ``resolved_sha``.

    ``ref`` is kept as the user gave it; ``resolved_sha`` is resolved once, at registration,
    and never again.
    """

    __tablename__ = "publications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    doi: Mapped[str] = mapped_column(String(255), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    year: Mapped[int | None] = mapped_column(Integer, default=None)
    repo_url: Mapped[str] = mapped_column(Text)
    ref: Mapped[str] = mapped_column(String(255))
    resolved_sha: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    views: Mapped[int] = mapped_column(Integer, default=0, server_default="0", index=True)
    launches: Mapped[int] = mapped_column(Integer, default=0, server_default="0", index=True)

    datasets: Mapped[list[Dataset]] = relationship(
        secondary=publication_datasets, back_populates="publications", order_by=Dataset.pid
    )

    def __repr__(self) -> str:
        return f"<Publication {self.doi!r}>"


class ImageLock(Base):
    """The environment lock of one built image (``builder/lock.py``), by full image name.

    ``lock`` is the lock as JSON text; ``digest`` the registry's manifest digest after the push.
    Rebuilding the same image name replaces its row.
    """

    __tablename__ = "image_locks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image: Mapped[str] = mapped_column(String(512), unique=True)
    digest: Mapped[str] = mapped_column(String(128), default="")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lock: Mapped[str] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<ImageLock {self.image!r}>"


class CheckRun(Base):
    """One reproducibility check of a publication (``panbinder/checks/``): steps, verdict, diff.

    ``steps`` and ``differences`` are JSON lists as ``StepResult.to_dict`` and
    ``Difference.to_dict`` write them; ``verdict`` and ``failed_step`` repeat what the steps
    decide, so history and overview queries need no JSON. ``restored`` says the registry had lost
    the image and it came back from the archive; ``kind`` is "frozen" or "fresh".
    """

    __tablename__ = "checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    started: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    verdict: Mapped[str] = mapped_column(String(32))
    failed_step: Mapped[str] = mapped_column(String(32), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    image: Mapped[str] = mapped_column(String(512), default="")
    restored: Mapped[bool] = mapped_column(default=False)
    steps: Mapped[list] = mapped_column(JSON, default=list)
    differences: Mapped[list] = mapped_column(JSON, default=list)
    diff: Mapped[str] = mapped_column(Text, default="")

    publication: Mapped[Publication] = relationship()

    def __repr__(self) -> str:
        return f"<CheckRun {self.kind} {self.verdict!r} {self.started:%Y-%m-%d %H:%M}>"
