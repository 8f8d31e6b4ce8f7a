/*
 * The 1M-row transform of `bench/run`, as a wasmig C guest.
 *
 * Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 within the
 * step's transaction, as the Rust guest in `bench/columns` does: one wasmig_query_columns per
 * batch (the batch as two columns, not a value per cell), normalise in C (ASCII: the
 * addresses are ASCII) straight into a text column, then one `UPDATE ... FROM UNNEST` with the
 * two columns as its array parameters (wasmig_execute_columns). The SDK has no keyset walker:
 * the walk is a plain loop in one call.
 */
#include "wasmig.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Rows per keyset batch. */
#define BATCH 10000

static const char *SELECT = "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2";
static const char *UPDATE = "UPDATE people AS p SET email_norm = u.norm "
                            "FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id";

/* lower(trim(email)) into `out` (at least len bytes); returns the length written. */
static size_t normalise(const char *email, size_t len, char *out) {
    while (len && isspace((unsigned char)*email)) email++, len--;
    while (len && isspace((unsigned char)email[len - 1])) len--;
    for (size_t i = 0; i < len; i++) out[i] = (char)tolower((unsigned char)email[i]);
    return len;
}

static bool upgrade(void) {
    int64_t last = INT64_MIN;
    uint64_t done = 0;
    wasmig_text_column norms;
    wasmig_text_column_init(&norms);
    bool ok = true;
    for (;;) {
        wasmig_value params[2] = {wasmig_int64(last), wasmig_int64(BATCH)};
        wasmig_columns batch;
        if (!(ok = wasmig_query_columns(SELECT, params, 2, &batch))) break;
        size_t n = wasmig_columns_len(&batch);
        if (n == 0) {
            wasmig_columns_free(&batch);
            break;
        }
        const wasmig_column *ids = wasmig_columns_get(&batch, 0);
        const wasmig_column *emails = wasmig_columns_get(&batch, 1);
        const int64_t *id = wasmig_column_int64s(ids);
        wasmig_text_column_clear(&norms);
        for (size_t i = 0; ok && i < n; i++) {
            const char *email;
            size_t len;
            char *at;
            if (id == NULL || !wasmig_column_text_at(emails, i, &email, &len)) {
                ok = wasmig_fail("unexpected column types");
            } else if ((at = wasmig_text_column_reserve(&norms, len)) == NULL ||
                       !wasmig_text_column_commit(&norms, normalise(email, len, at))) {
                ok = wasmig_fail("out of memory");
            }
        }
        uint64_t affected = 0;
        if (ok) {
            last = id[n - 1];
            wasmig_column arrays[2] = {*ids, wasmig_text_column_get(&norms)};
            ok = wasmig_execute_columns(UPDATE, arrays, 2, &affected);
        }
        wasmig_columns_free(&batch);
        if (!ok) break;
        done += affected;
    }
    wasmig_text_column_free(&norms);
    if (!ok) return false;
    char a[21], message[48] = "normalised ";
    strcat(message, wasmig_format_int(a, (int64_t)done));
    strcat(message, " rows");
    wasmig_info(message);
    return true;
}

static bool downgrade(void) {
    return wasmig_execute("UPDATE people SET email_norm = NULL", NULL, 0, NULL);
}

WASMIG_MIGRATION(upgrade, downgrade)
