// A batch as columns (WIT 0.4.0): QueryColumns, ExecuteColumns and CopyInColumns move one
// list per column across the sandbox instead of a value per cell, texts packed into one
// string; the shape for batches of thousands of rows.

package wasmig

import (
	"fmt"

	sql "wasmig/internal/wit/imports/wasmig_migration_sql"
	types "wasmig/internal/wit/imports/wasmig_migration_types"
)

// Column is one column of a batch: its values, all of one type, one per row, and which
// rows are NULL. Make one with Int64Column, TextColumn... (and WithNulls), or read one
// from Columns.
type Column struct {
	v types.ColumnValues
	// Made by a constructor or read from a result: the zero Column holds nothing.
	ok bool
}

// BoolColumn is a column of booleans.
func BoolColumn(values []bool) Column {
	return Column{types.ColumnValues{Data: types.MakeColumnDataBool(values)}, true}
}

// Int16Column is a column of smallints.
func Int16Column(values []int16) Column {
	return Column{types.ColumnValues{Data: types.MakeColumnDataInt16(values)}, true}
}

// Int32Column is a column of integers.
func Int32Column(values []int32) Column {
	return Column{types.ColumnValues{Data: types.MakeColumnDataInt32(values)}, true}
}

// Int64Column is a column of bigints.
func Int64Column(values []int64) Column {
	return Column{types.ColumnValues{Data: types.MakeColumnDataInt64(values)}, true}
}

// Float32Column is a column of reals.
func Float32Column(values []float32) Column {
	return Column{types.ColumnValues{Data: types.MakeColumnDataFloat32(values)}, true}
}

// Float64Column is a column of double precision values.
func Float64Column(values []float64) Column {
	return Column{types.ColumnValues{Data: types.MakeColumnDataFloat64(values)}, true}
}

// TextColumn is a column of texts (UTF-8), packed into one string.
func TextColumn(values []string) Column {
	return Column{types.ColumnValues{Data: types.MakeColumnDataText(packTexts(values))}, true}
}

// BytesColumn is a column of byte strings; a nil slice is NULL.
func BytesColumn(values [][]byte) Column {
	total := 0
	for _, b := range values {
		total += len(b)
	}
	packed := types.PackedBytes{Bytes: make([]uint8, 0, total), Ends: make([]uint32, len(values))}
	var nulls []bool
	for i, b := range values {
		if b == nil {
			if nulls == nil {
				nulls = make([]bool, len(values))
			}
			nulls[i] = true
		}
		packed.Bytes = append(packed.Bytes, b...)
		packed.Ends[i] = uint32(len(packed.Bytes))
	}
	return Column{types.ColumnValues{Nulls: nulls, Data: types.MakeColumnDataBytes(packed)}, true}
}

func packTexts(values []string) types.PackedText {
	total := 0
	for _, s := range values {
		total += len(s)
	}
	text := make([]byte, 0, total)
	ends := make([]uint32, len(values))
	for i, s := range values {
		text = append(text, s...)
		ends[i] = uint32(len(text))
	}
	return types.PackedText{Text: string(text), Ends: ends}
}

// WithNulls is the column with the rows where nulls is true as NULL (their values are
// ignored). nulls has one flag per row, or is empty for none.
func (c Column) WithNulls(nulls []bool) Column {
	c.v.Nulls = nulls
	return c
}

// Len is the number of rows (0 for the zero Column).
func (c Column) Len() int {
	if !c.ok {
		return 0
	}
	d := c.v.Data
	switch d.Tag() {
	case types.ColumnData_Bool:
		return len(d.Bool())
	case types.ColumnData_Int16:
		return len(d.Int16())
	case types.ColumnData_Int32:
		return len(d.Int32())
	case types.ColumnData_Int64:
		return len(d.Int64())
	case types.ColumnData_Float32:
		return len(d.Float32())
	case types.ColumnData_Float64:
		return len(d.Float64())
	case types.ColumnData_Bytes:
		return len(d.Bytes().Ends)
	}
	if p, ok := packedText(d); ok {
		return len(p.Ends)
	}
	return 0
}

// IsNull says whether the value at row is NULL.
func (c Column) IsNull(row int) bool {
	return row >= 0 && row < len(c.v.Nulls) && c.v.Nulls[row]
}

// Bools are the values of a boolean column (false for NULL).
func (c Column) Bools() ([]bool, error) {
	return fixed(c, types.ColumnData_Bool, "bool", c.v.Data.Bool)
}

// Int16s are the values of a smallint column (0 for NULL).
func (c Column) Int16s() ([]int16, error) {
	return fixed(c, types.ColumnData_Int16, "int16", c.v.Data.Int16)
}

// Int32s are the values of an integer column (0 for NULL).
func (c Column) Int32s() ([]int32, error) {
	return fixed(c, types.ColumnData_Int32, "int32", c.v.Data.Int32)
}

// Int64s are the values of a bigint column (0 for NULL).
func (c Column) Int64s() ([]int64, error) {
	return fixed(c, types.ColumnData_Int64, "int64", c.v.Data.Int64)
}

// Float32s are the values of a real column (0 for NULL).
func (c Column) Float32s() ([]float32, error) {
	return fixed(c, types.ColumnData_Float32, "float32", c.v.Data.Float32)
}

// Float64s are the values of a double precision column (0 for NULL).
func (c Column) Float64s() ([]float64, error) {
	return fixed(c, types.ColumnData_Float64, "float64", c.v.Data.Float64)
}

// errEmpty is the error of reading the zero Column.
var errEmpty = fmt.Errorf("wasmig: an empty Column (not made by a constructor nor read from a result)")

