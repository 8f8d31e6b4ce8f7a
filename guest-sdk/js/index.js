// The JavaScript SDK for wasmig migrations, built into components by jco (QuickJS backend).
//
// A migration is an ES module `migration.js` exporting `upgrade()` and `downgrade()`; it
// imports this package as `wasmig`:
//
//     import * as db from "wasmig";
//
//     export function upgrade() {
//       db.batch("ALTER TABLE customers ADD COLUMN email_norm TEXT");
//       const n = db.execute("UPDATE customers SET email_norm = lower(email)");
//       db.info(`normalised ${n} rows`);
//     }
//
//     export function downgrade() {
//       db.batch("ALTER TABLE customers DROP COLUMN email_norm");
//     }
//
// Everything runs on the transaction wasmig opened for the step. A thrown exception fails
// the migration with its message and wasmig rolls everything back. A failing statement
// throws `SqlError` (`code`, `message`, `detail`, ...); to recover from one and carry on,
// run it inside `db.savepoint(() => ...)`.
//
// Integers: QuickJS passes 64-bit integers as Numbers, StarlingMonkey as BigInts. This SDK
// takes either as a parameter and returns integer results as Numbers when they are safe
// integers (|n| <= 2^53 - 1) and as BigInts beyond, so a migration reads the same under
// both. (Under QuickJS a value beyond 2^53 has already lost precision on the way in: cast
// such columns to text in SQL.) wasmig builds with QuickJS.
//
// This file owns the idiomatic API over the bindings componentize-qjs generates from
// wit/migration.wit. `wasmig build` stages it as `node_modules/wasmig` and rewrites the
// `"wasmig:migration/..."` import specifiers below to the WIT's versioned names.

import {
  batch as witBatch,
  beginSavepoint,
  copyIn as witCopyIn,
  copyInColumns as witCopyInColumns,
  dialect as witDialect,
  execute as witExecute,
  executeColumns as witExecuteColumns,
  executeMany as witExecuteMany,
  openCursor,
  query as witQuery,
  queryColumns as witQueryColumns,
} from "wasmig:migration/sql";
import { log as witLog, progress as witProgress } from "wasmig:migration/log";
import { checkpoint as witCheckpoint, nextBatch as witNextBatch } from "wasmig:migration/batch";

// How this build's backend passes s64/u64: false for QuickJS (Numbers), true for
// StarlingMonkey (BigInts).
const INT64_AS_BIGINT = false;

/** `dialect()` on PostgreSQL: placeholders `$1`, `$2`... */
export const POSTGRES = "postgres";
/** `dialect()` on SQLite: placeholders `?1`, `?2`... or `?`. */
export const SQLITE = "sqlite";
/**
 * `dialect()` on MySQL and MariaDB: placeholders `?`, bound in order (a value used twice is
 * passed twice). DDL commits implicitly there, so a revision with DDL is not atomic.
 */
export const MYSQL = "mysql";

/** An error reported by the database, or by wasmig before the statement reached it. */
export class SqlError extends Error {
  constructor(e) {
    super(`${e.message} (SQL error ${e.code})${e.detail ? `: ${e.detail}` : ""}`);
    this.name = "SqlError";
    /** PostgreSQL's SQLSTATE (`23505`), SQLite's extended result code (`2067`), or `WASMIG-...`. */
    this.code = e.code;
    /** The primary message. */
    this.sqlMessage = e.message;
    this.detail = e.detail ?? null;
    this.hint = e.hint ?? null;
    this.constraint = e.constraint ?? null;
    this.table = e.table ?? null;
    this.column = e.column ?? null;
  }
}

function isSqlErrorRecord(v) {
  return v !== null && typeof v === "object" && typeof v.code === "string" && typeof v.message === "string";
}

// What a value is, for an error message, whatever it is (its own `toString` may throw).
function kind(v) {
  try {
    return v === null ? "null" : typeof v === "object" ? Object.prototype.toString.call(v) : typeof v;
  } catch {
    return typeof v;
  }
}

// The SQL text or a table name as the host takes it: a string (a `String` object as the
// string it wraps); anything else is a TypeError here rather than a trap in the lowering.
function sqlText(s, what) {
  if (s instanceof String) s = s.valueOf();
  if (typeof s !== "string") throw new TypeError(`${what} must be a string, not ${kind(s)}`);
  return wellFormed(s, what);
}

