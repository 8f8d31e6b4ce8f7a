/*
 * wasmig.c: the C SDK's implementation over the generated bindings (migration.h). See
 * wasmig.h for the API and its memory rules. Uses no stdio, so the module imports no WASI.
 */
#include "wasmig.h"

#include <stdlib.h>
#include <string.h>

/* ---- values ------------------------------------------------------------------------ */

wasmig_value wasmig_null(void) {
    wasmig_value v;
    memset(&v, 0, sizeof v);
    v.tag = WASMIG_MIGRATION_TYPES_VALUE_NULL;
    return v;
}

wasmig_value wasmig_bool(bool b) {
    wasmig_value v = wasmig_null();
    v.tag = WASMIG_MIGRATION_TYPES_VALUE_BOOL;
    v.val.bool_ = b;
    return v;
}

wasmig_value wasmig_int16(int16_t n) {
    wasmig_value v = wasmig_null();
    v.tag = WASMIG_MIGRATION_TYPES_VALUE_INT16;
    v.val.int16 = n;
    return v;
}

wasmig_value wasmig_int32(int32_t n) {
    wasmig_value v = wasmig_null();
    v.tag = WASMIG_MIGRATION_TYPES_VALUE_INT32;
    v.val.int32 = n;
    return v;
}

wasmig_value wasmig_int64(int64_t n) {
    wasmig_value v = wasmig_null();
    v.tag = WASMIG_MIGRATION_TYPES_VALUE_INT64;
    v.val.int64 = n;
    return v;
}

wasmig_value wasmig_float32(float f) {
    wasmig_value v = wasmig_null();
    v.tag = WASMIG_MIGRATION_TYPES_VALUE_FLOAT32;
    v.val.float32 = f;
    return v;
}

wasmig_value wasmig_float64(double f) {
    wasmig_value v = wasmig_null();
    v.tag = WASMIG_MIGRATION_TYPES_VALUE_FLOAT64;
    v.val.float64 = f;
    return v;
}

/* Every text-format variant case has a migration_string_t payload at the same place. */
static bool is_text_tag(uint8_t tag) {
    switch (tag) {
    case WASMIG_MIGRATION_TYPES_VALUE_NUMERIC:
    case WASMIG_MIGRATION_TYPES_VALUE_TEXT:
    case WASMIG_MIGRATION_TYPES_VALUE_JSON:
    case WASMIG_MIGRATION_TYPES_VALUE_JSONB:
    case WASMIG_MIGRATION_TYPES_VALUE_UUID:
    case WASMIG_MIGRATION_TYPES_VALUE_DATE:
    case WASMIG_MIGRATION_TYPES_VALUE_TIME:
    case WASMIG_MIGRATION_TYPES_VALUE_TIMESTAMP:
    case WASMIG_MIGRATION_TYPES_VALUE_TIMESTAMPTZ:
        return true;
    default:
        return false;
    }
}

wasmig_value wasmig_textn(const char *s, size_t len) {
    wasmig_value v = wasmig_null();
    v.tag = WASMIG_MIGRATION_TYPES_VALUE_TEXT;
    v.val.text.ptr = (uint8_t *)s;
    v.val.text.len = len;
    return v;
}

wasmig_value wasmig_text(const char *s) { return wasmig_textn(s, strlen(s)); }

wasmig_value wasmig_typed_text(uint8_t tag, const char *s) {
    wasmig_value v = wasmig_text(s);
    if (is_text_tag(tag)) {
        migration_string_t text = v.val.text;
        v.tag = tag;
        v.val.text = text;
    }
    return v;
}

wasmig_value wasmig_bytes(const uint8_t *data, size_t len) {
    wasmig_value v = wasmig_null();
    v.tag = WASMIG_MIGRATION_TYPES_VALUE_BYTES;
    v.val.bytes.ptr = (uint8_t *)data;
    v.val.bytes.len = len;
    return v;
}

bool wasmig_value_is_null(const wasmig_value *v) {
    return v == NULL || v->tag == WASMIG_MIGRATION_TYPES_VALUE_NULL;
}

