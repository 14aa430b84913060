#!/usr/bin/env bash
# A real-world shape: MySQL's `employees.salaries` (a two-column primary key,
# dates and integers) copied from MariaDB to PostgreSQL by sluice and by
# pgloader, alternating, in the same run. A second table holds the same rows
# under a one-column integer key, for comparison. See bench/README.md.
#
#   bench/salaries.sh [ROWS]          default 3000000 (employees has 2,844,047)
#
# Environment:
#   SLUICE   sluice binary (default: the release build in the target dir)
#   REPEAT   runs of each measurement, median reported (default 3)
#   PG_HOST PG_PORT PG_USER   PostgreSQL server (127.0.0.1, 5432, postgres)
#   MY_HOST MY_PORT MY_USER   MariaDB/MySQL server (127.0.0.1, 3306, root)
#
# The MariaDB database sluice_bench_emp is generated once (tables salaries
# and salaries_id) and reused while it holds ROWS rows; the PostgreSQL
# database sluice_bench_emp_dst is recreated before every run.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/servers.sh
ROWS=${1:-3000000}
REPEAT=${REPEAT:-3}
MY_DB=sluice_bench_emp
DST_DB=sluice_bench_emp_dst
OUT=bench/out/salaries
RESULTS=bench/RESULTS.md
PG_BASE="$PG_USER@$PG_HOST:$PG_PORT"
MY_BASE="$MY_USER@$MY_HOST:$MY_PORT"

[ "$REPEAT" -ge 1 ] || { echo "error: REPEAT must be at least 1" >&2; exit 2; }
[ -x "$SLUICE" ] || { echo "error: no sluice binary at $SLUICE; cargo build --release -p sluice-cli" >&2; exit 1; }
command -v pgloader >/dev/null || { echo "error: pgloader is missing (apt-get install pgloader)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
mkdir -p "$OUT"

# --- data ----------------------------------------------------------------------

# Ten salary rows per employee, like employees.salaries (9.5 on average);
# the last one runs to 9999-01-01. Inserted in key order, as a dump loads.
EMPLOYEES=$(( (ROWS + 9) / 10 ))
have=$(my -N -e "SELECT COUNT(*) FROM $MY_DB.salaries" 2>/dev/null || echo 0)
have_id=$(my -N -e "SELECT COUNT(*) FROM $MY_DB.salaries_id" 2>/dev/null || echo 0)
if [ "$have" != "$ROWS" ] || [ "$have_id" != "$ROWS" ]; then
    log "generating $MY_DB.salaries and salaries_id ($ROWS rows)"
    my -e "DROP DATABASE IF EXISTS $MY_DB; CREATE DATABASE $MY_DB"
    my "$MY_DB" -e "
      CREATE TABLE salaries (
        emp_no INT NOT NULL, salary INT NOT NULL, from_date DATE NOT NULL, to_date DATE NOT NULL,
        PRIMARY KEY (emp_no, from_date)) ENGINE=InnoDB;
      INSERT INTO salaries
        SELECT STRAIGHT_JOIN 10000 + e.seq,
               38000 + (e.seq * 7919 + y.seq * 104729) % 120000,
               DATE_ADD('1985-01-01', INTERVAL (e.seq % 3650) + y.seq * 365 DAY),
               IF(y.seq = 9, '9999-01-01', DATE_ADD('1985-01-01', INTERVAL (e.seq % 3650) + (y.seq + 1) * 365 DAY))
        FROM seq_1_to_${EMPLOYEES} e, seq_0_to_9 y
        ORDER BY e.seq, y.seq LIMIT $ROWS;
      CREATE TABLE salaries_id (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        emp_no INT NOT NULL, salary INT NOT NULL, from_date DATE NOT NULL, to_date DATE NOT NULL) ENGINE=InnoDB;
      INSERT INTO salaries_id (emp_no, salary, from_date, to_date)
        SELECT emp_no, salary, from_date, to_date FROM salaries ORDER BY emp_no, from_date;
      ANALYZE TABLE salaries, salaries_id;"
fi

# One line over every row, computed alike on both servers.
DIGEST_COLS="count(*), count(DISTINCT emp_no), sum(salary), min(from_date), max(from_date), max(to_date)"
digest_my() { my -N "$MY_DB" -e "SELECT CONCAT_WS(' ', $DIGEST_COLS) FROM $1"; }
digest_pg() { pg "$DST_DB" -Atc "SELECT concat_ws(' ', $DIGEST_COLS) FROM public.$1"; }

# --- measuring -------------------------------------------------------------------

MEASUREMENTS=$OUT/measurements.tsv
printf 'table\ttool\trun\tstatus\twall_s\trss_kb\tkey\n' > "$MEASUREMENTS"

cat > "$OUT/salaries.load" <<EOF
LOAD DATABASE
  FROM mysql://$MY_BASE/$MY_DB
  INTO pgsql://$PG_BASE/$DST_DB?sslmode=disable
  WITH prefetch rows = 10000
  INCLUDING ONLY TABLE NAMES MATCHING 'salaries'
  ALTER SCHEMA '$MY_DB' RENAME TO 'public';
EOF
sed "s/MATCHING 'salaries'/MATCHING 'salaries_id'/" "$OUT/salaries.load" > "$OUT/salaries_id.load"

run_once() {  # TABLE TOOL REP
    local table=$1 tool=$2 rep=$3
    local tv="$OUT/${tool}_${table}_$rep.time" cmdlog="$OUT/${tool}_${table}_$rep.log"
    pg postgres -c "DROP DATABASE IF EXISTS $DST_DB WITH (FORCE)" -c "CREATE DATABASE $DST_DB"
    pg postgres -c CHECKPOINT
    sync
    log "$tool $table, run $rep/$REPEAT"
    local status=ok
    case $tool in
        sluice)
            rm -rf "$OUT/state"
            /usr/bin/time -v -o "$tv" "$SLUICE" copy "mysql://$MY_BASE/$MY_DB?table=$table" \
                "postgres://$PG_BASE/$DST_DB" --state-dir "$OUT/state" --no-progress \
                > "$cmdlog" 2>&1 || status=failed ;;
        pgloader)
            /usr/bin/time -v -o "$tv" pgloader --root-dir "$OUT/pgloader" "$OUT/$table.load" \
                > "$cmdlog" 2>&1 || status=failed
            # pgloader may exit 1 after an import its summary reports complete.
            if [ "$status" = failed ] && grep -q 'Total import time *✓' "$cmdlog"; then status=ok; fi ;;
    esac
    local wall rss code
    read -r wall rss code < <(python3 bench/report.py timev "$tv")
    local key=""
    if [ "$status" = ok ]; then
        local got
        got=$(digest_pg "$table" 2>/dev/null || echo "no table")
        if [ "$got" != "$(cat "$OUT/$table.digest")" ]; then
            status="different data: $got"
        fi
        key=$(pg "$DST_DB" -Atc "SELECT coalesce((SELECT pg_get_constraintdef(oid) FROM pg_constraint
               WHERE conrelid = 'public.$table'::regclass AND contype = 'p'), 'no key')")
    else
        status="failed (exit $code)"
        tail -n 5 "$cmdlog" | sed 's/^/   | /' >&2
    fi
    [ "$status" = ok ] || log "$status"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$table" "$tool" "$rep" "$status" "$wall" "$rss" "$key" >> "$MEASUREMENTS"
}

