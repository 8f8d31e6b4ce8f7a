// Package migration is a tour of the Go SDK, for the end-to-end tests: parameters,
// ExecuteMany, a recovered SQL error in a savepoint, two batches with a checkpoint, rows
// scanned by position and by name, CopyIn, QueryRow with no row, the column calls
// (PostgreSQL), logging and progress; and a downgrade that lets an SQL error escape when asked to (the label of row 1 says so).
//
// The Python, JavaScript and C tours do exactly the same, so the tests compare their tables.
package migration

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"wasmig"
)

func init() {
	wasmig.Register(upgrade, downgrade)
}

func placeholders(n int) string {
	parts := make([]string, n)
	for i := range parts {
		if wasmig.CurrentDialect() == wasmig.Postgres {
			parts[i] = fmt.Sprintf("$%d", i+1)
		} else {
			parts[i] = "?"
		}
	}
	return strings.Join(parts, ", ")
}

func upgrade() error {
	checkpoint, resumed := wasmig.Checkpoint()
	if !resumed {
		if err := firstBatch(); err != nil {
			return err
		}
		wasmig.NextBatch("summary")
		return nil
	}
	wasmig.Infof("second batch, from checkpoint %s", checkpoint)
	return secondBatch()
}

func check(ok bool, what string, got ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf("check failed: %s %v", what, got)
}

// checkValues passes and reads back values of every kind the SDK converts.
func checkValues() error {
	var (
		b []byte
		f float64
		k bool
	)
	if wasmig.CurrentDialect() == wasmig.Postgres {
		var (
			n  wasmig.Numeric
			u  wasmig.UUID
			d  string
			t  time.Time
			a  []any
			j  string
			i  int32
			s  []any
			ts *time.Time
		)
		err := wasmig.QueryRow(
			"SELECT $1::numeric AS n, $2::uuid AS u, $3::date AS d, $4::timestamptz AS t, "+
				"$5::int8[] AS a, $6::jsonb AS j, $7::bytea AS b, $8::float8 AS f, $9::bool AS k, "+
				"$10::int4 AS i, $11::text[] AS s, NULL::timestamptz AS z",
			wasmig.Numeric("12.50"),
			wasmig.UUID("67e55044-10b1-426f-9247-bb680e5fe0c8"),
			wasmig.Date("2024-01-02"),
			time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
			[]*int64{ptr(int64(1)), nil, ptr(int64(3))},
			wasmig.JSONB(`{"a": 1}`),
			[]byte{0, 1},
			1.5,
			true,
			int32(7),
			[]*string{ptr("x"), nil},
		).Scan(&n, &u, &d, &t, &a, &j, &b, &f, &k, &i, &s, &ts)
		if err != nil {
			return err
		}
		for _, c := range []error{
			check(n == "12.50", "numeric", n),
			check(u == "67e55044-10b1-426f-9247-bb680e5fe0c8", "uuid", u),
			check(d == "2024-01-02", "date", d),
			check(t.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)), "timestamptz", t),
			check(fmt.Sprint(a) == "[1 <nil> 3]", "int8[]", a),
			check(j == `{"a": 1}`, "jsonb", j),
			check(i == 7, "int4", i),
			check(fmt.Sprint(s) == "[x <nil>]", "text[]", s),
			check(ts == nil, "NULL", ts),
		} {
			if c != nil {
				return c
			}
		}
	} else {
		if err := wasmig.QueryRow("SELECT ? AS b, ? AS f, ? AS k", []byte{0, 1}, 1.5, true).Scan(&b, &f, &k); err != nil {
			return err
		}
	}
	if err := check(bytes.Equal(b, []byte{0, 1}) && f == 1.5 && k, "bytes, float, bool", b, f, k); err != nil {
		return err
	}
	var big int64
	if err := wasmig.QueryRow("SELECT "+placeholders(1)+" AS big", int64(1)<<53+1).Scan(&big); err != nil {
		return err
	}
	if err := check(big == 1<<53+1, "bigint", big); err != nil {
		return err
	}
	// Bytes that are not UTF-8 in a log line are repaired, not a trap.
	wasmig.Infof("a log line with a stray \xff byte is repaired")
	wasmig.Infof("values: ok")
	return nil
}

func ptr[T any](v T) *T { return &v }

