"""A tour of the Python SDK, for the end-to-end tests: parameters, execute_many, a recovered
SQL error in a savepoint, two batches with a checkpoint, rows by index and name, copy_in,
query_opt, the column calls (PostgreSQL), logging and progress; and a downgrade that lets an SQL error escape when asked
to (the label of row 1 says so).

The JavaScript and C tours do exactly the same, so the tests compare their tables.
"""

import datetime
import decimal
import json
import uuid

import wasmig


def placeholders(n):
    if wasmig.dialect() == wasmig.POSTGRES:
        return ", ".join(f"${i}" for i in range(1, n + 1))
    return ", ".join("?" for _ in range(n))


def upgrade():
    if wasmig.checkpoint() is None:
        first_batch()
        wasmig.next_batch("summary")
    else:
        wasmig.info(f"second batch, from checkpoint {wasmig.checkpoint()}")
        second_batch()


def check_columns():
    """A batch as columns: written through UNNEST, read back, copied in."""
    wasmig.batch("CREATE TEMPORARY TABLE tour_columns (id int8, label text, raw bytea, n numeric)")
    labels = ["plain", None, "wide \u00e9\U0001f600"]
    written = wasmig.execute_columns(
        "INSERT INTO tour_columns SELECT * FROM UNNEST($1::int8[], $2::text[], $3::bytea[], $4::numeric[])",
        [1, 2, 3],
        labels,
        [b"\x01", None, b""],
        [decimal.Decimal("1.50"), None, decimal.Decimal("-2")],
    )
    assert written == 3, written
    batch = wasmig.query_columns("SELECT id, label, raw, n FROM tour_columns ORDER BY id")
    assert len(batch) == 3 and batch.columns[1][0] == "label", batch.columns
    assert batch["id"] == [1, 2, 3], batch["id"]
    assert batch[1] == labels, batch[1]
    assert batch["raw"] == [b"\x01", None, b""], batch["raw"]
    assert batch["n"] == [decimal.Decimal("1.50"), None, decimal.Decimal("-2")], batch["n"]
    assert wasmig.copy_in_columns("tour_columns", ["id", "label"], [[4], ["copied"]]) == 1
    assert wasmig.query_one("SELECT label FROM tour_columns WHERE id = 4")[0] == "copied"
    # Lone surrogates in an array's texts or a column's: refused, naming the element.
    assert lone(lambda: wasmig.execute("SELECT $1::text[]", ["ok", None, "\ud83d"])), "an array element"
    assert lone(lambda: wasmig.execute_columns("SELECT cardinality($1::text[])", ["\u00e9", "a\udc00"])), "a column"
    wasmig.batch("DROP TABLE tour_columns")


def check_values():
    """Parameters and results of every kind the SDK converts, checked in the guest."""
    if wasmig.dialect() == wasmig.POSTGRES:
        row = wasmig.query_one(
            "SELECT $1::numeric AS n, $2::uuid AS u, $3::date AS d, $4::timestamptz AS t, "
            "$5::int8[] AS a, $6::jsonb AS j, $7::bytea AS b, $8::float8 AS f, $9::bool AS k, "
            "$10::int4 AS i, $11::text[] AS s",
            decimal.Decimal("12.50"),
            uuid.UUID("67e55044-10b1-426f-9247-bb680e5fe0c8"),
            datetime.date(2024, 1, 2),
            datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            [1, None, 3],
            wasmig.Jsonb({"a": 1}),
            b"\x00\x01",
            1.5,
            True,
            wasmig.Int32(7),
            ["x", None],
        )
        assert row["n"] == decimal.Decimal("12.50"), row
        assert row["u"] == uuid.UUID("67e55044-10b1-426f-9247-bb680e5fe0c8"), row
        assert row["d"] == datetime.date(2024, 1, 2), row
        assert row["t"] == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), row
        assert row["a"] == [1, None, 3] and json.loads(row["j"]) == {"a": 1}, row
        assert row["i"] == 7 and row["s"] == ["x", None], row
        check_plain_arrays()
        check_columns()
    else:
        row = wasmig.query_one("SELECT ? AS b, ? AS f, ? AS k", b"\x00\x01", 1.5, True)
    assert row["b"] == b"\x00\x01" and row["f"] == 1.5 and row["k"] in (True, 1), row
    big = wasmig.query_one("SELECT " + placeholders(1) + " AS big", 2**53 + 1)["big"]
    assert big == 2**53 + 1, big
    # Text the host cannot take (a lone surrogate) is refused with a ValueError saying where,
    # not a trap; a log line is repaired instead.
    assert lone(lambda: wasmig.execute("SELECT " + placeholders(1), "ab\ud800")), "a lone surrogate parameter"
    assert lone(lambda: wasmig.execute("SELECT 1 -- \udc00")), "a lone surrogate in the SQL"
    wasmig.info("a lone \ud800 surrogate in a log line is repaired")
    assert lone(lambda: wasmig.execute("SELECT " + placeholders(1), wasmig.Json('"\ud800"'))), "json text"
    # Typed integers out of range and a negative progress are refused, not trapped on;
    # a Json of a dict is serialised (json is imported with the SDK, not at run time).
    assert refused(lambda: wasmig.execute("SELECT " + placeholders(1), wasmig.Int16(70000))), "int16"
    assert refused(lambda: wasmig.execute("SELECT " + placeholders(1), [wasmig.Int32(2**31)])), "int32[]"
    assert refused(lambda: wasmig.progress(-1)), "negative progress"
    assert wasmig.query_one("SELECT " + placeholders(1) + " AS j", wasmig.Json({"k": 1}))["j"] in ('{"k":1}', '{"k": 1}')
    wasmig.info("values: ok")


