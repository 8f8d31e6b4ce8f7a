/*
 * Normalise customers' e-mail addresses into a new `email_norm` column (C).
 *
 * The example backfill, as in `migrations/` in Rust: walk the table through a cursor (a
 * server-side cursor on PostgreSQL, so memory stays bounded), normalise each address in C,
 * write each chunk back with one wasmig_execute_many, and report progress. (ASCII lower-case:
 * the addresses are ASCII; a migration that needs Unicode case mapping is better in another
 * language.)
 */
#include "wasmig.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Rows per chunk: one cursor fetch and one execute_many each. */
#define CHUNK 1000

/* "  Customer7@Example.COM " -> "customer7@example.com", malloc'ed. */
static char *normalise(const char *email, size_t len) {
    while (len && isspace((unsigned char)*email)) email++, len--;
    while (len && isspace((unsigned char)email[len - 1])) len--;
    char *out = malloc(len + 1);
    if (out == NULL) return NULL;
    for (size_t i = 0; i < len; i++) out[i] = (char)tolower((unsigned char)email[i]);
    out[len] = '\0';
    return out;
}

static bool upgrade(void) {
    if (!wasmig_batch("ALTER TABLE customers ADD COLUMN email_norm TEXT")) return false;

    wasmig_rows count;
    int64_t total = 0;
    if (!wasmig_query("SELECT count(*) AS n FROM customers", NULL, 0, &count)) return false;
    bool counted = wasmig_value_int64(wasmig_rows_get_named(&count, 0, "n"), &total);
    wasmig_rows_free(&count);
    if (!counted) return wasmig_fail("count(*) did not return an integer");

    const char *update = wasmig_dialect() == WASMIG_POSTGRES
                             ? "UPDATE customers SET email_norm = $2 WHERE id = $1"
                             : "UPDATE customers SET email_norm = ?2 WHERE id = ?1";

    wasmig_cursor cursor;
    if (!wasmig_cursor_open("SELECT id, email FROM customers ORDER BY id", NULL, 0, &cursor)) return false;
    uint64_t done = 0;
    bool ok = true;
    for (;;) {
        wasmig_rows chunk;
        if (!(ok = wasmig_cursor_next(&cursor, CHUNK, &chunk))) break;
        size_t n = wasmig_rows_len(&chunk);
        if (n == 0) {
            wasmig_rows_free(&chunk);
            break;
        }
        int id_column = wasmig_rows_column(&chunk, "id");
        wasmig_value *params = calloc(n * 2, sizeof *params);
        char **texts = calloc(n, sizeof *texts);
        for (size_t i = 0; ok && i < n; i++) {
            int64_t id;
            const char *email;
            size_t len;
            if (!wasmig_value_int64(wasmig_rows_get(&chunk, i, (size_t)id_column), &id) ||
                !wasmig_value_text(wasmig_rows_get(&chunk, i, 1), &email, &len)) {
                ok = wasmig_fail("unexpected column types");
                break;
            }
            texts[i] = normalise(email, len);
            params[2 * i] = wasmig_int64(id);
            params[2 * i + 1] = wasmig_text(texts[i]);
        }
        uint64_t affected = 0;
        if (ok) ok = wasmig_execute_many(update, params, 2, n, &affected);
        for (size_t i = 0; i < n; i++) free(texts[i]);
        free(texts);
        free(params);
        wasmig_rows_free(&chunk);
        if (!ok) break;
        done += affected;
        wasmig_progress(done, (uint64_t)total);
    }
    wasmig_cursor_close(&cursor);
    if (!ok) return false;

    char a[21], b[21], message[96] = "normalised ";
    strcat(message, wasmig_format_int(a, (int64_t)done));
    strcat(message, " of ");
    strcat(message, wasmig_format_int(b, total));
    strcat(message, " addresses");
    wasmig_info(message);
    return true;
}

static bool downgrade(void) {
    return wasmig_batch("ALTER TABLE customers DROP COLUMN email_norm");
}

WASMIG_MIGRATION(upgrade, downgrade)