// A list the migration gave (rows, a row, column names) as a fresh array read by index:
// what reaches the lowering is a plain array of what was checked, whatever the list's own
// `map` does; a typed array or any other object is a TypeError here, not a trap there.
function listOf(list, what) {
  if (!Array.isArray(list)) throw new TypeError(`${what} must be an array, not ${kind(list)}`);
  const n = list.length;
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = list[i];
  return out;
}

// Column names, the same way as SQL text: an array of strings.
function columnNames(list) {
  const texts = listOf(list, "the column names");
  for (let i = 0; i < texts.length; i++) {
    let n = texts[i];
    if (n instanceof String) n = n.valueOf();
    if (typeof n !== "string") throw new TypeError(`column name ${i + 1} must be a string, not ${kind(n)}`);
    texts[i] = n;
  }
  wellFormedTexts(texts, "column name");
  return texts;
}

// Rows of parameters (an array of arrays), each row's values converted.
function paramRows(rows) {
  const out = listOf(rows, "the rows");
  for (let i = 0; i < out.length; i++) out[i] = params(listOf(out[i], `row ${i + 1}`));
  return out;
}

// Calls an import, turning its thrown `sql-error` into `SqlError`.
function call(f, ...args) {
  try {
    return f(...args);
  } catch (e) {
    const payload = isSqlErrorRecord(e) ? e : e && isSqlErrorRecord(e.payload) ? e.payload : null;
    if (payload) throw new SqlError(payload);
    throw e;
  }
}

// Text crosses to the host as UTF-8, which has no form for a lone surrogate (half of a
// UTF-16 pair, as `slice` can leave one): lowering it would trap, ending the migration with
// a wasm backtrace and no word of why. Refused here instead, as a TypeError saying where.
// `isWellFormed` runs in the engine; the walk that finds the index runs only on the error.
function wellFormed(s, what) {
  if (typeof s.isWellFormed !== "function" || s.isWellFormed()) return s;
  let i = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c >= 0xe000) continue;
    const d = s.charCodeAt(i + 1);
    if (c >= 0xdc00 || !(d >= 0xdc00 && d < 0xe000)) break;
    i += 1;
  }
  const unit = s.charCodeAt(i).toString(16);
  throw new TypeError(
    `${what} is not valid Unicode: a lone surrogate (\\u${unit}) at index ${i}. ` +
      "wasmig passes text as UTF-8, which cannot hold one: cut strings on code points, " +
      "or repair them with toWellFormed() (which writes U+FFFD in its place)",
  );
}

// `wellFormed` for every text of an array (nulls and other values skipped): the texts
// joined with a separator (so that halves of a pair split across two texts stay lone) are
// tested at once, each text only when that fails, to say which.
function wellFormedTexts(texts, what) {
  if (typeof String.prototype.isWellFormed !== "function") return;
  if (arrayJoin.call(texts, ",").isWellFormed()) return;
  texts.forEach((t, i) => {
    if (typeof t === "string") wellFormed(t, `${what} ${i + 1}`);
  });
}

// --- values ------------------------------------------------------------------------------

class Typed {
  constructor(tag, value) {
    this.tag = tag;
    this.value = value;
  }
}

/** A `json` parameter: JSON text, or any value `JSON.stringify` accepts. */
export const json = (v) => new Typed("json", typeof v === "string" ? v : JSON.stringify(v));
/** A `jsonb` parameter. */
export const jsonb = (v) => new Typed("jsonb", typeof v === "string" ? v : JSON.stringify(v));
/** A `numeric` parameter, from its decimal text (`"12.50"`). */
export const numeric = (text) => new Typed("numeric", String(text));
/** A `uuid` parameter. */
export const uuid = (text) => new Typed("uuid", String(text));
/** A `date` parameter (`YYYY-MM-DD`). */
export const date = (text) => new Typed("date", String(text));
/** A `time` parameter (`HH:MM:SS[.f]`). */
export const time = (text) => new Typed("time", String(text));
/** A `timestamp` parameter (no zone); a `Date` binds as `timestamptz`. */
export const timestamp = (text) => new Typed("timestamp", String(text));
/** A `smallint` parameter (a plain integer binds as `bigint`). */
export const int16 = (n) => new Typed("int16", intOf(16, n));
/** An `integer` parameter. */
export const int32 = (n) => new Typed("int32", intOf(32, n));
/** A `real` parameter (a non-integer Number binds as `double precision`). */
export const float32 = (n) => new Typed("float32", Number(n));
/** A `double precision` parameter, also for integral Numbers (`float64(1)`). */
export const float64 = (n) => new Typed("float64", Number(n));
/** An array of one element type (`array("int32", [1, null])`); plain arrays infer it. */
export const array = (tag, elements) => new Typed("array", { tag, elements });

