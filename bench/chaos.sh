#!/usr/bin/env bash
# Chaos suite for resumable migrations: `sluice copy` of a database table
# into PostgreSQL is killed with SIGKILL at random instants and re-run until
# it completes; the destination must then hold every source row exactly once
# with the same content. Nothing else may be written into the databases
# chaos_src and chaos_dst while it runs.
#
#   bench/chaos.sh [--quick]        --quick = QUICK=1 (for CI)
#
# Scenarios (SCENARIOS, space-separated, in this order):
#   pg          PostgreSQL chaos_src.events -> PostgreSQL chaos_dst
#   mysql       MariaDB chaos_src.events    -> PostgreSQL chaos_dst
#   pg-mysql    PostgreSQL chaos_src.events -> MariaDB chaos_dst
#   pg-restart  MariaDB -> PostgreSQL while PostgreSQL is stopped and started
#               again under the copy: the one run must finish by itself
#   rerun       PostgreSQL -> PostgreSQL, every way of running one command
#               again (see below); the kill instants may fall after the
#               run completed
#
# Per scenario, first an uninterrupted run (trial 0, the baseline) measures
# the time T of a whole copy and must copy exactly. Then every trial drops
# and recreates chaos_dst, gives sluice a fresh --state-dir, starts
#   sluice copy SRC postgres://.../chaos_dst --tables events --state-dir DIR
# kills it with SIGKILL at an instant uniform in [0.05 T, 0.95 T], counts the
# destination rows, and re-runs the same command (never --fresh) until it
# exits 0; each re-run is itself killed at a random instant with probability
# REKILL_PCT % (at most MAX_REKILLS times a trial). The destination is then
# checked against the source:
#   lost        source ids missing from the destination
#   duplicated  destination rows minus distinct destination ids
#   extra       destination ids the source does not have
#   checksum    counts and sums of id, user_id, score, price (in cents),
#               ok, comment lengths, computed on each server; and an md5
#               digest of the ten columns of every destination row, which
#               must equal the baseline run's (every value, either source)
# A trial of rerun kills the first run at an instant uniform in
# [0.55 T, 1.45 T] (after it completed, about half the time) and re-runs it
# until it exits 0; then runs the same command again (it must exit 0 and say
# the job is already complete), once with a second, empty state directory
# (the destination's own record must keep it from loading again), and once
# with --fresh, killed at another such instant and re-run until done. The
# destination is checked once, at the end: a load repeated anywhere along
# the way shows as duplicated rows.
# A trial is OK when the last run exited 0 and all four are clean. When no
# run completed (MAX_RUNS re-runs used up, or a run hung past RUN_TIMEOUT),
# lost and checksum are not measured ("-") and the trial fails. In
# pg-restart, kill_s and rows_at_kill are when PostgreSQL was stopped.
#
# Output: one line per trial on stdout, a summary table per scenario, the
# trials as TSV in bench/out/chaos/trials.tsv, each run's output in
# bench/out/chaos/logs/, sluice's state in bench/out/chaos/state/ (a failed
# trial's is kept; others are deleted). Exit status 1 if any trial (or
# baseline) failed, 2 on a usage error.
#
# Environment:
#   SLUICE          sluice binary (default: the release build in the target
#                   dir, ${CARGO_TARGET_DIR:-~/.cache/sluice/target}; a debug
#                   build works too: SLUICE=.../debug/sluice)
#   ROWS            rows in the source table (default 1000000; QUICK 100000)
#   TRIALS          killed trials per scenario (default 20; QUICK 3)
#   RESTART_TRIALS  trials of pg-restart (default 1)
#   SCENARIOS       default "pg mysql pg-mysql pg-restart rerun"
#   SEED            seed of the kill instants (default 1); the same SEED,
#                   scenario and trial give the same fractions of T
#   QUICK           1 = ROWS and TRIALS default to 100000 and 3
#   REGEN           1 = reload the source tables even if they hold ROWS rows
#   DATA_SEED       gen_table.py seed (default 42, as bench/db.sh, so the
#                   CSVs in bench/data/ are shared)
#   WINDOW          rows a resumed run may read again (default 360448, one
#                   in-flight window; see below); the trial fails beyond it
#   MAX_RUNS        re-runs allowed after the first kill (default 10)
#   REKILL_PCT      chance in % that a re-run is killed too (default 30)
#   MAX_REKILLS     re-runs killed at most per trial (default 1)
#   RUN_TIMEOUT     seconds a run that is not killed may take before it
#                   counts as hung (default: 10 T, at least 300)
#   RESTART_DOWN_S  seconds PostgreSQL stays down in pg-restart (default 2)
#   PG_CLUSTER      "VERSION NAME" of the cluster pg-restart stops and starts
#                   with pg_ctlcluster (default: first of /etc/postgresql, main)
#   PG_HOST PG_PORT PG_USER   PostgreSQL server (127.0.0.1, 5432, postgres)
#   MY_HOST MY_PORT MY_USER   MariaDB/MySQL server (127.0.0.1, 3306, root)
#
# Both servers must accept their user without a password. The script
# (re)creates the databases chaos_src and chaos_dst (PostgreSQL) and
# chaos_src (MariaDB) and leaves them behind. pg-restart restarts the local
# PostgreSQL cluster: every other client of it is disconnected.
set -euo pipefail

cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"; exit 0 ;;
        *) echo "error: unknown argument $arg (usage: bench/chaos.sh [--quick])" >&2; exit 2 ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    ROWS=${ROWS:-100000}
    TRIALS=${TRIALS:-3}
fi
SLUICE=${SLUICE:-${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}/release/sluice}
ROWS=${ROWS:-1000000}
TRIALS=${TRIALS:-20}
RESTART_TRIALS=${RESTART_TRIALS:-1}
SCENARIOS=${SCENARIOS:-pg mysql pg-mysql pg-restart rerun}
SEED=${SEED:-1}
REGEN=${REGEN:-0}
DATA_SEED=${DATA_SEED:-42}
MAX_RUNS=${MAX_RUNS:-10}
REKILL_PCT=${REKILL_PCT:-30}
MAX_REKILLS=${MAX_REKILLS:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-}
RESTART_DOWN_S=${RESTART_DOWN_S:-2}
# Rows one in-flight window holds with sluice's defaults: 32768-row batches,
# 4 in the channel before the transforms, 4 before the sink, 1 being
# written, 1 per reader (2 cores). A resumed run may re-read at most this.
WINDOW=${WINDOW:-360448}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
MY_HOST=${MY_HOST:-127.0.0.1}
MY_PORT=${MY_PORT:-3306}
MY_USER=${MY_USER:-root}
SRC_DB=chaos_src
DST_DB=chaos_dst
TABLE=events
DATA=bench/data
OUT=bench/out/chaos
LOGS=$OUT/logs
STATES=$PWD/$OUT/state
TRIALS_TSV=$OUT/trials.tsv

for v in ROWS TRIALS RESTART_TRIALS SEED MAX_RUNS REKILL_PCT MAX_REKILLS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "error: $v must be a whole number, not '${!v}'" >&2; exit 2; }
done
[ "$ROWS" -gt 0 ] || { echo "error: ROWS must be at least 1" >&2; exit 2; }
[[ $RESTART_DOWN_S =~ ^[0-9]+(\.[0-9]+)?$ ]] \
    || { echo "error: RESTART_DOWN_S must be a number of seconds" >&2; exit 2; }
[ -z "$RUN_TIMEOUT" ] || [[ $RUN_TIMEOUT =~ ^[0-9]+$ ]] \
    || { echo "error: RUN_TIMEOUT must be a whole number of seconds" >&2; exit 2; }
for sc in $SCENARIOS; do
    case $sc in
        pg | mysql | pg-mysql | pg-restart | rerun) ;;
        *) echo "error: SCENARIOS takes pg, mysql, pg-mysql, pg-restart and rerun, not $sc" >&2; exit 2 ;;
    esac
done

export PGSSLMODE=disable
# EPOCHREALTIME and awk's numbers with a decimal point whatever the locale.
export LC_NUMERIC=C
PG_BASE="$PG_USER@$PG_HOST:$PG_PORT"
MY_BASE="$MY_USER@$MY_HOST:$MY_PORT"
# Where the copy goes: PostgreSQL, or MariaDB in the pg-mysql scenario.
DEST=pg
dst_url() {
    if [ "$DEST" = mysql ]; then echo "mysql://$MY_BASE/$DST_DB"; else echo "postgres://$PG_BASE/$DST_DB"; fi
}

log() { printf '== %s\n' "$*" >&2; }

# --- clients -------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
    apt-get install -y -qq "$@"
}
command -v psql >/dev/null || apt_install postgresql-client
command -v mariadb >/dev/null || apt_install mariadb-client

if [ ! -x "$SLUICE" ]; then
    echo "error: no sluice binary at $SLUICE" >&2
    echo "build it first: cargo build --release -p sluice-cli" >&2
    echo "(or set SLUICE=/path/to/sluice)" >&2
    exit 1
fi

# --- servers -------------------------------------------------------------------

pg() {  # DB [psql args...]
    local db=$1
    shift
    PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 \
        -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"
}
my() {  # [mariadb args...]
    mariadb --local-infile=1 -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" "$@"
}

pg postgres -Atc 'SELECT 1' >/dev/null \
    || { echo "error: no PostgreSQL at $PG_BASE" >&2; exit 1; }
case " $SCENARIOS " in
    *" mysql "* | *" pg-mysql "* | *" pg-restart "*)
        my -e 'SELECT 1' >/dev/null \
            || { echo "error: no MariaDB/MySQL at $MY_BASE" >&2; exit 1; } ;;
esac

recreate_pg_db() {  # DB
    pg postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" \
        -c "CREATE DATABASE $1"
}

