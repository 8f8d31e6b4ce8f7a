"""The Python SDK for wasmig migrations, compiled to WebAssembly components by componentize-py.

A migration is a module ``migration.py`` defining ``upgrade()`` and ``downgrade()``. It talks to
the database through this module, on the transaction wasmig opened for it: everything it does
commits with the version-table update, or not at all::

    import wasmig

    def upgrade():
        wasmig.batch("ALTER TABLE customers ADD COLUMN email_norm TEXT")
        n = wasmig.execute("UPDATE customers SET email_norm = lower(email)")
        wasmig.info(f"normalised {n} rows")

    def downgrade():
        wasmig.batch("ALTER TABLE customers DROP COLUMN email_norm")

An exception raised by ``upgrade`` or ``downgrade`` fails the migration with its message and
wasmig rolls everything back. A failing statement raises ``SqlError`` (with ``code``,
``message``, ``detail``...); to recover from one and carry on, run it inside
``with wasmig.savepoint():`` and let the exception leave the block (the savepoint is rolled
back), or catch it outside the block.

This module owns the idiomatic API over the bindings componentize-py generates from
``wit/migration.wit`` (package ``wit_world``): conversions between Python values and SQL
values, rows by index or column name, exceptions, logging. The host builds it into every
Python revision; it is not installed with pip.
"""

import datetime as _datetime
import decimal as _decimal
import itertools as _itertools
import json as _json
import uuid as _uuid

from componentize_py_types import Err as _Err
from wit_world.imports import batch as _batch
from wit_world.imports import log as _log
from wit_world.imports import sql as _sql
from wit_world.imports import types as _t

__all__ = [
    "MYSQL",
    "POSTGRES",
    "SQLITE",
    "Json",
    "Jsonb",
    "Int16",
    "Int32",
    "Float32",
    "Columns",
    "Row",
    "Rows",
    "Cursor",
    "SqlError",
    "batch",
    "checkpoint",
    "copy_in",
    "copy_in_columns",
    "cursor",
    "debug",
    "dialect",
    "error",
    "execute",
    "execute_columns",
    "execute_many",
    "info",
    "next_batch",
    "progress",
    "query",
    "query_columns",
    "query_one",
    "query_opt",
    "savepoint",
    "trace",
    "warn",
]

#: ``dialect()`` on PostgreSQL: placeholders ``$1``, ``$2``...
POSTGRES = "postgres"
#: ``dialect()`` on SQLite: placeholders ``?1``, ``?2``... or ``?``.
SQLITE = "sqlite"
#: ``dialect()`` on MySQL and MariaDB: placeholders ``?``, bound in order (a value used twice
#: is passed twice). DDL commits implicitly there, so a revision with DDL is not atomic.
MYSQL = "mysql"

# Every case of the WIT's ``sql-dialect``, named: a case missing here fails loudly (KeyError)
# rather than passing for another database.
_DIALECTS = {
    _t.SqlDialect.POSTGRES: POSTGRES,
    _t.SqlDialect.SQLITE: SQLITE,
    _t.SqlDialect.MYSQL: MYSQL,
}

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class SqlError(Exception):
    """An error reported by the database, or by wasmig before the statement reached it.

    ``code`` is PostgreSQL's SQLSTATE (``"23505"``) or SQLite's extended result code in
    decimal (``"2067"``); codes starting with ``WASMIG-`` come from wasmig itself (see the WIT).
    """

    def __init__(self, code, message, detail=None, hint=None, constraint=None, table=None, column=None):
        super().__init__(f"{message} (SQL error {code})" + (f": {detail}" if detail else ""))
        self.code = code
        self.message = message
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.table = table
        self.column = column

    @classmethod
    def _from_wit(cls, err):
        return cls(err.code, err.message, err.detail, err.hint, err.constraint, err.table, err.column)


