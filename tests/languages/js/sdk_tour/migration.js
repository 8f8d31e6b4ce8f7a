// A tour of the JavaScript SDK, for the end-to-end tests: parameters, executeMany, a
// recovered SQL error in a savepoint, two batches with a checkpoint, rows by index and name,
// copyIn, queryOpt, logging and progress; and a downgrade that lets an SQL error escape when asked to (the label of row 1
// says so). The Python and C tours do exactly the same, so the tests compare their tables.

import * as db from "wasmig";

function placeholders(n) {
  const list = [];
  for (let i = 1; i <= n; i++) list.push(db.dialect() === db.POSTGRES ? `$${i}` : "?");
  return list.join(", ");
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

export function upgrade() {
  if (db.checkpoint() === null) {
    firstBatch();
    db.nextBatch("summary");
  } else {
    db.info(`second batch, from checkpoint ${db.checkpoint()}`);
    secondBatch();
  }
}

function firstBatch() {
  db.info(`dialect: ${db.dialect()}`);
  db.batch("CREATE TABLE tour (id BIGINT PRIMARY KEY, label TEXT NOT NULL, note TEXT)");
  const insert = `INSERT INTO tour (id, label, note) VALUES (${placeholders(3)})`;
  check(db.execute(insert, 1, "one", null) === 1, "one row inserted");
  check(db.executeMany(insert, [[2, "two", "n2"], [3n, "three", null]]) === 2, "two rows inserted");

  try {
    db.savepoint(() => db.execute(insert, 1, "duplicate", null));
    throw new Error("the duplicate insert succeeded");
  } catch (e) {
    if (!(e instanceof db.SqlError)) throw e;
    db.info(`caught ${e.code}: ${e.sqlMessage}`);
    db.execute(insert, 4, `caught ${e.code}`, null);
  }
}

function secondBatch() {
  const parts = [];
  for (const row of db.query("SELECT id, label, note FROM tour ORDER BY id")) {
    check(row.get(0) === row.get("id") && typeof row.get("id") === "number", "id is a number");
    parts.push(`${row.get("id")}=${row.get(1)}/${row.get("note") ?? "-"}`);
  }
  check(db.copyIn("tour", ["id", "label", "note"], [[5, parts.join(","), null]]) === 1, "copied in");
  check(db.queryOpt(`SELECT id FROM tour WHERE id = ${placeholders(1)}`, 42) === null, "no row 42");
  db.progress(1, 1);
}

export function downgrade() {
  const label = db.queryOne("SELECT label FROM tour WHERE id = 1").get("label");
  if (label === "fail-downgrade") db.execute("INSERT INTO no_such_table VALUES (1)");
  db.batch("DROP TABLE tour");
}
