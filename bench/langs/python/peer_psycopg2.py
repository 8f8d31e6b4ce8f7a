"""The 1M-row transform of `bench/run` in CPython with psycopg2, no Alembic: the peer of
the Python guest without Alembic's start-up (SQLAlchemy's import, the migration context).

`python peer_psycopg2.py DATABASE_URL`. The same statements as the guests and the native
programs: a keyset select per batch of 10,000, normalise in Python, one `UPDATE ... FROM
UNNEST` per batch (psycopg2 sends a list as an `ARRAY[...]` literal), one transaction.
"""

import sys

import psycopg2

# Rows per keyset batch.
BATCH = 10_000

SELECT = "SELECT id, email FROM people WHERE id > %s ORDER BY id LIMIT %s"
UPDATE = (
    "UPDATE people AS p SET email_norm = u.norm "
    "FROM UNNEST(%s::int8[], %s::text[]) AS u(id, norm) WHERE p.id = u.id"
)


def main(url):
    conn = psycopg2.connect(url)
    done = 0
    with conn:  # one transaction: committed when the block ends, rolled back on an error
        with conn.cursor() as cur:
            last = -(2**63)
            while True:
                cur.execute(SELECT, (last, BATCH))
                rows = cur.fetchall()
                if not rows:
                    break
                ids = [id_ for id_, _ in rows]
                norms = [email.strip().lower() for _, email in rows]
                last = ids[-1]
                cur.execute(UPDATE, (ids, norms))
                done += cur.rowcount
    conn.close()
    print(f"normalised {done} rows")


if __name__ == "__main__":
    main(sys.argv[1])
