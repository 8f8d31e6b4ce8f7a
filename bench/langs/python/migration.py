"""The 1M-row transform of `bench/run`, as a wasmig Python guest.

Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 within the
step's transaction, as the Rust guest in `bench/project` does and as a user would write it
from the SDK docs: one `wasmig.query_columns` per batch (the batch as two columns, not a
`Row` per row), normalise in Python, then one `UPDATE ... FROM UNNEST` with the two columns
as its array parameters (`wasmig.execute_columns`). The SDK has no
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
        batch = wasmig.query_columns(SELECT, last, BATCH)
        if not len(batch):
            break
        ids = batch[0]
        norms = [email.strip().lower() for email in batch[1]]
        last = ids[-1]
        done += wasmig.execute_columns(UPDATE, ids, norms)
    wasmig.info(f"normalised {done} rows")


def downgrade():
    wasmig.execute("UPDATE people SET email_norm = NULL")
