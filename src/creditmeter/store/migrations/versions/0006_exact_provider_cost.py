"""SQLite: a usage record's provider cost kept exactly, as text

SQLite's ``NUMERIC`` stores a decimal as a float, exact to 15 significant digits, where
the column takes 20 (10 either side of the point). The column becomes ``TEXT`` on SQLite
(``creditmeter.store.tables.ExactDecimal`` writes a decimal's text); PostgreSQL's
``NUMERIC`` is exact already. SQLite cannot change a column's type in place: the table
is built again with the column as ``TEXT`` (the costs stored before keep the 15 digits
they were stored with, now as text), its indexes with it. Nothing refers to the table,
so nothing else changes.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLE = "usage_records"
NUMERIC = "provider_cost NUMERIC(20, 10)"
TEXT = "provider_cost TEXT"


def upgrade() -> None:
    _rebuild(NUMERIC, TEXT)


def downgrade() -> None:
    _rebuild(TEXT, NUMERIC)


def _rebuild(column: str, new_column: str) -> None:
    """SQLite's way to change a column's type: a new table, the rows copied (each value
    converted by the new column's type affinity), the old table dropped and the new one
    renamed, the indexes built again."""
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    schema = "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type = ? AND sql IS NOT NULL"
    [table] = [sql for (sql,) in conn.exec_driver_sql(schema, (TABLE, "table"))]
    indexes = [sql for (sql,) in conn.exec_driver_sql(schema, (TABLE, "index"))]
    if column not in table:
        raise RuntimeError(f"{TABLE} has no column {column!r}: {table}")
    name = table.split("(", 1)[0]  # CREATE TABLE usage_records, maybe quoted
    new_table = "CREATE TABLE creditmeter_rebuilt " + table[len(name) :]
    conn.exec_driver_sql(new_table.replace(column, new_column, 1))
    conn.exec_driver_sql(f"INSERT INTO creditmeter_rebuilt SELECT * FROM {TABLE}")
    conn.exec_driver_sql(f"DROP TABLE {TABLE}")
    conn.exec_driver_sql(f"ALTER TABLE creditmeter_rebuilt RENAME TO {TABLE}")
    for index in indexes:
        conn.exec_driver_sql(index)
