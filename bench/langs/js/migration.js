// The 1M-row transform of `bench/run`, as a wasmig JavaScript guest.
//
// Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 within the
// step's transaction, as the Rust guest in `bench/project` does and as a user would write it
// from the SDK docs: one `db.queryColumns` per batch (the batch as two columns, not a row
// object per row), normalise in JavaScript, then one `UPDATE ... FROM UNNEST` with the two
// columns as its array parameters (`db.executeColumns`). The SDK has no keyset walker;
// `nextBatch` would start a fresh instance per batch, so the walk is a plain loop in one call.

import * as db from "wasmig";

// Rows per keyset batch.
const BATCH = 10000;

const SELECT = "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2";
const UPDATE =
  "UPDATE people AS p SET email_norm = u.norm " +
  "FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id";

export function upgrade() {
  // The ids are below 2^53: Numbers are exact (a BigInt would do beyond).
  let last = Number.MIN_SAFE_INTEGER;
  let done = 0;
  for (;;) {
    const batch = db.queryColumns(SELECT, last, BATCH);
    if (batch.length === 0) break;
    const ids = batch.get(0);
    const norms = batch.get(1).map((email) => email.trim().toLowerCase());
    last = ids[ids.length - 1];
    done += db.executeColumns(UPDATE, ids, norms);
  }
  db.info(`normalised ${done} rows`);
}

export function downgrade() {
  db.execute("UPDATE people SET email_norm = NULL");
}