bool wasmig_value_int64(const wasmig_value *v, int64_t *out) {
    if (v == NULL) return false;
    switch (v->tag) {
    case WASMIG_MIGRATION_TYPES_VALUE_INT16: *out = v->val.int16; return true;
    case WASMIG_MIGRATION_TYPES_VALUE_INT32: *out = v->val.int32; return true;
    case WASMIG_MIGRATION_TYPES_VALUE_INT64: *out = v->val.int64; return true;
    default: return false;
    }
}

bool wasmig_value_float64(const wasmig_value *v, double *out) {
    int64_t n;
    if (v == NULL) return false;
    switch (v->tag) {
    case WASMIG_MIGRATION_TYPES_VALUE_FLOAT32: *out = v->val.float32; return true;
    case WASMIG_MIGRATION_TYPES_VALUE_FLOAT64: *out = v->val.float64; return true;
    default:
        if (!wasmig_value_int64(v, &n)) return false;
        *out = (double)n;
        return true;
    }
}

bool wasmig_value_bool(const wasmig_value *v, bool *out) {
    if (v == NULL || v->tag != WASMIG_MIGRATION_TYPES_VALUE_BOOL) return false;
    *out = v->val.bool_;
    return true;
}

bool wasmig_value_text(const wasmig_value *v, const char **ptr, size_t *len) {
    if (v == NULL || !is_text_tag(v->tag)) return false;
    *ptr = (const char *)v->val.text.ptr;
    *len = v->val.text.len;
    return true;
}

