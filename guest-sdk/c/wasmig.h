/*
 * wasmig.h: the C SDK for wasmig migrations, compiled with clang for wasm32-wasi and
 * componentized by `wasmig build`.
 *
 * A migration is `migration.c`: two functions returning `bool` (true on success), exported
 * with WASMIG_MIGRATION:
 *
 *     #include "wasmig.h"
 *
 *     static bool upgrade(void) {
 *         uint64_t n;
 *         return wasmig_batch("ALTER TABLE customers ADD COLUMN email_norm TEXT")
 *             && wasmig_execute("UPDATE customers SET email_norm = lower(email)", NULL, 0, &n);
 *     }
 *
 *     static bool downgrade(void) {
 *         return wasmig_batch("ALTER TABLE customers DROP COLUMN email_norm");
 *     }
 *
 *     WASMIG_MIGRATION(upgrade, downgrade)
 *
 * Everything runs on the transaction wasmig opened for the step. When a function fails it
 * returns false and leaves the error in wasmig_last_error() (code, message, detail...); a
 * migration that returns false fails with that error (or the message given to wasmig_fail)
 * and wasmig rolls everything back. To recover from an SQL error and carry on, run the
 * statement inside a savepoint and roll the savepoint back.
 *
 * Memory: parameters are borrowed (the SDK never frees them); results (wasmig_rows,
 * wasmig_columns) are owned by the caller and freed with wasmig_rows_free and
 * wasmig_columns_free. Strings inside values are not
 * NUL-terminated: use the pointer and length, or wasmig_value_strdup.
 *
 * There is no WASI in the sandbox: no stdio (printf, snprintf), files, clock or environment.
 * Log with wasmig_info and friends. malloc, string.h and ctype.h work.
 *
 * This header owns the small API over the bindings `wasmig build` generates from
 * wit/migration.wit (migration.h, whose types it reuses).
 */
#ifndef WASMIG_H
#define WASMIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration.h"

/* ---- values ------------------------------------------------------------------------ */

/* One SQL value (the WIT `value`): a tag (WASMIG_MIGRATION_TYPES_VALUE_*) and a payload. */
typedef wasmig_migration_types_value_t wasmig_value;

wasmig_value wasmig_null(void);
wasmig_value wasmig_bool(bool v);
wasmig_value wasmig_int16(int16_t v);
wasmig_value wasmig_int32(int32_t v);
wasmig_value wasmig_int64(int64_t v);
wasmig_value wasmig_float32(float v);
wasmig_value wasmig_float64(double v);
/* Text values borrow `s` (NUL-terminated) or `s`/`len`; it must outlive the call. */
wasmig_value wasmig_text(const char *s);
wasmig_value wasmig_textn(const char *s, size_t len);
/* Other text-format types (see the WIT for their formats), e.g. wasmig_typed_text(
 * WASMIG_MIGRATION_TYPES_VALUE_NUMERIC, "12.50"). */
wasmig_value wasmig_typed_text(uint8_t tag, const char *s);
wasmig_value wasmig_bytes(const uint8_t *data, size_t len);

bool wasmig_value_is_null(const wasmig_value *v);
/* Reads an integer of any width (int16, int32, int64); false for other types and NULL. */
bool wasmig_value_int64(const wasmig_value *v, int64_t *out);
/* Reads a real (float32, float64) or an integer as a double. */
bool wasmig_value_float64(const wasmig_value *v, double *out);
bool wasmig_value_bool(const wasmig_value *v, bool *out);
/* Points at the text of a text-format value (text, numeric, json, uuid, dates...). */
bool wasmig_value_text(const wasmig_value *v, const char **ptr, size_t *len);
/* A malloc'ed NUL-terminated copy of a text-format value, or NULL. */
char *wasmig_value_strdup(const wasmig_value *v);

/* ---- errors ------------------------------------------------------------------------ */

/* The last SQL error, as NUL-terminated strings (detail, hint... may be NULL). */
typedef struct wasmig_error {
    /* SQLSTATE (`23505`), SQLite's extended result code (`2067`), or `WASMIG-...`. */
    const char *code;
    const char *message;
    const char *detail;
    const char *hint;
    const char *constraint;
    const char *table;
    const char *column;
} wasmig_error;