# pg-restart stops and starts the local cluster as .ci/run starts it.
if [ -n "${PG_CLUSTER:-}" ]; then
    read -r PG_CLUSTER_VERSION PG_CLUSTER_NAME <<< "$PG_CLUSTER"
else
    PG_CLUSTER_VERSION=$(ls /etc/postgresql 2>/dev/null | head -n1 || true)
    PG_CLUSTER_NAME=main
fi
pg_cluster() {  # stop|start
    pg_ctlcluster --skip-systemctl-redirect "$PG_CLUSTER_VERSION" "$PG_CLUSTER_NAME" "$1"
}
pg_wait_ready() {  # seconds
    for _ in $(seq $(($1 * 10))); do
        pg postgres -Atc 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# --- cleanup -------------------------------------------------------------------

RUN_PID=""
PG_DOWN=0
cleanup() {
    if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
        kill -9 "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    if [ "$PG_DOWN" = 1 ]; then
        log "starting PostgreSQL again (stopped by pg-restart)"
        pg_cluster start || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- sources -------------------------------------------------------------------

# The table of bench/db.sh, named events; the key is added after the load.
PG_TABLE="CREATE TABLE $TABLE (
  id bigint NOT NULL,
  user_id integer,
  amount double precision,
  price numeric(7,2),
  created_at timestamp,
  event_date date,
  code text,
  comment text,
  ok boolean,
  score integer)"

MY_TABLE="CREATE TABLE $TABLE (
  id BIGINT NOT NULL PRIMARY KEY,
  user_id INT,
  amount DOUBLE,
  price DECIMAL(7,2),
  created_at DATETIME,
  event_date DATE,
  code VARCHAR(8),
  comment VARCHAR(200),
  ok BOOLEAN,
  score INT) ENGINE=InnoDB"

# Counts and sums every server computes alike whatever column types sluice
# chose in the destination (price may be numeric or double, ok boolean or a
# small integer): a source and its copy must give the same line.
# Sums are coalesced: concat_ws skips NULLs, and an empty table sums to NULL.
pg_digest_sql() {  # TABLE
    echo "SELECT concat_ws(' ', count(*), coalesce(sum(id), 0),
      coalesce(sum(user_id), 0), count(score), coalesce(sum(score), 0),
      coalesce(sum(round(price * 100)::bigint), 0), count(comment),
      coalesce(sum(length(comment)), 0), coalesce(sum(ok::int), 0),
      count(created_at), count(event_date)) FROM $1"
}
MY_DIGEST="SELECT CONCAT_WS(' ', count(*), coalesce(sum(id), 0),
  coalesce(sum(user_id), 0), count(score), coalesce(sum(score), 0),
  coalesce(sum(round(price * 100)), 0), count(comment),
  coalesce(sum(char_length(comment)), 0), coalesce(sum(ok), 0),
  count(created_at), count(event_date)) FROM $TABLE"

# Every value of every row of a destination table, order-independent: the
# sum of 60 bits of each row's md5 (numeric, so no overflow). The columns are
# named so that a column sluice might add (a load time, say) is left out.
pg_rows_digest_sql() {  # TABLE
    echo "SELECT coalesce(sum(('x' || left(md5(row(id, user_id, amount, price,
      created_at, event_date, code, comment, ok, score)::text), 15))::bit(60)::bigint), 0)
      FROM $1"
}

label() {  # 1000000 -> 1m, 5000 -> 5k
    local n=$1
    if [ $((n % 1000000)) = 0 ]; then echo "$((n / 1000000))m"
    elif [ $((n % 1000)) = 0 ]; then echo "$((n / 1000))k"
    else echo "$n"; fi
}

ensure_data() {  # ROWS FILE (as in bench/db.sh: the files are shared)
    local rows=$1 file=$2
    # Rows never contain newlines, so lines = rows + header.
    if [ -f "$file" ] && [ "$(wc -l < "$file")" = $((rows + 1)) ]; then
        log "using existing $file"
        return
    fi
    python3 -c 'import duckdb' 2>/dev/null || pip install -q duckdb
    log "generating $file ($rows rows, seed $DATA_SEED)"
    python3 bench/gen_table.py --rows "$rows" --seed "$DATA_SEED" --out "$file"
}

CSV=$DATA/t$(label "$ROWS").csv

load_pg_source() {
    ensure_data "$ROWS" "$CSV"
    log "loading $CSV into PostgreSQL $SRC_DB.$TABLE"
    recreate_pg_db "$SRC_DB"
    pg "$SRC_DB" -c "$PG_TABLE" \
        -c "\\copy $TABLE FROM '$CSV' WITH (FORMAT csv, HEADER)" \
        -c "ALTER TABLE $TABLE ADD PRIMARY KEY (id)" \
        -c "VACUUM (FREEZE, ANALYZE) $TABLE"
}

