// Package migration is a data migration over a large table with the keyset walker, for
// the end-to-end tests: `items` (seeded by the test) gets a `name_norm` column holding
// its name upper-cased, 10,000 rows per batch.
package migration

import (
	"strings"

	"wasmig"
)

func init() {
	wasmig.Register(upgrade, downgrade)
}

func upgrade() error {
	sel := "SELECT id, name FROM items WHERE id > $1 ORDER BY id LIMIT $2"
	update := "UPDATE items SET name_norm = $2 WHERE id = $1"
	if wasmig.CurrentDialect() == wasmig.SQLite {
		sel = "SELECT id, name FROM items WHERE id > ?1 ORDER BY id LIMIT ?2"
		update = "UPDATE items SET name_norm = ?2 WHERE id = ?1"
	}
	return wasmig.Keyset[int64]{
		Select: sel,
		Size:   10_000,
		Total:  "SELECT count(*) FROM items",
		First: func() error {
			return wasmig.Batch("ALTER TABLE items ADD COLUMN name_norm TEXT")
		},
	}.Run(func(rows *wasmig.Rows) error {
		params := make([][]any, 0, rows.Len())
		for rows.Next() {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				return err
			}
			params = append(params, []any{id, strings.ToUpper(name)})
		}
		_, err := wasmig.ExecuteMany(update, params)
		return err
	})
}

func downgrade() error {
	return wasmig.Batch("ALTER TABLE items DROP COLUMN name_norm")
}