static char *strndup_or_null(const uint8_t *p, size_t len) {
    char *s = malloc(len + 1);
    if (s == NULL) return NULL;
    if (len) memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

char *wasmig_value_strdup(const wasmig_value *v) {
    const char *p;
    size_t len;
    if (!wasmig_value_text(v, &p, &len)) return NULL;
    return strndup_or_null((const uint8_t *)p, len);
}

/* ---- errors ------------------------------------------------------------------------ */

static wasmig_error last_error;
static bool has_error;
static char *fail_message;

static void free_error(void) {
    free((char *)last_error.code);
    free((char *)last_error.message);
    free((char *)last_error.detail);
    free((char *)last_error.hint);
    free((char *)last_error.constraint);
    free((char *)last_error.table);
    free((char *)last_error.column);
    memset(&last_error, 0, sizeof last_error);
    has_error = false;
}

static const char *copy_string(const migration_string_t *s) { return strndup_or_null(s->ptr, s->len); }

static const char *copy_option(const migration_option_string_t *s) {
    return s->is_some ? copy_string(&s->val) : NULL;
}

/* Records a call's outcome: clears the last error on success, keeps a copy of it on
 * failure (and frees the bindings' copy). Returns `ok`. */
static bool outcome(bool ok, wasmig_migration_sql_sql_error_t *err) {
    free_error();
    if (ok) return true;
    last_error.code = copy_string(&err->code);
    last_error.message = copy_string(&err->message);
    last_error.detail = copy_option(&err->detail);
    last_error.hint = copy_option(&err->hint);
    last_error.constraint = copy_option(&err->constraint);
    last_error.table = copy_option(&err->table);
    last_error.column = copy_option(&err->column);
    has_error = true;
    wasmig_migration_sql_sql_error_free(err);
    return false;
}

const wasmig_error *wasmig_last_error(void) { return has_error ? &last_error : NULL; }

bool wasmig_fail(const char *message) {
    free(fail_message);
    fail_message = strndup_or_null((const uint8_t *)message, strlen(message));
    return false;
}

/* ---- statements -------------------------------------------------------------------- */

int wasmig_dialect(void) { return wasmig_migration_sql_dialect(); }

static wasmig_migration_sql_list_value_t list_of(const wasmig_value *params, size_t n) {
    wasmig_migration_sql_list_value_t list;
    list.ptr = (wasmig_value *)params;
    list.len = params == NULL ? 0 : n;
    return list;
}

bool wasmig_batch(const char *script) {
    migration_string_t s;
    wasmig_migration_sql_sql_error_t err;
    migration_string_set(&s, script);
    return outcome(wasmig_migration_sql_batch(&s, &err), &err);
}

bool wasmig_execute(const char *sql, const wasmig_value *params, size_t n, uint64_t *affected) {
    migration_string_t s;
    wasmig_migration_sql_list_value_t list = list_of(params, n);
    wasmig_migration_sql_sql_error_t err;
    uint64_t count = 0;
    migration_string_set(&s, sql);
    bool ok = outcome(wasmig_migration_sql_execute(&s, &list, &count, &err), &err);
    if (ok && affected) *affected = count;
    return ok;
}

bool wasmig_execute_many(const char *sql, const wasmig_value *params, size_t cols, size_t rows,
                         uint64_t *affected) {
    migration_string_t s;
    wasmig_migration_sql_list_list_value_t all;
    wasmig_migration_sql_sql_error_t err;
    uint64_t count = 0;
    all.len = rows;
    all.ptr = rows ? malloc(rows * sizeof *all.ptr) : NULL;
    if (rows && all.ptr == NULL) return wasmig_fail("out of memory in wasmig_execute_many");
    for (size_t i = 0; i < rows; i++) all.ptr[i] = list_of(params + i * cols, cols);
    migration_string_set(&s, sql);
    bool ok = outcome(wasmig_migration_sql_execute_many(&s, &all, &count, &err), &err);
    free(all.ptr);
    if (ok && affected) *affected = count;
    return ok;
}

bool wasmig_copy_in(const char *table, const char *const *columns, size_t cols,
                    const wasmig_value *params, size_t rows, uint64_t *written) {
    migration_string_t t;
    migration_list_string_t names;
    wasmig_migration_sql_list_row_t all;
    wasmig_migration_sql_sql_error_t err;
    uint64_t count = 0;
    names.len = cols;
    names.ptr = cols ? malloc(cols * sizeof *names.ptr) : NULL;
    all.len = rows;
    all.ptr = rows ? malloc(rows * sizeof *all.ptr) : NULL;
    if ((cols && names.ptr == NULL) || (rows && all.ptr == NULL)) {
        free(names.ptr);
        free(all.ptr);
        return wasmig_fail("out of memory in wasmig_copy_in");
    }
    for (size_t i = 0; i < cols; i++) migration_string_set(&names.ptr[i], columns[i]);
    for (size_t i = 0; i < rows; i++) {
        all.ptr[i].ptr = (wasmig_value *)(params + i * cols);
        all.ptr[i].len = cols;
    }
    migration_string_set(&t, table);
    bool ok = outcome(wasmig_migration_sql_copy_in(&t, &names, &all, &count, &err), &err);
    free(names.ptr);
    free(all.ptr);
    if (ok && written) *written = count;
    return ok;
}

bool wasmig_query(const char *sql, const wasmig_value *params, size_t n, wasmig_rows *out) {
    migration_string_t s;
    wasmig_migration_sql_list_value_t list = list_of(params, n);
    wasmig_migration_sql_query_result_t result;
    wasmig_migration_sql_sql_error_t err;
    memset(out, 0, sizeof *out);
    migration_string_set(&s, sql);
    if (!outcome(wasmig_migration_sql_query(&s, &list, &result, &err), &err)) return false;
    out->columns = result.columns;
    out->rows = result.rows;
    out->owns_columns = true;
    return true;
}

size_t wasmig_rows_len(const wasmig_rows *rows) { return rows->rows.len; }

size_t wasmig_rows_width(const wasmig_rows *rows) { return rows->columns.len; }

int wasmig_rows_column(const wasmig_rows *rows, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; i < rows->columns.len; i++) {
        const migration_string_t *c = &rows->columns.ptr[i].name;
        if (c->len == len && memcmp(c->ptr, name, len) == 0) return (int)i;
    }
    return -1;
}

const wasmig_value *wasmig_rows_get(const wasmig_rows *rows, size_t row, size_t column) {
    if (row >= rows->rows.len || column >= rows->rows.ptr[row].len) return NULL;
    return &rows->rows.ptr[row].ptr[column];
}

const wasmig_value *wasmig_rows_get_named(const wasmig_rows *rows, size_t row, const char *name) {
    int column = wasmig_rows_column(rows, name);
    return column < 0 ? NULL : wasmig_rows_get(rows, row, (size_t)column);
}

void wasmig_rows_free(wasmig_rows *rows) {
    wasmig_migration_types_list_row_free(&rows->rows);
    if (rows->owns_columns) wasmig_migration_types_list_column_free(&rows->columns);
    memset(rows, 0, sizeof *rows);
}

