// The 1M-row transform of `bench/run`, as a wasmig JavaScript guest.
//
// Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 within the
// step's transaction, as the Rust guest in `bench/project` does and as a user would write it
// from the SDK docs: one `db.query` per batch, normalise in JavaScript, then one
// `UPDATE ... FROM UNNEST` with two array parameters. The SDK has no keyset walker;
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
    const rows = db.query(SELECT, last, BATCH);
    if (rows.length === 0) break;
    const ids = rows.map((r) => r.get(0));
    const norms = rows.map((r) => r.get(1).trim().toLowerCase());
    last = ids[ids.length - 1];
    done += db.execute(UPDATE, ids, norms);
  }
  db.info(`normalised ${done} rows`);
}

export function downgrade() {
  db.execute("UPDATE people SET email_norm = NULL");
}
