"""PostgreSQL: technique keys set once per statement, the search counter raised once per
transaction, and what an embargoed dataset shows stored with its own index.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

Writing 100,000 datasets with their techniques took an hour on PostgreSQL. Revision 0005's row
trigger rewrote a dataset once per technique link (making its generated ``search_vector``
again each time), and each rewrite raised the search counter (revision 0010) in a statement
of its own: in one transaction the counter row's chain of versions grew with every raise, and
each raise walked the whole chain. Here the keys come from two statement-level triggers that
read the statement's transition table (each touched dataset is rewritten once), and
``search_state_bump`` raises the counter only the first time in a transaction: a
transaction-local setting records it, and a rolled-back savepoint undoes the setting with its
raise.

An embargoed dataset is found through the columns it shows only: the search made that vector
again with ``to_tsvector`` for every embargoed candidate. ``search_vector_shown`` stores it for
the rows not public (``fts.postgres_shown_ddl``), with a GIN index of its own.

SQLite: nothing changes (its triggers run per row inside SQLite, and FTS5 hides columns in the
query).
"""

from __future__ import annotations

from alembic import op

from panbinder.data_mounts import fts

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

KEYS = """CREATE OR REPLACE FUNCTION dataset_technique_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE datasets d SET technique_key = coalesce((SELECT string_agg(t.technique_id::text, ','
    ORDER BY t.technique_id) FROM dataset_techniques t WHERE t.dataset_id = d.id), '')
  WHERE d.id IN (SELECT DISTINCT dataset_id FROM changed);
  RETURN NULL;
END $$"""
KEY_TRIGGERS = [
    f"CREATE TRIGGER dataset_techniques_key_{event.lower()} AFTER {event} ON dataset_techniques "
    f"REFERENCING {table} TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION dataset_technique_keys()"
    for event, table in (("INSERT", "NEW"), ("DELETE", "OLD"))
]
RAISED = "panbinder.search_state_raised"
BUMP_ONCE = f"""CREATE OR REPLACE FUNCTION search_state_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('{RAISED}', true), '') <> 'on' THEN
    UPDATE search_state SET version = version + 1;
    PERFORM set_config('{RAISED}', 'on', true);
  END IF;
  RETURN NULL;
END $$"""
# revision 0005's row trigger and 0010's function, for the downgrade
ROW_KEY = """CREATE OR REPLACE FUNCTION dataset_technique_key() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE d integer;
BEGIN
  IF TG_OP = 'DELETE' THEN d := OLD.dataset_id; ELSE d := NEW.dataset_id; END IF;
  UPDATE datasets SET technique_key = coalesce((SELECT string_agg(technique_id::text, ',' ORDER BY technique_id)
    FROM dataset_techniques WHERE dataset_id = d), '') WHERE id = d;
  RETURN NULL;
END $$"""
ROW_KEY_TRIGGER = (
    "CREATE TRIGGER dataset_techniques_key AFTER INSERT OR DELETE ON dataset_techniques "
    "FOR EACH ROW EXECUTE FUNCTION dataset_technique_key()"
)
BUMP_EVERY = (
    "CREATE OR REPLACE FUNCTION search_state_bump() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN UPDATE search_state SET version = version + 1; RETURN NULL; END $$"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS dataset_techniques_key ON dataset_techniques")
    op.execute("DROP FUNCTION IF EXISTS dataset_technique_key()")
    for statement in [KEYS, *KEY_TRIGGERS, BUMP_ONCE, *fts.postgres_shown_ddl("datasets")]:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in fts.postgres_shown_drop("datasets"):
        op.execute(statement)
    for event in ("insert", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS dataset_techniques_key_{event} ON dataset_techniques")
    op.execute("DROP FUNCTION IF EXISTS dataset_technique_keys()")
    for statement in (ROW_KEY, ROW_KEY_TRIGGER, BUMP_EVERY):
        op.execute(statement)