bool wasmig_cursor_open(const char *sql, const wasmig_value *params, size_t n, wasmig_cursor *out) {
    migration_string_t s;
    wasmig_migration_sql_list_value_t list = list_of(params, n);
    wasmig_migration_sql_sql_error_t err;
    wasmig_migration_sql_list_column_t columns;
    memset(out, 0, sizeof *out);
    migration_string_set(&s, sql);
    if (!outcome(wasmig_migration_sql_open_cursor(&s, &list, &out->handle, &err), &err)) return false;
    wasmig_migration_sql_method_cursor_columns(wasmig_migration_sql_borrow_cursor(out->handle), &columns);
    out->columns.ptr = columns.ptr;
    out->columns.len = columns.len;
    out->open = true;
    return true;
}

bool wasmig_cursor_next(wasmig_cursor *cursor, uint32_t max_rows, wasmig_rows *out) {
    wasmig_migration_sql_list_row_t rows;
    wasmig_migration_sql_sql_error_t err;
    memset(out, 0, sizeof *out);
    if (!cursor->open) return wasmig_fail("wasmig_cursor_next on a closed cursor");
    bool ok = wasmig_migration_sql_method_cursor_next(wasmig_migration_sql_borrow_cursor(cursor->handle),
                                                      max_rows, &rows, &err);
    if (!outcome(ok, &err)) return false;
    out->columns = cursor->columns;
    out->rows.ptr = rows.ptr;
    out->rows.len = rows.len;
    out->owns_columns = false;
    return true;
}

void wasmig_cursor_close(wasmig_cursor *cursor) {
    if (!cursor->open) return;
    wasmig_migration_sql_cursor_drop_own(cursor->handle);
    wasmig_migration_types_list_column_free(&cursor->columns);
    cursor->open = false;
}

/* ---- columns (WIT 0.4.0) ----------------------------------------------------------- */

typedef wasmig_migration_types_column_data_t column_data;

static wasmig_column column_of(uint8_t tag, size_t n, const bool *nulls) {
    wasmig_column c;
    memset(&c, 0, sizeof c);
    c.data.tag = tag;
    c.nulls.ptr = (bool *)nulls;
    c.nulls.len = nulls == NULL ? 0 : n;
    return c;
}

wasmig_column wasmig_column_bool(const bool *values, size_t n, const bool *nulls) {
    wasmig_column c = column_of(WASMIG_MIGRATION_TYPES_COLUMN_DATA_BOOL, n, nulls);
    c.data.val.bool_.ptr = (bool *)values;
    c.data.val.bool_.len = n;
    return c;
}

wasmig_column wasmig_column_int16(const int16_t *values, size_t n, const bool *nulls) {
    wasmig_column c = column_of(WASMIG_MIGRATION_TYPES_COLUMN_DATA_INT16, n, nulls);
    c.data.val.int16.ptr = (int16_t *)values;
    c.data.val.int16.len = n;
    return c;
}

wasmig_column wasmig_column_int32(const int32_t *values, size_t n, const bool *nulls) {
    wasmig_column c = column_of(WASMIG_MIGRATION_TYPES_COLUMN_DATA_INT32, n, nulls);
    c.data.val.int32.ptr = (int32_t *)values;
    c.data.val.int32.len = n;
    return c;
}

wasmig_column wasmig_column_int64(const int64_t *values, size_t n, const bool *nulls) {
    wasmig_column c = column_of(WASMIG_MIGRATION_TYPES_COLUMN_DATA_INT64, n, nulls);
    c.data.val.int64.ptr = (int64_t *)values;
    c.data.val.int64.len = n;
    return c;
}

wasmig_column wasmig_column_float32(const float *values, size_t n, const bool *nulls) {
    wasmig_column c = column_of(WASMIG_MIGRATION_TYPES_COLUMN_DATA_FLOAT32, n, nulls);
    c.data.val.float32.ptr = (float *)values;
    c.data.val.float32.len = n;
    return c;
}

wasmig_column wasmig_column_float64(const double *values, size_t n, const bool *nulls) {
    wasmig_column c = column_of(WASMIG_MIGRATION_TYPES_COLUMN_DATA_FLOAT64, n, nulls);
    c.data.val.float64.ptr = (double *)values;
    c.data.val.float64.len = n;
    return c;
}

