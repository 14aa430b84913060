#!/usr/bin/env bash
# Change capture under faults: `sluice sync` PostgreSQL -> PostgreSQL while
# pgbench writes random inserts, updates (some moving a primary key, some
# leaving a 1 MiB out-of-line value unchanged), deletes and multi-statement
# transactions over two tables, one with a two-column key. Three phases, on
# the same databases, each ending when the writer stops and sluice has
# caught up, with every table identical on both sides (count and an md5
# over every row in key order, computed by each server) and every 1 MiB
# value intact:
#   seam     the first sync copies the ROWS-row table while the writer runs,
#            is killed with SIGKILL when 40% of it is in, and is started
#            again: the copy resumes (the line gives the rows the resumed
#            copy read) and the changes made meanwhile follow it
#   kills    sluice killed with SIGKILL at KILLS random instants
#   restart  PostgreSQL itself restarted under it
#
#   bench/cdc_chaos.sh [--quick]
#
# Environment:
#   SLUICE      sluice binary (default: the release build in
#               ${CARGO_TARGET_DIR:-~/.cache/sluice/target})
#   PGURL       server URL without a database (default postgres://postgres@127.0.0.1:5432)
#   SECONDS_ON  how long the writer runs per phase (default 60; --quick 10)
#   KILLS       SIGKILLs in the kill phase (default 20; --quick 4)
#   RATE        writer transactions per second (default 2500; --quick 1000)
#   RESTART     1 (default) runs the phase where PostgreSQL is restarted
#   ROWS        rows of the table copied first (default 1000000; --quick 100000)
#
# Needs wal_level = logical. Uses the databases cdc_chaos_src and
# cdc_chaos_dst (dropped and created again) and the slot cdc_chaos, which it
# drops at the end. Logs go to bench/out/cdc_chaos/. Prints one line per
# phase and exits 1 if any table differs.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}
SLUICE=${SLUICE:-$TARGET/release/sluice}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
if (( QUICK )); then
  SECONDS_ON=${SECONDS_ON:-10}; KILLS=${KILLS:-4}; RATE=${RATE:-1000}; ROWS=${ROWS:-100000}
else
  SECONDS_ON=${SECONDS_ON:-60}; KILLS=${KILLS:-20}; RATE=${RATE:-2500}; ROWS=${ROWS:-1000000}
