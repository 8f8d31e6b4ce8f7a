"""The 1M-row transform of `bench/run`, as a wasmig Python guest.

Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 within the
step's transaction, as the Rust guest in `bench/project` does and as a user would write it
from the SDK docs: one `wasmig.query` per batch, normalise in Python, then one
`UPDATE ... FROM UNNEST` with two list parameters (lists bind as arrays). The SDK has no
keyset walker; `next_batch` would start a fresh instance per batch, so the walk is a plain
loop in one call.
"""

import wasmig

# Rows per keyset batch.
BATCH = 10_000

SELECT = "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2"
UPDATE = (
    "UPDATE people AS p SET email_norm = u.norm "
    "FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id"
)


def upgrade():
    last = -(2**63)
    done = 0
    while True:
        rows = wasmig.query(SELECT, last, BATCH)
        if not rows:
            break
        ids = [row[0] for row in rows]
        norms = [row[1].strip().lower() for row in rows]
        last = ids[-1]
        done += wasmig.execute(UPDATE, ids, norms)
    wasmig.info(f"normalised {done} rows")


def downgrade():
    wasmig.execute("UPDATE people SET email_norm = NULL")
