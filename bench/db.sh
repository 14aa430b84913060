#!/usr/bin/env bash
# End-to-end benchmark of database migrations: sluice against psql, pgloader
# and Sling, moving the same generated table into PostgreSQL from a CSV file,
# from PostgreSQL and from MariaDB. See bench/README.md.
#
#   bench/db.sh [ROWS ...]           default: 1000000 10000000
#
# Environment:
#   SLUICE       sluice binary (default: the release build in the target dir)
#   SKIP_SLUICE  1 = run only the peers, with or without a sluice binary
#   SLING_BIN    Sling binary (default: the one the PyPI package
#                sling-linux-amd64 ships, installed with pip if missing)
#   SEED         generator seed (default 42)
#   REPEAT       runs of each measurement, median reported (default 3)
#   SKIP_PEERS   peers to leave out: pgloader, sling (space-separated)
#   PG_HOST PG_PORT PG_USER   PostgreSQL server (127.0.0.1, 5432, postgres)
#   MY_HOST MY_PORT MY_USER   MariaDB/MySQL server (127.0.0.1, 3306, root)
#
# Both servers must accept their user without a password. The script drops
# and recreates the databases sluice_bench_src and sluice_bench_dst
# (PostgreSQL) and sluice_bench (MariaDB).
set -euo pipefail

# sluice is given the paths relative to the repository root, as a user
# would type them.
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ]; then SIZES=("$@"); else SIZES=(1000000 10000000); fi
SLUICE=${SLUICE:-${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}/release/sluice}
SKIP_SLUICE=${SKIP_SLUICE:-0}
SLING_BIN=${SLING_BIN:-}
SEED=${SEED:-42}
REPEAT=${REPEAT:-3}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
MY_HOST=${MY_HOST:-127.0.0.1}
MY_PORT=${MY_PORT:-3306}
MY_USER=${MY_USER:-root}
SRC_DB=sluice_bench_src
DST_DB=sluice_bench_dst
MY_DB=sluice_bench
DATA=bench/data
OUT=bench/out/db
PARTS=$OUT/parts
RESULTS=bench/RESULTS.md
MEASUREMENTS=$OUT/measurements.tsv
COLUMNS_TSV=$OUT/columns.tsv
FAILED=0

# The columns every tool's destination table must have, in this order.
COLUMNS=id,user_id,amount,price,created_at,event_date,code,comment,ok,score

# sluice talks to PostgreSQL without TLS; every peer is told to do the same,
# so that no one pays for encryption the others skip.
export PGSSLMODE=disable
PG_BASE="$PG_USER@$PG_HOST:$PG_PORT"
MY_BASE="$MY_USER@$MY_HOST:$MY_PORT"

log() { printf '== %s\n' "$*" >&2; }

# --- clients and peers -------------------------------------------------------

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
    apt-get install -y -qq "$@"
}

python3 -c 'import duckdb' 2>/dev/null || pip install -q duckdb  # gen_table.py
[ -x /usr/bin/time ] || apt_install time
command -v psql >/dev/null || apt_install postgresql-client
command -v mariadb >/dev/null || apt_install mariadb-client

# Peers that cannot be had are reported as n/a rather than failing the run.
PGLOADER_NA=""
if ! command -v pgloader >/dev/null; then
    apt_install pgloader || true
    command -v pgloader >/dev/null || PGLOADER_NA="n/a: pgloader not installable"
fi

# The PyPI package `sling` is a wrapper that downloads the Sling binary from
# the project's release page on first use; the per-platform packages ship the
# binary itself, so they install wherever PyPI is reachable.
SLING_NA=""
if [ -z "$SLING_BIN" ]; then
    case "$(uname -m)" in
        aarch64) sling_pkg=sling_linux_arm64 ;;
        *) sling_pkg=sling_linux_amd64 ;;
    esac
    sling_find="import $sling_pkg as s; print(s.SLING_BIN)"
    SLING_BIN=$(python3 -c "$sling_find" 2>/dev/null) \
        || { pip install -q "${sling_pkg//_/-}" >&2 \
             && SLING_BIN=$(python3 -c "$sling_find"); } \
        || SLING_BIN=""