load_my_source() {
    ensure_data "$ROWS" "$CSV"
    log "loading $CSV into MariaDB $SRC_DB.$TABLE"
    my -e "DROP DATABASE IF EXISTS $SRC_DB;
           CREATE DATABASE $SRC_DB CHARACTER SET utf8mb4"
    # As bench/db.sh: empty fields are NULL (only score has any); created_at
    # loses its 'T'; ok arrives as the words true/false.
    my "$SRC_DB" -e "$MY_TABLE;
        SET unique_checks = 0, foreign_key_checks = 0;
        LOAD DATA LOCAL INFILE '$CSV' INTO TABLE $TABLE CHARACTER SET utf8mb4
          FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY ''
          LINES TERMINATED BY '\\n' IGNORE 1 LINES
          (id, user_id, amount, price, @created_at, event_date, code,
           comment, @ok, @score)
          SET created_at = REPLACE(@created_at, 'T', ' '),
              ok = (@ok = 'true'),
              score = NULLIF(@score, '');
        ANALYZE TABLE $TABLE;" > /dev/null
}

pg_source_rows() { pg "$SRC_DB" -Atc "SELECT count(*) FROM $TABLE" 2>/dev/null || echo none; }
my_source_rows() { my -N -B "$SRC_DB" -e "SELECT count(*) FROM $TABLE" 2>/dev/null || echo none; }

# setup_source pg|mysql: the table with ROWS rows (reused when it has them),
# its ids in $OUT/src_ids_KIND.txt and its digest in SRC_DIGEST[KIND].
declare -A SRC_DIGEST=() SRC_URL=() BASE_T=() BASE_ROWS_DIGEST=()
setup_source() {
    local kind=$1 have
    if [ "$kind" = pg ]; then
        have=$(pg_source_rows)
        if [ "$REGEN" = 1 ] || [ "$have" != "$ROWS" ]; then
            load_pg_source
            have=$(pg_source_rows)
        else
            log "using existing PostgreSQL $SRC_DB.$TABLE ($have rows)"
        fi
        pg "$SRC_DB" -c "\\copy (SELECT id FROM $TABLE ORDER BY id) TO '$OUT/src_ids_pg.txt'"
        SRC_DIGEST[pg]=$(pg "$SRC_DB" -Atc "$(pg_digest_sql "$TABLE")")
        SRC_URL[pg]="postgres://$PG_BASE/$SRC_DB"
    else
        have=$(my_source_rows)
        if [ "$REGEN" = 1 ] || [ "$have" != "$ROWS" ]; then
            load_my_source
            have=$(my_source_rows)
        else
            log "using existing MariaDB $SRC_DB.$TABLE ($have rows)"
        fi
        my --quick -N -B "$SRC_DB" -e "SELECT id FROM $TABLE ORDER BY id" > "$OUT/src_ids_mysql.txt"
        SRC_DIGEST[mysql]=$(my -N -B "$SRC_DB" -e "$MY_DIGEST")
        SRC_URL[mysql]="mysql://$MY_BASE/$SRC_DB"
    fi
    if [ "$have" != "$ROWS" ]; then
        echo "error: $kind source $SRC_DB.$TABLE has $have rows after loading, not $ROWS" >&2
        exit 1
    fi
    log "$kind source digest: ${SRC_DIGEST[$kind]}"
}

# --- destination ---------------------------------------------------------------

# The destination table, schema-qualified: wherever sluice put it (public
# for a PostgreSQL source; a MySQL source's database name is not a schema
# there). Empty when there is none yet.
dst_table() {
    pg "$DST_DB" -Atc "SELECT format('%I.%I', table_schema, table_name)
        FROM information_schema.tables WHERE table_name = '$TABLE'
        AND table_schema NOT IN ('pg_catalog', 'information_schema')
        ORDER BY table_schema <> 'public', table_schema LIMIT 1"
}
# Committed rows in the destination now ("?" if it cannot be counted).
dst_rows() {
    local t
    if [ "$DEST" = mysql ]; then
        my -N -B "$DST_DB" -e "SELECT count(*) FROM $TABLE" 2>/dev/null || echo 0
        return
    fi
    t=$(dst_table 2>/dev/null) || { echo '?'; return; }
    if [ -z "$t" ]; then echo 0; return; fi
    pg "$DST_DB" -Atc "SELECT count(*) FROM $t" 2>/dev/null || echo '?'
}

