// The 1M-row transform of `bench/run` in Node with node-postgres (`pg`): the peer of the
// JavaScript guest.
//
// `node peer_pg.mjs DATABASE_URL` (with `pg` resolvable: bench/run sets NODE_PATH). The
// same statements as the guests and the native programs: a keyset select per batch of
// 10,000, normalise in JavaScript, one `UPDATE ... FROM UNNEST` per batch (pg sends a JS
// array as an array literal), one transaction. bigint comes back as a string (pg's default):
// the ids go back into the array as they came.

import pg from "pg";

// Rows per keyset batch.
const BATCH = 10000;

const SELECT = "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2";
const UPDATE =
  "UPDATE people AS p SET email_norm = u.norm " +
  "FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id";

const client = new pg.Client({ connectionString: process.argv[2] });
await client.connect();
let done = 0;
try {
  await client.query("BEGIN");
  let last = "-9223372036854775808";
  for (;;) {
    const { rows } = await client.query(SELECT, [last, BATCH]);
    if (rows.length === 0) break;
    const ids = rows.map((r) => r.id);
    const norms = rows.map((r) => r.email.trim().toLowerCase());
    last = ids[ids.length - 1];
    done += (await client.query(UPDATE, [ids, norms])).rowCount;
  }
  await client.query("COMMIT");
} catch (e) {
  await client.query("ROLLBACK").catch(() => {});
  throw e;
} finally {
  await client.end();
}
console.log(`normalised ${done} rows`);