// `n` as a Number when it is an integer that fits `bits` signed bits (the WIT's s16, s32):
// the component's lowering would otherwise wrap or clamp it silently (70000 as an int16 was
// bound as 4464).
function intOf(bits, n) {
  const v = Number(n);
  const max = 2 ** (bits - 1);
  if (!Number.isInteger(v) || v < -max || v >= max) {
    throw new RangeError(`${n} does not fit a ${bits}-bit SQL integer (int${bits / 8})`);
  }
  return v;
}

function int64(n) {
  if (typeof n === "bigint") {
    if (n < -(2n ** 63n) || n >= 2n ** 63n) throw new RangeError(`${n} does not fit a 64-bit SQL integer`);
    if (INT64_AS_BIGINT) return n;
    if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new RangeError(`${n} is beyond 2^53 and QuickJS passes 64-bit integers as Numbers: pass it as text and cast in SQL`);
    }
    return Number(n);
  }
  if (!Number.isSafeInteger(n)) throw new RangeError(`${n} is not a safe integer`);
  return INT64_AS_BIGINT ? BigInt(n) : n;
}

// A JavaScript value as [array element tag, WIT value].
function scalar(v) {
  if (v === null || v === undefined) return [null, { tag: "null" }];
  if (v instanceof Typed) {
    if (v.tag === "array") return ["array", toArray(v.value.tag, v.value.elements)];
    return [v.tag, { tag: v.tag, val: typeof v.value === "string" ? wellFormed(v.value, `a ${v.tag} parameter`) : v.value }];
  }
  switch (typeof v) {
    case "boolean":
      return ["bool", { tag: "bool", val: v }];
    case "bigint":
      return ["int64", { tag: "int64", val: int64(v) }];
    case "number":
      return Number.isInteger(v) ? ["int64", { tag: "int64", val: int64(v) }] : ["float64", { tag: "float64", val: v }];
    case "string":
      return ["text", { tag: "text", val: wellFormed(v, "a text parameter") }];
  }
  if (v instanceof Uint8Array) return ["bytes", { tag: "bytes", val: v }];
  if (v instanceof Date) return ["timestamptz", { tag: "timestamptz", val: v.toISOString() }];
  throw new TypeError(`cannot pass ${Object.prototype.toString.call(v)} as an SQL parameter`);
}

function elementOf(tag, e) {
  if (e === null || e === undefined) return null;
  if (tag === "int64") return int64(e);
  if (tag === "int16" || tag === "int32") return intOf(tag === "int16" ? 16 : 32, e instanceof Typed ? e.value : e);
  if (e instanceof Typed) e = e.value;
  if (e instanceof Date) return e.toISOString();
  if (typeof e === "string") wellFormed(e, "an element of an SQL array");
  return e;
}

function toArray(tag, elements) {
  return { tag: "array", val: { tag, val: elements.map((e) => elementOf(tag, e)) } };
}

// The array element tag of a plain value, told by `typeof` alone; `undefined` for anything
// else (null, objects), which `toSql`'s general path handles.
function plainTag(e) {
  switch (typeof e) {
    case "string":
      return "text";
    case "number":
      return Number.isInteger(e) ? "int64" : "float64";
    case "boolean":
      return "bool";
    case "bigint":
      return "int64";
  }
  return undefined;
}

