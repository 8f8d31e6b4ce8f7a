// Normalise customers' e-mail addresses into a new `email_norm` column (JavaScript).
//
// The example backfill, as in `migrations/` in Rust: walk the table through a cursor (a
// server-side cursor on PostgreSQL, so memory stays bounded), normalise each address in
// JavaScript, write each chunk back with one `executeMany`, and report progress.

import * as db from "wasmig";

// Rows per chunk: one cursor fetch and one executeMany each.
const CHUNK = 1000;

/** `"  Customer7@Example.COM "` -> `"customer7@example.com"`. */
const normalise = (email) => email.trim().toLowerCase();

export function upgrade() {
  db.batch("ALTER TABLE customers ADD COLUMN email_norm TEXT");
  const total = db.queryOne("SELECT count(*) AS n FROM customers").get("n");
  const update =
    db.dialect() === db.POSTGRES
      ? "UPDATE customers SET email_norm = $2 WHERE id = $1"
      : "UPDATE customers SET email_norm = ?2 WHERE id = ?1";

  let done = 0;
  const cursor = db.cursor("SELECT id, email FROM customers ORDER BY id");
  for (const chunk of cursor.chunks(CHUNK)) {
    const updates = chunk.map((row) => [row.get("id"), normalise(row.get(1))]);
    done += db.executeMany(update, updates);
    db.progress(done, total);
  }
  cursor.close();
  db.info(`normalised ${done} of ${total} addresses`);
}

export function downgrade() {
  db.batch("ALTER TABLE customers DROP COLUMN email_norm");
}
