#!/usr/bin/env bash
# End-to-end benchmark: sluice against DuckDB and the sqlite3 CLI on the
# same generated CSV. See bench/README.md.
#
#   bench/run.sh [ROWS ...]          default: 1000000 10000000
#
# Environment:
#   SLUICE       sluice binary (default: the release build in the target dir)
#   SKIP_SLUICE  1 = run only DuckDB and sqlite3 (for testing the harness)
#   SEED         generator seed (default 42)
#   REPEAT       runs of each measurement, median reported (default 3)
set -euo pipefail

# sluice is given the paths relative to the repository root, as a user
# would type them.
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ]; then SIZES=("$@"); else SIZES=(1000000 10000000); fi
SLUICE=${SLUICE:-${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}/release/sluice}
SKIP_SLUICE=${SKIP_SLUICE:-0}
SEED=${SEED:-42}
REPEAT=${REPEAT:-3}
DATA=bench/data
OUT=bench/out
RESULTS=bench/RESULTS.md
MEASUREMENTS=$OUT/measurements.tsv
FAILED=0

log() { printf '== %s\n' "$*" >&2; }

# --- peers -------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
    apt-get install -y -qq "$@"
}

python3 -c 'import duckdb' 2>/dev/null || pip install -q duckdb
command -v sqlite3 >/dev/null || apt_install sqlite3
[ -x /usr/bin/time ] || apt_install time

if [ ! -x "$SLUICE" ]; then
    if [ "$SKIP_SLUICE" = 1 ]; then
        log "no sluice binary at $SLUICE; SKIP_SLUICE=1, running peers only"
    else
        echo "error: no sluice binary at $SLUICE" >&2
        echo "build it first: cargo build --release -p sluice-cli" >&2
        echo "(or set SLUICE=/path/to/sluice, or SKIP_SLUICE=1 for peers only)" >&2
        exit 1
    fi
fi
run_sluice() { [ "$SKIP_SLUICE" != 1 ] || [ -x "$SLUICE" ]; }

# --- data ----------------------------------------------------------------------

label() {  # 1000000 -> 1m, 5000 -> 5k
    local n=$1
    if [ $((n % 1000000)) = 0 ]; then echo "$((n / 1000000))m"
    elif [ $((n % 1000)) = 0 ]; then echo "$((n / 1000))k"
    else echo "$n"; fi
}

ensure_data() {  # ROWS FILE
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

# measure ROWS CASE TOOL CSV OUTPUT -- COMMAND...
# Runs COMMAND $REPEAT times: this is a shared 2-core VM, and a single run
# can be off by a factor of two; the report takes the median.
measure() {
    local rep
    for rep in $(seq "$REPEAT"); do measure_once "$rep" "$@"; done
}

# measure_once REP ROWS CASE TOOL CSV OUTPUT -- COMMAND...
# Runs COMMAND under /usr/bin/time -v with OUTPUT removed first, then checks
# the row count (outside the timing) and appends one line to $MEASUREMENTS.
measure_once() {
    local rep=$1 rows=$2 case=$3 tool=$4 csv=$5 output=$6
    shift 7
    local name="${tool}_${case/->/_to_}_$(label "$rows")_$rep"
    local tv="$OUT/$name.time" cmdlog="$OUT/$name.log"
    if [ -n "$output" ]; then rm -rf -- "$output" "$output-journal" "$output-wal"; fi
    # Each run is a new job (see bench/db.sh).
    rm -rf "$OUT/state"
    export XDG_STATE_HOME="$OUT/state"
    log "$tool $case, $rows rows, run $rep/$REPEAT"
    local status=ok
    /usr/bin/time -v -o "$tv" "$@" > "$cmdlog" 2>&1 || status=failed
    # Leave no dirty pages behind to be written back during the next run.
    sync
    local wall rss code
    read -r wall rss code < <(python3 bench/report.py timev "$tv")
    if [ "$status" = ok ]; then
        local got
        got=$(count_rows "$case" "$tool" "$output" "$cmdlog") || got="no count"
        if [ -n "$got" ] && [ "$got" != "$rows" ]; then
            status="wrong rows: $got"
        fi
    else
        status="failed (exit $code)"
        tail -n 5 "$cmdlog" | sed 's/^/   | /' >&2
    fi
    [ "$status" = ok ] || { log "$status"; FAILED=1; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rows" "$case" "$tool" \
        "$rep" "$status" "$wall" "$rss" "$(size_of "$csv")" "$(size_of "$output")" \
        >> "$MEASUREMENTS"
}

# Prints the row count the run produced, or nothing where there is no way to
# tell (sluice into null://).
count_rows() {  # CASE TOOL OUTPUT LOG
    case "$1" in
        'csv->parquet')
            python3 -c 'import duckdb, sys
con = duckdb.connect()
print(con.execute("SELECT count(*) FROM read_parquet(?)", [sys.argv[1]]).fetchone()[0])' "$3" ;;
        'csv->sqlite') sqlite3 "$3" 'SELECT count(*) FROM t' ;;
        'csv->null') if [ "$2" = duckdb ]; then tail -n 1 "$4"; fi ;;
    esac
}