// `toSql` of an array of plain values of one kind, with nulls: one `typeof` per element and
// no object made for it (a batch's ids and texts, say). `undefined` when the array holds
// anything else: the general path then says what is wrong, or converts it.
function plainArray(v) {
  let tag = null;
  let nulls = false;
  for (let i = 0; i < v.length; i++) {
    const e = v[i];
    if (e === null || e === undefined) {
      nulls = true;
      continue;
    }
    const t = plainTag(e);
    if (t === undefined || (tag !== null && t !== tag)) return undefined;
    tag = t;
  }
  if (tag === null) return undefined;
  if (tag === "text") wellFormedTexts(v, "element");
  let elements = v;
  if (tag === "int64") elements = v.map((e) => (e === null || e === undefined ? null : int64(e)));
  else if (nulls) elements = v.map((e) => (e === undefined ? null : e));
  return { tag: "array", val: { tag, val: elements } };
}

// A fresh plain array of `values`' elements, each read once: what the SDK checks is what
// the lowering reads (an array's own `map`/`join` or element getters answering differently
// on each read never see either). A plain array is copied by the engine (`slice`); anything
// else (a subclass, an own `constructor`, a typed array, any iterable) goes through
// `Array.from`.
const arraySlice = Array.prototype.slice;
const arrayJoin = Array.prototype.join;
function snapshot(values) {
  const plain =
    Array.isArray(values) &&
    Object.getPrototypeOf(values) === Array.prototype &&
    !Object.prototype.hasOwnProperty.call(values, "constructor");
  return plain ? arraySlice.call(values) : Array.from(values);
}

/** A JavaScript value as a WIT `value` (see the README for the mapping). */
export function toSql(v) {
  if (Array.isArray(v)) {
    v = snapshot(v);
    const plain = plainArray(v);
    if (plain !== undefined) return plain;
    const tags = new Set();
    for (const e of v) {
      if (Array.isArray(e)) throw new TypeError("SQL arrays are one-dimensional");
      const [tag] = scalar(e);
      if (tag !== null) tags.add(tag);
    }
    if (tags.size > 1) throw new TypeError(`an SQL array holds one type, not ${[...tags].join(", ")}`);
    const tag = tags.size ? [...tags][0] : "text";
    return toArray(tag, v);
  }
  return scalar(v)[1];
}

function int64Result(n) {
  if (typeof n === "bigint") {
    return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(n) : n;
  }
  return n;
}

/**
 * A WIT `value` as a JavaScript value: NULL is `null`; integers Numbers (BigInt beyond 2^53);
 * reals Numbers; text, json, numeric, uuid, dates and times strings (in the WIT's formats;
 * parse JSON with `JSON.parse`); bytes a `Uint8Array`; arrays JavaScript arrays.
 */
export function fromSql(v) {
  switch (v.tag) {
    case "null":
      return null;
    case "int64":
      return int64Result(v.val);
    case "bytes":
      return v.val instanceof Uint8Array ? v.val : Uint8Array.from(v.val);
    case "array":
      return v.val.tag === "int64" ? v.val.val.map((e) => (e === null ? null : int64Result(e))) : Array.from(v.val.val);
    default:
      return v.val;
  }
}

const params = (list) => list.map(toSql);

// --- rows --------------------------------------------------------------------------------

/** One result row: `row.get(0)`, `row.get("email")`, `row.values()`, `row.toObject()`. */
export class Row {
  constructor(names, values) {
    this._names = names;
    this._values = values;
  }

  /** The value of a column, by index or name; an unknown column throws. */
  get(column) {
    let index = column;
    if (typeof column === "string") {
      index = this._names.get(column);
      if (index === undefined) {
        throw new RangeError(`no column "${column}"; the result has ${[...this._names.keys()].join(", ") || "no columns"}`);
      }
    } else if (!(index >= 0 && index < this._values.length)) {
      throw new RangeError(`no column ${column}; the result has ${this._values.length}`);
    }
    return fromSql(this._values[index]);
  }

  /** The number of columns. */
  get length() {
    return this._values.length;
  }

  /** The values, in column order. */
  values() {
    return this._values.map(fromSql);
  }

  /** `{column: value}`. */
  toObject() {
    const out = {};
    for (const [name, i] of this._names) out[name] = fromSql(this._values[i]);
    return out;
  }
}

function names(columns) {
  const map = new Map();
  columns.forEach((c, i) => {
    if (!map.has(c.name)) map.set(c.name, i);
  });
  return map;
}