# verify KIND [BASELINE]: compares the destination with source KIND and sets
# V_LOST V_DUP V_EXTRA, V_CHECK (ok or what differs) and V_ROWS_DIGEST.
# With BASELINE=1 the row digest is recorded as the baseline's rather than
# compared with it.
verify() {
    local kind=$1 baseline=${2:-0} t ids=$OUT/dst_ids.txt digest
    V_CHECK=ok V_ROWS_DIGEST=""
    if [ "$DEST" = mysql ]; then verify_mysql "$kind"; return; fi
    t=$(dst_table)
    if [ -z "$t" ]; then
        : > "$ids"
        V_CHECK="no table $TABLE"
    else
        pg "$DST_DB" -c "\\copy (SELECT id FROM $t ORDER BY id) TO '$ids'"
    fi
    read -r V_LOST V_DUP V_EXTRA _ \
        < <(python3 bench/chaos_report.py compare "$OUT/src_ids_$kind.txt" "$ids")
    # A copy that never finished is missing rows and sums anyway: only its
    # duplicated and extra rows tell something.
    if [ "$RUN_RC" != 0 ]; then V_LOST=- V_CHECK=-; return 0; fi
    [ -n "$t" ] || return 0
    digest=$(pg "$DST_DB" -Atc "$(pg_digest_sql "$t")" 2>&1) || digest="error: $digest"
    if [ "$digest" != "${SRC_DIGEST[$kind]}" ]; then
        V_CHECK="sums differ"
        log "sums differ: source      ${SRC_DIGEST[$kind]}"
        log "             destination $digest"
    fi
    V_ROWS_DIGEST=$(pg "$DST_DB" -Atc "$(pg_rows_digest_sql "$t")" 2>&1) \
        || V_ROWS_DIGEST="error: $V_ROWS_DIGEST"
    if [ "$baseline" = 1 ] && [ "${V_ROWS_DIGEST#error}" != "$V_ROWS_DIGEST" ]; then
        log "row digest: $V_ROWS_DIGEST"
        if [ "$V_CHECK" = ok ]; then V_CHECK="no row digest"; else V_CHECK="$V_CHECK, no row digest"; fi
    fi
    if [ "$baseline" != 1 ] && [ "$V_ROWS_DIGEST" != "${BASE_ROWS_DIGEST[$kind]}" ]; then
        if [ "$V_CHECK" = ok ]; then V_CHECK="rows differ"; else V_CHECK="$V_CHECK, rows differ"; fi
        log "row digest differs from the baseline run's:" \
            "${BASE_ROWS_DIGEST[$kind]} here $V_ROWS_DIGEST"
    fi
}

# verify_mysql KIND: verify for a MariaDB destination (ids and sums; the
# per-row md5 digest is PostgreSQL's only).
verify_mysql() {
    local kind=$1 ids=$OUT/dst_ids.txt digest
    V_ROWS_DIGEST=n/a
    my --quick -N -B "$DST_DB" -e "SELECT id FROM $TABLE ORDER BY id" > "$ids" 2>/dev/null || : > "$ids"
    read -r V_LOST V_DUP V_EXTRA _ \
        < <(python3 bench/chaos_report.py compare "$OUT/src_ids_$kind.txt" "$ids")
    if [ "$RUN_RC" != 0 ]; then V_LOST=- V_CHECK=-; return 0; fi
    digest=$(my -N -B "$DST_DB" -e "$MY_DIGEST" 2>&1) || digest="error: $digest"
    if [ "$digest" != "${SRC_DIGEST[$kind]}" ]; then
        V_CHECK="sums differ"
        log "sums differ: source      ${SRC_DIGEST[$kind]}"
        log "             destination $digest"
    fi
}

# --- runs ----------------------------------------------------------------------

now() { echo "$EPOCHREALTIME"; }
# fsec EXPR: a floating-point expression of awk, printed with 3 decimals.
fsec() { awk "BEGIN { printf \"%.3f\", $1 }"; }

# start_run KIND STATE LOG: sluice copy in the background, pid in RUN_PID;
# RUN_EXTRA holds more arguments (--fresh).
RUN_EXTRA=""
start_run() {
    # shellcheck disable=SC2086
    "$SLUICE" copy "${SRC_URL[$1]}" "$(dst_url)" --tables "$TABLE" \
        --state-dir "$2" $RUN_EXTRA > "$3" 2>&1 &
    RUN_PID=$!
}
# kill_run_at SECONDS: SIGKILL the run that many seconds after its start
# (unless it ended before); its exit status in RUN_RC (137 when killed).
kill_run_at() {
    sleep "$1"
    kill -9 "$RUN_PID" 2>/dev/null || true
    RUN_RC=0
    # (stderr: bash's "Killed" notice about its own job)
    wait "$RUN_PID" 2>/dev/null || RUN_RC=$?
    RUN_PID=""
}
# wait_run SECONDS: the run's exit status in RUN_RC, or "timeout" (the run is
# then killed) when it takes longer.
wait_run() {
    local deadline=$((EPOCHSECONDS + $1))
    while kill -0 "$RUN_PID" 2>/dev/null; do
        if [ "$EPOCHSECONDS" -ge "$deadline" ]; then
            kill -9 "$RUN_PID" 2>/dev/null || true
            wait "$RUN_PID" 2>/dev/null || true
            RUN_PID=""
            RUN_RC=timeout
            return
        fi
        sleep 0.1
    done
    RUN_RC=0
    wait "$RUN_PID" 2>/dev/null || RUN_RC=$?
    RUN_PID=""
}

