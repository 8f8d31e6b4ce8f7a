"""normalise people: the 1M-row transform of `bench/run` as an Alembic migration.

The same statements as the wasmig guests, written as an Alembic user would: a keyset select
per batch of 10,000 through the migration's connection (`op.get_bind()`, SQLAlchemy
`text()`), normalise in Python, one `UPDATE ... FROM UNNEST` per batch (psycopg2 sends a
list as an `ARRAY[...]` literal). Alembic runs the revision in its one transaction.

Revision ID: b0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "b0001"
down_revision = None
branch_labels = None
depends_on = None

# Rows per keyset batch.
BATCH = 10_000

SELECT = sa.text("SELECT id, email FROM people WHERE id > :last ORDER BY id LIMIT :size")
UPDATE = sa.text(
    "UPDATE people AS p SET email_norm = u.norm "
    "FROM UNNEST(CAST(:ids AS int8[]), CAST(:norms AS text[])) AS u(id, norm) WHERE p.id = u.id"
)


def upgrade():
    conn = op.get_bind()
    last = -(2**63)
    while True:
        rows = conn.execute(SELECT, {"last": last, "size": BATCH}).all()
        if not rows:
            break
        ids = [row.id for row in rows]
        norms = [row.email.strip().lower() for row in rows]
        last = ids[-1]
        conn.execute(UPDATE, {"ids": ids, "norms": norms})


def downgrade():
    op.execute("UPDATE people SET email_norm = NULL")