def _utf8(text, what):
    """``text``, refused with a ``ValueError`` saying where when it holds a lone surrogate.

    Text crosses to the host as UTF-8, which has no form for a lone surrogate (``"\\ud800"``,
    or one left by ``surrogateescape``): the component's lowering would trap, ending the
    migration with a wasm backtrace and no word of why. ``isascii`` is constant time in
    CPython; only other text is encoded to find out.
    """
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid Unicode: a lone surrogate ({text[e.start]!a}) at index "
            f"{e.start}. wasmig passes text as UTF-8, which cannot hold one: repair it "
            "(for instance with .encode('utf-16', 'surrogatepass').decode('utf-16', 'replace'), "
            "which writes U+FFFD in its place)"
        ) from None
    return text


def _utf8_all(texts, what):
    """``_utf8`` of every ``str`` of ``texts`` (others skipped), numbered from 1: ASCII
    ones are told apart in C (``isascii`` over the list), the rest encoded."""
    strings = [t for t in texts if t is not None] if None in texts else texts
    if all(map(str.isascii, strings)):
        return
    for i, t in enumerate(texts, 1):
        if isinstance(t, str):
            _utf8(t, f"{what} {i}")


def _repaired(message):
    """A log line or error message as text the host can take: a lone surrogate becomes
    U+FFFD, since a message should never fail the migration for how it was made."""
    text = str(message)
    if text.isascii():
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _call(function, *args):
    """Calls an import, turning its ``Err(sql-error)`` into ``SqlError``."""
    for arg in args:
        if isinstance(arg, str):
            _utf8(arg, "the SQL text or table name")
        elif type(arg) is list and arg and isinstance(arg[0], str):
            _utf8_all(arg, "column name")
    try:
        return function(*args)
    except _Err as e:
        raise SqlError._from_wit(e.value) from None


# --- values -------------------------------------------------------------------------------