# fresh_trial NAME: an empty destination database and a new state
# directory for trial NAME, whose path is put in STATE.
fresh_trial() {
    if [ "$DEST" = mysql ]; then
        my -e "DROP DATABASE IF EXISTS $DST_DB; CREATE DATABASE $DST_DB CHARACTER SET utf8mb4"
    else
        recreate_pg_db "$DST_DB"
    fi
    STATE=$STATES/$1
    rm -rf "$STATE"
    mkdir -p "$STATE"
}

# resume KIND STATE NAME TIMEOUT PLAN...: re-runs the copy until it exits 0,
# at most MAX_RUNS times; PLAN word k is the fraction of T at which re-run k
# is killed, or "-". Updates T_RESUMED T_KILLS T_EXITS.
resume() {
    local kind=$1 state=$2 name=$3 timeout=$4
    shift 4
    local plan=("$@") k=0
    while [ "$RUN_RC" != 0 ] && [ "$RUN_RC" != timeout ] && [ "$k" -lt "$MAX_RUNS" ]; do
        k=$((k + 1))
        start_run "$kind" "$state" "$LOGS/${name}_$k.log"
        if [ "${plan[$((k - 1))]:--}" != - ]; then
            kill_run_at "$(fsec "${plan[$((k - 1))]} * ${BASE_T[$kind]}")"
            [ "$RUN_RC" != 137 ] || T_KILLS=$((T_KILLS + 1))
        else
            wait_run "$timeout"
        fi
        T_EXITS="$T_EXITS,$RUN_RC"
    done
    T_RESUMED=$k
}

# record SCENARIO TRIAL AT ROWS_AT SECONDS FAIL_REASON: prints the trial's
# line, appends it to the TSV, remembers a failure.
FAILED=0
record() {
    local sc=$1 trial=$2 at=$3 rows_at=$4 secs=$5 why=$6 result=OK
    if [ -n "$why" ]; then
        result=FAIL
        FAILED=1
    fi
    printf '%-10s %5s %8s %12s %7s %7s %5s %-14s %8s %8s %8s  %-12s %s\n' \
        "$sc" "$trial" "$at" "$rows_at" "$V_REREAD" "$T_RESUMED" "$T_KILLS" "$T_EXITS" \
        "$V_LOST" "$V_DUP" "$V_EXTRA" "$V_CHECK" "$result${why:+ ($why)}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$sc" "$trial" "$at" "$rows_at" "$V_REREAD" "$T_RESUMED" "$T_KILLS" "$T_EXITS" \
        "$V_LOST" "$V_DUP" "$V_EXTRA" "$V_CHECK" "$result" "$secs" "$why" >> "$TRIALS_TSV"
    if [ "$result" = OK ]; then rm -rf "${STATES:?}/$sc-$trial"; fi
}
header() {
    printf '%-10s %5s %8s %12s %7s %7s %5s %-14s %8s %8s %8s  %-12s %s\n' \
        scenario trial kill_s rows_at_kill reread resumed kills exits lost dup extra \
        checksum result
}

# Why a finished trial failed, empty if it did not.
failure() {
    local why=""
    [ "$RUN_RC" = 0 ] || why+="; last run exit $RUN_RC"
    [ "$V_LOST" = 0 ] || [ "$V_LOST" = - ] || why+="; lost rows"
    [ "$V_DUP" = 0 ] || why+="; duplicated rows"
    [ "$V_EXTRA" = 0 ] || why+="; extra rows"
    [ "$V_CHECK" = ok ] || why+="; $V_CHECK"
    if [ "$V_REREAD" != - ] && [ "$V_REREAD" -gt "$WINDOW" ]; then why+="; re-read more than one window"; fi
    echo "${why#; }"
}

# baseline SCENARIO KIND: trial 0, an uninterrupted run; sets BASE_T[KIND]
# (seconds) and BASE_ROWS_DIGEST[KIND].
baseline() {
    local sc=$1 kind=$2 start secs why
    fresh_trial "$sc-0"
    log "$sc: baseline, one uninterrupted run"
    start=$(now)
    start_run "$kind" "$STATE" "$LOGS/${sc}_0_0.log"
    wait_run "${RUN_TIMEOUT:-86400}"
    secs=$(fsec "$(now) - $start")
    BASE_T[$kind]=$secs
    T_RESUMED=0 T_KILLS=0 T_EXITS=$RUN_RC V_REREAD=-
    verify "$kind" 1
    BASE_ROWS_DIGEST[$kind]=$V_ROWS_DIGEST
    why=$(failure)
    record "$sc" 0 - - "$secs" "$why"
    if [ "$RUN_RC" != 0 ]; then
        tail -n 5 "$LOGS/${sc}_0_0.log" | sed 's/^/   | /' >&2
        echo "error: the uninterrupted $sc run failed (exit $RUN_RC); see $LOGS/${sc}_0_0.log" >&2
        exit 1
    fi
    log "$sc: T = $secs s"
}

run_timeout() {  # KIND
    if [ -n "$RUN_TIMEOUT" ]; then echo "$RUN_TIMEOUT"; return; fi
    awk -v t="${BASE_T[$1]}" 'BEGIN { t = 10 * t; printf "%d", (t > 300 ? t : 300) }'
}