/* The packed text of a text-format column, or NULL for another type. */
static const wasmig_migration_types_packed_text_t *packed_text(const column_data *d) {
    switch (d->tag) {
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_NUMERIC: return &d->val.numeric;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_TEXT: return &d->val.text;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_JSON: return &d->val.json;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_JSONB: return &d->val.jsonb;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_UUID: return &d->val.uuid;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_DATE: return &d->val.date;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_TIME: return &d->val.time;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_TIMESTAMP: return &d->val.timestamp;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_TIMESTAMPTZ: return &d->val.timestamptz;
    default: return NULL;
    }
}

wasmig_column wasmig_column_typed_text(uint8_t tag, const char *text, size_t len,
                                       const uint32_t *ends, size_t n, const bool *nulls) {
    wasmig_column c = column_of(tag, n, nulls);
    if (packed_text(&c.data) == NULL) c.data.tag = WASMIG_MIGRATION_TYPES_COLUMN_DATA_TEXT;
    wasmig_migration_types_packed_text_t *p = (wasmig_migration_types_packed_text_t *)packed_text(&c.data);
    p->text.ptr = (uint8_t *)text;
    p->text.len = len;
    p->ends.ptr = (uint32_t *)ends;
    p->ends.len = n;
    return c;
}

wasmig_column wasmig_column_text(const char *text, size_t len, const uint32_t *ends, size_t n,
                                 const bool *nulls) {
    return wasmig_column_typed_text(WASMIG_MIGRATION_TYPES_COLUMN_DATA_TEXT, text, len, ends, n, nulls);
}

wasmig_column wasmig_column_bytes(const uint8_t *bytes, size_t len, const uint32_t *ends,
                                  size_t n, const bool *nulls) {
    wasmig_column c = column_of(WASMIG_MIGRATION_TYPES_COLUMN_DATA_BYTES, n, nulls);
    c.data.val.bytes.bytes.ptr = (uint8_t *)bytes;
    c.data.val.bytes.bytes.len = len;
    c.data.val.bytes.ends.ptr = (uint32_t *)ends;
    c.data.val.bytes.ends.len = n;
    return c;
}

size_t wasmig_column_len(const wasmig_column *c) {
    const column_data *d = &c->data;
    const wasmig_migration_types_packed_text_t *p = packed_text(d);
    if (p != NULL) return p->ends.len;
    switch (d->tag) {
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_BOOL: return d->val.bool_.len;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_INT16: return d->val.int16.len;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_INT32: return d->val.int32.len;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_INT64: return d->val.int64.len;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_FLOAT32: return d->val.float32.len;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_FLOAT64: return d->val.float64.len;
    case WASMIG_MIGRATION_TYPES_COLUMN_DATA_BYTES: return d->val.bytes.ends.len;
    default: return 0;
    }
}

bool wasmig_column_is_null(const wasmig_column *c, size_t row) {
    return row < c->nulls.len && c->nulls.ptr[row];
}

#define COLUMN_ARRAY(fn, type, case_, field)                                               \
    const type *fn(const wasmig_column *c) {                                               \
        return c->data.tag == (case_) ? (const type *)c->data.val.field.ptr : NULL;       \
    }
COLUMN_ARRAY(wasmig_column_bools, bool, WASMIG_MIGRATION_TYPES_COLUMN_DATA_BOOL, bool_)
COLUMN_ARRAY(wasmig_column_int16s, int16_t, WASMIG_MIGRATION_TYPES_COLUMN_DATA_INT16, int16)
COLUMN_ARRAY(wasmig_column_int32s, int32_t, WASMIG_MIGRATION_TYPES_COLUMN_DATA_INT32, int32)
COLUMN_ARRAY(wasmig_column_int64s, int64_t, WASMIG_MIGRATION_TYPES_COLUMN_DATA_INT64, int64)
COLUMN_ARRAY(wasmig_column_float32s, float, WASMIG_MIGRATION_TYPES_COLUMN_DATA_FLOAT32, float32)
COLUMN_ARRAY(wasmig_column_float64s, double, WASMIG_MIGRATION_TYPES_COLUMN_DATA_FLOAT64, float64)
#undef COLUMN_ARRAY

