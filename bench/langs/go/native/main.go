// Command native is the 1M-row transform of `bench/run` in Go with database/sql and lib/pq:
// the native peer of the Go guest.
//
// `native DATABASE_URL`. The same statements as the guests and the other native programs:
// a keyset select per batch of 10,000, normalise in Go, one `UPDATE ... FROM UNNEST` per
// batch (pq.Array sends a slice as an array literal), one transaction.
package main

import (
	"database/sql"
	"fmt"
	"log"
	"math"
	"os"
	"strings"

	"github.com/lib/pq"
)

// batch is the number of rows per keyset batch.
const batch = 10_000

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: native DATABASE_URL")
	}
	db, err := sql.Open("postgres", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	done, err := transform(db)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("normalised %d rows\n", done)
}

func transform(db *sql.DB) (int64, error) {
	tx, err := db.Begin()
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var done int64
	last := int64(math.MinInt64)
	ids := make([]int64, 0, batch)
	norms := make([]string, 0, batch)
	for {
		rows, err := tx.Query("SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2", last, batch)
		if err != nil {
			return 0, err
		}
		ids, norms = ids[:0], norms[:0]
		for rows.Next() {
			var id int64
			var email string
			if err := rows.Scan(&id, &email); err != nil {
				rows.Close()
				return 0, err
			}
			ids = append(ids, id)
			norms = append(norms, strings.ToLower(strings.TrimSpace(email)))
		}
		if err := rows.Err(); err != nil {
			return 0, err
		}
		if len(ids) == 0 {
			break
		}
		last = ids[len(ids)-1]
		res, err := tx.Exec("UPDATE people AS p SET email_norm = u.norm "+
			"FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id",
			pq.Array(ids), pq.Array(norms))
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		done += n
	}
	return done, tx.Commit()
}