# reread ROWS_AT_KILL LOG: rows the destination held after the kill that the
# first resumed run read again (it logs where it resumes); "-" when that run
# did not get as far as saying so.
reread() {
    local from
    if [ ! -f "$2" ]; then echo -; return; fi
    from=$(grep -o 'resuming after the rows already delivered.*rows=[0-9]*' "$2" | grep -o '[0-9]*$' | head -n1)
    if [ -z "$from" ]; then
        # Nothing to resume from: the kill came before the first commit.
        if [ "$1" = 0 ]; then echo 0; else echo -; fi
        return
    fi
    echo $(($1 - from))
}

# A trial of pg or mysql: kill, resume until done, verify.
kill_trial() {  # SCENARIO KIND TRIAL
    local sc=$1 kind=$2 trial=$3 plan at rows_at start
    fresh_trial "$sc-$trial"
    read -r -a plan < <(python3 bench/chaos_report.py instants "$SEED" "$sc" \
        "$trial" "$MAX_RUNS" "$REKILL_PCT" "$MAX_REKILLS")
    at=$(fsec "${plan[0]} * ${BASE_T[$kind]}")
    start=$(now)
    start_run "$kind" "$STATE" "$LOGS/${sc}_${trial}_0.log"
    kill_run_at "$at"
    # A warm server can finish before the instant drawn from the first
    # (cold) run's T: draw again, earlier, so that every trial kills a run.
    local redraw=0
    while [ "$RUN_RC" = 0 ] && [ "$redraw" -lt 4 ]; do
        redraw=$((redraw + 1))
        at=$(fsec "$at / 2")
        log "$sc $trial: the run finished before the kill; again, killing at $at s"
        fresh_trial "$sc-$trial"
        start_run "$kind" "$STATE" "$LOGS/${sc}_${trial}_0.log"
        kill_run_at "$at"
    done
    T_KILLS=0 T_EXITS=$RUN_RC
    [ "$RUN_RC" != 137 ] || T_KILLS=1
    rows_at=$(dst_rows)
    resume "$kind" "$STATE" "${sc}_$trial" "$(run_timeout "$kind")" "${plan[@]:1}"
    V_REREAD=$(reread "$rows_at" "$LOGS/${sc}_${trial}_1.log")
    verify "$kind"
    record "$sc" "$trial" "$at" "$rows_at" "$(fsec "$(now) - $start")" "$(failure)"
}

# A trial of pg-restart: PostgreSQL goes down under one MySQL -> PostgreSQL
# run, which must finish by itself. If it does not, it is resumed (so that
# lost and duplicated rows can still be counted) and the trial fails.
restart_trial() {  # TRIAL
    local sc=pg-restart kind=mysql trial=$1 plan at rows_at start why rc1
    fresh_trial "$sc-$trial"
    read -r -a plan < <(python3 bench/chaos_report.py instants "$SEED" "$sc" \
        "$trial" 0 0 0)
    at=$(fsec "${plan[0]} * ${BASE_T[$kind]}")
    start=$(now)
    start_run "$kind" "$STATE" "$LOGS/${sc}_${trial}_0.log"
    sleep "$at"
    rows_at=$(dst_rows)
    if ! kill -0 "$RUN_PID" 2>/dev/null; then
        log "$sc $trial: the run ended before PostgreSQL was stopped (T varies): this trial tests nothing"
    fi
    log "$sc $trial: stopping PostgreSQL at $at s ($rows_at rows in), for $RESTART_DOWN_S s"
    PG_DOWN=1
    pg_cluster stop
    sleep "$RESTART_DOWN_S"
    pg_cluster start
    PG_DOWN=0
    pg_wait_ready 60 || { echo "error: PostgreSQL did not come back" >&2; exit 1; }
    wait_run "$(run_timeout "$kind")"
    rc1=$RUN_RC
    T_KILLS=0 T_EXITS=$RUN_RC V_REREAD=-
    resume "$kind" "$STATE" "${sc}_$trial" "$(run_timeout "$kind")"
    verify "$kind"
    why=$(failure)
    if [ "$rc1" != 0 ]; then
        why="the run did not survive the restart (exit $rc1)${why:+; $why}"
        tail -n 5 "$LOGS/${sc}_${trial}_0.log" | sed 's/^/   | /' >&2
    fi
    record "$sc" "$trial" "$at" "$rows_at" "$(fsec "$(now) - $start")" "$why"
}