/* The error of the last failed call, or NULL when the last call succeeded. */
const wasmig_error *wasmig_last_error(void);
/* Sets the message the migration fails with; returns false, for `return wasmig_fail(...)`. */
bool wasmig_fail(const char *message);

/* ---- statements -------------------------------------------------------------------- */

/* The cases of the WIT's `sql-dialect`, each named (the values are the WIT's own). */
/* PostgreSQL: placeholders $1, $2... */
#define WASMIG_POSTGRES WASMIG_MIGRATION_TYPES_SQL_DIALECT_POSTGRES
/* SQLite: placeholders ?1, ?2... or ?. */
#define WASMIG_SQLITE WASMIG_MIGRATION_TYPES_SQL_DIALECT_SQLITE
/* MySQL and MariaDB: placeholders ?, bound in order (a value used twice is passed twice).
 * DDL commits implicitly there, so a revision with DDL is not atomic. */
#define WASMIG_MYSQL WASMIG_MIGRATION_TYPES_SQL_DIALECT_MYSQL

/* WASMIG_POSTGRES, WASMIG_SQLITE or WASMIG_MYSQL: which database the migration runs against. */
int wasmig_dialect(void);

/* Runs a script of statements separated by `;`, without parameters (DDL). */
bool wasmig_batch(const char *script);
/* Runs one statement with `n` parameters; `affected` (may be NULL) gets the row count. */
bool wasmig_execute(const char *sql, const wasmig_value *params, size_t n, uint64_t *affected);
/* Runs one statement `rows` times; `params` holds rows * cols values, row after row. */
bool wasmig_execute_many(const char *sql, const wasmig_value *params, size_t cols, size_t rows,
                         uint64_t *affected);

/* Writes `rows` rows of `cols` values (row after row in `params`) into `table`, one value per
 * column named in `columns`: the fast path for bulk inserts (COPY on PostgreSQL). The table
 * and column names are quoted by wasmig, so they are taken literally. */
bool wasmig_copy_in(const char *table, const char *const *columns, size_t cols,
                    const wasmig_value *params, size_t rows, uint64_t *written);

/* A result: column names and rows. Free with wasmig_rows_free. */
typedef struct wasmig_rows {
    wasmig_migration_types_list_column_t columns;
    wasmig_migration_types_list_row_t rows;
    /* Whether `columns` belongs to this result (a cursor's chunks share the cursor's). */
    bool owns_columns;
} wasmig_rows;

/* Runs one statement and returns its whole result. */
bool wasmig_query(const char *sql, const wasmig_value *params, size_t n, wasmig_rows *out);
size_t wasmig_rows_len(const wasmig_rows *rows);
size_t wasmig_rows_width(const wasmig_rows *rows);
/* The index of the column named `name`, or -1. */
int wasmig_rows_column(const wasmig_rows *rows, const char *name);
/* The value at (row, column), or NULL when out of range. */
const wasmig_value *wasmig_rows_get(const wasmig_rows *rows, size_t row, size_t column);
/* The value at `row` of the column named `name`, or NULL. */
const wasmig_value *wasmig_rows_get_named(const wasmig_rows *rows, size_t row, const char *name);
void wasmig_rows_free(wasmig_rows *rows);

/* A result read in chunks (a server-side cursor on PostgreSQL). */
typedef struct wasmig_cursor {
    wasmig_migration_sql_own_cursor_t handle;
    wasmig_migration_types_list_column_t columns;
    bool open;
} wasmig_cursor;

bool wasmig_cursor_open(const char *sql, const wasmig_value *params, size_t n, wasmig_cursor *out);
/* Up to `max_rows` further rows into `out` (free it with wasmig_rows_free); an empty
 * result means the end. */
bool wasmig_cursor_next(wasmig_cursor *cursor, uint32_t max_rows, wasmig_rows *out);
void wasmig_cursor_close(wasmig_cursor *cursor);

/* A savepoint: begin it, then release it (keep the work) or roll it back (undo it,
 * including a failed statement). The way to recover from an SQL error. */
