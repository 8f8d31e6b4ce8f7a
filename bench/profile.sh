# The profile pass of bench/run (sourced by it, after the timed rounds; nothing here is
# timed into the results). Writes into $PROF, which bench/report.py reads:
#   rtt.txt              pgbench latency of `SELECT 1` on one connection (the round trip)
#   json.<run>.json      `wasmig --json up` reports: per-step duration_ms, load_ms, batches
#   stderr.<run>.log     `wasmig -v up` stderr with a monotonic µs timestamp per line
#   wall.tsv             run wall_us of each profiled run
#   pglog.<run>.log      the server's log lines for that run's database, every statement
#                        logged with its duration (log_min_duration_statement = 0)
#   strace.<run>.txt     strace -f -c: the client's network syscalls
#   trace.<run>.txt      strace -f -ttt of sendto/recvfrom with the first bytes sent: which
#                        statement the client waits on, when (per-phase client time); with
#                        --seccomp-bpf only these calls stop the process
#   perf.<run>.txt       perf report (self time by symbol) of a cpu-clock profile at 1999 Hz,
#                        when perf works here
#   steps.tsv            bench/native steps: the database side of N steps replayed as wasmig
#                        runs them and with the proposed changes (strategy, migration, round)
#   probe.tsv            bench/probe: compile times of the N Rust components with Cranelift
#                        and Winch, one at a time and in parallel, and their deserialization
# Each part is skipped, with a note in meta, when its tool is missing.

prof_note() { meta "profile.$1" "$2"; }

# stamped ERR OUT CMD...: runs CMD with stdout into OUT and stderr into ERR, each stderr line
# preceded by a monotonic timestamp in µs taken as it arrives.
cat >"$WORK/stamp.py" <<'PY'
import sys, time
for line in sys.stdin:
    sys.stdout.write(f"{time.monotonic_ns() // 1000} {line}")
    sys.stdout.flush()
PY
stamped() {
    local err=$1 out=$2; shift 2
    "$@" 2> >(python3 -u "$WORK/stamp.py" >"$err") >"$out"
    wait $! 2>/dev/null || true
}

# prof_wall NAME CMD...: runs CMD, appends NAME and its wall time (µs) to wall.tsv.
prof_wall() {
    local name=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    "$@"
    t1=$(date +%s%N)
    printf '%s\t%s\n' "$name" "$(((t1 - t0) / 1000))" >>"$PROF/wall.tsv"
}

# --- the round trip
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -n1 || true)
if [ -n "$PGBENCH" ]; then
    echo "SELECT 1;" >"$WORK/select1.sql"
    "$PGBENCH" -n -c 1 -T 3 -M prepared -f "$WORK/select1.sql" "$(pg_url postgres)" >"$PROF/rtt.txt" 2>&1 ||
        prof_note rtt "pgbench failed: $(tail -n1 "$PROF/rtt.txt")"
else
    prof_note rtt "pgbench not found"
fi

# --- per-step timings from wasmig itself: --json (duration_ms, load_ms) and -v (stderr,
# timestamped), cold and warm.
wasmig_json() { # wasmig_json RUN PROJECT CACHE: fresh db, `--json -v up --no-build`, then again
    local run=$1 project=$2 cache=$3 db=bench_prof
    fresh_db "$db"
    prof_wall "$run" stamped "$PROF/stderr.$run.log" "$PROF/json.$run.json" \
        env WASMIG_CACHE_DIR="$cache" "$WASMIG" --json -v -C "$project" --database-url "$(pg_url "$db")" up --no-build
    # Nothing to do, on the database just migrated.
    prof_wall "noop_$run" stamped "$PROF/stderr.noop_$run.log" "$PROF/json.noop_$run.json" \
        env WASMIG_CACHE_DIR="$cache" "$WASMIG" --json -v -C "$project" --database-url "$(pg_url "$db")" up --no-build
    drop_db "$db"
}
wasmig_json wasmig_sql "$SQLP" "$CACHE/wasmig-sql"
rm -rf "$CACHE/wasmig-rust"
wasmig_json wasmig_rust_cold "$RUSTP" "$CACHE/wasmig-rust"
wasmig_json wasmig_rust_warm "$RUSTP" "$CACHE/wasmig-rust"
rm -rf "$CACHE/wasmig-wasm"
wasmig_json wasmig_wasm_cold "$WASMP" "$CACHE/wasmig-wasm"
wasmig_json wasmig_wasm_warm "$WASMP" "$CACHE/wasmig-wasm"
# The batched transform: batches per step, on a copy of the template.
fresh_db bench_prof bench_tpl
prof_wall batched stamped "$PROF/stderr.batched.log" "$PROF/json.batched.json" \
    env WASMIG_CACHE_DIR="$CACHE/batched" "$WASMIG" --json -v -C "$BENCH/batched" --database-url "$(pg_url bench_prof)" up --no-build
