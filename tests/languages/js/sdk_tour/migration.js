// A tour of the JavaScript SDK, for the end-to-end tests: parameters, executeMany, a
// recovered SQL error in a savepoint, two batches with a checkpoint, rows by index and name,
// copyIn, queryOpt, the column calls (PostgreSQL), logging and progress; and a downgrade that lets an SQL error escape when asked to (the label of row 1
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

// Parameters and results of every kind the SDK converts, checked in the guest.
function checkValues() {
  let row;
  if (db.dialect() === db.POSTGRES) {
    row = db.queryOne(
      "SELECT $1::numeric AS n, $2::uuid AS u, $3::date AS d, $4::timestamptz AS t, " +
        "$5::int8[] AS a, $6::jsonb AS j, $7::bytea AS b, $8::float8 AS f, $9::bool AS k, " +
        "$10::int4 AS i, $11::text[] AS s",
      db.numeric("12.50"),
      db.uuid("67e55044-10b1-426f-9247-bb680e5fe0c8"),
      db.date("2024-01-02"),
      new Date(Date.UTC(2024, 0, 2, 3, 4, 5)),
      [1, null, 3],
      db.jsonb({ a: 1 }),
      new Uint8Array([0, 1]),
      1.5,
      true,
      db.int32(7),
      ["x", null],
    );
    check(row.get("n") === "12.50" && row.get("u") === "67e55044-10b1-426f-9247-bb680e5fe0c8", "numeric, uuid");
    check(row.get("d") === "2024-01-02" && row.get("t") === "2024-01-02T03:04:05Z", `date, timestamptz ${row.get("t")}`);
    check(JSON.stringify(row.get("a")) === "[1,null,3]" && JSON.parse(row.get("j")).a === 1, "array, jsonb");
    check(row.get("i") === 7 && JSON.stringify(row.get("s")) === '["x",null]', "int4, text[]");
    // Arrays of plain values (the SDK's fast path), and one of two types, refused.
    const arrays = db.queryOne(
      "SELECT $1::int8[] AS a, $2::float8[] AS f, $3::bool[] AS k, $4::text[] AS s",
      [1n, 2, undefined],
      [0.5, 1.5],
      [true, null],
      [],
    );
    check(
      JSON.stringify([arrays.get("a"), arrays.get("f"), arrays.get("k"), arrays.get("s")]) ===
        "[[1,2,null],[0.5,1.5],[true,null],[]]",
      "plain arrays",
    );
    let mixed = false;
    try {
      db.toSql([1, 2.5]);
    } catch (e) {
      mixed = e instanceof TypeError;
    }
    check(mixed, "an array of two types is refused");
    // A batch as columns: read, written back through UNNEST, read again.
    db.batch("CREATE TEMPORARY TABLE tour_columns (id int8, label text, raw bytea)");
    const ids = [1, 2, 3];
    const labels = ["plain", null, "wide é😀"];
    check(
      db.executeColumns(
        "INSERT INTO tour_columns SELECT * FROM UNNEST($1::int8[], $2::text[], $3::bytea[])",
        ids,
        labels,
        [new Uint8Array([1]), null, new Uint8Array([])],
      ) === 3,
      "executeColumns wrote 3 rows",
    );
    const batch = db.queryColumns("SELECT id, label, raw FROM tour_columns ORDER BY id");
    check(batch.length === 3 && batch.columns[1].name === "label", "queryColumns shape");
    check(JSON.stringify(batch.get("id")) === "[1,2,3]", `queryColumns ids ${JSON.stringify(batch.get("id"))}`);
    check(JSON.stringify(batch.get(1)) === JSON.stringify(labels), `queryColumns labels ${JSON.stringify(batch.get(1))}`);
    const raw = batch.get("raw");
    check(raw[0].length === 1 && raw[0][0] === 1 && raw[1] === null && raw[2].length === 0, "queryColumns bytes");
    check(db.copyInColumns("tour_columns", ["id", "label"], [[4], ["copied"]]) === 1, "copyInColumns");
    check(db.queryOne("SELECT label FROM tour_columns WHERE id = 4").get(0) === "copied", "copied back");
    // Texts without a null, one of them not ASCII: measured in UTF-8.
    check(db.copyInColumns("tour_columns", ["id", "label"], [[5, 6], ["wide é😀", "plain"]]) === 2, "copyInColumns of plain texts");
    const wide = db.queryColumns("SELECT label FROM tour_columns WHERE id >= 5 ORDER BY id").get(0);
    check(JSON.stringify(wide) === JSON.stringify(["wide é😀", "plain"]), `plain texts back ${JSON.stringify(wide)}`);
    // Halves of one pair in two texts: each text is refused, whole or as a column.
    check(lone(() => db.execute("SELECT $1::text[]", ["ok", "a\uD83D", "\uDE00b"])), "a pair split across elements");
    check(lone(() => db.executeColumns("SELECT cardinality($1::text[])", ["é", "a\uD83D", "\uDE00b"])), "a pair split in a column");
    db.batch("DROP TABLE tour_columns");
  } else {
    row = db.queryOne("SELECT ? AS b, ? AS f, ? AS k", new Uint8Array([0, 1]), 1.5, true);
  }
  const b = row.get("b");
  check(b instanceof Uint8Array && b.length === 2 && b[0] === 0 && b[1] === 1, "bytes");
  check(row.get("f") === 1.5 && (row.get("k") === true || row.get("k") === 1), "float, bool");
  // BigInt parameters within 2^53 are fine under QuickJS; beyond it the SDK refuses them.
  check(db.queryOne(`SELECT ${placeholders(1)} AS big`, 2n ** 40n).get("big") === 2 ** 40, "bigint");
  let refused = false;
  try {
    db.execute(`SELECT ${placeholders(1)}`, 2n ** 60n);
  } catch (e) {
    refused = e instanceof RangeError;
  }
  check(refused, "a BigInt beyond 2^53 is refused");
  // Text the host cannot take (a lone surrogate, half of a UTF-16 pair) is refused with a
  // TypeError saying where, not a trap; a log line is repaired instead.
  check(lone(() => db.execute(`SELECT ${placeholders(1)}`, "ab\uD800")), "a lone surrogate parameter");
  check(lone(() => db.execute(`SELECT ${placeholders(1)}`, "😀".slice(0, 1))), "half a pair cut by slice");
  check(lone(() => db.execute("SELECT 1 -- \uDC00")), "a lone surrogate in the SQL");
  db.info("a lone \uD800 surrogate in a log line is repaired");
  // Typed integers out of their range are refused, not wrapped or clamped by the lowering
  // (70000 as an int16 was bound as 4464), nor a negative progress.
  const range = (f) => {
    try {
      f();
    } catch (e) {
      return e instanceof RangeError;
    }
    return false;
  };
  check(range(() => db.int16(70000)), "int16 out of range");
  check(range(() => db.int32(2 ** 32 + 5)), "int32 out of range");
  check(range(() => db.execute(`SELECT ${placeholders(1)}`, db.array("int16", [1, 70000]))), "int16[] out of range");
  check(range(() => db.progress(-1)), "negative progress");
  // A `String` object is taken as the string it wraps; SQL text or a column name that is
  // no string is a TypeError, not a trap in the lowering.
  check(db.queryOne(new String("SELECT 7 AS seven")).get("seven") === 7, "a String object as SQL");
  const typeError = (f) => {
    try {
      f();
    } catch (e) {
      return e instanceof TypeError && /must be (a string|an array)/.test(e.message);
    }
    return false;
  };
  check(typeError(() => db.execute(42)), "a number as SQL");
  check(typeError(() => db.batch(undefined)), "no script");
  check(typeError(() => db.copyIn("nowhere", [1], [])), "a number as a column name");
  check(typeError(() => db.executeMany("SELECT 1", [new Int32Array([7])])), "a typed array as a row");
  check(typeError(() => db.copyIn("nowhere", ["a"], "ab")), "a string as the rows");
  // An array parameter is read once, by index: its own map and join are not what is used.
  const own = ["x", "y"];
  own.map = () => "garbage";
  own.join = () => "ok";
  const sent = db.toSql(own);
  check(sent.tag === "array" && sent.val.val.length === 2 && sent.val.val[1] === "y", "an array's own map");
  const hidden = ["\uD800"];
  hidden.join = () => "ok";
  check(lone(() => db.toSql(hidden)), "a lone surrogate behind an array's own join");
  db.info("values: ok");
}