class _Typed:
    """A value with an explicit SQL type, for when the Python type does not say it."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"{type(self).__name__}({self.value!r})"


class Json(_Typed):
    """A ``json`` parameter: a JSON document as text, or any value ``json.dumps`` accepts."""


class Jsonb(_Typed):
    """A ``jsonb`` parameter, like ``Json``."""


class Int16(_Typed):
    """A ``smallint`` parameter (a plain ``int`` binds as ``bigint``)."""


class Int32(_Typed):
    """An ``integer`` parameter (a plain ``int`` binds as ``bigint``)."""


class Float32(_Typed):
    """A ``real`` parameter (a plain ``float`` binds as ``double precision``)."""


def _json_text(value):
    if isinstance(value, str):
        return _utf8(value, "a json parameter")
    return _json.dumps(value, separators=(",", ":"))


def _int_bits(value, bits):
    """``value`` when it fits a signed integer of ``bits`` bits (the WIT's s16, s32), which
    the component's lowering would otherwise trap on; a ValueError saying so if not."""
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError(f"{value} does not fit a {bits}-bit SQL integer (int{bits // 8})")
    return value


def _int64(value):
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise OverflowError(f"{value} does not fit a 64-bit SQL integer")
    return value


def _datetime_text(value):
    if value.tzinfo is None:
        return value.isoformat()
    return value.astimezone(_datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _scalar(value):
    """A Python value as (array tag, WIT value)."""
    # The common types first, by one dictionary lookup on the exact type (``bool`` is not
    # ``int`` here: ``type(True) is bool``); subclasses and the rest go down the chain.
    fast = _SCALARS.get(type(value))
    if fast is not None:
        return fast(value)
    if value is None:
        return None, _t.Value_Null()
    if isinstance(value, bool):
        return "bool", _t.Value_Bool(value)
    if isinstance(value, int):
        return "int64", _t.Value_Int64(_int64(value))
    if isinstance(value, float):
        return "float64", _t.Value_Float64(value)
    if isinstance(value, str):
        return "text", _t.Value_Text(_utf8(value, "a text parameter"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes", _t.Value_Bytes(bytes(value))
    if isinstance(value, _decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not an SQL numeric")
        return "numeric", _t.Value_Numeric(format(value, "f"))
    if isinstance(value, _uuid.UUID):
        return "uuid", _t.Value_Uuid(str(value))
    if isinstance(value, _datetime.datetime):
        if value.tzinfo is None:
            return "timestamp", _t.Value_Timestamp(_datetime_text(value))
        return "timestamptz", _t.Value_Timestamptz(_datetime_text(value))
    if isinstance(value, _datetime.date):
        return "date", _t.Value_Date(value.isoformat())
    if isinstance(value, _datetime.time):
        return "time", _t.Value_Time(value.isoformat())
    if isinstance(value, Json):
        return "json", _t.Value_Json(_json_text(value.value))
    if isinstance(value, Jsonb):
        return "jsonb", _t.Value_Jsonb(_json_text(value.value))
    if isinstance(value, Int16):
        return "int16", _t.Value_Int16(_int_bits(value.value, 16))
    if isinstance(value, Int32):
        return "int32", _t.Value_Int32(_int_bits(value.value, 32))
    if isinstance(value, Float32):
        return "float32", _t.Value_Float32(value.value)
    raise TypeError(f"cannot pass a {type(value).__name__} as an SQL parameter")


_SCALARS = {
    type(None): lambda _: (None, _t.Value_Null()),
    bool: lambda value: ("bool", _t.Value_Bool(value)),
    int: lambda value: ("int64", _t.Value_Int64(_int64(value))),
    float: lambda value: ("float64", _t.Value_Float64(value)),
    str: lambda value: ("text", _t.Value_Text(_utf8(value, "a text parameter"))),
}


_ARRAYS = {
    "bool": _t.ArrayValue_Bool,
    "int16": _t.ArrayValue_Int16,
    "int32": _t.ArrayValue_Int32,
    "int64": _t.ArrayValue_Int64,
    "float32": _t.ArrayValue_Float32,
    "float64": _t.ArrayValue_Float64,
    "numeric": _t.ArrayValue_Numeric,
    "text": _t.ArrayValue_Text,
    "bytes": _t.ArrayValue_Bytes,
    "json": _t.ArrayValue_Json,
    "jsonb": _t.ArrayValue_Jsonb,
    "uuid": _t.ArrayValue_Uuid,
    "date": _t.ArrayValue_Date,
    "time": _t.ArrayValue_Time,
    "timestamp": _t.ArrayValue_Timestamp,
    "timestamptz": _t.ArrayValue_Timestamptz,
}


def to_sql(value):
    """A Python value as a WIT ``value``: ``None``, ``bool``, ``int`` (bigint), ``float``,
    ``str``, ``bytes``, ``Decimal`` (numeric), ``UUID``, ``date``, ``time``, ``datetime``
    (``timestamp``, or ``timestamptz`` when aware), ``Json``/``Jsonb``/``Int16``/``Int32``/
    ``Float32``, and lists or tuples of one of these (arrays; ``None`` elements are NULL).
    """
    if isinstance(value, (list, tuple)):
        fast = _plain_array(value)
        if fast is not None:
            return fast
        tags = set()
        elements = []
        for element in value:
            if isinstance(element, (list, tuple)):
                raise TypeError("SQL arrays are one-dimensional")
            tag, wit = _scalar(element)
            if tag is not None:
                tags.add(tag)
            elements.append(None if tag is None else wit.value)
        if len(tags) > 1:
            raise TypeError(f"an SQL array holds one type, not {sorted(tags)}")
        tag = tags.pop() if tags else "text"
        return _t.Value_Array(_ARRAYS[tag](elements))
    return _scalar(value)[1]


# The element types whose lists go to an array as they are: every element of one of these
# types (or ``None``) is already what the WIT's array takes.
_PLAIN_ARRAYS = {
    int: _t.ArrayValue_Int64,
    str: _t.ArrayValue_Text,
    float: _t.ArrayValue_Float64,
    bool: _t.ArrayValue_Bool,
}


def _plain_array(value):
    """A list or tuple of plain ``int``, ``str``, ``float`` or ``bool`` (``None`` allowed) as
    an array value without converting each element, or ``None`` for any other list.

    One ``type()`` per element, in C (``set(map(type, ...))``), where the general path runs
    ``_scalar`` on each: the list is handed to the array as it is (a tuple is copied to a list).
    """
    kinds = set(map(type, value))
    nulls = type(None) in kinds
    if nulls:
        kinds.discard(type(None))
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    array = _PLAIN_ARRAYS.get(kind)
    if array is None:
        return None
    if kind is str:
        _utf8_all(value, "element")
    if kind is int:
        numbers = [e for e in value if e is not None] if nulls else value
        if numbers and (min(numbers) < _INT64_MIN or max(numbers) > _INT64_MAX):
            for number in numbers:
                _int64(number)
    return _t.Value_Array(array(value if type(value) is list else list(value)))


def _params(params):
    return [to_sql(p) for p in params]


def _timestamptz(text):
    return _datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


_FROM_TEXT = {
    _t.Value_Numeric: _decimal.Decimal,
    _t.Value_Uuid: _uuid.UUID,
    _t.Value_Date: _datetime.date.fromisoformat,
    _t.Value_Time: _datetime.time.fromisoformat,
    _t.Value_Timestamp: _datetime.datetime.fromisoformat,
    _t.Value_Timestamptz: _timestamptz,
}

_ARRAY_FROM_TEXT = {
    _t.ArrayValue_Numeric: _decimal.Decimal,
    _t.ArrayValue_Uuid: _uuid.UUID,
    _t.ArrayValue_Date: _datetime.date.fromisoformat,
    _t.ArrayValue_Time: _datetime.time.fromisoformat,
    _t.ArrayValue_Timestamp: _datetime.datetime.fromisoformat,
    _t.ArrayValue_Timestamptz: _timestamptz,
}


def from_sql(value):
    """A WIT ``value`` as a Python value: NULL is ``None``; integers ``int``; reals ``float``;
    text, json and jsonb ``str`` (parse JSON with ``json.loads``); bytes ``bytes``; numeric
    ``Decimal``; uuid ``UUID``; dates and times ``date``/``time``/``datetime`` (aware, UTC,
    for timestamptz); arrays ``list``. On SQLite, dates are whatever text was stored.
    """
    kind = type(value)
    if kind is _t.Value_Null:
        return None
    if kind is _t.Value_Array:
        convert = _ARRAY_FROM_TEXT.get(type(value.value))
        if convert is None:
            return list(value.value.value)
        return [None if e is None else convert(e) for e in value.value.value]
    convert = _FROM_TEXT.get(kind)
    if convert is not None:
        try:
            return convert(value.value)
        except ValueError:
            return value.value
    return value.value


# --- rows ---------------------------------------------------------------------------------


# Values that ``from_sql`` gives as their ``.value`` unchanged, read without a call of it.
_PLAIN_VALUES = frozenset(
    {
        _t.Value_Bool,
        _t.Value_Int16,
        _t.Value_Int32,
        _t.Value_Int64,
        _t.Value_Float32,
        _t.Value_Float64,
        _t.Value_Text,
        _t.Value_Bytes,
        _t.Value_Json,
        _t.Value_Jsonb,
    }
)


class Row:
    """One result row: ``row[0]``, ``row["email"]``, ``row.get("email")``, ``row.as_dict()``,
    ``len(row)``, iteration over the values. Values are converted as ``from_sql`` says, when
    they are read.
    """

    __slots__ = ("_names", "_values")

    def __init__(self, names, values):
        self._names = names
        self._values = values

    def __getitem__(self, key):
        # The hot path of a migration reading rows: one call per value read, the plain
        # types' value taken here rather than in a further call of ``from_sql``.
        if type(key) is not int and isinstance(key, str):
            try:
                key = self._names[key]
            except KeyError:
                raise KeyError(
                    f"no column {key!r}; the result has {', '.join(self._names) or 'no columns'}"
                ) from None
        value = self._values[key]
        if type(value) in _PLAIN_VALUES:
            return value.value
        return from_sql(value)

    def get(self, key, default=None):
        """The value of a column, or ``default`` when the result has no such column."""
        if isinstance(key, str) and key not in self._names:
            return default
        return self[key]

    def keys(self):
        """The column names, in order."""
        return list(self._names)

    def as_dict(self):
        """``{column: value}``."""
        return {name: from_sql(self._values[i]) for name, i in self._names.items()}

    def __len__(self):
        return len(self._values)

    def __iter__(self):
        return (from_sql(v) for v in self._values)

    def __repr__(self):
        return f"Row({self.as_dict()!r})"


def _names(columns):
    # The first column of a name wins, as in most drivers.
    names = {}
    for i, column in enumerate(columns):
        names.setdefault(column.name, i)
    return names


class Rows(list):
    """A list of ``Row`` with the result's ``columns`` (name and database type name)."""

    def __init__(self, columns, rows):
        names = _names(columns)
        super().__init__([Row(names, r) for r in rows])
        self.columns = [(c.name, c.type_name) for c in columns]


# --- statements ---------------------------------------------------------------------------


def dialect():
    """``POSTGRES``, ``SQLITE`` or ``MYSQL``: which database the migration runs against."""
    return _DIALECTS[_sql.dialect()]


def execute(statement, *params):
    """Runs one statement with ``params`` and returns the number of rows it affected.

    Placeholders are the database's: ``$1`` on PostgreSQL, ``?`` or ``?1`` on SQLite, ``?``
    on MySQL.
    """
    return _call(_sql.execute, statement, _params(params))


def query(statement, *params):
    """Runs one statement and returns all its rows (``Rows``). Use ``cursor`` for large results."""
    result = _call(_sql.query, statement, _params(params))
    return Rows(result.columns, result.rows)


def query_one(statement, *params):
    """Exactly one row; ``LookupError`` for none or several."""
    rows = query(statement, *params)
    if len(rows) != 1:
        raise LookupError(f"expected one row, got {len(rows)}: {statement}")
    return rows[0]


def query_opt(statement, *params):
    """At most one row, or ``None``; ``LookupError`` for several."""
    rows = query(statement, *params)
    if len(rows) > 1:
        raise LookupError(f"expected at most one row, got {len(rows)}: {statement}")
    return rows[0] if rows else None


def batch(script):
    """Runs a script of several statements separated by ``;``, without parameters (DDL)."""
    _call(_sql.batch, script)


def execute_many(statement, rows):
    """Runs one statement once per parameter row (each an iterable of values), prepared once;
    returns the total number of rows affected."""
    return _call(_sql.execute_many, statement, [_params(r) for r in rows])


def copy_in(table, columns, rows):
    """Writes ``rows`` (iterables of values, one per column of ``columns``) into ``table`` and
    returns the number written: the fast path for bulk inserts (``COPY`` on PostgreSQL).
    ``table`` and the column names are quoted by wasmig, so they are taken literally."""
    return _call(_sql.copy_in, table, list(columns), [_params(r) for r in rows])


# --- batches as columns (WIT 0.4.0) -------------------------------------------------------

# The array cases whose column is one plain list, with the filler a null row holds.
_FIXED_COLUMNS = {
    _t.ArrayValue_Bool: (_t.ColumnData_Bool, False),
    _t.ArrayValue_Int16: (_t.ColumnData_Int16, 0),
    _t.ArrayValue_Int32: (_t.ColumnData_Int32, 0),
    _t.ArrayValue_Int64: (_t.ColumnData_Int64, 0),
    _t.ArrayValue_Float32: (_t.ColumnData_Float32, 0.0),
    _t.ArrayValue_Float64: (_t.ColumnData_Float64, 0.0),
}

# The array cases whose column is packed text.
_TEXT_COLUMNS = {
    _t.ArrayValue_Numeric: _t.ColumnData_Numeric,
    _t.ArrayValue_Text: _t.ColumnData_Text,
    _t.ArrayValue_Json: _t.ColumnData_Json,
    _t.ArrayValue_Jsonb: _t.ColumnData_Jsonb,
    _t.ArrayValue_Uuid: _t.ColumnData_Uuid,
    _t.ArrayValue_Date: _t.ColumnData_Date,
    _t.ArrayValue_Time: _t.ColumnData_Time,
    _t.ArrayValue_Timestamp: _t.ColumnData_Timestamp,
    _t.ArrayValue_Timestamptz: _t.ColumnData_Timestamptz,
}

# Packed text cases read as another Python type (as ``from_sql`` reads them).
_COLUMN_FROM_TEXT = {
    _t.ColumnData_Numeric: _decimal.Decimal,
    _t.ColumnData_Uuid: _uuid.UUID,
    _t.ColumnData_Date: _datetime.date.fromisoformat,
    _t.ColumnData_Time: _datetime.time.fromisoformat,
    _t.ColumnData_Timestamp: _datetime.datetime.fromisoformat,
    _t.ColumnData_Timestamptz: _timestamptz,
}


def _to_column(values):
    """A list of values as a WIT ``column-values``, its type told as ``to_sql`` tells a
    list's; texts packed into one string, their ends in UTF-8 bytes."""
    array = to_sql(values if isinstance(values, (list, tuple)) else list(values)).value
    elements = array.value
    kind = type(array)
    nulls = [e is None for e in elements] if None in elements else []
    fixed = _FIXED_COLUMNS.get(kind)
    if fixed is not None:
        case, filler = fixed
        data = case([filler if e is None else e for e in elements] if nulls else list(elements))
    elif kind is _t.ArrayValue_Bytes:
        parts = [b"" if e is None else bytes(e) for e in elements]
        data = _t.ColumnData_Bytes(
            _t.PackedBytes(b"".join(parts), list(_itertools.accumulate(map(len, parts))))
        )
    else:
        parts = ["" if e is None else e for e in elements] if nulls else elements
        text = "".join(parts)
        lengths = map(len, parts) if text.isascii() else (len(p.encode()) for p in parts)
        data = _TEXT_COLUMNS[kind](_t.PackedText(text, list(_itertools.accumulate(lengths))))
    return _t.ColumnValues(nulls, data)


def _from_column(column):
    """A WIT ``column-values`` as a list of ``from_sql``'s values (``None`` for NULL)."""
    data = column.data
    kind = type(data)
    if kind is _t.ColumnData_Bytes:
        raw, ends = data.value.bytes, data.value.ends
        out = [raw[a:b] for a, b in zip(_itertools.chain((0,), ends), ends)]
    elif hasattr(data.value, "ends"):
        text, ends = data.value.text, data.value.ends
        starts = _itertools.chain((0,), ends)
        if text.isascii():
            out = [text[a:b] for a, b in zip(starts, ends)]
        else:
            raw = text.encode()
            out = [raw[a:b].decode() for a, b in zip(starts, ends)]
    else:
        out = data.value if type(data.value) is list else list(data.value)
    if column.nulls:
        out = [None if null else v for v, null in zip(out, column.nulls)]
    convert = _COLUMN_FROM_TEXT.get(kind)
    if convert is not None:
        out = [None if v is None else _converted(convert, v) for v in out]
    return out


def _converted(convert, text):
    try:
        return convert(text)
    except ValueError:
        return text


class Columns:
    """A result read column by column (``query_columns``): ``len(batch)`` rows,
    ``batch.columns`` (name and database type name), and ``batch["email"]`` or ``batch[1]``
    one column's values as a list (``None`` for NULL), in the types ``from_sql`` gives."""

    def __init__(self, result):
        self.columns = [(c.name, c.type_name) for c in result.columns]
        self._names = _names(result.columns)
        self._values = result.values
        self._rows = result.rows
        self._lists = {}

    def __len__(self):
        return self._rows

    def __getitem__(self, key):
        index = self._names.get(key) if isinstance(key, str) else key
        if index is None:
            names = ", ".join(self._names) or "no columns"
            raise KeyError(f"no column {key!r}; the result has {names}")
        if not isinstance(index, int) or not 0 <= index < len(self._values):
            raise IndexError(f"no column {key!r}; the result has {len(self._values)}")
        if index not in self._lists:
            self._lists[index] = _from_column(self._values[index])
        return self._lists[index]


def query_columns(statement, *params):
    """Runs one statement and returns its whole result column by column (``Columns``): the
    same values as ``query``, but one list per column crosses the sandbox instead of a value
    per cell, the shape for batches of thousands of rows. A column of arrays is refused
    (``WASMIG-DECODE``)."""
    return Columns(_call(_sql.query_columns, statement, _params(params)))


def execute_columns(statement, *columns):
    """Runs one statement whose parameters are whole columns (lists), each bound as one array
    (``$1::int8[]``): with ``UNNEST``, a batch written in one statement. PostgreSQL only
    (SQLite and MySQL refuse it with ``WASMIG-BIND``). Returns the rows affected."""
    return _call(_sql.execute_columns, statement, [_to_column(c) for c in columns])


def copy_in_columns(table, names, columns):
    """``copy_in`` with the rows given as columns (``columns[i]``, a list, fills the column
    ``names[i]``): the fastest way to write a batch into a table. Returns the rows written."""
    return _call(_sql.copy_in_columns, table, list(names), [_to_column(c) for c in columns])


def checkpoint():
    """The checkpoint the previous batch of this step passed to ``next_batch``, or ``None`` in
    the first batch (a resumed ``transaction = "batched"`` run starts from the stored one)."""
    return _batch.checkpoint()


def next_batch(checkpoint):
    """Asks for another batch once this call returns, resuming from ``checkpoint`` (text).
    In a ``transaction = "batched"`` revision each batch commits on its own; otherwise all
    batches run in the step's one transaction."""
    _batch.next_batch(_utf8(str(checkpoint), "the checkpoint"))


class Cursor:
    """A result read in chunks (a server-side cursor on PostgreSQL).

    ``next_chunk(n)`` returns up to ``n`` rows (``Rows``; empty at the end); iterating over
    ``chunks(n)`` yields the non-empty chunks. Use it as a context manager, or call ``close``,
    to close it early.
    """

    def __init__(self, handle):
        self._handle = handle
        self.columns = handle.columns()
        self._names = _names(self.columns)

    def next_chunk(self, max_rows=1000):
        """Up to ``max_rows`` further rows; empty once the result is exhausted."""
        rows = _call(self._handle.next, max_rows)
        result = Rows([], [])
        result.columns = [(c.name, c.type_name) for c in self.columns]
        result.extend([Row(self._names, r) for r in rows])
        return result

    def chunks(self, max_rows=1000):
        """The remaining rows, ``max_rows`` at a time."""
        while True:
            rows = self.next_chunk(max_rows)
            if not rows:
                return
            yield rows

    def __iter__(self):
        for chunk in self.chunks():
            yield from chunk

    def close(self):
        """Closes the cursor (also done when the migration returns)."""
        if self._handle is not None:
            self._handle.__exit__(None, None, None)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def cursor(statement, *params):
    """Opens a ``Cursor`` over the result of a query."""
    return Cursor(_call(_sql.open_cursor, statement, _params(params)))


class savepoint:
    """A savepoint: ``with wasmig.savepoint(): ...`` releases it when the block ends normally
    and rolls it back when an exception leaves the block (the exception goes on).

    This is the way to recover from an SQL error: an error that is not inside a rolled-back
    savepoint fails the migration even if the migration catches the exception, because
    PostgreSQL cannot commit a transaction after an error::

        try:
            with wasmig.savepoint():
                wasmig.execute("INSERT INTO t VALUES (1)")
        except wasmig.SqlError as e:
            if e.code != "23505":
                raise
    """

    def __init__(self):
        self._handle = None

    def __enter__(self):
        self._handle = _call(_sql.begin_savepoint)
        return self

    def __exit__(self, exc_type, exc, tb):
        handle, self._handle = self._handle, None
        try:
            if exc_type is None:
                _call(handle.release)
            else:
                _call(handle.rollback)
        finally:
            handle.__exit__(None, None, None)
        return False


# --- logging ------------------------------------------------------------------------------


def _write(level, message):
    _log.log(level, _repaired(message))


def trace(message):
    """Logs at trace level."""
    _write(_log.Level.TRACE, message)


def debug(message):
    """Logs at debug level."""
    _write(_log.Level.DEBUG, message)


def info(message):
    """Logs at info level (shown by default, prefixed with the revision)."""
    _write(_log.Level.INFO, message)


def warn(message):
    """Logs a warning."""
    _write(_log.Level.WARN, message)


def error(message):
    """Logs an error (it does not fail the migration: raise for that)."""
    _write(_log.Level.ERROR, message)


def progress(done, total=None):
    """Reports progress: ``done`` units so far, out of ``total`` if known."""
    done = int(done)
    total = None if total is None else int(total)
    if done < 0 or (total is not None and total < 0):
        raise ValueError(f"progress counts from 0: done = {done}, total = {total}")
    _log.progress(done, total)
