package wasmig

import (
	"errors"
	"fmt"

	sql "wasmig/internal/wit/imports/wasmig_migration_sql"
	types "wasmig/internal/wit/imports/wasmig_migration_types"
)

// Rows is a result, read as with database/sql:
//
//	rows, err := wasmig.Query("SELECT id, email FROM customers")
//	if err != nil {
//		return err
//	}
//	for rows.Next() {
//		var id int64
//		var email *string // nil for NULL
//		if err := rows.Scan(&id, &email); err != nil {
//			return err
//		}
//	}
type Rows struct {
	columns []types.Column
	rows    [][]types.Value
	// next is the index of the row Next moves to; the current row is next-1.
	next int
}

func newRows(columns []types.Column, rows [][]types.Value) *Rows {
	return &Rows{columns: columns, rows: rows}
}

// Next moves to the next row, false when there is none.
func (r *Rows) Next() bool {
	if r.next >= len(r.rows) {
		r.next = len(r.rows) + 1
		return false
	}
	r.next++
	return true
}

// Scan copies the current row's columns into dest, one pointer per column: *int64, *int,
// *int32, *int16, *float64, *float32, *bool, *string, *[]byte, *time.Time, a pointer to
// one of those pointers (nil for NULL: **string), *any, a slice pointer for an array
// (*[]int64, *[]string...), or a value implementing database/sql's Scanner.
func (r *Rows) Scan(dest ...any) error {
	if r.next == 0 || r.next > len(r.rows) {
		return errors.New("wasmig: Scan called without a row (call Next first)")
	}
	return scanRow(r.columns, r.rows[r.next-1], dest)
}

// Len is the number of rows.
func (r *Rows) Len() int { return len(r.rows) }

// Columns are the columns' names, in order.
func (r *Rows) Columns() []string {
	names := make([]string, len(r.columns))
	for i, c := range r.columns {
		names[i] = c.Name
	}
	return names
}

// ColumnTypes are the database's names of the columns' types (INT8, TEXT... on
// PostgreSQL, the declared type on SQLite), in order.
func (r *Rows) ColumnTypes() []string {
	names := make([]string, len(r.columns))
	for i, c := range r.columns {
		names[i] = c.TypeName
	}
	return names
}

// Values are the current row's values as Go values (see Value).
func (r *Rows) Values() []any {
	if r.next == 0 || r.next > len(r.rows) {
		return nil
	}
	row := r.rows[r.next-1]
	out := make([]any, len(row))
	for i, v := range row {
		out[i] = goValue(v)
	}
	return out
}

// Err is always nil: the whole result arrived with the query. It is here so that code
// written for database/sql reads the same.
func (r *Rows) Err() error { return nil }

// Close releases the rows; it is here so that code written for database/sql reads the same.
func (r *Rows) Close() error {
	r.rows = nil
	return nil
}

// Row is the result of QueryRow.
type Row struct {
	rows *Rows
	err  error
}

// Scan copies the first row's columns into dest (see Rows.Scan). It returns the query's
// error, or ErrNoRows when the query returned no row.
func (r *Row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if !r.rows.Next() {
		return ErrNoRows
	}
	return r.rows.Scan(dest...)
}

// Err is the query's error, if any.
func (r *Row) Err() error { return r.err }

func scanRow(columns []types.Column, row []types.Value, dest []any) error {
	if len(dest) != len(row) {
		return fmt.Errorf("wasmig: Scan expected %d destination arguments, got %d", len(row), len(dest))
	}
	for i, d := range dest {
		if err := scan(d, row[i]); err != nil {
			name := fmt.Sprint(i)
			if i < len(columns) {
				name = fmt.Sprintf("%d (%q)", i, columns[i].Name)
			}
			return fmt.Errorf("wasmig: Scan of column %s: %w", name, err)
		}
	}
	return nil
}

// Cursor is a result read in chunks, so that a large table never has to fit in memory
// (a server-side cursor on PostgreSQL; other statements may run between chunks). Read it
// row by row like Rows, or a chunk at a time with Fetch; close it when done.
type Cursor struct {
	handle  *sql.Cursor
	columns []types.Column
	chunk   *Rows
	err     error
	done    bool
	// ChunkSize is how many rows Next fetches at a time (1000 unless set).
	ChunkSize int
}

// OpenCursor opens a cursor over the result of a query.
func OpenCursor(query string, args ...any) (*Cursor, error) {
	params, err := values(args)
	if err != nil {
		return nil, err
	}
	handle, err := check(sql.OpenCursor(query, params))
	if err != nil {
		return nil, err
	}
	return &Cursor{handle: handle, columns: handle.Columns(), ChunkSize: 1000}, nil
}

// Columns are the columns' names, in order.
func (c *Cursor) Columns() []string {
	return (&Rows{columns: c.columns}).Columns()
}

// Fetch returns up to max further rows; a result with Len() == 0 means the end.
func (c *Cursor) Fetch(max int) (*Rows, error) {
	if c.handle == nil {
		return nil, &SQLError{Code: "WASMIG-STATE", Message: "the cursor is closed"}
	}
	if max < 1 {
		max = 1
	}
	rows, err := check(c.handle.Next(uint32(max)))
	if err != nil {
		return nil, err
	}
	return newRows(c.columns, rows), nil
}

// Next moves to the next row, fetching a chunk when needed; false at the end or on an
// error (see Err).
func (c *Cursor) Next() bool {
	if c.err != nil || c.done {
		return false
	}
	if c.chunk != nil && c.chunk.Next() {
		return true
	}
	chunk, err := c.Fetch(c.ChunkSize)
	if err != nil {
		c.err = err
		return false
	}
	if chunk.Len() == 0 {
		c.done = true
		return false
	}
	c.chunk = chunk
	return c.chunk.Next()
}

// Scan copies the current row's columns into dest (see Rows.Scan).
func (c *Cursor) Scan(dest ...any) error {
	if c.chunk == nil {
		return errors.New("wasmig: Scan called without a row (call Next first)")
	}
	return c.chunk.Scan(dest...)
}

// Err is the error that ended Next early, if any.
func (c *Cursor) Err() error { return c.err }

// Close closes the cursor (also done when the migration returns).
func (c *Cursor) Close() error {
	if c.handle != nil {
		c.handle.Drop()
		c.handle = nil
	}
	return nil
}
