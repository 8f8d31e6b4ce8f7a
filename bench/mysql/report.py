#!/usr/bin/env python3
"""Writes bench/mysql/run's Markdown section (for BENCHMARKS.md) from what it measured.

Inputs: results.tsv (name round wall_us rss_kib user_s sys_s), meta.tsv (key value) and,
if the statement counts ran, profile/general.log (the server's general log of the
untimed runs, phases separated by `SELECT 'bench-mysql-phase NAME'`).
"""

import argparse
import collections
import os
import re
import statistics

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--results", required=True)
p.add_argument("--meta", required=True)
p.add_argument("--profile", required=True)
p.add_argument("--out", required=True)
a = p.parse_args()

runs = collections.defaultdict(dict)  # name -> round -> (wall_s, rss_kib, cpu_s)
for line in open(a.results):
    name, rnd, us, rss, user, sys_ = line.rstrip("\n").split("\t")
    runs[name][int(rnd)] = (int(us) / 1e6, int(rss), float(user) + float(sys_))
meta = {}
for line in open(a.meta):
    k, _, v = line.rstrip("\n").partition("\t")
    meta[k] = v
rows = int(meta["rows"])
revs = int(meta["revisions"])
rounds = int(meta["rounds"])
timed = list(range(1, rounds + 1))

L = []
w = L.append


def med(name, i=0):
    return statistics.median(runs[name][r][i] for r in timed)


def spread(name):
    xs = [runs[name][r][0] for r in timed]
    return f"{med(name):.2f} s ({min(xs):.2f}-{max(xs):.2f})"


def ratio(name, base):
    if base not in runs or name == base:
        return "1.00x" if name == base else "-"
    per = [runs[name][r][0] / runs[base][r][0] for r in timed]
    return f"{med(name) / med(base):.2f}x ({min(per):.2f}-{max(per):.2f})"


def rss(name):
    return f"{max(runs[name][r][1] for r in timed) / 1024:.1f} MiB"


def cpu(name):
    return f"{med(name, 2):.2f} s"


w("## MariaDB: the revisions and the 1M-row transform beside dbmate (issue 17)")
w("")
w(f"Written by `bench/mysql/run` (release build). On one MariaDB server, in {rounds} interleaved "
  "rounds (the order of the tools rotates from round to round), after one untimed priming run "
  "of each: (a) "
  f"{revs} `CREATE TABLE` revisions on a fresh database (bench/gen.py's, with MySQL's "
  "`TIMESTAMP(6)` for `timestamptz`), applied by the floor (the `mysql` client running the "
  f"{revs} scripts from one file, one connection), by wasmig ({revs} SQL revisions) and by "
  "dbmate (the same SQL, `-- migrate:up` / `-- migrate:down`); (b) the same command again with "
  f"nothing to do; (c) the {rows:,}-row e-mail normalisation of bench/run "
  "(`email_norm = LOWER(TRIM(email))`) as the same SQL file for every tool, "
  f"{-(-rows // int(meta['batch'])):,} `UPDATE`s of {int(meta['batch']):,} consecutive ids "
  "(MySQL has no anonymous block to loop in, so the keyset batches are written out), run by the "
  "floor (the `mysql` client, between `START TRANSACTION` and `COMMIT`), by wasmig (one SQL "
  "revision: data statements only, so one transaction with its record) and by dbmate (one "
  "transaction; the file sent as one multi-statement message), and by bench/project's Rust "
  "guest (its `Dialect::Mysql` arm: keyset batches of 10,000 read with `db::query`, normalised "
  "in Rust and written back with one `INSERT ... ON DUPLICATE KEY UPDATE` of 20,000 `?` "
  "parameters per batch; one transaction), each on a fresh copy of the template table (not "
  "timed). Medians, min-max over the rounds in brackets; a ratio is of the medians, with the "
  "min-max of the per-round ratios in brackets. Wall time of the whole client process, "
  "start-up and connections included; peak RSS is the client's largest over the rounds "
  "(GNU time), CPU its user + system time (median); the server's are not counted. Every run "
  "is checked afterwards (tables made and versions recorded, nothing marked failed; every row "
  "normalised, compared byte for byte; the revision recorded). The script reports; it never "
  "fails on a slow number.")
w("")
if meta.get("note"):
    w(meta["note"])
    w("")
w("Reproduce (MariaDB on 127.0.0.1:3306, root without a password; dbmate 2.36.0 from npm):")
w("")
w("```sh")
w("CARGO_TARGET_DIR=/var/tmp/wasmig-target cargo build --release --locked -p wasmig-cli")
w(meta["command"])
w("```")
w("")
w("Machine and load:")
w("")
w(f"- CPU: {meta['cpu']}; the server on the same machine (loopback)")
w(f"- server: {meta['server']}; {meta['server_settings']}")
w(f"- wasmig: {meta['wasmig']}")
w(f"- dbmate: {meta['dbmate']}")
w(f"- mysql client: {meta['client']}")
per_round = ", ".join(meta.get(f"load.round{r}", "?").split()[0] for r in timed)
rustc = ", ".join(meta.get(f"rustc.round{r}", "?") for r in timed)
w(f"- load average (1, 5, 15 min): {meta['load.start']} at the start of the rounds, "
  f"{meta['load.end']} at the end; 1-minute load at the start of each round: {per_round}; "
  f"`rustc` processes running at the start of each round: {rustc}")