func fixed[T any](c Column, tag uint8, name string, get func() []T) ([]T, error) {
	if !c.ok {
		return nil, errEmpty
	}
	if c.v.Data.Tag() != tag {
		return nil, fmt.Errorf("wasmig: the column holds %s values, not %s", columnTagName(c.v.Data.Tag()), name)
	}
	return get(), nil
}

// Texts are the values of a text-format column (text, numeric, json, uuid, dates and
// times, in the WIT's formats), "" for NULL: substrings of the one packed string, nothing
// copied.
func (c Column) Texts() ([]string, error) {
	if !c.ok {
		return nil, errEmpty
	}
	p, ok := packedText(c.v.Data)
	if !ok {
		return nil, fmt.Errorf("wasmig: the column holds %s values, not text", columnTagName(c.v.Data.Tag()))
	}
	out := make([]string, len(p.Ends))
	start := uint32(0)
	for i, end := range p.Ends {
		if end < start || int(end) > len(p.Text) {
			return nil, fmt.Errorf("wasmig: row %d of the packed texts ends outside them", i)
		}
		out[i] = p.Text[start:end]
		start = end
	}
	return out, nil
}

// ByteStrings are the values of a bytea column, nil for NULL, slices of the one packed
// buffer.
func (c Column) ByteStrings() ([][]byte, error) {
	if !c.ok {
		return nil, errEmpty
	}
	if c.v.Data.Tag() != types.ColumnData_Bytes {
		return nil, fmt.Errorf("wasmig: the column holds %s values, not bytes", columnTagName(c.v.Data.Tag()))
	}
	p := c.v.Data.Bytes()
	// Never nil: a column whose values are all empty comes with no buffer, and a nil
	// slice of it would read as NULL.
	buf := p.Bytes
	if buf == nil {
		buf = []byte{}
	}
	out := make([][]byte, len(p.Ends))
	start := uint32(0)
	for i, end := range p.Ends {
		if end < start || int(end) > len(buf) {
			return nil, fmt.Errorf("wasmig: row %d of the packed bytes ends outside them", i)
		}
		if !c.IsNull(i) {
			out[i] = buf[start:end:end]
		}
		start = end
	}
	return out, nil
}

func packedText(d types.ColumnData) (types.PackedText, bool) {
	switch d.Tag() {
	case types.ColumnData_Numeric:
		return d.Numeric(), true
	case types.ColumnData_Text:
		return d.Text(), true
	case types.ColumnData_Json:
		return d.Json(), true
	case types.ColumnData_Jsonb:
		return d.Jsonb(), true
	case types.ColumnData_Uuid:
		return d.Uuid(), true
	case types.ColumnData_Date:
		return d.Date(), true
	case types.ColumnData_Time:
		return d.Time(), true
	case types.ColumnData_Timestamp:
		return d.Timestamp(), true
	case types.ColumnData_Timestamptz:
		return d.Timestamptz(), true
	}
	return types.PackedText{}, false
}

func columnTagName(tag uint8) string {
	names := [...]string{"bool", "int16", "int32", "int64", "float32", "float64", "numeric", "text",
		"bytes", "json", "jsonb", "uuid", "date", "time", "timestamp", "timestamptz"}
	if int(tag) < len(names) {
		return names[tag]
	}
	return fmt.Sprintf("tag %d", tag)
}

// Columns is a result read column by column (QueryColumns).
type Columns struct {
	result types.ColumnResult
}

// QueryColumns runs one statement and returns its whole result column by column: the
// same values as Query, one list per column.
func QueryColumns(query string, args ...any) (*Columns, error) {
	params, err := values(args)
	if err != nil {
		return nil, err
	}
	result, err := check(sql.QueryColumns(query, params))
	if err != nil {
		return nil, err
	}
	return &Columns{result}, nil
}

// Len is the number of rows.
func (c *Columns) Len() int { return int(c.result.Rows) }

// Names are the columns' names, in order.
func (c *Columns) Names() []string {
	names := make([]string, len(c.result.Columns))
	for i, col := range c.result.Columns {
		names[i] = col.Name
	}
	return names
}

// Column is the column at index i (it panics when out of range, as a slice does).
func (c *Columns) Column(i int) Column { return Column{c.result.Values[i], true} }

// Named is the column named name.
func (c *Columns) Named(name string) (Column, error) {
	for i, col := range c.result.Columns {
		if col.Name == name {
			return Column{c.result.Values[i], true}, nil
		}
	}
	return Column{}, fmt.Errorf("wasmig: no column %q in the result (%v)", name, c.Names())
}

func unwrap(columns []Column) ([]types.ColumnValues, error) {
	out := make([]types.ColumnValues, len(columns))
	for i, c := range columns {
		if !c.ok {
			return nil, fmt.Errorf("column %d: %w", i, errEmpty)
		}
		out[i] = c.v
	}
	return out, nil
}

// ExecuteColumns runs one statement whose parameters are whole columns, each bound as one
// array ($1::int8[]): with UNNEST, a batch written in one statement. PostgreSQL only
// (SQLite and MySQL refuse it with WASMIG-BIND). It returns the rows affected.
func ExecuteColumns(query string, columns ...Column) (int64, error) {
	values, err := unwrap(columns)
	if err != nil {
		return 0, err
	}
	n, err := check(sql.ExecuteColumns(query, values))
	return int64(n), err
}

// CopyInColumns is CopyIn with the rows given as columns (columns[i] fills names[i]): the
// fastest way to write a batch into a table. It returns the rows written.
func CopyInColumns(table string, names []string, columns ...Column) (int64, error) {
	values, err := unwrap(columns)
	if err != nil {
		return 0, err
	}
	n, err := check(sql.CopyInColumns(table, names, values))
	return int64(n), err
}