/* Where row `row` lies in a packed buffer of `len` bytes whose rows end at `ends`. */
static bool span(const uint32_t *ends, size_t rows, size_t len, size_t row, size_t *start,
                 size_t *end) {
    if (row >= rows) return false;
    *start = row == 0 ? 0 : ends[row - 1];
    *end = ends[row];
    return *start <= *end && *end <= len;
}

bool wasmig_column_text_at(const wasmig_column *c, size_t row, const char **ptr, size_t *len) {
    const wasmig_migration_types_packed_text_t *p = packed_text(&c->data);
    size_t start, end;
    if (p == NULL || wasmig_column_is_null(c, row) ||
        !span(p->ends.ptr, p->ends.len, p->text.len, row, &start, &end))
        return false;
    *ptr = (const char *)p->text.ptr + start;
    *len = end - start;
    return true;
}

bool wasmig_column_bytes_at(const wasmig_column *c, size_t row, const uint8_t **ptr, size_t *len) {
    const wasmig_migration_types_packed_bytes_t *p = &c->data.val.bytes;
    size_t start, end;
    if (c->data.tag != WASMIG_MIGRATION_TYPES_COLUMN_DATA_BYTES || wasmig_column_is_null(c, row) ||
        !span(p->ends.ptr, p->ends.len, p->bytes.len, row, &start, &end))
        return false;
    *ptr = p->bytes.ptr + start;
    *len = end - start;
    return true;
}

void wasmig_text_column_init(wasmig_text_column *c) { memset(c, 0, sizeof *c); }

/* Room for one more row. */
static bool grow_rows(wasmig_text_column *c) {
    if (c->rows < c->rows_cap) return true;
    size_t want = c->rows_cap ? c->rows_cap * 2 : 1024;
    uint32_t *ends = realloc(c->ends, want * sizeof *ends);
    if (ends == NULL) return false;
    c->ends = ends;
    bool *nulls = realloc(c->nulls, want * sizeof *nulls);
    if (nulls == NULL) return false;
    c->nulls = nulls;
    c->rows_cap = want;
    return true;
}

char *wasmig_text_column_reserve(wasmig_text_column *c, size_t len) {
    if (c->failed) return NULL;
    /* The ends are 32-bit: the column's text stays under 4 GiB. */
    if (len > UINT32_MAX - c->len) {
        c->failed = true;
        return NULL;
    }
    size_t need = c->len + len;
    /* A first text may be empty: the buffer exists before it, so NULL means failure. */
    if (need > c->cap || c->text == NULL) {
        size_t want = c->cap ? c->cap : 4096;
        /* Doubling, without wrapping around a 32-bit size_t. */
        while (want < need) want = want > SIZE_MAX / 2 ? need : want * 2;
        char *text = realloc(c->text, want);
        if (text == NULL) {
            c->failed = true;
            return NULL;
        }
        c->text = text;
        c->cap = want;
    }
    c->reserved = len;
    return c->text + c->len;
}

/* Ends the current row, `written` bytes long (at most what was reserved for it), as a
 * value or a NULL. */
static bool end_row(wasmig_text_column *c, size_t written, bool null) {
    if (written > c->reserved) c->failed = true;
    c->reserved = 0;
    if (c->failed || !grow_rows(c)) {
        c->failed = true;
        return false;
    }
    c->len += written;
    c->ends[c->rows] = (uint32_t)c->len;
    c->nulls[c->rows] = null;
    c->any_null |= null;
    c->rows++;
    return true;
}

bool wasmig_text_column_commit(wasmig_text_column *c, size_t written) {
    return end_row(c, written, false);
}

bool wasmig_text_column_push(wasmig_text_column *c, const char *s, size_t len) {
    char *at = wasmig_text_column_reserve(c, len);
    if (at == NULL) return false;
    if (len) memcpy(at, s, len);
    return end_row(c, len, false);
}

bool wasmig_text_column_push_null(wasmig_text_column *c) { return end_row(c, 0, true); }

wasmig_column wasmig_text_column_get(const wasmig_text_column *c) {
    return wasmig_column_text(c->text, c->len, c->ends, c->rows, c->any_null ? c->nulls : NULL);
}

void wasmig_text_column_clear(wasmig_text_column *c) {
    c->len = 0;
    c->rows = 0;
    c->reserved = 0;
    c->any_null = false;
}