function rowsOf(columns, rows) {
  const byName = names(columns);
  const out = rows.map((r) => new Row(byName, r));
  out.columns = columns.map((c) => ({ name: c.name, typeName: c.typeName }));
  return out;
}

// --- statements --------------------------------------------------------------------------

/** `POSTGRES`, `SQLITE` or `MYSQL`: which database the migration runs against. */
export function dialect() {
  // Every case of the WIT's `sql-dialect`, named: one missing here throws rather than
  // passing for another database.
  const dialect = witDialect();
  switch (dialect) {
    case "postgres":
      return POSTGRES;
    case "sqlite":
      return SQLITE;
    case "mysql":
      return MYSQL;
    default:
      throw new Error(`wasmig: unknown dialect ${dialect} (an SDK older than the host's WIT)`);
  }
}

/**
 * Runs one statement and returns the number of rows it affected. Placeholders are the
 * database's: `$1` on PostgreSQL, `?` or `?1` on SQLite, `?` on MySQL.
 */
export function execute(statement, ...args) {
  return int64Result(call(witExecute, sqlText(statement, "the SQL text"), params(args)));
}

/** Runs one statement and returns all its rows (an array of `Row` with `.columns`). */
export function query(statement, ...args) {
  const result = call(witQuery, sqlText(statement, "the SQL text"), params(args));
  return rowsOf(result.columns, result.rows);
}

/** Exactly one row, else an error. */
export function queryOne(statement, ...args) {
  const rows = query(statement, ...args);
  if (rows.length !== 1) throw new Error(`expected one row, got ${rows.length}: ${statement}`);
  return rows[0];
}

/** At most one row, or `null`. */
export function queryOpt(statement, ...args) {
  const rows = query(statement, ...args);
  if (rows.length > 1) throw new Error(`expected at most one row, got ${rows.length}: ${statement}`);
  return rows.length ? rows[0] : null;
}

/** Runs a script of several statements separated by `;`, without parameters (DDL). */
export function batch(script) {
  call(witBatch, sqlText(script, "the SQL script"));
}

/** Runs one statement once per parameter row (an array of arrays); returns the rows affected. */
export function executeMany(statement, rows) {
  return int64Result(call(witExecuteMany, sqlText(statement, "the SQL text"), paramRows(rows)));
}

/**
 * Writes `rows` (arrays of values, one per column of `columns`) into `table` and returns the
 * number written: the fast path for bulk inserts (`COPY` on PostgreSQL). `table` and the
 * column names are quoted by wasmig, so they are taken literally.
 */
export function copyIn(table, columns, rows) {
  return int64Result(call(witCopyIn, sqlText(table, "the table name"), columnNames(columns), paramRows(rows)));
}

// --- batches as columns (WIT 0.4.0) ------------------------------------------------------

// One packed column's texts: `text` holds them one after another, `ends` where each ends in
// UTF-8 bytes. When the text is ASCII (as many bytes as UTF-16 units) the byte offsets are
// string offsets; otherwise the string is walked once, counting each unit's UTF-8 bytes.
function unpackTexts(text, ends) {
  const n = ends.length;
  const out = new Array(n);
  let start = 0;
  if (n === 0 || text.length === ends[n - 1]) {
    for (let i = 0; i < n; i++) {
      const end = ends[i];
      out[i] = text.slice(start, end);
      start = end;
    }
    return out;
  }
  let pos = 0;
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    while (bytes < ends[i]) {
      const c = text.charCodeAt(pos);
      if (c < 0x80) bytes += 1;
      else if (c < 0x800) bytes += 2;
      else if (c >= 0xd800 && c < 0xdc00) {
        bytes += 4;
        pos += 1;
      } else bytes += 3;
      pos += 1;
    }
    out[i] = text.slice(start, pos);
    start = pos;
  }
  return out;
}

// The UTF-8 length of a string: its length when it is ASCII.
const ASCII = /^[\x00-\x7f]*$/;
function utf8Length(s) {
  if (ASCII.test(s)) return s.length;
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c < 0xdc00) {
      bytes += 4;
      i += 1;
    } else bytes += 3;
  }
  return bytes;
}