def refused(f):
    """Whether ``f`` raises a ValueError (the SDK's, for a value the host cannot take)."""
    try:
        f()
    except ValueError:
        return True
    return False


def lone(f):
    """Whether ``f`` raises the SDK's ValueError for a lone surrogate."""
    try:
        f()
    except ValueError as e:
        return "lone surrogate" in str(e)
    return False


def first_batch():
    wasmig.info(f"dialect: {wasmig.dialect()}")
    check_values()
    wasmig.batch("CREATE TABLE tour (id BIGINT PRIMARY KEY, label TEXT NOT NULL, note TEXT)")
    insert = f"INSERT INTO tour (id, label, note) VALUES ({placeholders(3)})"
    assert wasmig.execute(insert, 1, "one", None) == 1
    assert wasmig.execute_many(insert, [(2, "two", "n2"), (3, "three", None)]) == 2

    try:
        with wasmig.savepoint():
            wasmig.execute(insert, 1, "duplicate", None)
        raise AssertionError("the duplicate insert succeeded")
    except wasmig.SqlError as e:
        wasmig.info(f"caught {e.code}: {e.message}")
        wasmig.execute(insert, 4, f"caught {e.code}", None)


def second_batch():
    parts = []
    for row in wasmig.query("SELECT id, label, note FROM tour ORDER BY id"):
        assert row[0] == row["id"] and isinstance(row["id"], int)
        parts.append(f"{row['id']}={row[1]}/{row.get('note') or '-'}")
    assert wasmig.copy_in("tour", ["id", "label", "note"], [(5, ",".join(parts), None)]) == 1
    assert wasmig.query_opt(f"SELECT id FROM tour WHERE id = {placeholders(1)}", 42) is None
    wasmig.progress(1, 1)


def downgrade():
    label = wasmig.query_one("SELECT label FROM tour WHERE id = 1")["label"]
    if label == "fail-downgrade":
        wasmig.execute("INSERT INTO no_such_table VALUES (1)")
    if label == "fail-lone":
        wasmig.execute("SELECT " + placeholders(1), "\ud800")
    wasmig.batch("DROP TABLE tour")


def check_plain_arrays():
    """Lists of one plain type go to arrays as they are (the SDK's fast path); anything else
    is still checked. Last in the file, so the line numbers above stay as the tests expect."""
    arrays = wasmig.query_one(
        "SELECT $1::int8[] AS i, $2::text[] AS t, $3::float8[] AS f, $4::bool[] AS b",
        (1, 2**63 - 1, -(2**63)),
        ["a", "b"],
        [0.5, None],
        [True, None, False],
    )
    assert arrays["i"] == [1, 2**63 - 1, -(2**63)] and arrays["t"] == ["a", "b"], arrays
    assert arrays["f"] == [0.5, None] and arrays["b"] == [True, None, False], arrays
    for bad, error in (([1, 2**63], OverflowError), ([1, "a"], TypeError), ([1, True], TypeError)):
        try:
            wasmig.query_one("SELECT $1::int8[] AS a", bad)
        except error:
            pass
        else:
            raise AssertionError(f"{bad!r} passed as an SQL array")