void wasmig_text_column_free(wasmig_text_column *c) {
    free(c->text);
    free(c->ends);
    free(c->nulls);
    memset(c, 0, sizeof *c);
}

bool wasmig_query_columns(const char *sql, const wasmig_value *params, size_t n,
                          wasmig_columns *out) {
    migration_string_t s;
    wasmig_migration_sql_list_value_t list = list_of(params, n);
    wasmig_migration_sql_sql_error_t err;
    memset(out, 0, sizeof *out);
    migration_string_set(&s, sql);
    return outcome(wasmig_migration_sql_query_columns(&s, &list, &out->result, &err), &err);
}

size_t wasmig_columns_len(const wasmig_columns *c) { return c->result.rows; }

size_t wasmig_columns_width(const wasmig_columns *c) { return c->result.values.len; }

int wasmig_columns_index(const wasmig_columns *c, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; i < c->result.columns.len; i++) {
        const migration_string_t *n = &c->result.columns.ptr[i].name;
        if (n->len == len && memcmp(n->ptr, name, len) == 0) return (int)i;
    }
    return -1;
}

const wasmig_column *wasmig_columns_get(const wasmig_columns *c, size_t column) {
    return column < c->result.values.len ? &c->result.values.ptr[column] : NULL;
}

void wasmig_columns_free(wasmig_columns *c) {
    wasmig_migration_types_column_result_free(&c->result);
    memset(c, 0, sizeof *c);
}

bool wasmig_execute_columns(const char *sql, const wasmig_column *columns, size_t n,
                            uint64_t *affected) {
    migration_string_t s;
    wasmig_migration_sql_list_column_values_t list;
    wasmig_migration_sql_sql_error_t err;
    uint64_t count = 0;
    list.ptr = (wasmig_column *)columns;
    list.len = columns == NULL ? 0 : n;
    migration_string_set(&s, sql);
    bool ok = outcome(wasmig_migration_sql_execute_columns(&s, &list, &count, &err), &err);
    if (ok && affected) *affected = count;
    return ok;
}

bool wasmig_copy_in_columns(const char *table, const char *const *names, size_t cols,
                            const wasmig_column *columns, uint64_t *written) {
    migration_string_t t;
    migration_list_string_t list_names;
    wasmig_migration_sql_list_column_values_t list;
    wasmig_migration_sql_sql_error_t err;
    uint64_t count = 0;
    list_names.len = cols;
    list_names.ptr = cols ? malloc(cols * sizeof *list_names.ptr) : NULL;
    if (cols && list_names.ptr == NULL) return wasmig_fail("out of memory in wasmig_copy_in_columns");
    for (size_t i = 0; i < cols; i++) migration_string_set(&list_names.ptr[i], names[i]);
    list.ptr = (wasmig_column *)columns;
    list.len = columns == NULL ? 0 : cols;
    migration_string_set(&t, table);
    bool ok = outcome(wasmig_migration_sql_copy_in_columns(&t, &list_names, &list, &count, &err), &err);
    free(list_names.ptr);
    if (ok && written) *written = count;
    return ok;
}

bool wasmig_savepoint_begin(wasmig_savepoint *out) {
    wasmig_migration_sql_sql_error_t err;
    memset(out, 0, sizeof *out);
    if (!outcome(wasmig_migration_sql_begin_savepoint(&out->handle, &err), &err)) return false;
    out->open = true;
    return true;
}

static bool end_savepoint(wasmig_savepoint *sp, bool release) {
    wasmig_migration_sql_sql_error_t err;
    if (!sp->open) return wasmig_fail("savepoint already released or rolled back");
    wasmig_migration_sql_borrow_savepoint_t b = wasmig_migration_sql_borrow_savepoint(sp->handle);
    bool ok = release ? wasmig_migration_sql_method_savepoint_release(b, &err)
                      : wasmig_migration_sql_method_savepoint_rollback(b, &err);
    /* Dropping after release or rollback ends it; a failed release is rolled back by the
     * drop, as the WIT says. */
    wasmig_migration_sql_savepoint_drop_own(sp->handle);
    sp->open = false;
    return outcome(ok, &err);
}

bool wasmig_savepoint_release(wasmig_savepoint *sp) { return end_savepoint(sp, true); }

bool wasmig_savepoint_rollback(wasmig_savepoint *sp) { return end_savepoint(sp, false); }

