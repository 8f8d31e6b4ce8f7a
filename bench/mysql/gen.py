#!/usr/bin/env python3
"""Generates the files of bench/mysql/run: bench/gen.py's revisions in MySQL's SQL, and the
1M-row transform as one SQL revision, for wasmig, dbmate and the mysql client alike.

Written under OUT:

  mysql.sql                   the N up scripts concatenated (the floor: `mysql DB < mysql.sql`)
  wasmig-sql/                 a wasmig project of N SQL revisions (s001 ...)
  dbmate/                     dbmate: <n>_t<i>.sql with -- migrate:up / -- migrate:down
  transform.sql               the transform's statements: the table's ids are 1..ROWS (the
                              script's template makes them so), updated in ranges of BATCH
  transform-floor.sql         the same between START TRANSACTION and COMMIT (the floor)
  wasmig-transform/           a wasmig project of one SQL revision holding transform.sql
  dbmate-transform/           dbmate: the same file as its one migration

The revisions are bench/gen.py's with the one type MySQL lacks replaced: `timestamptz` by
`TIMESTAMP(6)` (stored as UTC) with `CURRENT_TIMESTAMP(6)` for `now()`. Files are rewritten only
when their content changes; revisions beyond N from an earlier, larger run are removed.
"""

import argparse
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import gen  # noqa: E402  (bench/gen.py: write, prune, manifest, the project's layout)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--revisions", type=int, required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    n, out = a.revisions, a.out
    width = max(3, len(str(n)))

    revs = []
    for i in range(1, n + 1):
        num = f"{i:0{width}d}"
        table = f"t{num}"
        revs.append(
            dict(
                num=num,
                table=table,
                up=f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, "
                f"created_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6));",
                down=f"DROP TABLE {table};",
            )
        )
    gen.write(f"{out}/mysql.sql", "".join(r["up"] + "\n" for r in revs))

    root = f"{out}/wasmig-sql"
    gen.write(f"{root}/wasmig.toml", gen.WASMIG_TOML)
    keep, prev = set(), None
    for r in revs:
        rev = f"s{r['num']}"
        d = f"{gen.DIR_PREFIX}{rev}_{r['table']}"
        keep.add(d)
        gen.write(f"{root}/versions/{d}/migration.toml", gen.manifest(rev, prev, r["table"], "sql"))
        gen.write(f"{root}/versions/{d}/up.sql", r["up"] + "\n")
        gen.write(f"{root}/versions/{d}/down.sql", r["down"] + "\n")
        prev = rev
    gen.prune(f"{root}/versions", keep)

    keep = set()
    for i, r in enumerate(revs, 1):
        name = f"{i:04d}_{r['table']}.sql"
        keep.add(name)
        gen.write(f"{out}/dbmate/{name}", f"-- migrate:up\n{r['up']}\n\n-- migrate:down\n{r['down']}\n")
    gen.prune(f"{out}/dbmate", keep)

    # The transform: e-mail normalisation as bench/run's floor does it (keyset batches of
    # 10,000 in one transaction), with the batches' bounds written out, since MySQL has no
    # anonymous block to loop in (a stored procedure would be DDL, committed on its own).
    up = "".join(
        f"UPDATE people SET email_norm = LOWER(TRIM(email)) WHERE id BETWEEN {lo} AND {min(lo + a.batch - 1, a.rows)};\n"
        for lo in range(1, a.rows + 1, a.batch)
    )
    down = "UPDATE people SET email_norm = NULL;\n"
    gen.write(f"{out}/transform.sql", up)
    gen.write(f"{out}/transform-floor.sql", "START TRANSACTION;\n" + up + "COMMIT;\n")
    root = f"{out}/wasmig-transform"
    gen.write(f"{root}/wasmig.toml", gen.WASMIG_TOML)
    d = f"{gen.DIR_PREFIX}x001_normalise_people"
    gen.write(f"{root}/versions/{d}/migration.toml", gen.manifest("x001", None, "normalise people", "sql"))
    gen.write(f"{root}/versions/{d}/up.sql", up)
    gen.write(f"{root}/versions/{d}/down.sql", down)
    gen.prune(f"{root}/versions", {d})
    gen.write(f"{out}/dbmate-transform/0001_normalise_people.sql", f"-- migrate:up\n{up}\n-- migrate:down\n{down}")
    gen.prune(f"{out}/dbmate-transform", {"0001_normalise_people.sql"})


if __name__ == "__main__":
    sys.exit(main())
