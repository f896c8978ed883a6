"""PostgreSQL: a conditional change refused by the database when it misses

``creditmeter_changed_one(changed, what)`` raises SQLSTATE CM001 unless ``changed`` is 1.
A conditional update (a grant within its bounds, a hold still pending) is sent as
``WITH changed AS (UPDATE … RETURNING 1) SELECT creditmeter_changed_one(…)``, so that an
update another writer got to first undoes the transaction in the database itself. A use
case can then send its writes and its ``COMMIT`` together, one round trip for both: there
is no count left to check before committing.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION creditmeter_changed_one(changed bigint, what text) RETURNS bigint
        LANGUAGE plpgsql AS $$
        BEGIN
            IF changed <> 1 THEN
                RAISE EXCEPTION '%: matched % rows, not 1 (another writer changed it first)',
                    what, changed
                    USING ERRCODE = 'CM001';
            END IF;
            RETURN changed;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION creditmeter_changed_one(bigint, text)")
