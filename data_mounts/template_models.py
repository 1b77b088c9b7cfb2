"""Catalogue tables of analysis templates ("Analyse with"), on the catalogue's ``Base``.

Kept apart from ``models.py`` so the search and launch code of templates has one home;
``catalogue.py`` imports this module, so the tables are part of every catalogue (revision 0007).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

template_terms = Table(
    "template_terms",
    Base.metadata,
    Column("template_id", ForeignKey("analysis_templates.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("term", String(255), primary_key=True, index=True),
)
"""What a template fits, expanded at registration: kind "technique" (each tagged PaNET term and
every narrower one), "format" (the PaNET terms of its NeXus application definitions, narrower
ones included), "definition" (those application definitions, lower case, matched against
``dataset_definitions``) and "suffix" (file name endings such as ``.nxs``, lower case)."""


class AnalysisTemplate(Base):
    """A repository of notebooks that analyses datasets, pinned to ``resolved_sha`` like a
    publication. ``name`` is its short URL name; ``techniques`` (PaNET ids) and ``formats``
    (application definitions and file suffixes) are kept as given; ``notebook`` is the path
    JupyterLab opens at launch ("" for the file browser)."""

    __tablename__ = "analysis_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    repo_url: Mapped[str] = mapped_column(Text)
    ref: Mapped[str] = mapped_column(String(255))
    resolved_sha: Mapped[str] = mapped_column(String(64))
    notebook: Mapped[str] = mapped_column(Text, default="")
    techniques: Mapped[list[str]] = mapped_column(JSON, default=list)
    formats: Mapped[list[str]] = mapped_column(JSON, default=list)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<AnalysisTemplate {self.name!r}>"
