// Package wasmig is the Go SDK for wasmig migrations, built into WebAssembly components
// by `wasmig build` (Go for GOOS=wasip1, then componentized).
//
// A migration is the package in migration.go (and any other .go files of the revision).
// It registers its upgrade and downgrade functions from an init function:
//
//	package migration
//
//	import "wasmig"
//
//	func init() {
//		wasmig.Register(upgrade, downgrade)
//	}
//
//	func upgrade() error {
//		if err := wasmig.Batch("ALTER TABLE customers ADD COLUMN email_norm TEXT"); err != nil {
//			return err
//		}
//		n, err := wasmig.Execute("UPDATE customers SET email_norm = lower(email)")
//		if err != nil {
//			return err
//		}
//		wasmig.Infof("normalised %d rows", n)
//		return nil
//	}
//
//	func downgrade() error {
//		return wasmig.Batch("ALTER TABLE customers DROP COLUMN email_norm")
//	}
//
// Everything runs on the transaction wasmig opened for the step. A function that returns
// an error fails the migration with its message and wasmig rolls everything back; a panic
// traps the component, with the same result (and exit code 7). A failing statement returns
// a *SQLError (Code, Message, Detail...); an SQL error fails the migration even when the
// migration handles it, unless the statement ran inside a savepoint that was rolled back
// (WithSavepoint).
//
// Placeholders are the database's: $1 on PostgreSQL, ? or ?1 on SQLite, ? on MySQL
// (CurrentDialect says which). Arguments are Go values (see the README for the mapping); results are read
// with Rows.Scan as in database/sql.
//
// There are no files, environment, network or sockets in the sandbox; the clock and
// random numbers work. What the migration prints to stdout or stderr goes to wasmig's log,
// but Infof and friends are the way to log.
//
// This package owns the API over the bindings `wasmig build` generates from
// wit/migration.wit (under internal/wit), which are not part of it.
package wasmig

import (
	"errors"
	"fmt"

	"wasmig/internal/entry"
	_ "wasmig/internal/wit/exports/wit_exports"
	sql "wasmig/internal/wit/imports/wasmig_migration_sql"
	types "wasmig/internal/wit/imports/wasmig_migration_types"
	witTypes "wasmig/internal/wit/types"
)

// Register sets the migration's upgrade and downgrade functions. Call it once, from an
// init function of the migration's package.
func Register(upgrade, downgrade func() error) {
	if entry.Upgrade != nil || entry.Downgrade != nil {
		panic("wasmig.Register called twice: a revision is one migration")
	}
	if upgrade == nil || downgrade == nil {
		panic("wasmig.Register needs both an upgrade and a downgrade function")
	}
	entry.Upgrade, entry.Downgrade = upgrade, downgrade
}

// Dialect is the database engine behind the connection.
type Dialect uint8

const (
	// Postgres is PostgreSQL: $1-style placeholders.
	Postgres Dialect = iota
	// SQLite is SQLite: ?- or ?NNN-style placeholders.
	SQLite
	// MySQL is MySQL or MariaDB: ?-style placeholders, bound in order (a value used twice
	// is passed twice). DDL commits implicitly there, so a revision with DDL is not atomic.
	MySQL
)

// String is "postgres", "sqlite" or "mysql".
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	case MySQL:
		return "mysql"
	}
	return fmt.Sprintf("Dialect(%d)", uint8(d))
}

// CurrentDialect says which database the migration runs against.
func CurrentDialect() Dialect {
	// Every case of the WIT's sql-dialect, named: one missing here panics rather than
	// passing for another database.
	switch d := sql.Dialect(); d {
	case types.SqlDialect_Postgres:
		return Postgres
	case types.SqlDialect_Sqlite:
		return SQLite
	case types.SqlDialect_Mysql:
		return MySQL
	default:
		panic(fmt.Sprintf("wasmig: unknown dialect %d (an SDK older than the host's WIT)", d))
	}
}

// SQLError is an error reported by the database, or by wasmig before the statement
// reached it. Test for it with errors.As.
type SQLError struct {
	// Code is PostgreSQL's SQLSTATE ("23505"), SQLite's extended result code in decimal
	// ("2067"), or a code of wasmig's own starting with "WASMIG-".
	Code string
	// Message is the primary message.
	Message string
	// Detail, Hint, Constraint, Table and Column are what the database said beyond the
	// message; empty when it said nothing.
	Detail, Hint, Constraint, Table, Column string
}

// Error is the message, the code and the detail.
func (e *SQLError) Error() string {
	text := fmt.Sprintf("%s (SQL error %s)", e.Message, e.Code)
	if e.Detail != "" {
		text += ": " + e.Detail
	}
	return text
}

// ErrNoRows is returned by Row.Scan when the query returned no row.
var ErrNoRows = errors.New("wasmig: no rows in result set")