fi
if [ -z "$SLING_BIN" ] || ! "$SLING_BIN" --version >/dev/null 2>&1; then
    SLING_NA="n/a: no runnable Sling binary"
    log "Sling will be reported as n/a (no runnable binary; set SLING_BIN)"
fi
# SKIP_PEERS="pgloader sling" leaves slow peers out of a run (for a quick
# look at large sizes); the table says they were skipped.
for peer in ${SKIP_PEERS:-}; do
    case $peer in
        pgloader) PGLOADER_NA="skipped (SKIP_PEERS)" ;;
        sling) SLING_NA="skipped (SKIP_PEERS)" ;;
        *) echo "error: SKIP_PEERS takes pgloader and sling, not $peer" >&2; exit 2 ;;
    esac
done
# Sling keeps its settings under SLING_HOME_DIR; keep them out of ~/.sling.
export SLING_HOME_DIR=$OUT/sling-home SLING_DISABLE_TELEMETRY=true
export SLING_PG_SRC="postgresql://$PG_BASE/$SRC_DB?sslmode=disable"
export SLING_PG_DST="postgresql://$PG_BASE/$DST_DB?sslmode=disable"
export SLING_MY_SRC="mysql://$MY_BASE/$MY_DB"

if [ "$SKIP_SLUICE" = 1 ]; then
    log "SKIP_SLUICE=1: running the peers only"
elif [ ! -x "$SLUICE" ]; then
    echo "error: no sluice binary at $SLUICE" >&2
    echo "build it first: cargo build --release -p sluice-cli" >&2
    echo "(or set SLUICE=/path/to/sluice, or SKIP_SLUICE=1 for peers only)" >&2
    exit 1
fi
run_sluice() { [ "$SKIP_SLUICE" != 1 ]; }

# --- servers -------------------------------------------------------------------

pg() {  # DB [psql args...]
    local db=$1
    shift
    # The harness's own statements keep quiet about skipped drops.
    PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 \
        -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"
}
my() {  # [mariadb args...]
    mariadb --local-infile=1 -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" "$@"
}

pg postgres -Atc 'SELECT 1' >/dev/null \
    || { echo "error: no PostgreSQL at $PG_BASE" >&2; exit 1; }
my -e 'SELECT 1' >/dev/null \
    || { echo "error: no MariaDB/MySQL at $MY_BASE" >&2; exit 1; }

recreate_pg_db() {  # DB
    pg postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" \
        -c "CREATE DATABASE $1"
}

# The source table, typed after what gen_table.py writes: price has at most
# five digits before its two decimals, user_id and score fit in 32 bits, the
# comment is at most 200 characters. The primary key is added after the load.
PG_TABLE='CREATE TABLE t (
  id bigint NOT NULL,
  user_id integer,
  amount double precision,
  price numeric(7,2),
  created_at timestamp,
  event_date date,
  code text,
  comment text,
  ok boolean,
  score integer)'

MY_TABLE='CREATE TABLE t (
  id BIGINT NOT NULL PRIMARY KEY,
  user_id INT,
  amount DOUBLE,
  price DECIMAL(7,2),
  created_at DATETIME,
  event_date DATE,
  code VARCHAR(8),
  comment VARCHAR(200),
  ok BOOLEAN,
  score INT) ENGINE=InnoDB'

# csv->pg: psql loads into the table sluice creates from the CSV (its types
# are inferred from the file: price is read as a float, integers as bigint,
# and a CSV has no key).
PG_CSV_TABLE='CREATE TABLE t (
  id bigint,
  user_id bigint,
  amount double precision,
  price double precision,
  created_at timestamp,
  event_date date,
  code text,
  comment text,
  ok boolean,
  score bigint)'

# A one-line digest of the table's contents, computed the same way on both
# servers, to check the two sources hold the same data.
PG_DIGEST="SELECT concat_ws(' ', count(*), count(score), sum(score),
  sum(user_id), sum(price), sum(ok::int), min(created_at), max(created_at),
  min(event_date), max(event_date), sum(length(code)), sum(length(comment)),
  sum((comment LIKE '%\"%')::int)) FROM t"
