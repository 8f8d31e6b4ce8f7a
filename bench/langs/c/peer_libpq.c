/*
 * The 1M-row transform of `bench/run` in C with libpq: the peer of the C guest.
 *
 * `peer_libpq DATABASE_URL` (bench/run builds it with `cc -O2 ... -lpq`). The same
 * statements as the guests and the native programs: a keyset select per batch of 10,000
 * (PQexecParams, text format), normalise in C (ASCII), one `UPDATE ... FROM UNNEST` per batch
 * with the two arrays sent as array literals in text format, one transaction.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

/* Rows per keyset batch. */
#define BATCH 10000

static const char *SELECT = "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2";
static const char *UPDATE = "UPDATE people AS p SET email_norm = u.norm "
                            "FROM UNNEST($1::int8[], $2::text[]) AS u(id, norm) WHERE p.id = u.id";

static void die(PGconn *conn, const char *what) {
    fprintf(stderr, "peer_libpq: %s: %s", what, PQerrorMessage(conn));
    PQfinish(conn);
    exit(1);
}

static void exec_ok(PGconn *conn, const char *sql) {
    PGresult *r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) die(conn, sql);
    PQclear(r);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: peer_libpq DATABASE_URL\n");
        return 2;
    }
    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) die(conn, "connecting");
    exec_ok(conn, "BEGIN");
    char last[24] = "-9223372036854775808", size[8];
    snprintf(size, sizeof size, "%d", BATCH);
    /* The two array literals, grown as needed: `{1,2}` and `{"a","b"}`. */
    size_t cap_ids = 1 << 16, cap_norms = 1 << 20;
    char *ids = malloc(cap_ids), *norms = malloc(cap_norms);
    uint64_t done = 0;
    for (;;) {
        const char *params[2] = {last, size};
        PGresult *rows = PQexecParams(conn, SELECT, 2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(rows) != PGRES_TUPLES_OK) die(conn, "select");
        int n = PQntuples(rows);
        if (n == 0) {
            PQclear(rows);
            break;
        }
        size_t li = 0, ln = 0;
        ids[li++] = '{';
        norms[ln++] = '{';
        for (int i = 0; i < n; i++) {
            const char *id = PQgetvalue(rows, i, 0), *email = PQgetvalue(rows, i, 1);
            size_t idlen = (size_t)PQgetlength(rows, i, 0), len = (size_t)PQgetlength(rows, i, 1);
            /* Worst case: every byte escaped, plus quotes, a comma and the closing brace. */
            while (li + idlen + 3 > cap_ids) ids = realloc(ids, cap_ids *= 2);
            while (ln + 2 * len + 5 > cap_norms) norms = realloc(norms, cap_norms *= 2);
            if (i) ids[li++] = ',', norms[ln++] = ',';
            memcpy(ids + li, id, idlen);
            li += idlen;
            while (len && isspace((unsigned char)*email)) email++, len--;
            while (len && isspace((unsigned char)email[len - 1])) len--;
            norms[ln++] = '"';
            for (size_t k = 0; k < len; k++) {
                char c = (char)tolower((unsigned char)email[k]);
                if (c == '"' || c == '\\') norms[ln++] = '\\';
                norms[ln++] = c;
            }
            norms[ln++] = '"';
            if (i == n - 1) snprintf(last, sizeof last, "%s", id);
        }
        ids[li++] = '}', ids[li] = '\0';
        norms[ln++] = '}', norms[ln] = '\0';
        PQclear(rows);
        const char *arrays[2] = {ids, norms};
        PGresult *r = PQexecParams(conn, UPDATE, 2, NULL, arrays, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) die(conn, "update");
        done += strtoull(PQcmdTuples(r), NULL, 10);
        PQclear(r);
    }
    exec_ok(conn, "COMMIT");
    free(ids);
    free(norms);
    PQfinish(conn);
    printf("normalised %" PRIu64 " rows\n", done);
    return 0;
}