# A trial of rerun (see the header): kills that may come after completion,
# a run of the complete job, another state directory, a killed --fresh run.
rerun_trial() {  # TRIAL
    local sc=rerun kind=pg trial=$1 plan at at2 rows_at start timeout resumed why=""
    fresh_trial "$sc-$trial"
    timeout=$(run_timeout "$kind")
    read -r -a plan < <(python3 bench/chaos_report.py instants "$SEED" "$sc" \
        "$trial" 1 100 1)
    at=$(fsec "(0.5 + ${plan[0]}) * ${BASE_T[$kind]}")
    at2=$(fsec "(0.5 + ${plan[1]}) * ${BASE_T[$kind]}")
    start=$(now)
    start_run "$kind" "$STATE" "$LOGS/${sc}_${trial}_0.log"
    kill_run_at "$at"
    T_KILLS=0 T_EXITS=$RUN_RC V_REREAD=-
    [ "$RUN_RC" != 137 ] || T_KILLS=1
    rows_at=$(dst_rows)
    resume "$kind" "$STATE" "${sc}_$trial" "$timeout"
    resumed=$T_RESUMED
    # The same command once the job is complete.
    start_run "$kind" "$STATE" "$LOGS/${sc}_${trial}_again.log"
    wait_run "$timeout"
    T_EXITS="$T_EXITS,$RUN_RC"
    [ "$RUN_RC" = 0 ] || why+="; the run of the complete job exited $RUN_RC"
    grep -q "already complete" "$LOGS/${sc}_${trial}_again.log" \
        || why+="; the run of the complete job did not say it was complete"
    # Another state directory: the destination's record decides.
    rm -rf "$STATE-other"
    start_run "$kind" "$STATE-other" "$LOGS/${sc}_${trial}_other.log"
    wait_run "$timeout"
    T_EXITS="$T_EXITS,$RUN_RC"
    [ "$RUN_RC" = 0 ] || why+="; the run with another state directory exited $RUN_RC"
    rm -rf "$STATE-other"
    # --fresh, killed at another instant, then the command until it is done.
    RUN_EXTRA=--fresh
    start_run "$kind" "$STATE" "$LOGS/${sc}_${trial}_fresh_0.log"
    RUN_EXTRA=""
    kill_run_at "$at2"
    T_EXITS="$T_EXITS,$RUN_RC"
    [ "$RUN_RC" != 137 ] || T_KILLS=$((T_KILLS + 1))
    resume "$kind" "$STATE" "${sc}_${trial}_fresh" "$timeout"
    T_RESUMED=$((resumed + T_RESUMED))
    verify "$kind"
    local failed
    failed=$(failure)
    why="${why#; }"
    record "$sc" "$trial" "$at" "$rows_at" "$(fsec "$(now) - $start")" \
        "${failed}${failed:+${why:+; }}${why}"
}

# --- run -----------------------------------------------------------------------

mkdir -p "$DATA" "$OUT" "$LOGS" "$STATES"
rm -f "$LOGS"/*.log
printf 'scenario\ttrial\tkill_s\trows_at_kill\treread\tresumed_runs\tkills\texits\tlost\tduplicated\textra\tchecksum\tresult\tseconds\tfailure\n' > "$TRIALS_TSV"

log "sluice: $("$SLUICE" --version 2>/dev/null || echo unknown) ($SLUICE)"
log "rows $ROWS, trials $TRIALS, scenarios: $SCENARIOS, seed $SEED"
for sc in $SCENARIOS; do
    case $sc in
        pg | pg-mysql | rerun) [ -n "${SRC_URL[pg]:-}" ] || setup_source pg ;;
        *) [ -n "${SRC_URL[mysql]:-}" ] || setup_source mysql ;;
    esac
done

header
for sc in $SCENARIOS; do
    case $sc in
        pg | mysql)
            DEST=pg
            baseline "$sc" "$sc"
            for trial in $(seq "$TRIALS"); do kill_trial "$sc" "$sc" "$trial"; done
            ;;
        pg-mysql)
            DEST=mysql
            baseline "$sc" pg
            for trial in $(seq "$TRIALS"); do kill_trial "$sc" pg "$trial"; done
            DEST=pg
            ;;
        pg-restart)
            DEST=pg
            if [ -z "$PG_CLUSTER_VERSION" ] || ! command -v pg_ctlcluster >/dev/null; then
                echo "error: pg-restart needs pg_ctlcluster and a cluster (set PG_CLUSTER)" >&2
                exit 1
            fi
            if [ -z "${BASE_T[mysql]:-}" ]; then baseline "$sc" mysql; fi
            for trial in $(seq "$RESTART_TRIALS"); do restart_trial "$trial"; done
            ;;
        rerun)
            DEST=pg
            # pg-mysql's baseline (a MariaDB destination) leaves no row digest for pg.
            if [ -z "${BASE_T[pg]:-}" ] || [ "${BASE_ROWS_DIGEST[pg]:-n/a}" = n/a ]; then baseline "$sc" pg; fi
            for trial in $(seq "$TRIALS"); do rerun_trial "$trial"; done
            ;;
    esac
done

echo
python3 bench/chaos_report.py summary "$TRIALS_TSV"
log "trials: $TRIALS_TSV; run outputs: $LOGS/"
if [ "$FAILED" != 0 ]; then log "FAILED: a trial lost, duplicated or changed rows, or did not finish"; fi
exit "$FAILED"