func sqlError(e types.SqlError) *SQLError {
	return &SQLError{
		Code:       e.Code,
		Message:    e.Message,
		Detail:     e.Detail.SomeOr(""),
		Hint:       e.Hint.SomeOr(""),
		Constraint: e.Constraint.SomeOr(""),
		Table:      e.Table.SomeOr(""),
		Column:     e.Column.SomeOr(""),
	}
}

// check turns a binding's result into Go's (value, error).
func check[T any](r witTypes.Result[T, types.SqlError]) (T, error) {
	if r.IsErr() {
		var zero T
		return zero, sqlError(r.Err())
	}
	return r.Ok(), nil
}

// Execute runs one statement and returns the number of rows it affected.
func Execute(query string, args ...any) (int64, error) {
	params, err := values(args)
	if err != nil {
		return 0, err
	}
	n, err := check(sql.Execute(query, params))
	return int64(n), err
}

// Batch runs a script of several statements separated by `;`, without parameters (DDL).
// It stops at the first failing statement.
func Batch(script string) error {
	_, err := check(sql.Batch(script))
	return err
}

// ExecuteMany runs one statement once per row of arguments, prepared once, and returns
// the total number of rows affected. It stops at the first failing row.
func ExecuteMany(query string, rows [][]any) (int64, error) {
	params, err := valueRows(rows)
	if err != nil {
		return 0, err
	}
	n, err := check(sql.ExecuteMany(query, params))
	return int64(n), err
}

// CopyIn writes rows into table, one value per column of columns in that order, and
// returns the number of rows written: the fast path for bulk inserts (COPY on PostgreSQL,
// multi-row INSERTs on SQLite). The table and column names are quoted by wasmig, so they
// are taken literally.
func CopyIn(table string, columns []string, rows [][]any) (int64, error) {
	params, err := valueRows(rows)
	if err != nil {
		return 0, err
	}
	n, err := check(sql.CopyIn(table, columns, params))
	return int64(n), err
}

// Query runs one statement and returns its whole result, held in memory (use OpenCursor
// for a large one).
func Query(query string, args ...any) (*Rows, error) {
	params, err := values(args)
	if err != nil {
		return nil, err
	}
	result, err := check(sql.Query(query, params))
	if err != nil {
		return nil, err
	}
	return newRows(result.Columns, result.Rows), nil
}

// QueryRow runs a query expected to return at most one row; its Scan reports the error,
// or ErrNoRows when there is no row.
func QueryRow(query string, args ...any) *Row {
	rows, err := Query(query, args...)
	return &Row{rows: rows, err: err}
}

// Savepoint is a savepoint inside the migration's transaction: the way to recover from an
// SQL error. Statements that fail after it began are forgiven when it is rolled back.
type Savepoint struct {
	handle *sql.Savepoint
}

// BeginSavepoint begins a savepoint; savepoints nest. Release or roll it back.
func BeginSavepoint() (*Savepoint, error) {
	handle, err := check(sql.BeginSavepoint())
	if err != nil {
		return nil, err
	}
	return &Savepoint{handle: handle}, nil
}

// Release keeps the work done since the savepoint began. It fails with the pending
// error if a statement failed since then (roll back instead).
func (s *Savepoint) Release() error {
	if s.handle == nil {
		return &SQLError{Code: "WASMIG-STATE", Message: "the savepoint was already released or rolled back"}
	}
	defer s.drop()
	_, err := check(s.handle.Release())
	return err
}

// Rollback undoes the work done since the savepoint began, failed statements included.
func (s *Savepoint) Rollback() error {
	if s.handle == nil {
		return &SQLError{Code: "WASMIG-STATE", Message: "the savepoint was already released or rolled back"}
	}
	defer s.drop()
	_, err := check(s.handle.Rollback())
	return err
}

func (s *Savepoint) drop() {
	s.handle.Drop()
	s.handle = nil
}

// WithSavepoint runs f inside a savepoint: released when f returns nil, rolled back when
// it returns an error, which WithSavepoint then returns. The way to try a statement that
// may fail and carry on:
//
//	err := wasmig.WithSavepoint(func() error {
//		_, err := wasmig.Execute("INSERT INTO t VALUES (1)")
//		return err
//	})
//	var sqlErr *wasmig.SQLError
//	if errors.As(err, &sqlErr) && sqlErr.Code == "23505" {
//		// a duplicate: carry on
//	} else if err != nil {
//		return err
//	}
func WithSavepoint(f func() error) error {
	sp, err := BeginSavepoint()
	if err != nil {
		return err
	}
	if err := f(); err != nil {
		if rollbackErr := sp.Rollback(); rollbackErr != nil {
			return errors.Join(err, rollbackErr)
		}
		return err
	}
	return sp.Release()
}