drop_db bench_prof

# --- what each tool sends, as the server logs it. The setting is per database (ALTER
# DATABASE), so it applies to every client of that database and to nothing else.
PG_MAJOR=$(scalar postgres "SELECT current_setting('server_version_num')::int / 10000")
PG_LOG=${BENCH_PG_LOG:-/var/log/postgresql/postgresql-$PG_MAJOR-main.log}
LOG_DEST=$(scalar postgres "SELECT current_setting('log_destination') || ',' || current_setting('logging_collector')")
if [ -r "$PG_LOG" ] && [ "$LOG_DEST" = "stderr,off" ]; then
    pglog_filter() { # pglog_filter DB: the lines of the server log (stdin) for database DB
        python3 -c '
import re, sys
db = sys.argv[1]
keep = False
for line in sys.stdin:
    m = re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] (\S*)@(\S*) ", line)
    if m:
        keep = m.group(2) == db
    elif not re.match(r"^\d{4}-\d\d-\d\d ", line) and keep:
        pass  # a continuation line of a kept entry
    else:
        keep = False
    if keep:
        sys.stdout.write(line)
' "$1"
    }
    pglog_run() { # pglog_run RUN TOOL: fresh db with statement logging, TOOL's run, then its noop
        local run=$1 tool=$2 db=bench_pglog off
        fresh_db "$db"
        psqlq postgres -c "ALTER DATABASE $db SET log_min_duration_statement = 0" \
            -c "ALTER DATABASE $db SET log_parameter_max_length = 0"
        for phase in "$run" "noop_$run"; do
            [ "$phase" = "noop_$run" ] && [ "$tool" = psql ] && continue
            off=$(stat -c %s "$PG_LOG")
            tool_cmd "$tool" "$db"
            "${CMD[@]}" >/dev/null 2>&1 || prof_note "pglog.$phase" "the run failed"
            sleep 0.5 # the server writes its log asynchronously to the client
            tail -c +"$((off + 1))" "$PG_LOG" | pglog_filter "$db" >"$PROF/pglog.$phase.log"
        done
        drop_db "$db"
    }
    for tool in psql wasmig_sql wasmig_rust "${ACTIVE_PEERS[@]}"; do
        [ -n "${PEER_FAILED[$tool]:-}" ] || pglog_run "$tool" "$tool"
    done
    # The transform, wasmig against native: the same statements, the same server time?
    for v in wasmig native; do
        fresh_db bench_pglog bench_tpl
        psqlq postgres -c "ALTER DATABASE bench_pglog SET log_min_duration_statement = 0" \
            -c "ALTER DATABASE bench_pglog SET log_parameter_max_length = 0"
        off=$(stat -c %s "$PG_LOG")
        if [ $v = wasmig ]; then
            WASMIG_CACHE_DIR="$CACHE/project" "$WASMIG" -q -C "$BENCH/project" --database-url "$(pg_url bench_pglog)" up --no-build >/dev/null 2>&1
        else
            "$NATIVE" "$(pg_url bench_pglog)" update >/dev/null 2>&1
        fi || prof_note "pglog.transform_$v" "the run failed"
        sleep 0.5
        tail -c +"$((off + 1))" "$PG_LOG" | pglog_filter bench_pglog >"$PROF/pglog.transform_$v.log"
        drop_db bench_pglog
    done
else
    prof_note pglog "skipped: the server log $PG_LOG is not readable here, or the server does not log to stderr without the collector ($LOG_DEST); set BENCH_PG_LOG"
fi

# --- network syscalls of the client (strace -c), and a timeline of what it waits on.
if command -v strace >/dev/null && strace -f -c -o /dev/null true 2>/dev/null; then
    for tool in wasmig_sql wasmig_rust "${ACTIVE_PEERS[@]}"; do
        [ -n "${PEER_FAILED[$tool]:-}" ] && continue
        fresh_db bench_strace
        tool_cmd "$tool" bench_strace
        strace -f -c -e trace=%network,read,write -o "$PROF/strace.$tool.txt" "${CMD[@]}" >/dev/null 2>&1 ||
            prof_note "strace.$tool" "the run failed under strace"
        drop_db bench_strace
    done
    # A timeline of what each client sends and when, for a run and for its nothing-to-do.
    trace() { # trace NAME CMD...
        local name=$1; shift
        prof_wall "trace_$name" strace -f --seccomp-bpf -ttt -e signal=none -s 256 \
            -e trace=execve,connect,close,sendto,recvfrom,read,write -o "$PROF/trace.$name.txt" \
            "$@" >/dev/null 2>&1 || prof_note "trace.$name" "the run failed under strace"
    }
    for tool in wasmig_sql wasmig_rust sqlx dbmate; do
        case $tool in sqlx | dbmate) [ -n "${PEER_CMD[$tool]:-}" ] && [ -z "${PEER_FAILED[$tool]:-}" ] || continue ;; esac
        fresh_db bench_strace
        tool_cmd "$tool" bench_strace
        trace "$tool" "${CMD[@]}"
        trace "noop_$tool" "${CMD[@]}"
        drop_db bench_strace
    done
