"""Normalise customers' e-mail addresses into a new `email_norm` column (Python).

The example backfill, as in `migrations/` in Rust: walk the table through a cursor (a
server-side cursor on PostgreSQL, so memory stays bounded), normalise each address in Python,
write each chunk back with one `execute_many`, and report progress.
"""

import wasmig

# Rows per chunk: one cursor fetch and one execute_many each.
CHUNK = 1000


def normalise(email):
    """`"  Customer7@Example.COM "` -> `"customer7@example.com"`."""
    return email.strip().lower()


def upgrade():
    wasmig.batch("ALTER TABLE customers ADD COLUMN email_norm TEXT")
    total = wasmig.query_one("SELECT count(*) AS n FROM customers")["n"]
    if wasmig.dialect() == wasmig.POSTGRES:
        update = "UPDATE customers SET email_norm = $2 WHERE id = $1"
    else:
        update = "UPDATE customers SET email_norm = ?2 WHERE id = ?1"

    done = 0
    with wasmig.cursor("SELECT id, email FROM customers ORDER BY id") as rows:
        for chunk in rows.chunks(CHUNK):
            updates = [(row["id"], normalise(row[1])) for row in chunk]
            done += wasmig.execute_many(update, updates)
            wasmig.progress(done, total)
    wasmig.info(f"normalised {done} of {total} addresses")


def downgrade():
    wasmig.batch("ALTER TABLE customers DROP COLUMN email_norm")