// checkColumns writes a batch as columns through UNNEST, reads it back column by column
// and copies a column in (PostgreSQL: SQLite has no arrays to bind a column as).
func checkColumns() error {
	if wasmig.CurrentDialect() != wasmig.Postgres {
		return nil
	}
	if err := wasmig.Batch("CREATE TEMPORARY TABLE tour_columns (id int8, label text, raw bytea)"); err != nil {
		return err
	}
	labels := []string{"plain", "", "wide \u00e9\U0001F600"}
	n, err := wasmig.ExecuteColumns(
		"INSERT INTO tour_columns SELECT * FROM UNNEST($1::int8[], $2::text[], $3::bytea[])",
		wasmig.Int64Column([]int64{1, 2, 3}),
		wasmig.TextColumn(labels).WithNulls([]bool{false, true, false}),
		wasmig.BytesColumn([][]byte{{1}, nil, {}}),
	)
	if err != nil {
		return err
	}
	if err := check(n == 3, "ExecuteColumns wrote 3 rows", n); err != nil {
		return err
	}
	batch, err := wasmig.QueryColumns("SELECT id, label, raw FROM tour_columns ORDER BY id")
	if err != nil {
		return err
	}
	ids, err := batch.Column(0).Int64s()
	if err != nil {
		return err
	}
	label, err := batch.Named("label")
	if err != nil {
		return err
	}
	texts, err := label.Texts()
	if err != nil {
		return err
	}
	raw, err := batch.Column(2).ByteStrings()
	if err != nil {
		return err
	}
	_, wrongType := label.Int64s()
	if err := check(batch.Len() == 3 && fmt.Sprint(ids) == "[1 2 3]" &&
		texts[0] == labels[0] && label.IsNull(1) && texts[2] == labels[2] && wrongType != nil &&
		bytes.Equal(raw[0], []byte{1}) && raw[1] == nil && raw[2] != nil && len(raw[2]) == 0,
		"QueryColumns", ids, texts, raw, wrongType); err != nil {
		return err
	}
	// Empty byte strings with no byte in the column are empty, not NULL; the zero Column
	// holds nothing and is refused.
	empties, err := wasmig.QueryColumns("SELECT b FROM (VALUES (''::bytea), (NULL::bytea)) AS t(b)")
	if err != nil {
		return err
	}
	empty, err := empties.Column(0).ByteStrings()
	if err != nil {
		return err
	}
	var zero wasmig.Column
	_, zeroErr := zero.Int64s()
	_, zeroSent := wasmig.ExecuteColumns("SELECT $1::int8[]", zero)
	if err := check(empty[0] != nil && len(empty[0]) == 0 && empty[1] == nil && zero.Len() == 0 &&
		zeroErr != nil && zeroSent != nil, "empty bytes and the zero Column", empty, zeroErr, zeroSent); err != nil {
		return err
	}
	copied, err := wasmig.CopyInColumns("tour_columns", []string{"id", "label"},
		wasmig.Int64Column([]int64{4}), wasmig.TextColumn([]string{"copied"}))
	if err != nil {
		return err
	}
	var back string
	if err := wasmig.QueryRow("SELECT label FROM tour_columns WHERE id = 4").Scan(&back); err != nil {
		return err
	}
	if err := check(copied == 1 && back == "copied", "CopyInColumns", copied, back); err != nil {
		return err
	}
	return wasmig.Batch("DROP TABLE tour_columns")
}

func firstBatch() error {
	wasmig.Infof("dialect: %s", wasmig.CurrentDialect())
	if err := checkValues(); err != nil {
		return err
	}
	if err := checkColumns(); err != nil {
		return err
	}
	if err := wasmig.Batch("CREATE TABLE tour (id BIGINT PRIMARY KEY, label TEXT NOT NULL, note TEXT)"); err != nil {
		return err
	}
	insert := "INSERT INTO tour (id, label, note) VALUES (" + placeholders(3) + ")"
	n, err := wasmig.Execute(insert, 1, "one", nil)
	if err != nil {
		return err
	}
	if err := check(n == 1, "execute", n); err != nil {
		return err
	}
	n, err = wasmig.ExecuteMany(insert, [][]any{{2, "two", "n2"}, {3, "three", nil}})
	if err != nil {
		return err
	}
	if err := check(n == 2, "execute many", n); err != nil {
		return err
	}

	err = wasmig.WithSavepoint(func() error {
		_, err := wasmig.Execute(insert, 1, "duplicate", nil)
		return err
	})
	var sqlErr *wasmig.SQLError
	if !errors.As(err, &sqlErr) {
		return fmt.Errorf("the duplicate insert did not fail with an SQL error: %v", err)
	}
	wasmig.Infof("caught %s: %s", sqlErr.Code, sqlErr.Message)
	_, err = wasmig.Execute(insert, 4, "caught "+sqlErr.Code, nil)
	return err
}

func secondBatch() error {
	rows, err := wasmig.Query("SELECT id, label, note FROM tour ORDER BY id")
	if err != nil {
		return err
	}
	if err := check(strings.Join(rows.Columns(), ",") == "id,label,note", "columns", rows.Columns()); err != nil {
		return err
	}
	var parts []string
	for rows.Next() {
		var (
			id    int64
			label string
			note  *string
		)
		if err := rows.Scan(&id, &label, &note); err != nil {
			return err
		}
		shown := "-"
		if note != nil {
			shown = *note
		}
		parts = append(parts, fmt.Sprintf("%d=%s/%s", id, label, shown))
	}
	written, err := wasmig.CopyIn("tour", []string{"id", "label", "note"}, [][]any{{5, strings.Join(parts, ","), nil}})
	if err != nil {
		return err
	}
	if err := check(written == 1, "copy in", written); err != nil {
		return err
	}
	var id int64
	err = wasmig.QueryRow("SELECT id FROM tour WHERE id = "+placeholders(1), 42).Scan(&id)
	if err := check(errors.Is(err, wasmig.ErrNoRows), "no row", err); err != nil {
		return err
	}
	wasmig.Progress(1, 1)
	return nil
}

func downgrade() error {
	var label string
	if err := wasmig.QueryRow("SELECT label FROM tour WHERE id = 1").Scan(&label); err != nil {
		return err
	}
	if label == "fail-utf8" {
		return errors.New("an error with a stray \xff byte")
	}
	if label == "fail-downgrade" {
		if _, err := wasmig.Execute("INSERT INTO no_such_table VALUES (1)"); err != nil {
			return err
		}
	}
	return wasmig.Batch("DROP TABLE tour")
}
