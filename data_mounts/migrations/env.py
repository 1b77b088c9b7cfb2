"""Alembic environment for the catalogue; used by ``panbinder.data_mounts.db.upgrade``.

The caller passes an open connection in ``config.attributes["connection"]``; a URL in the
``sqlalchemy.url`` option works too (``alembic`` command line with ``-x``-free configs).
No logging configuration happens here: the application owns logging.
"""

from __future__ import annotations

from alembic import context

from panbinder.data_mounts import build_leases, review_models, template_models  # noqa: F401 (tables on Base)
from panbinder.data_mounts.db import include_object
from panbinder.data_mounts.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from panbinder.data_mounts.db import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