fi
RESTART=${RESTART:-1}
SRC=$PGURL/cdc_chaos_src
DST=$PGURL/cdc_chaos_dst
SLOT=cdc_chaos
OUT=bench/out/cdc_chaos
STATE=$OUT/state
mkdir -p "$OUT"
rm -rf "$STATE" "$OUT"/*.log

[[ -x "$SLUICE" ]] || { echo "no sluice binary at $SLUICE (cargo build --release -p sluice-cli)" >&2; exit 2; }
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
level=$(q "$PGURL/postgres" "SHOW wal_level")
[[ "$level" == logical ]] || { echo "wal_level is $level; ALTER SYSTEM SET wal_level = logical and restart" >&2; exit 2; }

cleanup() {
  [[ -n "${SYNC_PID:-}" ]] && kill -9 "$SYNC_PID" 2>/dev/null || true
  [[ -n "${WRITER_PID:-}" ]] && kill "$WRITER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  q "$PGURL/postgres" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT'" >/dev/null 2>&1 || true
}
trap cleanup EXIT

q "$PGURL/postgres" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT'" >/dev/null
for db in cdc_chaos_src cdc_chaos_dst; do
  q "$PGURL/postgres" "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  q "$PGURL/postgres" "CREATE DATABASE $db"
done
q "$SRC" "
CREATE SEQUENCE moved START 1;
CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL, note text, price numeric(12,2), at timestamptz, big text);
ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
INSERT INTO items SELECT g, 0, 'item ' || g, g * 0.25, '2026-01-01'::timestamptz + g * interval '1 s', NULL
  FROM generate_series(1, $ROWS) g;
UPDATE items SET big = (SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 32768) g)
  WHERE id <= 20;
CREATE TABLE lines (item bigint, n int, qty int, PRIMARY KEY (item, n));
INSERT INTO lines SELECT g % 100000 + 1, g, 1 FROM generate_series(1, 200000) g;"
q "$SRC" "VACUUM ANALYZE items"

# The writer's transactions (pgbench scripts, picked by weight).
W=$OUT/writer
mkdir -p "$W"
cat > "$W/insert.sql" <<'EOF'
\set id random(100001, 50000000)
INSERT INTO items VALUES (:id, 1, 'ins', :id * 0.01, now(), NULL) ON CONFLICT (id) DO UPDATE SET v = items.v + 1;
EOF
cat > "$W/update.sql" <<'EOF'
\set id random(21, 120000)
UPDATE items SET v = v + 1, note = md5(random()::text) WHERE id = :id;
EOF
cat > "$W/toast.sql" <<'EOF'
\set id random(1, 20)
UPDATE items SET v = v + 1, at = now() WHERE id = :id;
EOF
cat > "$W/move.sql" <<'EOF'
\set id random(21, 120000)
UPDATE items SET id = 1000000000 + nextval('moved') WHERE id = :id;
EOF
cat > "$W/delete.sql" <<'EOF'
\set id random(21, 120000)
DELETE FROM lines WHERE item = :id;
DELETE FROM items WHERE id = :id;
EOF
cat > "$W/multi.sql" <<'EOF'
\set id random(21, 120000)
\set n random(1, 1000000000)
BEGIN;
INSERT INTO items VALUES (:id, 0, 'multi', 1, now(), NULL) ON CONFLICT (id) DO UPDATE SET v = items.v + 1;
INSERT INTO lines VALUES (:id, :n, 1) ON CONFLICT DO NOTHING;
UPDATE lines SET qty = qty + 1 WHERE item = :id;
DELETE FROM lines WHERE item = :id AND n % 3 = 0;
END;
EOF

writer() { # seconds
  pgbench -n -c 4 -j 2 -T "$1" -R "$RATE" \
    -f "$W/insert.sql@20" -f "$W/update.sql@30" -f "$W/toast.sql@5" -f "$W/move.sql@5" \
    -f "$W/delete.sql@10" -f "$W/multi.sql@30" "$SRC" >> "$OUT/writer.log" 2>&1
}

start_sync() {
  "$SLUICE" sync "$SRC" "$DST" --slot "$SLOT" --state-dir "$STATE" --no-progress >> "$OUT/sync.log" 2>&1 &
  SYNC_PID=$!
}

fingerprints() { # url
  q "$1" "SELECT 'items ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM items t"
  q "$1" "SELECT 'lines ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY item, n), '')) FROM lines t"
  q "$1" "SELECT 'big ' || count(*) || ' ' || md5(coalesce(string_agg(md5(big), '|' ORDER BY id), '')) FROM items WHERE big IS NOT NULL AND length(big) = 1048576"
}

# Waits for sluice to catch up once the writer stopped; prints the seconds it took.
catch_up() {
  local t0=$SECONDS
  while :; do
    if [[ "$(fingerprints "$SRC")" == "$(fingerprints "$DST" 2>/dev/null)" ]]; then
      echo $((SECONDS - t0)); return 0
    fi
    if ! kill -0 "$SYNC_PID" 2>/dev/null; then start_sync; fi
    (( SECONDS - t0 > 300 )) && { echo timeout; return 1; }
    sleep 2
  done
}

verdict() { # phase
  local a b
  a=$(fingerprints "$SRC"); b=$(fingerprints "$DST")
  if [[ "$a" == "$b" ]]; then
    echo "$1: identical ($(echo "$a" | tr '\n' ';'))"
  else
    echo "$1: DIFFERENT"; diff <(echo "$a") <(echo "$b") || true
    FAILED=1
  fi
}

FAILED=0
tx_before=$(q "$SRC" "SELECT xact_commit FROM pg_stat_database WHERE datname = 'cdc_chaos_src'")

# Phase 0: the copy, killed at 40% and resumed, while the writer runs.
writer "$SECONDS_ON" & WRITER_PID=$!
start_sync
until [[ "$(q "$DST" "SELECT CASE WHEN to_regclass('items') IS NULL THEN 0 ELSE (SELECT count(*) FROM items) END" 2>/dev/null || echo 0)" -ge $((ROWS * 2 / 5)) ]]; do
  kill -0 "$SYNC_PID" 2>/dev/null || { echo "sluice sync ended before the copy was 40% in" >&2; tail "$OUT/sync.log" >&2; exit 1; }
  sleep 0.05
done
kill -9 "$SYNC_PID"; wait "$SYNC_PID" 2>/dev/null || true
at_kill=$(q "$DST" "SELECT count(*) FROM items")
mark=$(wc -l < "$OUT/sync.log")
start_sync
wait "$WRITER_PID" || true
WRITER_PID=
took=$(catch_up) || true
resumed=$(tail -n +"$mark" "$OUT/sync.log" | grep -m1 '│ items' | awk -F'┆' '{gsub(/ /, "", $2); print $2}')
verdict "seam ($ROWS rows copied under a writer, killed with $at_kill in, the resumed copy read ${resumed:-?} rows; caught up in ${took}s)"

# Phase 1: SIGKILL at random instants while the writer runs.
writer "$SECONDS_ON" & WRITER_PID=$!
t0=$SECONDS
for ((k = 1; k <= KILLS; k++)); do
  gap=$(python3 -c "import random; print(round(random.uniform(0.4, 2 * $SECONDS_ON / $KILLS - 0.4), 2))")
  sleep "$gap"
  kill -9 "$SYNC_PID" 2>/dev/null || true
  wait "$SYNC_PID" 2>/dev/null || true
  start_sync
done
wait "$WRITER_PID" || true
WRITER_PID=
tps=$(grep -o '^tps = [0-9.]*' "$OUT/writer.log" | tail -1)
took=$(catch_up) || true
verdict "kills ($KILLS SIGKILLs over ${SECONDS_ON}s, writer $tps, caught up in ${took}s)"

# Phase 2: PostgreSQL restarted under sluice while the writer runs.
if [[ "$RESTART" == 1 ]]; then
  major=$(ls /etc/postgresql | sort -n | tail -1)
  half=$((SECONDS_ON / 2))
  writer "$half" || true
  pg_ctlcluster --skip-systemctl-redirect "$major" main restart
  writer "$half" || true
  tps=$(grep -o '^tps = [0-9.]*' "$OUT/writer.log" | tail -1)
  took=$(catch_up) || true
  verdict "server restart (writer $tps, caught up in ${took}s)"
fi
kill -INT "$SYNC_PID" 2>/dev/null || true
wait "$SYNC_PID" 2>/dev/null || true
SYNC_PID=
tx_after=$(q "$SRC" "SELECT xact_commit FROM pg_stat_database WHERE datname = 'cdc_chaos_src'")
echo "source transactions committed: $((tx_after - tx_before))"
exit "$FAILED"