typedef struct wasmig_savepoint {
    wasmig_migration_sql_own_savepoint_t handle;
    bool open;
} wasmig_savepoint;

bool wasmig_savepoint_begin(wasmig_savepoint *out);
bool wasmig_savepoint_release(wasmig_savepoint *sp);
bool wasmig_savepoint_rollback(wasmig_savepoint *sp);

/* ---- columns (WIT 0.4.0) ----------------------------------------------------------- */

/* A batch as one array per column instead of a value per cell: the fast path for keyset
 * walks and bulk writes. One column (the WIT `column-values`): null flags (none, or one per
 * row) and the values, all of one type. The constructors borrow the caller's arrays, which
 * must outlive the call; a wasmig_columns result owns its columns. */
typedef wasmig_migration_types_column_values_t wasmig_column;

/* `nulls` may be NULL (no value is NULL), else one flag per row (a NULL row's value is a
 * filler, ignored). */
wasmig_column wasmig_column_bool(const bool *values, size_t n, const bool *nulls);
wasmig_column wasmig_column_int16(const int16_t *values, size_t n, const bool *nulls);
wasmig_column wasmig_column_int32(const int32_t *values, size_t n, const bool *nulls);
wasmig_column wasmig_column_int64(const int64_t *values, size_t n, const bool *nulls);
wasmig_column wasmig_column_float32(const float *values, size_t n, const bool *nulls);
wasmig_column wasmig_column_float64(const double *values, size_t n, const bool *nulls);
/* `n` texts packed one after another in `text` (`len` bytes, UTF-8): the i-th ends at byte
 * `ends[i]` and starts where the one before ended (the first at 0); `ends` never
 * decreases. */
wasmig_column wasmig_column_text(const char *text, size_t len, const uint32_t *ends, size_t n,
                                 const bool *nulls);
/* The same for another text-format type: `tag` is a WASMIG_MIGRATION_TYPES_COLUMN_DATA_*
 * case holding packed text (NUMERIC, JSON, JSONB, UUID, DATE, TIME, TIMESTAMP, TIMESTAMPTZ;
 * any other is taken as TEXT). */
wasmig_column wasmig_column_typed_text(uint8_t tag, const char *text, size_t len,
                                       const uint32_t *ends, size_t n, const bool *nulls);
/* Byte strings packed as texts are. */
wasmig_column wasmig_column_bytes(const uint8_t *bytes, size_t len, const uint32_t *ends,
                                  size_t n, const bool *nulls);

/* Rows in the column. */
size_t wasmig_column_len(const wasmig_column *c);
bool wasmig_column_is_null(const wasmig_column *c, size_t row);
/* The values as one array, or NULL when the column holds another type. */
const bool *wasmig_column_bools(const wasmig_column *c);
const int16_t *wasmig_column_int16s(const wasmig_column *c);
const int32_t *wasmig_column_int32s(const wasmig_column *c);
const int64_t *wasmig_column_int64s(const wasmig_column *c);
const float *wasmig_column_float32s(const wasmig_column *c);
const double *wasmig_column_float64s(const wasmig_column *c);
/* The text at `row` of a text-format column (not NUL-terminated); false for another type, a
 * NULL, or a row out of range. */
bool wasmig_column_text_at(const wasmig_column *c, size_t row, const char **ptr, size_t *len);
/* The byte string at `row` of a bytes column. */
bool wasmig_column_bytes_at(const wasmig_column *c, size_t row, const uint8_t **ptr, size_t *len);

/* A text column built row by row (it owns its buffers): wasmig_text_column_init, push
 * texts and NULLs, pass wasmig_text_column_get's column to a call, then _clear to reuse it
 * for the next batch, and _free. */
typedef struct wasmig_text_column {
    char *text;
    size_t len, cap;
    uint32_t *ends;
    bool *nulls;
    size_t rows, rows_cap;
    /* The room the last wasmig_text_column_reserve made, which its commit may fill. */
    size_t reserved;
    bool any_null;
    /* An allocation failed, the text passed 4 GiB, or a commit wrote more than was
     * reserved: the column is unusable. */
    bool failed;
} wasmig_text_column;