// Whether `f` throws the SDK's TypeError for a lone surrogate.
function lone(f) {
  try {
    f();
  } catch (e) {
    return e instanceof TypeError && e.message.includes("lone surrogate");
  }
  return false;
}

function firstBatch() {
  db.info(`dialect: ${db.dialect()}`);
  checkValues();
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
  // The list's own `map` is not what the SDK reads it with.
  const names = [new String("id"), "label", "note"];
  names.map = () => [5, {}];
  check(db.copyIn(new String("tour"), names, [[5, parts.join(","), null]]) === 1, "copied in");
  check(db.queryOpt(`SELECT id FROM tour WHERE id = ${placeholders(1)}`, 42) === null, "no row 42");
  db.progress(1, 1);
}

export function downgrade() {
  const label = db.queryOne("SELECT label FROM tour WHERE id = 1").get("label");
  if (label === "fail-downgrade") db.execute("INSERT INTO no_such_table VALUES (1)");
  if (label === "fail-lone") db.execute(`SELECT ${placeholders(1)}`, "\uD800");
  if (label === "fail-async") {
    // An async downgrade returns at its first await: refused, not recorded half-done.
    return (async () => {
      await null;
      db.batch("DROP TABLE tour");
    })();
  }
  if (label === "fail-getter") {
    const e = new Error();
    Object.defineProperty(e, "message", {
      get() {
        throw new Error("no message");
      },
    });
    throw e;
  }
  db.batch("DROP TABLE tour");
}