// A WIT `column-values` as a JavaScript array of `fromSql`'s values (`null` for NULL).
function columnArray(column) {
  const data = column.data;
  let out;
  switch (data.tag) {
    case "int64":
      // Numbers already under QuickJS (the list as the glue made it); BigInts beyond 2^53
      // otherwise.
      out = INT64_AS_BIGINT ? Array.from(data.val, int64Result) : Array.isArray(data.val) ? data.val : Array.from(data.val);
      break;
    case "bool":
    case "int16":
    case "int32":
    case "float32":
    case "float64":
      out = Array.from(data.val);
      break;
    case "bytes": {
      const bytes = data.val.bytes instanceof Uint8Array ? data.val.bytes : Uint8Array.from(data.val.bytes);
      out = new Array(data.val.ends.length);
      let start = 0;
      data.val.ends.forEach((end, i) => {
        out[i] = bytes.slice(start, end);
        start = end;
      });
      break;
    }
    default:
      out = unpackTexts(data.val.text, data.val.ends);
  }
  const nulls = column.nulls;
  for (let i = 0; i < nulls.length; i++) if (nulls[i]) out[i] = null;
  return out;
}

/** A result read column by column; see `queryColumns`. */
export class Columns {
  constructor(result) {
    this._names = names(result.columns);
    this._values = result.values;
    this._arrays = new Array(result.values.length);
    /** The columns, `{name, typeName}`. */
    this.columns = result.columns.map((c) => ({ name: c.name, typeName: c.typeName }));
    /** How many rows. */
    this.length = Number(result.rows);
  }

  /** One column's values, by index or name, as an array (`null` for SQL NULL). */
  get(column) {
    let index = column;
    if (typeof column === "string") {
      index = this._names.get(column);
      if (index === undefined) {
        throw new RangeError(`no column "${column}"; the result has ${[...this._names.keys()].join(", ") || "no columns"}`);
      }
    } else if (!(index >= 0 && index < this._values.length)) {
      throw new RangeError(`no column ${column}; the result has ${this._values.length}`);
    }
    if (this._arrays[index] === undefined) this._arrays[index] = columnArray(this._values[index]);
    return this._arrays[index];
  }
}

/**
 * Runs one statement and returns its whole result column by column (a `Columns`:
 * `.length`, `.columns`, `.get(column)` an array of values): the same values as `query`,
 * but one list per column crosses the sandbox instead of a value per cell, the shape to use
 * for batches of thousands of rows. A column of arrays is refused (`WASMIG-DECODE`).
 */
export function queryColumns(statement, ...args) {
  return new Columns(call(witQueryColumns, sqlText(statement, "the SQL text"), params(args)));
}

// The column of an array of strings, or of integers exact as Numbers, without a null: the
// shape of a batch's ids and texts, made in one loop without a call per element (calls
// are where QuickJS spends a batch's time: this path took the 1M-row transform's client
// CPU from 1.86 to 1.37 s). `undefined` for any other array, which `toColumn`'s general
// path takes (and which gives the same column for these).
function plainColumn(v) {
  const n = v.length;
  if (n === 0) return undefined;
  const first = v[0];
  if (typeof first === "string") {
    // The ends as if every text were ASCII (UTF-16 units), measured again if one is not.
    const ends = new Uint32Array(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const t = v[i];
      if (typeof t !== "string") return undefined;
      total += t.length;
      ends[i] = total;
    }
    const text = arrayJoin.call(v, "");
    if (!ASCII.test(text)) {
      wellFormedTexts(v, "text");
      total = 0;
      for (let i = 0; i < n; i++) {
        total += utf8Length(v[i]);
        ends[i] = total;
      }
    }
    return { nulls: [], data: { tag: "text", val: { text, ends } } };
  }
  if (typeof first === "number" && !INT64_AS_BIGINT) {
    const max = Number.MAX_SAFE_INTEGER;
    for (let i = 0; i < n; i++) {
      const e = v[i];
      if (typeof e !== "number" || e % 1 !== 0 || e > max || e < -max) return undefined;
    }
    return { nulls: [], data: { tag: "int64", val: v } };
  }
  return undefined;
}