MY_DIGEST="SELECT CONCAT_WS(' ', count(*), count(score), sum(score),
  sum(user_id), sum(price), sum(ok), min(created_at), max(created_at),
  min(event_date), max(event_date), sum(char_length(code)),
  sum(char_length(comment)), sum(comment LIKE '%\"%')) FROM t"

load_sources() {  # CSV ROWS
    local csv=$1 rows=$2
    log "loading $csv into PostgreSQL $SRC_DB.t"
    recreate_pg_db "$SRC_DB"
    pg "$SRC_DB" -c "$PG_TABLE" \
        -c "\\copy t FROM '$csv' WITH (FORMAT csv, HEADER)" \
        -c 'ALTER TABLE t ADD PRIMARY KEY (id)' \
        -c 'VACUUM (FREEZE, ANALYZE) t'

    log "loading $csv into MariaDB $MY_DB.t"
    my -e "DROP DATABASE IF EXISTS $MY_DB;
           CREATE DATABASE $MY_DB CHARACTER SET utf8mb4"
    # Empty fields are NULL (only score has any); created_at loses its 'T';
    # ok arrives as the words true/false.
    my "$MY_DB" -e "$MY_TABLE;
        SET unique_checks = 0, foreign_key_checks = 0;
        LOAD DATA LOCAL INFILE '$csv' INTO TABLE t CHARACTER SET utf8mb4
          FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY ''
          LINES TERMINATED BY '\\n' IGNORE 1 LINES
          (id, user_id, amount, price, @created_at, event_date, code,
           comment, @ok, @score)
          SET created_at = REPLACE(@created_at, 'T', ' '),
              ok = (@ok = 'true'),
              score = NULLIF(@score, '');
        ANALYZE TABLE t;" > /dev/null

    local pg_digest my_digest
    pg_digest=$(pg "$SRC_DB" -Atc "$PG_DIGEST")
    my_digest=$(my -N -B "$MY_DB" -e "$MY_DIGEST")
    if [ "${pg_digest%% *}" != "$rows" ] || [ "$pg_digest" != "$my_digest" ]; then
        echo "error: the sources differ or miss rows" >&2
        echo "  PostgreSQL: $pg_digest" >&2
        echo "  MariaDB:    $my_digest" >&2
        exit 1
    fi
    log "sources agree: $pg_digest"

    # Read the PostgreSQL source once so every run finds it in the page
    # cache. (MariaDB's InnoDB reads with O_DIRECT by default: its table is
    # read from disk by every run alike.)
    pg "$SRC_DB" -c "\\copy t TO '/dev/null'"
    pg postgres -c CHECKPOINT
    sync
}

# --- destination states (untimed, before every run) ----------------------------

# An empty destination database: the tool creates the table.
empty_dst() { recreate_pg_db "$DST_DB"; }
# An empty destination with the typed table psql loads a CSV into.
csv_table_dst() { empty_dst; pg "$DST_DB" -c "$PG_CSV_TABLE"; }
# An empty destination with the source's table, without its key: the psql
# pipe adds the primary key after the copy, as sluice and pgloader do.
pg_table_dst() { empty_dst; pg "$DST_DB" -c "$PG_TABLE"; }

# --- data ----------------------------------------------------------------------

label() {  # 1000000 -> 1m, 5000 -> 5k
    local n=$1
    if [ $((n % 1000000)) = 0 ]; then echo "$((n / 1000000))m"
    elif [ $((n % 1000)) = 0 ]; then echo "$((n / 1000))k"
    else echo "$n"; fi
}

ensure_data() {  # ROWS FILE (as in bench/run.sh: the files are shared)
    local rows=$1 file=$2
    # Rows never contain newlines, so lines = rows + header.
    if [ -f "$file" ] && [ "$(wc -l < "$file")" = $((rows + 1)) ]; then
        log "using existing $file"
        return
    fi
    log "generating $file ($rows rows, seed $SEED)"
    python3 bench/gen_table.py --rows "$rows" --seed "$SEED" --out "$file"
    sync
}

# --- measuring -----------------------------------------------------------------