else
    prof_note strace "skipped: strace is missing or cannot trace here"
fi

# --- what the proposed per-step changes would gain: bench/native replays the database side of
# wasmig's steps as wasmig runs them and as the host could (see bench/native/src/steps.rs).
fresh_db bench_steps
"$NATIVE" "$(pg_url bench_steps)" steps "$REVS" 5 >"$PROF/steps.tsv" 2>"$LOG/steps.log" ||
    prof_note steps "the replay failed: $(tail -n1 "$LOG/steps.log")"
drop_db bench_steps

# --- what compiling the components costs, and would cost with Winch or in parallel.
say "building the compile probe (bench/probe)"
if (cd "$BENCH/probe" && CARGO_TARGET_DIR=$WASMIG_TARGET cargo build -q --release) >"$LOG/probe-build.log" 2>&1; then
    "$WASMIG_TARGET/release/wasmig-bench-probe" "$RUSTP"/.wasmig/build/*.wasm >"$PROF/probe.tsv" 2>"$LOG/probe.log" ||
        prof_note probe "the probe failed: $(tail -n1 "$LOG/probe.log")"
else
    prof_note probe "cargo build of bench/probe failed: $(tail -n1 "$LOG/probe-build.log")"
fi

# --- perf: where the CPU goes, for the transform (wasmig against native) and a cold compile.
if command -v perf >/dev/null && perf record -e cpu-clock -o "$WORK/perf.probe" true >/dev/null 2>&1; then
    perf_run() { # perf_run RUN DB-TEMPLATE CMD...
        local run=$1 tpl=$2; shift 2
        fresh_db bench_perf $tpl
        perf record -e cpu-clock -F 1999 -o "$WORK/perf.$run.data" "$@" >/dev/null 2>&1 ||
            prof_note "perf.$run" "the run failed under perf"
        perf report -i "$WORK/perf.$run.data" --stdio --no-children --sort dso,sym \
            2>/dev/null | grep -v '^$' >"$PROF/perf.$run.txt"
        drop_db bench_perf
    }
    perf_run transform_wasmig bench_tpl env WASMIG_CACHE_DIR="$CACHE/project" "$WASMIG" -q -C "$BENCH/project" --database-url "$(pg_url bench_perf)" up --no-build
    perf_run transform_native bench_tpl "$NATIVE" "$(pg_url bench_perf)" update
    perf_run transform_wasmig_copy bench_tpl env WASMIG_CACHE_DIR="$CACHE/copy" "$WASMIG" -q -C "$BENCH/copy" --database-url "$(pg_url bench_perf)" up --no-build
    perf_run transform_native_copy bench_tpl "$NATIVE" "$(pg_url bench_perf)" copy
    rm -rf "$CACHE/wasmig-rust-perf"
    perf_run rust_cold "" env WASMIG_CACHE_DIR="$CACHE/wasmig-rust-perf" "$WASMIG" -q -C "$RUSTP" --database-url "$(pg_url bench_perf)" up --no-build
    perf_run rust_warm "" env WASMIG_CACHE_DIR="$CACHE/wasmig-rust-perf" "$WASMIG" -q -C "$RUSTP" --database-url "$(pg_url bench_perf)" up --no-build
    # Nothing to do: 10 runs in one profile (one is too short to sample well).
    fresh_db bench_perf
    tool_cmd wasmig_sql bench_perf
    "${CMD[@]}" >/dev/null 2>&1 || prof_note perf.noop "the run failed"
    perf record -e cpu-clock -F 1999 -o "$WORK/perf.noop_wasmig_sql.data" \
        bash -c 'for i in 1 2 3 4 5 6 7 8 9 10; do "$@" || exit 1; done' _ "${CMD[@]}" >/dev/null 2>&1 ||
        prof_note perf.noop "the run failed under perf"
    perf report -i "$WORK/perf.noop_wasmig_sql.data" --stdio --no-children --comm wasmig,tokio-rt-worker \
        --sort dso,sym 2>/dev/null | grep -v '^$' >"$PROF/perf.noop_wasmig_sql.txt"
    drop_db bench_perf
    rm -f "$WORK"/perf.*.data "$WORK/perf.probe"
else
    prof_note perf "skipped: perf is missing or cannot record cpu-clock here"
fi
