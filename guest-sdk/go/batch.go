package wasmig

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	witbatch "wasmig/internal/wit/imports/wasmig_migration_batch"
)

// Checkpoint is the checkpoint the previous batch of this step passed to NextBatch, and
// false in the first batch (a resumed `transaction = "batched"` run starts from the
// stored one).
//
// wasmig calls upgrade (or downgrade) once per batch, each time in a fresh instance: a
// call that wants another batch calls NextBatch and returns nil. In a revision with
// `transaction = "batched"` each batch commits on its own with its checkpoint, and an
// interrupted run resumes from the last one; otherwise all batches run in the step's one
// transaction. Nothing in memory survives from one batch to the next.
func Checkpoint() (string, bool) {
	c := witbatch.Checkpoint()
	if c.IsNone() {
		return "", false
	}
	return c.Some(), true
}

// NextBatch asks for another batch once this call returns nil, resuming from checkpoint
// (at most 64 KiB: a key and counters). Called more than once, the last call counts. The
// checkpoint must move on: resuming from the one this batch was given fails the step.
func NextBatch(checkpoint string) {
	witbatch.NextBatch(checkpoint)
}

// Key is a type a Keyset walks by: an integer, text or UUID key.
type Key interface {
	int16 | int32 | int64 | string | UUID
}

// Keyset is a walk over a table in key order, one batch of rows per call of the
// migration, resumable from its checkpoint: the keyset pagination a data migration on a
// large table needs (no OFFSET, no cursor held across batches).
//
//	return wasmig.Keyset[int64]{
//		Select: "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2",
//		Size:   10_000,
//		Total:  "SELECT count(*) FROM people",
//		First:  func() error { return wasmig.Batch("ALTER TABLE people ADD COLUMN email_norm TEXT") },
//	}.Run(func(rows *wasmig.Rows) error {
//		for rows.Next() {
//			// ...
//		}
//		return nil
//	})
//
// The checkpoint is the Rust SDK's (`keyset:1:DONE:TOTAL:KEY`), so a walk can be
// resumed by a migration in either language.
type Keyset[K Key] struct {
	// Select returns the rows of one batch. Its first column is the key (unique, and the
	// order of the walk), its first parameter the key of the last row already processed,
	// its second the batch size (?1 and ?2 on SQLite).
	Select string
	// Size is the number of rows per batch (1000 when 0).
	Size int
	// Total, if set, is a query counting the rows the walk will process, run once in the
	// first batch, for the progress bar's total.
	Total string
	// First, if set, runs once before the first batch (in its transaction): DDL such as
	// adding the column a backfill fills. Not run again in later batches or on resume.
	First func() error
}

const keysetPrefix = "keyset:1:"

// Run processes one batch: runs Select after the checkpoint's key, hands the rows to
// process, reports progress, and asks for the next batch if this one was full.
func (k Keyset[K]) Run(process func(rows *Rows) error) error {
	size := k.Size
	if size < 1 {
		size = 1000
	}
	var done int64
	total := int64(-1)
	var after K
	if text, ok := Checkpoint(); ok {
		var err error
		if done, total, after, err = decodePosition[K](text); err != nil {
			return err
		}
	} else {
		if k.First != nil {
			if err := k.First(); err != nil {
				return err
			}
		}
		if k.Total != "" {
			if err := QueryRow(k.Total).Scan(&total); err != nil {
				return fmt.Errorf("counting the rows of the walk: %w", err)
			}
		}
		after = beforeAll[K]()
	}
	rows, err := Query(k.Select, after, int64(size))
	if err != nil {
		return err
	}
	if rows.Len() == 0 {
		Progress(done, total)
		return nil
	}
	if err := process(rows); err != nil {
		return err
	}
	last := rows.rows[rows.Len()-1]
	if len(last) == 0 {
		return fmt.Errorf("the keyset query returns no columns; its first column must be the key")
	}
	if err := scan(&after, last[0]); err != nil {
		return fmt.Errorf("the keyset query's first column (the key): %w", err)
	}
	done += int64(rows.Len())
	Progress(done, total)
	if rows.Len() >= size {
		NextBatch(encodePosition(done, total, after))
	}
	return nil
}

// beforeAll is the key below every row: the smallest integer, the empty string, or the
// nil UUID.
func beforeAll[K Key]() K {
	var k K
	switch p := any(&k).(type) {
	case *int16:
		*p = math.MinInt16
	case *int32:
		*p = math.MinInt32
	case *int64:
		*p = math.MinInt64
	case *UUID:
		*p = "00000000-0000-0000-0000-000000000000"
	}
	return k
}

func encodePosition[K Key](done, total int64, after K) string {
	t := "-"
	if total >= 0 {
		t = strconv.FormatInt(total, 10)
	}
	return fmt.Sprintf("%s%d:%s:%v", keysetPrefix, done, t, after)
}

func decodePosition[K Key](text string) (done, total int64, after K, err error) {
	bad := fmt.Errorf("the checkpoint %q was not written by a Keyset walk (expected `%sDONE:TOTAL:KEY`)", text, keysetPrefix)
	rest, ok := strings.CutPrefix(text, keysetPrefix)
	if !ok {
		return 0, 0, after, bad
	}
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 {
		return 0, 0, after, bad
	}
	if done, err = strconv.ParseInt(parts[0], 10, 64); err != nil {
		return 0, 0, after, bad
	}
	total = -1
	if parts[1] != "-" {
		if total, err = strconv.ParseInt(parts[1], 10, 64); err != nil {
			return 0, 0, after, bad
		}
	}
	switch p := any(&after).(type) {
	case *string:
		*p = parts[2]
	case *UUID:
		*p = UUID(parts[2])
	case *int16:
		err = parseKey(parts[2], 16, func(n int64) { *p = int16(n) })
	case *int32:
		err = parseKey(parts[2], 32, func(n int64) { *p = int32(n) })
	case *int64:
		err = parseKey(parts[2], 64, func(n int64) { *p = n })
	}
	if err != nil {
		return 0, 0, after, err
	}
	return done, total, after, nil
}

func parseKey(text string, bits int, set func(int64)) error {
	n, err := strconv.ParseInt(text, 10, bits)
	if err != nil {
		return fmt.Errorf("the checkpoint's key %q is not an int%d: %w", text, bits, err)
	}
	set(n)
	return nil
}
