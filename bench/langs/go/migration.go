// Package migration is the 1M-row transform of `bench/run`, as a wasmig Go guest.
//
// Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 within the
// step's transaction, written as the SDK docs show it: the Keyset walker (one batch per
// call, each in a fresh instance, all in the step's one transaction), normalise in Go,
// then one `UPDATE ... FROM UNNEST` per batch with two slice parameters (slices bind as
// arrays).
package migration

import (
	"strings"

	"wasmig"
)

func init() {
	wasmig.Register(upgrade, downgrade)
}

func upgrade() error {
	return wasmig.Keyset[int64]{
		Select: "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2",
		Size:   10_000,
	}.Run(func(rows *wasmig.Rows) error {
		ids := make([]int64, 0, rows.Len())
		norms := make([]string, 0, rows.Len())
		for rows.Next() {
			var id int64
			var email string
			if err := rows.Scan(&id, &email); err != nil {
				return err
			}
			ids = append(ids, id)
			norms = append(norms, strings.ToLower(strings.TrimSpace(email)))
		}
		_, err := wasmig.Execute("UPDATE people AS p SET email_norm = u.norm "+
			"FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id", ids, norms)
		return err
	})
}

func downgrade() error {
	_, err := wasmig.Execute("UPDATE people SET email_norm = NULL")
	return err
}