void wasmig_text_column_init(wasmig_text_column *c);
bool wasmig_text_column_push(wasmig_text_column *c, const char *s, size_t len);
bool wasmig_text_column_push_null(wasmig_text_column *c);
/* Room for `len` more bytes at the end, to write the next text in place; then
 * wasmig_text_column_commit with the bytes written (at most `len`: more fails the column)
 * ends the row. NULL when out of memory or past 4 GiB. */
char *wasmig_text_column_reserve(wasmig_text_column *c, size_t len);
bool wasmig_text_column_commit(wasmig_text_column *c, size_t written);
/* The column, borrowing the builder's buffers (valid until the next push or clear). */
wasmig_column wasmig_text_column_get(const wasmig_text_column *c);
void wasmig_text_column_clear(wasmig_text_column *c);
void wasmig_text_column_free(wasmig_text_column *c);

/* A result read column by column. Free with wasmig_columns_free. */
typedef struct wasmig_columns {
    wasmig_migration_types_column_result_t result;
} wasmig_columns;

/* Runs one statement and returns its whole result as columns. */
bool wasmig_query_columns(const char *sql, const wasmig_value *params, size_t n,
                          wasmig_columns *out);
/* Rows in the result. */
size_t wasmig_columns_len(const wasmig_columns *c);
size_t wasmig_columns_width(const wasmig_columns *c);
/* The index of the column named `name`, or -1. */
int wasmig_columns_index(const wasmig_columns *c, const char *name);
/* The column at `column`, or NULL when out of range. */
const wasmig_column *wasmig_columns_get(const wasmig_columns *c, size_t column);
void wasmig_columns_free(wasmig_columns *c);

/* Runs one statement whose parameters are `n` columns, each bound as one array (PostgreSQL:
 * `UPDATE t SET v = u.v FROM UNNEST($1::int8[], $2::text[]) AS u(id, v) WHERE t.id = u.id`).
 * SQLite and MySQL have no arrays and refuse it. */
bool wasmig_execute_columns(const char *sql, const wasmig_column *columns, size_t n,
                            uint64_t *affected);
/* Writes the columns' rows into `table` as wasmig_copy_in does, one column per name. */
bool wasmig_copy_in_columns(const char *table, const char *const *names, size_t cols,
                            const wasmig_column *columns, uint64_t *written);

/* ---- batches ----------------------------------------------------------------------- */

/* The checkpoint the previous batch of this step passed to wasmig_next_batch, as a
 * malloc'ed string, or NULL in the first batch. */
char *wasmig_checkpoint(void);
/* Asks for another batch once this call returns, resuming from `checkpoint`. In a
 * `transaction = "batched"` revision each batch commits on its own. */
void wasmig_next_batch(const char *checkpoint);

/* ---- logging ----------------------------------------------------------------------- */

void wasmig_log(wasmig_migration_log_level_t level, const char *message);
void wasmig_trace(const char *message);
void wasmig_debug(const char *message);
void wasmig_info(const char *message);
void wasmig_warn(const char *message);
void wasmig_error_log(const char *message);
/* Reports progress: `done` units so far, out of `total`. */
void wasmig_progress(uint64_t done, uint64_t total);
/* Reports progress with an unknown total. */
void wasmig_progress_unknown(uint64_t done);

/* Formats a signed integer into `buf` (at least 21 bytes) and returns `buf`, for log
 * messages without snprintf. */
char *wasmig_format_int(char *buf, int64_t v);

/* ---- the migration ----------------------------------------------------------------- */

/* Runs a migration function and turns `false` into the world's error string. */
bool wasmig__run(bool (*f)(void), migration_string_t *err);

/* Exports `upgrade` and `downgrade` (functions `bool f(void)`) as the migration. */
#define WASMIG_MIGRATION(upgrade_fn, downgrade_fn)                                         \
    bool exports_migration_upgrade(migration_string_t *err) {                              \
        return wasmig__run(upgrade_fn, err);                                               \
    }                                                                                      \
    bool exports_migration_downgrade(migration_string_t *err) {                            \
        return wasmig__run(downgrade_fn, err);                                             \
    }

#endif /* WASMIG_H */