/* ---- batches ----------------------------------------------------------------------- */

char *wasmig_checkpoint(void) {
    migration_string_t cp;
    if (!wasmig_migration_batch_checkpoint(&cp)) return NULL;
    char *s = strndup_or_null(cp.ptr, cp.len);
    migration_string_free(&cp);
    return s;
}

void wasmig_next_batch(const char *checkpoint) {
    migration_string_t cp;
    migration_string_set(&cp, checkpoint);
    wasmig_migration_batch_next_batch(&cp);
}

/* ---- logging ----------------------------------------------------------------------- */

/* The length of the valid UTF-8 sequence that begins at `p` (before `end`), or 0 where
 * none does: a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, or
 * a sequence cut short. */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90; /* overlong */
        if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

/* `s` with each byte that begins no valid UTF-8 written as U+FFFD: text crosses to the
 * host as UTF-8, and a log line or the migration's error should never trap the component
 * for how it was made. A new string the caller frees; NULL when out of memory. */
static char *utf8_repaired(const char *s) {
    size_t len = strlen(s), o = 0;
    char *out = malloc(len * 3 + 1);
    if (out == NULL) return NULL;
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        size_t n = utf8_sequence(p, end);
        if (n > 0) {
            memcpy(out + o, p, n);
            o += n;
            p += n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            p += 1;
        }
    }
    out[o] = '\0';
    return out;
}

void wasmig_log(wasmig_migration_log_level_t level, const char *message) {
    char *repaired = utf8_repaired(message);
    migration_string_t s;
    migration_string_set(&s, repaired ? repaired : "(a log line lost: out of memory)");
    wasmig_migration_log_log(level, &s);
    free(repaired);
}

void wasmig_trace(const char *m) { wasmig_log(WASMIG_MIGRATION_LOG_LEVEL_TRACE, m); }
void wasmig_debug(const char *m) { wasmig_log(WASMIG_MIGRATION_LOG_LEVEL_DEBUG, m); }
void wasmig_info(const char *m) { wasmig_log(WASMIG_MIGRATION_LOG_LEVEL_INFO, m); }
void wasmig_warn(const char *m) { wasmig_log(WASMIG_MIGRATION_LOG_LEVEL_WARN, m); }
void wasmig_error_log(const char *m) { wasmig_log(WASMIG_MIGRATION_LOG_LEVEL_ERROR, m); }

void wasmig_progress(uint64_t done, uint64_t total) { wasmig_migration_log_progress(done, &total); }

void wasmig_progress_unknown(uint64_t done) { wasmig_migration_log_progress(done, NULL); }

char *wasmig_format_int(char *buf, int64_t v) {
    char digits[21];
    size_t n = 0, i = 0;
    /* Negate through unsigned so INT64_MIN works. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) buf[i++] = '-';
    while (n) buf[i++] = digits[--n];
    buf[i] = '\0';
    return buf;
}

/* ---- the migration ----------------------------------------------------------------- */

/* Appends `s` to the growing message `m` (of capacity `*cap`). */
static char *append(char *m, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t want = (*len + n + 1) * 2;
        char *bigger = realloc(m, want);
        if (bigger == NULL) return m;
        m = bigger;
        *cap = want;
    }
    memcpy(m + *len, s, n + 1);
    *len += n;
    return m;
}

bool wasmig__run(bool (*f)(void), migration_string_t *err) {
    free(fail_message);
    fail_message = NULL;
    free_error();
    if (f()) return true;
    size_t len = 0, cap = 0;
    char *m = NULL;
    if (fail_message != NULL) {
        m = append(m, &len, &cap, fail_message);
    } else if (has_error) {
        m = append(m, &len, &cap, last_error.message);
        m = append(m, &len, &cap, " (SQL error ");
        m = append(m, &len, &cap, last_error.code);
        m = append(m, &len, &cap, ")");
        if (last_error.detail) {
            m = append(m, &len, &cap, ": ");
            m = append(m, &len, &cap, last_error.detail);
        }
    } else {
        m = append(m, &len, &cap, "the migration returned false");
    }
    char *repaired = utf8_repaired(m ? m : "the migration failed");
    migration_string_dup(err, repaired ? repaired : "the migration failed");
    free(repaired);
    free(m);
    return false;
}
