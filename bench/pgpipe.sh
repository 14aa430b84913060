#!/usr/bin/env bash
# PostgreSQL → PostgreSQL: `sluice copy` against the binary psql pipe, runs
# alternating in one session. See bench/README.md ("PostgreSQL to PostgreSQL
# against the binary pipe").
#
#   SLUICE=path/to/sluice bench/pgpipe.sh [ROWS ...]   default: 4000000 10000000
#
# Environment:
#   SLUICE        sluice binary (default: the release build in the target dir)
#   REPEAT        runs of each tool per size, alternating (default 5)
#   PG_HOST PG_PORT PG_USER   PostgreSQL server (127.0.0.1, 5432, postgres)
#
# The source table has a bigint primary key, numeric(12,2), text and
# timestamptz columns. sluice creates the destination table, loads it and
# adds the primary key; the pipe loads into the same table created without
# the key (untimed) and adds the key inside its timed command:
#
#   psql -d SRC -c "\copy t TO STDOUT (FORMAT binary)" |
#     psql -d DST -c "\copy t FROM STDIN (FORMAT binary)" -c "ALTER TABLE t ADD PRIMARY KEY (id)"
#
# Before every run (untimed) the destination database is recreated, then
# CHECKPOINT and sync. After every run (untimed) the destination must hold
# the source's rows (count and an order-independent checksum) and the key.
# Drops and recreates the databases sluice_pgpipe_src and sluice_pgpipe_dst.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ]; then SIZES=("$@"); else SIZES=(4000000 10000000); fi
source bench/servers.sh
REPEAT=${REPEAT:-5}
SRC_DB=sluice_pgpipe_src
DST_DB=sluice_pgpipe_dst
OUT=bench/out/pgpipe
BASE="$PG_USER@$PG_HOST:$PG_PORT"

[ -x "$SLUICE" ] || { echo "error: no sluice binary at $SLUICE (set SLUICE=...)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

recreate() { pg postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"; }

TABLE='CREATE TABLE t (id bigint NOT NULL, n numeric(12,2), v text, at timestamptz)'
# Order-independent, so it does not depend on how a tool orders its writes.
DIGEST="SELECT count(*) || ' ' || coalesce(sum(hashtext(t::text)::bigint), 0) FROM t"

PIPE='set -o pipefail
psql -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$2" -U "$3" -d "$4" -c "\copy t TO STDOUT (FORMAT binary)" |
psql -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$2" -U "$3" -d "$5" -c "\copy t FROM STDIN (FORMAT binary)" \
    -c "ALTER TABLE t ADD PRIMARY KEY (id)"'

mkdir -p "$OUT"
TSV=$OUT/runs.tsv
printf 'rows\ttool\trun\twall_s\trss_kb\n' > "$TSV"

# run_once ROWS TOOL REP: prepares the destination, runs TOOL timed, checks the result.
run_once() {
    local rows=$1 tool=$2 rep=$3 tv="$OUT/$2_$1_$3.time" cmdlog="$OUT/$2_$1_$3.log"
    recreate "$DST_DB"
    if [ "$tool" = psql-pipe ]; then pg "$DST_DB" -c "$TABLE"; fi
    pg postgres -c CHECKPOINT
    sync
    log "$tool, $rows rows, run $rep/$REPEAT"
    local status=0
    if [ "$tool" = sluice ]; then
        rm -rf "$OUT/state"
        XDG_STATE_HOME="$PWD/$OUT/state" /usr/bin/time -f '%e %M' -o "$tv" \
            "$SLUICE" copy "postgres://$BASE/$SRC_DB?table=t" "postgres://$BASE/$DST_DB" --no-progress \
            > "$cmdlog" 2>&1 || status=$?
    else
        /usr/bin/time -f '%e %M' -o "$tv" bash -c "$PIPE" pipe "$PG_HOST" "$PG_PORT" "$PG_USER" "$SRC_DB" "$DST_DB" \
            > "$cmdlog" 2>&1 || status=$?
    fi
    if [ "$status" != 0 ]; then
        echo "error: $tool failed (exit $status); see $cmdlog" >&2
        exit 1
    fi
    local got key
    got=$(pg "$DST_DB" -Atc "$DIGEST")
    key=$(pg "$DST_DB" -Atc "SELECT count(*) FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'p'")
    if [ "$got" != "$WANT" ] || [ "$key" != 1 ]; then
        echo "error: $tool left '$got' (want '$WANT'), primary key: $key" >&2
        exit 1
    fi
    local wall rss
    read -r wall rss < "$tv"
    printf '%s\t%s\t%s\t%s\t%s\n' "$rows" "$tool" "$rep" "$wall" "$rss" >> "$TSV"
    printf '   %s %s s, %s MiB\n' "$tool" "$wall" "$((rss / 1024))" >&2
}

for rows in "${SIZES[@]}"; do
    log "source: $rows rows"
    recreate "$SRC_DB"
    pg "$SRC_DB" -c "$TABLE" \
        -c "INSERT INTO t SELECT g, (g % 100000) / 7.0, md5(g::text) || repeat('x', (g % 40)::int),
                timestamptz '2026-01-01' + g * interval '1 second' FROM generate_series(1, $rows) g" \
        -c "ALTER TABLE t ADD PRIMARY KEY (id)" -c "VACUUM ANALYZE t"
    WANT=$(pg "$SRC_DB" -Atc "$DIGEST")
    # Both tools read the table from the page cache, the first run too.
    pg "$SRC_DB" -c "\\copy t TO '/dev/null'"
    for rep in $(seq "$REPEAT"); do
        # Alternate which goes first, so neither always follows the other.
        if [ $((rep % 2)) = 1 ]; then order=(sluice psql-pipe); else order=(psql-pipe sluice); fi
        for tool in "${order[@]}"; do run_once "$rows" "$tool" "$rep"; done
    done
done

python3 - "$TSV" <<'EOF'
import csv, statistics, sys
runs = {}
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    runs.setdefault((int(r["rows"]), r["tool"]), []).append((float(r["wall_s"]), int(r["rss_kb"])))
print("| rows | tool | wall s (median) | range | peak RSS MiB |")
print("|---|---|---|---|---|")
for (rows, tool), v in sorted(runs.items()):
    w = [x for x, _ in v]
    print(f"| {rows:,} | {tool} | {statistics.median(w):.2f} | {min(w):.2f}-{max(w):.2f} | {max(m for _, m in v) / 1024:.1f} |")
for rows in sorted({r for r, _ in runs}):
    s, p = runs.get((rows, "sluice")), runs.get((rows, "psql-pipe"))
    if s and p:
        ratio = statistics.median(x for x, _ in p) / statistics.median(x for x, _ in s)
        print(f"\n{rows:,} rows: sluice at {ratio:.2f}x the binary pipe's speed (pipe median / sluice median)")
EOF