for table in salaries salaries_id; do
    digest_my "$table" > "$OUT/$table.digest"
    for rep in $(seq "$REPEAT"); do
        # Alternating, so a slow minute of the machine hits both tools.
        run_once "$table" sluice "$rep"
        run_once "$table" pgloader "$rep"
    done
done

# --- report ----------------------------------------------------------------------

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
pgloader_version=$(pgloader --version 2>/dev/null | sed -n '1{s/^pgloader version //; s/"//g; p}')
report=$(python3 - "$MEASUREMENTS" "$ROWS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
n = int(sys.argv[2])
print("| table | key | tool | wall s (median) | wall range | rows/s | peak RSS MiB | status |")
print("|---|---|---|---:|---:|---:|---:|---|")
med = {}
failed = False
for table in ("salaries", "salaries_id"):
    for tool in ("sluice", "pgloader"):
        ms = [r for r in rows if r["table"] == table and r["tool"] == tool]
        if not ms:
            continue
        walls = [float(r["wall_s"]) for r in ms]
        ok = all(r["status"] == "ok" for r in ms)
        failed |= not ok
        m = statistics.median(walls)
        med[table, tool] = m
        rss = max(int(r["rss_kb"]) for r in ms) / 1024
        status = "ok" if ok else "; ".join(sorted({r["status"] for r in ms if r["status"] != "ok"}))
        print(f"| {table} | {ms[0]['key'] or '-'} | {tool} | {m:.2f} | {min(walls):.2f}–{max(walls):.2f} "
              f"| {n / m:,.0f} | {rss:,.1f} | {status} |")
print()
for table in ("salaries", "salaries_id"):
    if (table, "sluice") in med and (table, "pgloader") in med:
        print(f"- {table}: sluice is {med[table, 'pgloader'] / med[table, 'sluice']:.2f}x pgloader's speed")
sys.exit(1 if failed else 0)
EOF
) || FAILED=1
echo "$report"
{
    printf '\n## %s (employees.salaries shape, bench/salaries.sh, %s rows, commit %s)\n\n' \
        "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$ROWS" "$commit"
    printf 'MariaDB → PostgreSQL; `salaries` has the two-column key (emp_no, from_date),\n'
    printf '`salaries_id` the same rows under an integer key. pgloader %s (prefetch rows = 10000),\n' "$pgloader_version"
    printf 'sluice %s. Median of %s alternating runs; every run checked by a digest of all rows.\n\n' \
        "$("$SLUICE" --version 2>/dev/null | head -n1)" "$REPEAT"
    echo "$report"
} >> "$RESULTS"
exit "${FAILED:-0}"