# The sqlite3 CLI gets a table typed like the CSV, so that it too converts
# numbers instead of storing every field as text.
SQLITE_SCHEMA='CREATE TABLE t(id INTEGER, user_id INTEGER, amount REAL,
  price REAL, created_at TEXT, event_date TEXT, code TEXT, comment TEXT,
  ok TEXT, score INTEGER)'

# --- run -----------------------------------------------------------------------

mkdir -p "$DATA" "$OUT"
printf 'rows\tcase\ttool\trun\tstatus\twall_s\trss_kb\tin_bytes\tout_bytes\n' > "$MEASUREMENTS"

for rows in "${SIZES[@]}"; do
    t=$(label "$rows")
    csv=$DATA/t$t.csv
    ensure_data "$rows" "$csv"
    # Every run reads the CSV from the page cache, the first one included.
    cat "$csv" > /dev/null

    if run_sluice; then
        measure "$rows" 'csv->null' sluice "$csv" "" -- \
            "$SLUICE" copy "$csv" null://
        measure "$rows" 'csv->parquet' sluice "$csv" "$OUT/t$t.parquet" -- \
            "$SLUICE" copy "$csv" "$OUT/t$t.parquet"
        measure "$rows" 'csv->sqlite' sluice "$csv" "$OUT/t$t.db" -- \
            "$SLUICE" copy "$csv" "sqlite://$OUT/t$t.db?table=t"
    fi
    measure "$rows" 'csv->null' duckdb "$csv" "" -- \
        python3 bench/duckdb_peer.py null "$csv"
    measure "$rows" 'csv->parquet' duckdb "$csv" "$OUT/t$t.duckdb.parquet" -- \
        python3 bench/duckdb_peer.py parquet "$csv" "$OUT/t$t.duckdb.parquet"
    measure "$rows" 'csv->sqlite' sqlite3 "$csv" "$OUT/t$t.sqlite3.db" -- \
        sqlite3 "$OUT/t$t.sqlite3.db" "$SQLITE_SCHEMA" \
            ".import --csv --skip 1 $csv t"
    # The outputs are only needed for the row check; they take gigabytes.
    rm -rf "$OUT"/t"$t".*parquet "$OUT"/t"$t".*db
done

# --- report --------------------------------------------------------------------

sluice_version=skipped
if run_sluice; then
    sluice_version=$("$SLUICE" --version 2>/dev/null || echo unknown)
fi
report=$(
    echo "## $(date '+%F %T %Z')"
    echo
    echo "- machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB," \
         "$(uname -sr)"
    echo "- sluice: $sluice_version ($SLUICE)," \
         "commit $(git describe --always --dirty 2>/dev/null || echo none)"
    echo "- duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)')," \
         "sqlite3 $(sqlite3 --version | cut -d' ' -f1)"
    echo "- data: bench/gen_table.py --seed $SEED; MB = 10^6 bytes of input CSV;" \
         "wall = median of $REPEAT runs, peak RSS = largest of them"
    echo
    python3 bench/report.py table "$MEASUREMENTS"
    echo
)
echo "$report"
echo "$report" >> "$RESULTS"
log "appended to $RESULTS"
exit "$FAILED"