w(f"- busiest processes at the start: {meta.get('busy.start', '?')}; at the end: {meta.get('busy.end', '?')}")
w("")

w(f"### (a) {revs} `CREATE TABLE` revisions on a fresh database")
w("")
w("| tool | wall time | per revision | vs dbmate | vs the floor | peak RSS | CPU |")
w("| --- | --- | --- | --- | --- | --- | --- |")
for name, label in [("rev_floor", "floor: `mysql` client, one file"),
                    ("rev_wasmig", f"wasmig, {revs} SQL revisions"),
                    ("rev_dbmate", f"dbmate, {revs} migrations")]:
    if name not in runs:
        continue
    w(f"| {label} | {spread(name)} | {med(name) / revs * 1000:.1f} ms | {ratio(name, 'rev_dbmate')} "
      f"| {ratio(name, 'rev_floor')} | {rss(name)} | {cpu(name)} |")
w("")
w(f"### (b) Nothing to do ({revs} revisions applied)")
w("")
w("| tool | wall time | vs dbmate | peak RSS | CPU |")
w("| --- | --- | --- | --- | --- |")
for name, label in [("noop_wasmig", "wasmig"), ("noop_dbmate", "dbmate")]:
    if name in runs:
        w(f"| {label} | {spread(name)} | {ratio(name, 'noop_dbmate')} | {rss(name)} | {cpu(name)} |")
w("")
w(f"### (c) Transform of {rows:,} rows")
w("")
w("| variant | wall time | vs dbmate | vs the floor | peak RSS | CPU |")
w("| --- | --- | --- | --- | --- | --- |")
for name, label in [("t_floor", "floor: `mysql` client, the file in one transaction"),
                    ("t_wasmig", "wasmig, the file as one SQL revision"),
                    ("t_dbmate", "dbmate, the file as one migration"),
                    ("t_guest", "wasmig, bench/project's Rust guest (`?` arm)")]:
    if name in runs:
        w(f"| {label} | {spread(name)} | {ratio(name, 't_dbmate')} | {ratio(name, 't_floor')} "
          f"| {rss(name)} | {cpu(name)} |")
w("")
per = []
for r in timed:
    per.append(" / ".join(f"{runs[n][r][0]:.2f}" for n in ("rev_floor", "rev_wasmig", "rev_dbmate") if n in runs))
w(f"Per round (s), (a) floor / wasmig / dbmate: {'; '.join(per)}.")
per = []
names = [n for n in ("t_floor", "t_wasmig", "t_dbmate", "t_guest") if n in runs]
for r in timed:
    per.append(" / ".join(f"{runs[n][r][0]:.2f}" for n in names))
w(f"(c) {' / '.join(n[2:] for n in names)}: {'; '.join(per)}.")
w("")

# ---------------------------------------------------------------- general log
GL = os.path.join(a.profile, "general.tsv")


def unescape(text):
    """The mysql client's batch-mode escapes (\\n, \\t, \\\\) undone."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "0": "\0"}.get(m.group(1), m.group(1)), text)


def shape_of(cmd, text):
    """A statement with its literals elided, to group the log's requests."""
    if cmd == "Connect":
        return "(connect: TCP, handshake, authentication)"
    t = " ".join(text.split())
    t = re.sub(r"'[^']*'", "'…'", t)
    t = re.sub(r"\bt\d+\b", "t…", t)
    t = re.sub(r"\bwasmig_[0-9a-f]{32}\b", "wasmig_<uuid>", t)
    t = re.sub(r"\b\d+(\.\d+)?\b", "N", t)
    t = re.sub(r"(\(\?, \?\), )+\(\?, \?\)", "(?, ?), … (?, ?)", t)
    t = re.sub(r"(\(N, '…'\), )+\(N, '…'\)", "(N, '…'), … (N, '…')", t)
    if len(t) > 100:
        t = t[:97] + "…"
    return t.replace("|", "\\|").replace("`", "'")


