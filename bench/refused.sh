#!/usr/bin/env bash
# Refused rows at volume: `sluice copy --on-error dlq` of the same CSV into a
# table with a CHECK constraint when no row, half of the rows and every row
# breaks it, into PostgreSQL, MariaDB/MySQL and SQLite. See bench/README.md.
#
#   bench/refused.sh [ROWS]          default: 100000
#
# Environment:
#   SLUICE     sluice binary (default: the release build in the target dir)
#   REPEAT     runs of each measurement, median reported (default 3)
#   PG_HOST PG_PORT PG_USER   PostgreSQL server (127.0.0.1, 5432, postgres)
#   MY_HOST MY_PORT MY_USER   MariaDB/MySQL server (127.0.0.1, 3306, root)
#
# Both servers must accept their user without a password. The script drops
# and recreates the database sluice_bench_refused on each.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${1:-100000}
SLUICE=${SLUICE:-${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}/release/sluice}
REPEAT=${REPEAT:-3}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
MY_HOST=${MY_HOST:-127.0.0.1}
MY_PORT=${MY_PORT:-3306}
MY_USER=${MY_USER:-root}
DB=sluice_bench_refused
DATA=bench/data/refused
OUT=bench/out/refused
RESULTS=bench/RESULTS.md
FAILED=0

log() { printf '== %s\n' "$*" >&2; }

[ -x "$SLUICE" ] || { echo "no sluice binary at $SLUICE; cargo build --release -p sluice-cli" >&2; exit 1; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
mkdir -p "$DATA" "$OUT"

PG="postgres://$PG_USER@$PG_HOST:$PG_PORT"
MY="mysql://$MY_USER@$MY_HOST:$MY_PORT"
psql_q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
my_q() { mariadb -u "$MY_USER" -h "$MY_HOST" -P "$MY_PORT" --protocol=tcp -N -B ${2:+"$DB"} -e "$1"; }

psql_q "$PG/postgres" "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
psql_q "$PG/postgres" "CREATE DATABASE $DB"
my_q "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"

# --- data ---------------------------------------------------------------------
# id, name, qty, amount, note; `qty` breaks CHECK (qty >= 0) on no row
# (clean), every other row (half) or every row (all).
for case in clean half all; do
    f=$DATA/$case-$ROWS.csv
    [ -s "$f" ] && continue
    awk -v n="$ROWS" -v c="$case" 'BEGIN {
        print "id,name,qty,amount,note";
        for (i = 1; i <= n; i++) {
            q = i % 1000;
            if (c == "all" || (c == "half" && i % 2 == 0)) q = -1 - q;
            printf "%d,name %d,%d,%d.%02d,a note about row %d of the refused-rows benchmark\n", i, i, q, i % 9973, i % 100, i;
        }
    }' > "$f"
done

# --- one load -------------------------------------------------------------------
# Recreates the destination table, copies, checks the counts; prints the wall time.
reset_table() {
    case $1 in
        postgres) psql_q "$PG/$DB" "DROP TABLE IF EXISTS items; CREATE TABLE items (id integer PRIMARY KEY, \
                      name text NOT NULL, qty integer CONSTRAINT qty_nonneg CHECK (qty >= 0), amount numeric(12,2), note text)" ;;
        mysql) my_q "DROP TABLE IF EXISTS items; CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL, qty INT, \
                      amount DECIMAL(12,2), note TEXT, CONSTRAINT qty_nonneg CHECK (qty >= 0))" db ;;
        sqlite) rm -f "$OUT/items.db"*
                sqlite3 "$OUT/items.db" "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                      qty INTEGER CONSTRAINT qty_nonneg CHECK (qty >= 0), amount NUMERIC, note TEXT)" ;;
    esac
}
destination() {
    case $1 in
        postgres) echo "$PG/$DB?table=items" ;;
        mysql) echo "$MY/$DB?table=items" ;;
        sqlite) echo "sqlite://$OUT/items.db?table=items" ;;
    esac
}
count() {
    case $1 in
        postgres) psql_q "$PG/$DB" "SELECT count(*) FROM items" ;;
        mysql) my_q "SELECT count(*) FROM items" db ;;
        sqlite) sqlite3 "$OUT/items.db" "SELECT count(*) FROM items" ;;
    esac
}
load() {
    local sink=$1 case=$2 state
    reset_table "$sink"
    state=$(mktemp -d)
    rm -f "$OUT/rejects.ndjson"
    sync
    if ! XDG_STATE_HOME=$state /usr/bin/time -f '%e' -o "$OUT/time" "$SLUICE" copy "$DATA/$case-$ROWS.csv" \
        "$(destination "$sink")" --on-error dlq --dlq "$OUT/rejects.ndjson" --no-progress 2> "$OUT/stderr"; then
        log "FAILED: $sink $case: $(tail -3 "$OUT/stderr")"
        FAILED=1
    fi
    rm -rf "$state"
    local want_refused=0 loaded refused
    case $case in half) want_refused=$((ROWS / 2)) ;; all) want_refused=$ROWS ;; esac
    loaded=$(count "$sink")
    refused=$( [ -f "$OUT/rejects.ndjson" ] && wc -l < "$OUT/rejects.ndjson" || echo 0)
    if [ "$loaded" != $((ROWS - want_refused)) ] || [ "$refused" != "$want_refused" ]; then
        log "WRONG: $sink $case: loaded $loaded, dead letters $refused, expected $((ROWS - want_refused)) and $want_refused"
        FAILED=1
    fi
    if [ "$want_refused" -gt 0 ] && ! grep -q qty_nonneg "$OUT/rejects.ndjson"; then
        log "WRONG: $sink $case: dead letters do not name the constraint"
        FAILED=1
    fi
    cat "$OUT/time"
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# --- measure ------------------------------------------------------------------------
TABLE=$OUT/table.md
{
    echo "| sink | refused | wall s (median of $REPEAT) | input rows/s | vs clean |"
    echo "|---|---|---|---|---|"
} > "$TABLE"
for sink in postgres mysql sqlite; do
    clean_rate=""
    for case in clean half all; do
        times=()
        for _ in $(seq "$REPEAT"); do
            times+=("$(load "$sink" "$case")")
            log "$sink $case: ${times[-1]} s"
        done
        wall=$(printf '%s\n' "${times[@]}" | median)
        rate=$(awk -v n="$ROWS" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')
        [ "$case" = clean ] && clean_rate=$rate
        ratio=$(awk -v r="$rate" -v c="$clean_rate" 'BEGIN { printf "%.0f%%", 100 * r / c }')
        label=$(case $case in clean) echo "none" ;; half) echo "50%" ;; all) echo "100%" ;; esac)
        echo "| $sink | $label | $wall | $rate | $ratio |" >> "$TABLE"
    done
done

# A run whose loads went wrong measured something else: it is shown, not kept.
if [ "$FAILED" = 0 ]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d %H:%M:%S UTC') (refused rows, bench/refused.sh, $ROWS rows, commit $(git rev-parse --short HEAD))"
        echo
        cat "$TABLE"
    } >> "$RESULTS"
else
    log "some loads went wrong (see above): not recorded in $RESULTS"
fi
cat "$TABLE"
psql_q "$PG/postgres" "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
my_q "DROP DATABASE IF EXISTS $DB"
exit $FAILED