// A JavaScript array as a WIT `column-values`, its type told by its values as `toSql`
// tells an array's (texts packed into one string).
function toColumn(values) {
  // Not copied as `toSql` copies a parameter: a column is a batch's whole data, and the
  // copy cost the 1M-row transform 8% of its client CPU (`bench/run`, 2026-12-07). The
  // array's own `join` is not used; element getters answering differently on each read
  // can still make the lowering trap (a contrived migration, which fails either way).
  const list = Array.isArray(values) ? values : Array.from(values);
  const plain = plainColumn(list);
  if (plain !== undefined) return plain;
  const array = toSql(list).val;
  const tag = array.tag;
  const elements = array.val;
  // Null flags only when there is a null: `includes` scans in the engine, not in JavaScript.
  const any = elements.includes(null) || elements.includes(undefined);
  const nulls = any ? elements.map((e) => e === null || e === undefined) : [];
  let val;
  if (tag === "bytes") {
    const ends = new Array(elements.length);
    let total = 0;
    elements.forEach((e, i) => {
      total += e ? e.length : 0;
      ends[i] = total;
    });
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const e of elements) {
      if (e) {
        bytes.set(e, at);
        at += e.length;
      }
    }
    val = { bytes, ends };
  } else if (tag === "bool" || tag === "int16" || tag === "int32" || tag === "int64" || tag === "float32" || tag === "float64") {
    const filler = tag === "bool" ? false : 0;
    val = any ? elements.map((e) => (e === null || e === undefined ? filler : e)) : elements;
  } else {
    const texts = any ? elements.map((e) => (e === null || e === undefined ? "" : e)) : elements;
    const text = arrayJoin.call(texts, "");
    // ASCII (the whole text tested at once): each length is its UTF-8 length.
    const measure = ASCII.test(text) ? (t) => t.length : utf8Length;
    const ends = new Array(texts.length);
    let total = 0;
    for (let i = 0; i < texts.length; i++) {
      total += measure(texts[i]);
      ends[i] = total;
    }
    val = { text, ends };
  }
  return { nulls, data: { tag, val } };
}

/**
 * Runs one statement whose parameters are whole columns (JavaScript arrays), each bound as
 * one array (`$1::int8[]`): with `UNNEST`, a batch written in one statement. PostgreSQL
 * only (SQLite and MySQL refuse it with `WASMIG-BIND`). Returns the rows affected.
 */
export function executeColumns(statement, ...columns) {
  return int64Result(call(witExecuteColumns, sqlText(statement, "the SQL text"), columns.map(toColumn)));
}

/**
 * `copyIn` with the rows given as columns (`columns[i]`'s array fills column `names[i]`):
 * the fastest way to write a batch into a table. Returns the rows written.
 */
export function copyInColumns(table, names, columns) {
  return int64Result(call(witCopyInColumns, sqlText(table, "the table name"), columnNames(names), listOf(columns, "the columns").map(toColumn)));
}

/**
 * The checkpoint the previous batch of this step passed to `nextBatch`, or `null` in the
 * first batch (a resumed `transaction = "batched"` run starts from the stored one).
 */
export function checkpoint() {
  return witCheckpoint() ?? null;
}

/**
 * Asks for another batch once this call returns, resuming from `checkpoint` (text). In a
 * `transaction = "batched"` revision each batch commits on its own; otherwise all batches run
 * in the step's one transaction.
 */
export function nextBatch(checkpoint) {
  witNextBatch(wellFormed(String(checkpoint), "the checkpoint"));
}

/** A result read in chunks (a server-side cursor on PostgreSQL). */
export class Cursor {
  constructor(handle) {
    this._handle = handle;
    this.columns = handle.columns();
    this._names = names(this.columns);
  }

  /** Up to `maxRows` further rows; an empty array once the result is exhausted. */
  nextChunk(maxRows = 1000) {
    const rows = call(() => this._handle.next(maxRows));
    const out = rows.map((r) => new Row(this._names, r));
    out.columns = this.columns;
    return out;
  }

  /** The remaining rows, `maxRows` at a time: `for (const chunk of cursor.chunks(500))`. */
  *chunks(maxRows = 1000) {
    for (;;) {
      const chunk = this.nextChunk(maxRows);
      if (chunk.length === 0) return;
      yield chunk;
    }
  }

  /** Every remaining row. */
  *[Symbol.iterator]() {
    for (const chunk of this.chunks()) yield* chunk;
  }