if os.path.exists(GL):
    events = []  # [time, thread, command, text]
    for line in open(GL, errors="replace"):
        parts = line.rstrip("\n").split("\t", 3)
        if len(parts) == 4:
            events.append([float(parts[0]), int(parts[1]), parts[2], unescape(parts[3])])
    threads_db = {}
    phases = collections.OrderedDict()  # phase -> (start time, [events]), end time
    bounds = []
    for ev in events:
        t, tid, cmd, text = ev
        if cmd == "Connect":
            mm = re.search(r" on (\S*)", text)
            threads_db[tid] = mm.group(1) if mm else ""
        mm = re.match(r"SELECT 'bench-mysql-phase (\S+)'", text) if cmd == "Query" else None
        if mm:
            bounds.append((mm.group(1), t))
            phases[mm.group(1)] = []
            continue
        if bounds and threads_db.get(tid, "").startswith("bench_mysql_prof_"):
            phases[bounds[-1][0]].append(ev)
    end_of = {bounds[i][0]: bounds[i + 1][1] for i in range(len(bounds) - 1)}
    start_of = dict(bounds)
    labels = {"rev_floor": f"(a) floor, {revs} revisions", "rev_wasmig": f"(a) wasmig, {revs} revisions",
              "rev_dbmate": f"(a) dbmate, {revs} revisions", "noop_wasmig": "(b) wasmig, nothing to do",
              "noop_dbmate": "(b) dbmate, nothing to do", "t_floor": "(c) floor", "t_wasmig": "(c) wasmig, SQL revision",
              "t_dbmate": "(c) dbmate", "t_guest": "(c) wasmig, Rust guest"}

    def split_time(ph):
        """Each gap between two requests of the phase, charged to the first one's shape (or
        to the connect, when the second is a Connect: the handshake happens before the
        server logs it); the start-up before the first request, and the phase's span."""
        evs = phases[ph]
        by = collections.defaultdict(lambda: [0, 0.0])
        for i, (t, tid, cmd, text) in enumerate(evs):
            by[(cmd, shape_of(cmd, text))][0] += 1
            if i + 1 < len(evs):
                nxt = evs[i + 1]
                key = ("Connect", shape_of("Connect", "")) if nxt[2] == "Connect" else (cmd, shape_of(cmd, text))
                by[key][1] += nxt[0] - t
        startup = evs[0][0] - start_of[ph] if evs else 0.0
        span = evs[-1][0] - evs[0][0] if evs else 0.0
        return by, startup, span

    w("### Where the time goes: the requests each tool sends, from the server's general log")
    w("")
    w("One more run of each, not timed, with `general_log` on (written to its table, "
      "`mysql.general_log`, with microsecond times; set back afterwards). A request is one "
      "command the client waits on (`Quit` and `Close stmt` get no answer): a round trip. `Query` "
      "is a text message (one may hold several statements), `Prepare`/`Execute` the "
      "prepared-statement protocol. \"Span\" is the server's time from the run's first request to "
      "its last; \"before\" the time from the script's marker to the first request (the "
      "client's start-up and its first connection). The log itself slows every request a "
      "little: read the spans against each other, not against the timed runs.")
    w("")
    w("| run | connections | requests (round trips) | Query | Prepare | Execute | Close stmt | requests per revision | span | before |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for ph, evs in phases.items():
        if ph not in labels:
            continue
        c = collections.Counter(cmd for _, _, cmd, _ in evs)
        req = sum(v for k, v in c.items() if k not in ("Quit", "Close stmt", "Connect"))
        per_rev = f"{req / revs:.1f}" if ph.startswith("rev_") else "-"
        _, startup, span = split_time(ph)
        w(f"| {labels[ph]} | {c['Connect']} | {req} | {c['Query']} | {c['Prepare']} | {c['Execute']} "
          f"| {c['Close stmt']} | {per_rev} | {span:.2f} s | {startup * 1000:.0f} ms |")
    w("")
    for ph, top in (("rev_wasmig", 20), ("rev_dbmate", 8), ("noop_wasmig", 10), ("t_wasmig", 8), ("t_guest", 8)):
        if ph not in phases or not phases[ph]:
            continue
        by, startup, span = split_time(ph)
        n = revs if ph.startswith("rev_") else 1
        unit = "per revision" if n > 1 else "per run"
        w(f"{labels[ph]}: the time between requests, charged to the request before it (its "
          "server time, the round trip and the client's time to send the next), by statement "
          f"shape (literals elided), largest first; span {span:.2f} s:")
        w("")
        w(f"| time | share | {unit} (count) | command | statement |")
        w("| --- | --- | --- | --- | --- |")
        rows_ = sorted(by.items(), key=lambda kv: -kv[1][1])
        for (cmd, shape), (count, secs) in rows_[:top]:
            w(f"| {secs * 1000:.0f} ms | {secs / span * 100 if span else 0:.1f}% | {secs / n * 1000:.2f} ms ({count / n:g}) | {cmd} | `{shape}` |")
        rest = rows_[top:]
        if rest:
            secs = sum(v[1] for _, v in rest)
            count = sum(v[0] for _, v in rest)
            w(f"| {secs * 1000:.0f} ms | {secs / span * 100 if span else 0:.1f}% | {secs / n * 1000:.2f} ms ({count / n:g}) | | {len(rest)} other shapes |")
        w("")
else:
    w(f"Statement counts: {meta.get('profile', 'not run (BENCH_PROFILE=0)')}.")
    w("")

open(a.out, "w").write("\n".join(L) + "\n")