size_of() { if [ -e "$1" ]; then stat -c %s "$1"; else echo 0; fi; }

# measure ROWS CASE TOOL PREPARE CSV -- COMMAND...
# Runs COMMAND $REPEAT times: this is a shared 2-core VM, and a single run
# can be off by a factor of two; the report takes the median.
measure() {
    local rep
    for rep in $(seq "$REPEAT"); do measure_once "$rep" "$@"; done
}

# measure_once REP ROWS CASE TOOL PREPARE CSV -- COMMAND...
# Puts the destination in its starting state with PREPARE, runs COMMAND under
# /usr/bin/time -v, then checks the destination table (outside the timing)
# and appends one line to $MEASUREMENTS.
#
# A COMMAND made of several processes at once (a pipe) may run each under
# its own `/usr/bin/time -v -o $PARTS/NAME.time`; its peak RSS is then the
# sum of theirs, where the outer time -v would report only the largest one.
measure_once() {
    local rep=$1 rows=$2 case=$3 tool=$4 prepare=$5 csv=$6
    shift 7
    local name="${tool}_${case/->/_to_}_$(label "$rows")_$rep"
    local tv="$OUT/$name.time" cmdlog="$OUT/$name.log"
    "$prepare" > /dev/null
    # Each run is a new job: a state directory of its own, so sluice does not
    # find the previous run's completed job and skip the copy.
    rm -rf "$OUT/state"
    export XDG_STATE_HOME="$OUT/state"
    rm -rf "$PARTS"
    mkdir -p "$PARTS"
    # Nothing left to write back from the previous run or the preparation.
    pg postgres -c CHECKPOINT
    sync
    log "$tool $case, $rows rows, run $rep/$REPEAT"
    local status=ok
    /usr/bin/time -v -o "$tv" "$@" > "$cmdlog" 2>&1 || status=failed
    sync
    # pgloader can exit 1 after an import its own summary reports complete
    # (seen for PostgreSQL sources at 1M rows); the row check below decides.
    if [ "$status" = failed ] && [ "$tool" = pgloader ] &&
        grep -q 'Total import time *✓' "$cmdlog"; then
        status=ok
    fi
    local wall rss code
    read -r wall rss code < <(python3 bench/report.py timev "$tv")
    local parts=("$PARTS"/*.time)
    if [ -e "${parts[0]}" ]; then
        local part prss
        rss=0
        for part in "${parts[@]}"; do
            read -r _ prss _ < <(python3 bench/report.py timev "$part")
            rss=$((rss + prss))
        done
    fi
    local out_bytes=0
    if [ "$status" = ok ]; then
        local got cols
        got=$(pg "$DST_DB" -Atc 'SELECT count(*) FROM public.t' 2>/dev/null) \
            || got="no table public.t"
        cols=$(pg "$DST_DB" -Atc "SELECT string_agg(column_name, ','
                 ORDER BY ordinal_position) FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name = 't'")
        if [ "$got" != "$rows" ]; then
            status="wrong rows: $got"
        elif [ "$cols" != "$COLUMNS" ]; then
            status="wrong columns: $cols"
        else
            out_bytes=$(pg "$DST_DB" -Atc "SELECT pg_total_relation_size('public.t')")
            if [ "$rep" = 1 ]; then record_columns "$case" "$tool"; fi
        fi
    else
        status="failed (exit $code)"
        tail -n 5 "$cmdlog" | sed 's/^/   | /' >&2
    fi
    [ "$status" = ok ] || { log "$status"; FAILED=1; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rows" "$case" "$tool" \
        "$rep" "$status" "$wall" "$rss" "$(size_of "$csv")" "$out_bytes" \
        >> "$MEASUREMENTS"
}

# The column types and key of the table a tool created, for the report.
record_columns() {  # CASE TOOL
    local types pk
    types=$(pg "$DST_DB" -Atc "SELECT string_agg(format_type(atttypid,
              atttypmod), ', ' ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = 'public.t'::regclass AND attnum > 0
              AND NOT attisdropped")
    pk=$(pg "$DST_DB" -Atc "SELECT CASE WHEN EXISTS (SELECT FROM pg_constraint
           WHERE conrelid = 'public.t'::regclass AND contype = 'p')
           THEN 'primary key' ELSE 'no key' END")
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$types" "$pk" >> "$COLUMNS_TSV"
}

# A peer that cannot run here gets one line saying why, and no failure.
not_available() {  # ROWS CASE TOOL REASON
    log "$3 $2, $1 rows: $4"
    printf '%s\t%s\t%s\t1\t%s\t0\t0\t0\t0\n' "$1" "$2" "$3" "$4" >> "$MEASUREMENTS"
}

# pgloader takes its table filter from a command file.
# With its default prefetch of 100,000 rows pgloader exhausts its 1 GiB
# heap on the 1M-row PostgreSQL source ("Heap exhausted, game over"); a
# prefetch of 10,000 rows is the tuning a user would apply.
write_pgloader_files() {
    cat > "$OUT/pg_to_pg.load" <<EOF
LOAD DATABASE
  FROM pgsql://$PG_BASE/$SRC_DB?sslmode=disable
  INTO pgsql://$PG_BASE/$DST_DB?sslmode=disable
  WITH prefetch rows = 10000
  INCLUDING ONLY TABLE NAMES MATCHING 't' IN SCHEMA 'public';
EOF
    # pgloader names the target schema after the MySQL database unless told.
    cat > "$OUT/mysql_to_pg.load" <<EOF
LOAD DATABASE
  FROM mysql://$MY_BASE/$MY_DB
  INTO pgsql://$PG_BASE/$DST_DB?sslmode=disable
  WITH prefetch rows = 10000
  INCLUDING ONLY TABLE NAMES MATCHING 't'
  ALTER SCHEMA '$MY_DB' RENAME TO 'public';
EOF
}

# The psql pipe in binary COPY format (faster than text: no parsing and
# formatting of values), the primary key added inside the timed command,
# with each psql timed on its own (see measure_once).
PSQL_PIPE='set -o pipefail
/usr/bin/time -v -o "$0/out.time" psql -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$2" -U "$3" -d "$4" \
    -c "\copy t TO STDOUT (FORMAT binary)" |
/usr/bin/time -v -o "$0/in.time" psql -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$2" -U "$3" -d "$5" \
    -c "\copy t FROM STDIN (FORMAT binary)" -c "ALTER TABLE t ADD PRIMARY KEY (id)"'

# --- run -----------------------------------------------------------------------

mkdir -p "$DATA" "$OUT" "$SLING_HOME_DIR"
printf 'rows\tcase\ttool\trun\tstatus\twall_s\trss_kb\tin_bytes\tout_bytes\n' > "$MEASUREMENTS"
printf 'case\ttool\ttypes\tkey\n' > "$COLUMNS_TSV"
write_pgloader_files

for rows in "${SIZES[@]}"; do
    t=$(label "$rows")
    csv=$DATA/t$t.csv
    ensure_data "$rows" "$csv"
    load_sources "$csv" "$rows"
    # Every csv->pg run reads the CSV from the page cache, the first one too.
    cat "$csv" > /dev/null

    # csv->pg
    if run_sluice; then
        measure "$rows" 'csv->pg' sluice empty_dst "$csv" -- \
            "$SLUICE" copy "$csv" "postgres://$PG_BASE/$DST_DB?table=t"
    fi
    measure "$rows" 'csv->pg' psql csv_table_dst "$csv" -- \
        psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" \
            -d "$DST_DB" -c "\\copy t FROM '$csv' WITH (FORMAT csv, HEADER)"

    # pg->pg
    if run_sluice; then
        measure "$rows" 'pg->pg' sluice empty_dst "$csv" -- \
            "$SLUICE" copy "postgres://$PG_BASE/$SRC_DB?table=t" \
                "postgres://$PG_BASE/$DST_DB"
    fi
    measure "$rows" 'pg->pg' psql-pipe pg_table_dst "$csv" -- \
        bash -c "$PSQL_PIPE" "$PARTS" "$PG_HOST" "$PG_PORT" "$PG_USER" \
            "$SRC_DB" "$DST_DB"
    if [ -z "$PGLOADER_NA" ]; then
        measure "$rows" 'pg->pg' pgloader empty_dst "$csv" -- \
            pgloader --root-dir "$OUT/pgloader" "$OUT/pg_to_pg.load"
    else
        not_available "$rows" 'pg->pg' pgloader "$PGLOADER_NA"
    fi
    if [ -z "$SLING_NA" ]; then
        measure "$rows" 'pg->pg' sling empty_dst "$csv" -- \
            "$SLING_BIN" run --src-conn SLING_PG_SRC --src-stream public.t \
                --tgt-conn SLING_PG_DST --tgt-object public.t --mode full-refresh
    else
        not_available "$rows" 'pg->pg' sling "$SLING_NA"
    fi

    # mysql->pg
    if run_sluice; then
        measure "$rows" 'mysql->pg' sluice empty_dst "$csv" -- \
            "$SLUICE" copy "mysql://$MY_BASE/$MY_DB?table=t" \
                "postgres://$PG_BASE/$DST_DB"
    fi
    if [ -z "$PGLOADER_NA" ]; then
        measure "$rows" 'mysql->pg' pgloader empty_dst "$csv" -- \
            pgloader --root-dir "$OUT/pgloader" "$OUT/mysql_to_pg.load"
    else
        not_available "$rows" 'mysql->pg' pgloader "$PGLOADER_NA"
    fi
    if [ -z "$SLING_NA" ]; then
        measure "$rows" 'mysql->pg' sling empty_dst "$csv" -- \
            "$SLING_BIN" run --src-conn SLING_MY_SRC --src-stream "$MY_DB.t" \
                --tgt-conn SLING_PG_DST --tgt-object public.t --mode full-refresh
    else
        not_available "$rows" 'mysql->pg' sling "$SLING_NA"
    fi
done

# --- report --------------------------------------------------------------------

sluice_version=skipped
if run_sluice; then
    sluice_version=$("$SLUICE" --version 2>/dev/null || echo unknown)
fi
pgloader_version=${PGLOADER_NA:-$(pgloader --version 2>/dev/null |
    sed -n '1{s/^pgloader version //; s/"//g; p}' || echo unknown)}
if [ -z "$PGLOADER_NA" ] && pkg=$(dpkg-query -W -f '${Version}' pgloader 2>/dev/null); then
    pgloader_version="$pgloader_version (Debian package $pkg)"
fi
sling_version=${SLING_NA:-$("$SLING_BIN" --version 2>/dev/null |
    sed -n 's/^Version: //p' || echo unknown)}
report=$(
    echo "## $(date '+%F %T %Z') (databases)"
    echo
    echo "- machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB," \
         "$(uname -sr)"
    echo "- sluice: $sluice_version ($SLUICE)," \
         "commit $(git describe --always --dirty 2>/dev/null || echo none)"
    echo "- servers: PostgreSQL $(pg postgres -Atc 'SHOW server_version')," \
         "MariaDB $(my -N -B -e 'SELECT VERSION()'), both local over TCP;" \
         "shared_buffers $(pg postgres -Atc 'SHOW shared_buffers')," \
         "max_wal_size $(pg postgres -Atc 'SHOW max_wal_size')," \
         "innodb_buffer_pool_size $(my -N -B -e 'SELECT @@innodb_buffer_pool_size DIV 1048576')MB," \
         "innodb_flush_method $(my -N -B -e 'SELECT @@innodb_flush_method')"
    echo "- peers: $(psql --version | sed 's/ (PostgreSQL)//')," \
         "pgloader $pgloader_version, Sling $sling_version"
    echo "- data: bench/gen_table.py --seed $SEED; MB = 10^6 bytes of the" \
         "same rows as CSV; wall = median of $REPEAT runs, peak RSS = largest" \
         "of them (client side only: server memory is not counted)"
    echo
    python3 bench/db_report.py "$MEASUREMENTS" "$COLUMNS_TSV"
    echo
)
echo "$report"
echo "$report" >> "$RESULTS"
log "appended to $RESULTS"
exit "$FAILED"