  /** Closes the cursor (also done when the migration returns). */
  close() {
    if (this._handle && typeof this._handle[Symbol.dispose] === "function") this._handle[Symbol.dispose]();
    this._handle = null;
  }
}

/** Opens a `Cursor` over the result of a query. */
export function cursor(statement, ...args) {
  return new Cursor(call(openCursor, sqlText(statement, "the SQL text"), params(args)));
}

/**
 * Runs `f` inside a savepoint: released when `f` returns, rolled back when it throws (the
 * exception goes on). The way to recover from an SQL error: an error outside a rolled-back
 * savepoint fails the migration even if the migration catches it.
 *
 *     try {
 *       db.savepoint(() => db.execute("INSERT INTO t VALUES (1)"));
 *     } catch (e) {
 *       if (!(e instanceof db.SqlError) || e.code !== "23505") throw e;
 *     }
 */
export function savepoint(f) {
  const sp = call(beginSavepoint);
  let result;
  try {
    result = f();
  } catch (e) {
    try {
      call(() => sp.rollback());
    } finally {
      dispose(sp);
    }
    throw e;
  }
  try {
    call(() => sp.release());
  } finally {
    dispose(sp);
  }
  return result;
}

function dispose(resource) {
  if (typeof resource[Symbol.dispose] === "function") resource[Symbol.dispose]();
}

// --- logging -----------------------------------------------------------------------------

// A log line or error as text the host can take: a lone surrogate becomes U+FFFD (see
// `wellFormed`), since a message should never fail the migration for how it was cut.
function repaired(message) {
  const s = String(message);
  return typeof s.toWellFormed === "function" ? s.toWellFormed() : s;
}

/** Logs at trace level. */
export const trace = (message) => witLog("trace", repaired(message));
/** Logs at debug level. */
export const debug = (message) => witLog("debug", repaired(message));
/** Logs at info level (shown by default, prefixed with the revision). */
export const info = (message) => witLog("info", repaired(message));
/** Logs a warning. */
export const warn = (message) => witLog("warn", repaired(message));
/** Logs an error (it does not fail the migration: throw for that). */
export const error = (message) => witLog("error", repaired(message));

/** Reports progress: `done` units so far, out of `total` if known. */
export function progress(done, total = null) {
  if (done < 0 || (total !== null && total !== undefined && total < 0)) {
    throw new RangeError(`progress counts from 0: done = ${done}, total = ${total}`);
  }
  witProgress(int64(done), total === null || total === undefined ? null : int64(total));
}

// ` (at /migration.js:12:5)`: the innermost frame of the migration's own code.
function where(e) {
  const frames = String(e.stack || "")
    .split("\n")
    .map((l) => l.trim())
    .filter(
      (l) =>
        l.startsWith("at ") &&
        !l.endsWith("(native)") &&
        !l.includes("/node_modules/wasmig/") &&
        !l.includes("/wasmig_entry.js"),
    );
  const match = frames.length ? /\(([^)]*)\)$/.exec(frames[0]) : null;
  return match ? ` (at ${match[1]})` : "";
}

/** Used by the entry module: runs an export, turning any exception into the error string. */
export function runExport(name, f) {
  if (typeof f !== "function") throw `migration.js exports no function \`${name}()\``;
  try {
    const result = f();
    // An `async` function returns at its first `await`, and nothing runs what follows:
    // the step would be recorded with only part of its work done (and an error thrown
    // after the `await` never seen). The SDK's calls return their results directly.
    if (
      result instanceof Promise ||
      (result !== null && (typeof result === "object" || typeof result === "function") && typeof result.then === "function")
    ) {
      throw new TypeError(
        `${name}() returned a Promise (an async function?): wasmig runs a migration synchronously, ` +
          "so nothing after an await would run; drop async and await (the SDK's calls return their results directly)",
      );
    }
  } catch (e) {
    throw repaired(describe(e));
  }
}

// What the migration threw, as the step's error: an Error's name, message and place, else
// the value as text; a value that cannot be made text (a `message` getter or `toString`
// that throws) is named by its kind rather than trapping the component.
function describe(e) {
  try {
    if (e instanceof Error) return `${e.name}: ${e.message}${where(e)}`;
    return String(e);
  } catch {
    return `the migration threw ${kind(e)}, which could not be turned into text`;
  }
}
