/*
 * The 1M-row transform of `bench/run`, as a wasmig C guest.
 *
 * Fills `people.email_norm = lower(trim(email))` in keyset batches of 10,000 within the
 * step's transaction, as the Rust guest in `bench/project` does: one wasmig_query per batch,
 * normalise in C (ASCII: the addresses are ASCII), then one `UPDATE ... FROM UNNEST` with two
 * array parameters. The SDK has no keyset walker and no array constructors (wasmig.h has
 * scalars only), so the arrays are WIT values built with the generated types of migration.h,
 * which wasmig_value is: a tag and a payload. The strings borrow the batch's normalised
 * copies, freed after the update.
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
    migration_option_s64_t *ids = malloc(BATCH * sizeof *ids);
    migration_option_string_t *norms = malloc(BATCH * sizeof *norms);
    if (ids == NULL || norms == NULL) return wasmig_fail("out of memory");
    bool ok = true;
    for (;;) {
        wasmig_value params[2] = {wasmig_int64(last), wasmig_int64(BATCH)};
        wasmig_rows rows;
        if (!(ok = wasmig_query(SELECT, params, 2, &rows))) break;
        size_t n = wasmig_rows_len(&rows);
        if (n == 0) {
            wasmig_rows_free(&rows);
            break;
        }
        /* One buffer for the batch's normalised strings (never longer than the originals). */
        size_t bytes = 0;
        for (size_t i = 0; i < n; i++) {
            const char *email;
            size_t len;
            if (wasmig_value_text(wasmig_rows_get(&rows, i, 1), &email, &len)) bytes += len;
        }
        char *text = malloc(bytes ? bytes : 1);
        if (text == NULL) {
            wasmig_rows_free(&rows);
            ok = wasmig_fail("out of memory");
            break;
        }
        char *at = text;
        for (size_t i = 0; ok && i < n; i++) {
            int64_t id;
            const char *email;
            size_t len;
            if (!wasmig_value_int64(wasmig_rows_get(&rows, i, 0), &id) ||
                !wasmig_value_text(wasmig_rows_get(&rows, i, 1), &email, &len)) {
                ok = wasmig_fail("unexpected column types");
                break;
            }
            size_t m = normalise(email, len, at);
            ids[i] = (migration_option_s64_t){.is_some = true, .val = id};
            norms[i] = (migration_option_string_t){.is_some = true, .val = {(uint8_t *)at, m}};
            at += m;
            last = id;
        }
        wasmig_rows_free(&rows);
        uint64_t affected = 0;
        if (ok) {
            wasmig_value arrays[2];
            arrays[0].tag = WASMIG_MIGRATION_TYPES_VALUE_ARRAY;
            arrays[0].val.array.tag = WASMIG_MIGRATION_TYPES_ARRAY_VALUE_INT64;
            arrays[0].val.array.val.int64 = (migration_list_option_s64_t){ids, n};
            arrays[1].tag = WASMIG_MIGRATION_TYPES_VALUE_ARRAY;
            arrays[1].val.array.tag = WASMIG_MIGRATION_TYPES_ARRAY_VALUE_TEXT;
            arrays[1].val.array.val.text = (migration_list_option_string_t){norms, n};
            ok = wasmig_execute(UPDATE, arrays, 2, &affected);
        }
        free(text);
        if (!ok) break;
        done += affected;
    }
    free(ids);
    free(norms);
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
