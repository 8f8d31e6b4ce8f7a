// Package migration normalises customers' e-mail addresses into a new `email_norm`
// column (Go).
//
// The example backfill, as in `migrations/` in Rust: walk the table through a cursor (a
// server-side cursor on PostgreSQL, so memory stays bounded), normalise each address in Go,
// write each chunk back with one ExecuteMany, and report progress.
package migration

import (
	"strings"

	"wasmig"
)

// chunk is the number of rows per cursor fetch and per ExecuteMany.
const chunk = 1000

func init() {
	wasmig.Register(upgrade, downgrade)
}

func upgrade() error {
	if err := wasmig.Batch("ALTER TABLE customers ADD COLUMN email_norm TEXT"); err != nil {
		return err
	}
	var total int64
	if err := wasmig.QueryRow("SELECT count(*) FROM customers").Scan(&total); err != nil {
		return err
	}
	update := "UPDATE customers SET email_norm = $2 WHERE id = $1"
	if wasmig.CurrentDialect() == wasmig.SQLite {
		update = "UPDATE customers SET email_norm = ?2 WHERE id = ?1"
	}
	cursor, err := wasmig.OpenCursor("SELECT id, email FROM customers ORDER BY id")
	if err != nil {
		return err
	}
	defer cursor.Close()
	var done int64
	for {
		rows, err := cursor.Fetch(chunk)
		if err != nil {
			return err
		}
		if rows.Len() == 0 {
			break
		}
		params := make([][]any, 0, rows.Len())
		for rows.Next() {
			var id int64
			var email string
			if err := rows.Scan(&id, &email); err != nil {
				return err
			}
			params = append(params, []any{id, strings.ToLower(strings.TrimSpace(email))})
		}
		n, err := wasmig.ExecuteMany(update, params)
		if err != nil {
			return err
		}
		done += n
		wasmig.Progress(done, total)
	}
	wasmig.Infof("normalised %d of %d addresses", done, total)
	return nil
}

func downgrade() error {
	return wasmig.Batch("ALTER TABLE customers DROP COLUMN email_norm")
}
