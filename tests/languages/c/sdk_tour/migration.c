/*
 * A tour of the C SDK, for the end-to-end tests: parameters, execute_many, a recovered SQL
 * error in a savepoint, two batches with a checkpoint, rows by index and name, copy_in,
 * the column calls (PostgreSQL), logging and progress; and a downgrade that
 * lets an SQL error escape when asked to (the label of row 1 says so). The Python and
 * JavaScript tours do exactly the same, so the tests compare their tables.
 */
#include "wasmig.h"

#include <stdlib.h>
#include <string.h>

#define CHECK(cond) \
    do { if (!(cond)) return wasmig_fail("check failed: " #cond); } while (0)

static const char *insert_sql(void) {
    return wasmig_dialect() == WASMIG_POSTGRES ? "INSERT INTO tour (id, label, note) VALUES ($1, $2, $3)"
                                               : "INSERT INTO tour (id, label, note) VALUES (?, ?, ?)";
}

static bool text_is(const wasmig_value *v, const char *expected) {
    const char *p;
    size_t len;
    return wasmig_value_text(v, &p, &len) && len == strlen(expected) && memcmp(p, expected, len) == 0;
}

/* Parameters and results of the kinds the C SDK has constructors for, checked here. */
static bool check_values(void) {
    static const uint8_t bytes[] = {0, 1};
    wasmig_rows rows;
    bool pg = wasmig_dialect() == WASMIG_POSTGRES;
    if (pg) {
        wasmig_value params[] = {
            wasmig_typed_text(WASMIG_MIGRATION_TYPES_VALUE_NUMERIC, "12.50"),
            wasmig_typed_text(WASMIG_MIGRATION_TYPES_VALUE_UUID, "67e55044-10b1-426f-9247-bb680e5fe0c8"),
            wasmig_typed_text(WASMIG_MIGRATION_TYPES_VALUE_DATE, "2024-01-02"),
            wasmig_typed_text(WASMIG_MIGRATION_TYPES_VALUE_TIMESTAMPTZ, "2024-01-02T03:04:05Z"),
            wasmig_bytes(bytes, 2),
            wasmig_float64(1.5),
            wasmig_bool(true),
            wasmig_int32(7),
        };
        if (!wasmig_query("SELECT $1::numeric AS n, $2::uuid AS u, $3::date AS d, $4::timestamptz AS t, "
                          "$5::bytea AS b, $6::float8 AS f, $7::bool AS k, $8::int4 AS i",
                          params, 8, &rows))
            return false;
        CHECK(text_is(wasmig_rows_get_named(&rows, 0, "n"), "12.50"));
        CHECK(text_is(wasmig_rows_get_named(&rows, 0, "u"), "67e55044-10b1-426f-9247-bb680e5fe0c8"));
        CHECK(text_is(wasmig_rows_get_named(&rows, 0, "d"), "2024-01-02"));
        CHECK(text_is(wasmig_rows_get_named(&rows, 0, "t"), "2024-01-02T03:04:05Z"));
        int64_t i;
        CHECK(wasmig_value_int64(wasmig_rows_get_named(&rows, 0, "i"), &i) && i == 7);
    } else {
        wasmig_value params[] = {wasmig_bytes(bytes, 2), wasmig_float64(1.5), wasmig_bool(true)};
        if (!wasmig_query("SELECT ? AS b, ? AS f, ? AS k", params, 3, &rows)) return false;
    }
    const wasmig_value *b = wasmig_rows_get_named(&rows, 0, "b");
    CHECK(b != NULL && b->tag == WASMIG_MIGRATION_TYPES_VALUE_BYTES && b->val.bytes.len == 2 &&
          b->val.bytes.ptr[0] == 0 && b->val.bytes.ptr[1] == 1);
    double f;
    CHECK(wasmig_value_float64(wasmig_rows_get_named(&rows, 0, "f"), &f) && f == 1.5);
    bool k = false;
    int64_t k_int = 0;
    const wasmig_value *kv = wasmig_rows_get_named(&rows, 0, "k");
    CHECK((wasmig_value_bool(kv, &k) && k) || (wasmig_value_int64(kv, &k_int) && k_int == 1));
    wasmig_rows_free(&rows);
    wasmig_value big[] = {wasmig_int64(INT64_C(9007199254740993))};
    if (!wasmig_query(pg ? "SELECT $1 AS big" : "SELECT ? AS big", big, 1, &rows)) return false;
    int64_t back = 0;
    CHECK(wasmig_value_int64(wasmig_rows_get(&rows, 0, 0), &back) && back == INT64_C(9007199254740993));
    wasmig_rows_free(&rows);
    /* Bytes that are not UTF-8 in a log line are repaired, not a trap: a stray byte, an
     * overlong form, a surrogate, a code point past U+10FFFF, a sequence cut short; valid
     * sequences of every length are kept. */
    wasmig_info("repaired: stray \xff, overlong \xc0\xaf, surrogate \xed\xa0\x80, "
                "too high \xf4\x90\x80\x80, cut \xe2\x82; kept: \xc3\xa9 \xe2\x82\xac "
                "\xf0\x9f\x98\x80");
    wasmig_info("values: ok");
    return true;
}

static bool bytes_are(const wasmig_column *c, size_t row, const uint8_t *expected, size_t n) {
    const uint8_t *p;
    size_t len;
    return wasmig_column_bytes_at(c, row, &p, &len) && len == n && memcmp(p, expected, n) == 0;
}

static bool text_at_is(const wasmig_column *c, size_t row, const char *expected) {
    const char *p;
    size_t len;
    return wasmig_column_text_at(c, row, &p, &len) && len == strlen(expected) &&
           memcmp(p, expected, len) == 0;
}

/* A batch as columns (PostgreSQL): written through UNNEST, read back, copied in. */
static bool check_columns(void) {
    if (wasmig_dialect() != WASMIG_POSTGRES) return true;
    if (!wasmig_batch("CREATE TEMPORARY TABLE tour_columns (id int8, label text, raw bytea)"))
        return false;
    static const int64_t ids[] = {1, 2, 3};
    static const char wide[] = "wide \xc3\xa9\xf0\x9f\x98\x80";
    char labels[64] = "plain";
    strcat(labels, wide);
    const uint32_t label_ends[] = {5, 5, (uint32_t)strlen(labels)};
    static const bool label_nulls[] = {false, true, false};
    static const uint8_t raw[] = {1};
    static const uint32_t raw_ends[] = {1, 1, 1};
    static const bool raw_nulls[] = {false, true, false};
    wasmig_column written[] = {
        wasmig_column_int64(ids, 3, NULL),
        wasmig_column_text(labels, strlen(labels), label_ends, 3, label_nulls),
        wasmig_column_bytes(raw, 1, raw_ends, 3, raw_nulls),
    };
    uint64_t n = 0;
    if (!wasmig_execute_columns(
            "INSERT INTO tour_columns SELECT * FROM UNNEST($1::int8[], $2::text[], $3::bytea[])",
            written, 3, &n))
        return false;
    CHECK(n == 3);
    wasmig_columns batch;
    if (!wasmig_query_columns("SELECT id, label, raw FROM tour_columns ORDER BY id", NULL, 0, &batch))
        return false;
    const int64_t *got = wasmig_column_int64s(wasmig_columns_get(&batch, 0));
    const wasmig_column *label = wasmig_columns_get(&batch, wasmig_columns_index(&batch, "label"));
    const wasmig_column *bytes = wasmig_columns_get(&batch, 2);
    bool ok = wasmig_columns_len(&batch) == 3 && wasmig_columns_width(&batch) == 3 && got != NULL &&
              got[0] == 1 && got[1] == 2 && got[2] == 3 && label != NULL &&
              text_at_is(label, 0, "plain") && wasmig_column_is_null(label, 1) &&
              text_at_is(label, 2, wide) && wasmig_column_int64s(label) == NULL &&
              bytes_are(bytes, 0, raw, 1) && wasmig_column_is_null(bytes, 1) &&
              bytes_are(bytes, 2, raw, 0);
    wasmig_columns_free(&batch);
    CHECK(ok);
    /* An empty first text is a row like any other; a commit past what was reserved
     * fails the column. */
    wasmig_text_column edge;
    wasmig_text_column_init(&edge);
    bool empty_first = wasmig_text_column_push(&edge, "", 0) && wasmig_text_column_push(&edge, "a", 1);
    wasmig_column two = wasmig_text_column_get(&edge);
    empty_first = empty_first && wasmig_column_len(&two) == 2 && text_at_is(&two, 0, "") &&
                  text_at_is(&two, 1, "a");
    bool overrun = wasmig_text_column_reserve(&edge, 2) != NULL &&
                   !wasmig_text_column_commit(&edge, 3) && edge.failed;
    wasmig_text_column_free(&edge);
    CHECK(empty_first && overrun);
    /* A text column built row by row, copied in. */
    wasmig_text_column built;
    wasmig_text_column_init(&built);
    char *at = wasmig_text_column_reserve(&built, 16);
    CHECK(at != NULL);
    memcpy(at, "copied", 6);
    CHECK(wasmig_text_column_commit(&built, 6));
    static const int64_t four[] = {4};
    static const char *const names[] = {"id", "label"};
    wasmig_column copied[] = {wasmig_column_int64(four, 1, NULL), wasmig_text_column_get(&built)};
    ok = wasmig_copy_in_columns("tour_columns", names, 2, copied, &n);
    wasmig_text_column_free(&built);
    if (!ok) return false;
    CHECK(n == 1);
    wasmig_rows rows;
    if (!wasmig_query("SELECT label FROM tour_columns WHERE id = 4", NULL, 0, &rows)) return false;
    ok = text_is(wasmig_rows_get(&rows, 0, 0), "copied");
    wasmig_rows_free(&rows);
    CHECK(ok);
    return wasmig_batch("DROP TABLE tour_columns");
}

static bool first_batch(void) {
    wasmig_info(wasmig_dialect() == WASMIG_POSTGRES ? "dialect: postgres" : "dialect: sqlite");
    if (!check_values() || !check_columns()) return false;
    if (!wasmig_batch("CREATE TABLE tour (id BIGINT PRIMARY KEY, label TEXT NOT NULL, note TEXT)")) return false;
    const char *insert = insert_sql();
    uint64_t n = 0;
    wasmig_value one[] = {wasmig_int64(1), wasmig_text("one"), wasmig_null()};
    if (!wasmig_execute(insert, one, 3, &n)) return false;
    CHECK(n == 1);
    wasmig_value more[] = {wasmig_int64(2), wasmig_text("two"), wasmig_text("n2"),
                           wasmig_int64(3), wasmig_text("three"), wasmig_null()};
    if (!wasmig_execute_many(insert, more, 3, 2, &n)) return false;
    CHECK(n == 2);

    wasmig_savepoint sp;
    if (!wasmig_savepoint_begin(&sp)) return false;
    wasmig_value duplicate[] = {wasmig_int64(1), wasmig_text("duplicate"), wasmig_null()};
    CHECK(!wasmig_execute(insert, duplicate, 3, NULL));
    const wasmig_error *e = wasmig_last_error();
    CHECK(e != NULL);
    char caught[64] = "caught ", logged[256] = "caught ";
    strncat(caught, e->code, 40);
    strncat(logged, e->code, 40);
    strcat(logged, ": ");
    strncat(logged, e->message, 200);
    wasmig_info(logged);
    if (!wasmig_savepoint_rollback(&sp)) return false;
    wasmig_value four[] = {wasmig_int64(4), wasmig_text(caught), wasmig_null()};
    return wasmig_execute(insert, four, 3, NULL);
}

static bool second_batch(void) {
    wasmig_rows rows;
    if (!wasmig_query("SELECT id, label, note FROM tour ORDER BY id", NULL, 0, &rows)) return false;
    char summary[512] = "";
    for (size_t i = 0; i < wasmig_rows_len(&rows); i++) {
        int64_t id, by_name;
        char digits[21];
        CHECK(wasmig_value_int64(wasmig_rows_get(&rows, i, 0), &id));
        CHECK(wasmig_value_int64(wasmig_rows_get_named(&rows, i, "id"), &by_name) && id == by_name);
        char *label = wasmig_value_strdup(wasmig_rows_get(&rows, i, 1));
        const wasmig_value *note = wasmig_rows_get_named(&rows, i, "note");
        char *note_text = wasmig_value_is_null(note) ? NULL : wasmig_value_strdup(note);
        if (i) strcat(summary, ",");
        strcat(summary, wasmig_format_int(digits, id));
        strcat(summary, "=");
        strcat(summary, label);
        strcat(summary, "/");
        strcat(summary, note_text ? note_text : "-");
        free(label);
        free(note_text);
    }
    wasmig_rows_free(&rows);
    wasmig_value five[] = {wasmig_int64(5), wasmig_text(summary), wasmig_null()};
    const char *const columns[] = {"id", "label", "note"};
    uint64_t written = 0;
    if (!wasmig_copy_in("tour", columns, 3, five, 1, &written)) return false;
    CHECK(written == 1);

    wasmig_value forty_two[] = {wasmig_int64(42)};
    if (!wasmig_query(wasmig_dialect() == WASMIG_POSTGRES ? "SELECT id FROM tour WHERE id = $1"
                                                          : "SELECT id FROM tour WHERE id = ?",
                      forty_two, 1, &rows))
        return false;
    CHECK(wasmig_rows_len(&rows) == 0);
    wasmig_rows_free(&rows);
    wasmig_progress(1, 1);
    return true;
}

static bool upgrade(void) {
    char *checkpoint = wasmig_checkpoint();
    if (checkpoint == NULL) {
        if (!first_batch()) return false;
        wasmig_next_batch("summary");
        return true;
    }
    char message[96] = "second batch, from checkpoint ";
    strncat(message, checkpoint, 40);
    free(checkpoint);
    wasmig_info(message);
    return second_batch();
}

static bool downgrade(void) {
    wasmig_rows rows;
    if (!wasmig_query("SELECT label FROM tour WHERE id = 1", NULL, 0, &rows)) return false;
    char *label = wasmig_value_strdup(wasmig_rows_get_named(&rows, 0, "label"));
    bool fail = label && strcmp(label, "fail-downgrade") == 0;
    bool fail_utf8 = label && strcmp(label, "fail-utf8") == 0;
    free(label);
    wasmig_rows_free(&rows);
    if (fail_utf8) return wasmig_fail("an error with a stray \xff byte");
    if (fail && !wasmig_execute("INSERT INTO no_such_table VALUES (1)", NULL, 0, NULL)) return false;
    return wasmig_batch("DROP TABLE tour");
}

WASMIG_MIGRATION(upgrade, downgrade)
