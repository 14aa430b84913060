#!/usr/bin/env bash
# Change capture, measured: `sluice sync` from PostgreSQL against
# pg_recvlogical on the same slot's changes, in one run.
#
#   bench/cdc.sh [throughput|latency|idle|backfill ...]   (default: all four)
#
# throughput  One slot per consumer is created before the changes are made,
#             so every consumer reads the same log: N inserts in transactions
#             of 100,000 rows, then one transaction updating all N rows.
#             Timed, each from its start until its slot is confirmed past the
#             last change:
#               pg_recvlogical -o proto_version=1 -o publication_names=…
#                 -o binary=true --endpos=LSN -f /dev/null   (the peer)
#               sluice sync SRC null://                      (decode only)
#               sluice sync SRC postgres://…/DST             (applied)
#             with peak RSS from /usr/bin/time -v (the one-transaction update
#             of N rows is the memory case).
# latency     pgbench inserts RATE rows/s for SECS s, one row per
#             transaction, each stamped with clock_timestamp() in the source;
#             the destination table gets a column defaulting to
#             clock_timestamp() when the row is applied. p50/p99/max of the
#             difference (the source commit's own fsync is in it, the
#             destination's is not).
# idle        The published table stays idle while 256 MiB of rows go to a
#             table outside the publication; the slot's lag
#             (pg_current_wal_lsn() - confirmed_flush_lsn) is sampled every
#             100 ms: its maximum, and its value 2 s after the writes.
# backfill    A table of N rows: `sluice sync`'s copy before streaming against
#             `sluice copy` of the same table (wall time of each until its
#             copy is done).
#
# Environment: SLUICE (default the release build), PGURL (default
# postgres://postgres@127.0.0.1:5432), N (default 1000000), RATE (1000),
# SECS (30). Needs wal_level = logical. Uses databases cdc_bench_src and
# cdc_bench_dst, slots cdc_bench_*; drops its slots at the end. Prints a
# Markdown table per case.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}
SLUICE=${SLUICE:-$TARGET/release/sluice}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
N=${N:-1000000}
RATE=${RATE:-1000}
SECS=${SECS:-30}
SRC=$PGURL/cdc_bench_src
DST=$PGURL/cdc_bench_dst
OUT=bench/out/cdc
mkdir -p "$OUT"
CASES=${*:-throughput latency idle backfill}

[[ -x "$SLUICE" ]] || { echo "no sluice binary at $SLUICE (cargo build --release -p sluice-cli)" >&2; exit 2; }
command -v pg_recvlogical >/dev/null || { echo "pg_recvlogical is missing (Debian postgresql-client)" >&2; exit 2; }
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
[[ "$(q "$PGURL/postgres" 'SHOW wal_level')" == logical ]] || { echo "needs wal_level = logical" >&2; exit 2; }

drop_slots() {
  q "$PGURL/postgres" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                       WHERE slot_name LIKE 'cdc\_bench\_%' AND NOT active" >/dev/null 2>&1 || true
}
cleanup() {
  jobs -p | xargs -r kill -9 2>/dev/null || true
  wait 2>/dev/null || true
  sleep 0.5
  drop_slots
}
trap cleanup EXIT

fresh_dbs() {
  drop_slots
  for db in cdc_bench_src cdc_bench_dst; do
    q "$PGURL/postgres" "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    q "$PGURL/postgres" "CREATE DATABASE $db"
  done
  rm -rf "$OUT/state"
}

# Starts `sluice sync SRC DEST --slot SLOT ARGS…` in the background under
# /usr/bin/time -v (log in $OUT/SLOT.log) and waits until it streams.
sync_start() { # slot dest args...
  local slot=$1 dest=$2; shift 2
  : > "$OUT/$slot.log"
  /usr/bin/time -v -o "$OUT/$slot.time" "$SLUICE" sync "$SRC" "$dest" --slot "$slot" \
    --state-dir "$OUT/state" --no-progress "$@" >> "$OUT/$slot.log" 2>&1 &
  SYNC_PID=$!
  for _ in $(seq 600); do
    grep -q "streaming changes" "$OUT/$slot.log" && return 0
    kill -0 "$SYNC_PID" 2>/dev/null || { cat "$OUT/$slot.log" >&2; return 1; }
    sleep 0.1
  done
  echo "sluice sync did not start streaming" >&2; return 1
}

sync_stop() {
  # SIGINT reaches sluice through /usr/bin/time (same process group).
  pkill -INT -P "$SYNC_PID" 2>/dev/null || true
  wait "$SYNC_PID" 2>/dev/null || true
}

confirmed_past() { # slot lsn
  [[ "$(q "$SRC" "SELECT coalesce(confirmed_flush_lsn >= '$2', false) FROM pg_replication_slots WHERE slot_name = '$1'")" == t ]]
}

rss_mib() { awk -F': ' '/Maximum resident/ {printf "%.1f", $2 / 1024}' "$1"; }

throughput() {
  fresh_dbs
  q "$SRC" "CREATE TABLE thr (id bigint PRIMARY KEY, v int NOT NULL, note text, at timestamptz)"
  # Slots first: each consumer then reads the same changes.
  sync_start cdc_bench_null null:// && sync_stop
  sync_start cdc_bench_pg "$DST" && sync_stop
  q "$SRC" "SELECT pg_create_logical_replication_slot('cdc_bench_peer', 'pgoutput')" >/dev/null
  local t0 t1
  t0=$(date +%s.%N)
  for ((i = 0; i < N; i += 100000)); do
    q "$SRC" "INSERT INTO thr SELECT g, 0, md5(g::text), now() FROM generate_series($i + 1, least($i + 100000, $N)) g"
  done
  q "$SRC" "UPDATE thr SET v = v + 1"
  t1=$(date +%s.%N)
  local lsn changes=$((2 * N))
  lsn=$(q "$SRC" "SELECT pg_current_wal_lsn()")
  echo "made $changes changes in $(echo "$t1 - $t0" | bc) s; log end $lsn"

  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$OUT/peer.time" pg_recvlogical -d "$SRC" -S cdc_bench_peer --start --no-loop \
    -o proto_version=1 -o publication_names=cdc_bench_null -o binary=true -E "$lsn" -f /dev/null
  t1=$(date +%s.%N)
  local peer; peer=$(echo "$t1 - $t0" | bc)

  local took=()
  for slot in cdc_bench_null cdc_bench_pg; do
    local dest=null://
    [[ $slot == cdc_bench_pg ]] && dest=$DST
    t0=$(date +%s.%N)
    sync_start "$slot" "$dest"
    until confirmed_past "$slot" "$lsn"; do sleep 0.05; done
    t1=$(date +%s.%N)
    sync_stop
    took+=("$(echo "$t1 - $t0" | bc)")
  done
  local same
  same=$( [[ "$(q "$SRC" "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM thr t")" == \
             "$(q "$DST" "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM thr t")" ]] && echo yes || echo NO)
  echo
  echo "| consumer ($changes changes: $N inserts in transactions of 100,000, one update of $N rows) | wall s | changes/s | vs pg_recvlogical | peak RSS MiB |"
  echo "|---|---|---|---|---|"
  printf "| pg_recvlogical, pgoutput binary, to /dev/null | %.2f | %.0f | 1.00x | %s |\n" "$peer" "$(echo "$changes / $peer" | bc -l)" "$(rss_mib "$OUT/peer.time")"
  printf "| sluice sync to null:// | %.2f | %.0f | %.2fx | %s |\n" "${took[0]}" "$(echo "$changes / ${took[0]}" | bc -l)" "$(echo "$peer / ${took[0]}" | bc -l)" "$(rss_mib "$OUT/cdc_bench_null.time")"
  printf "| sluice sync to PostgreSQL (destination identical: %s) | %.2f | %.0f | %.2fx | %s |\n" "$same" "${took[1]}" "$(echo "$changes / ${took[1]}" | bc -l)" "$(echo "$peer / ${took[1]}" | bc -l)" "$(rss_mib "$OUT/cdc_bench_pg.time")"
  echo "(wall times include each consumer's start: connecting, and for sluice finding its tables already copied)"
}

latency() {
  fresh_dbs
  q "$SRC" "CREATE TABLE lat (id bigserial PRIMARY KEY, payload text, created timestamptz NOT NULL DEFAULT clock_timestamp())"
  sync_start cdc_bench_lat "$DST"
  q "$DST" "ALTER TABLE lat ADD COLUMN applied timestamptz DEFAULT clock_timestamp()"
  echo "INSERT INTO lat (payload) VALUES (md5(random()::text));" > "$OUT/lat.sql"
  pgbench -n -c 4 -j 2 -R "$RATE" -T "$SECS" -f "$OUT/lat.sql" "$SRC" > "$OUT/lat.pgbench" 2>&1
  local want; want=$(q "$SRC" "SELECT count(*) FROM lat")
  for _ in $(seq 300); do
    [[ "$(q "$DST" "SELECT count(*) FROM lat")" == "$want" ]] && break
    sleep 0.1
  done
  sync_stop
  echo
  echo "| rows at $(grep -o 'tps = [0-9.]*' "$OUT/lat.pgbench" | head -1 | cut -d' ' -f3) commits/s for ${SECS}s | p50 ms | p90 ms | p99 ms | max ms |"
  echo "|---|---|---|---|---|"
  q "$DST" "SELECT '| ' || count(*) || ' | ' ||
      round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' | ' ||
      round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' | ' ||
      round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' | ' ||
      round(max(ms)::numeric, 1) || ' |'
    FROM (SELECT extract(epoch FROM applied - created) * 1000 AS ms FROM lat) l"
}

idle() {
  fresh_dbs
  q "$SRC" "CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE noise (id bigint, body text)"
  sync_start cdc_bench_idle "$DST" --tables quiet
  : > "$OUT/idle.lag"
  ( while :; do
      q "$SRC" "SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_bench_idle'" >> "$OUT/idle.lag" || true
      sleep 0.1
    done ) &
  local sampler=$! wal0 wal1
  wal0=$(q "$SRC" "SELECT pg_current_wal_lsn()")
  for i in $(seq 0 15); do
    q "$SRC" "INSERT INTO noise SELECT g, repeat(md5(g::text), 30) FROM generate_series($i * 16384, $i * 16384 + 16383) g"
  done
  wal1=$(q "$SRC" "SELECT pg_current_wal_lsn()")
  sleep 2
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  local after; after=$(q "$SRC" "SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_bench_idle'")
  sync_stop
  echo
  echo "| WAL written outside the publication | samples | max slot lag MiB | lag 2 s after MiB |"
  echo "|---|---|---|---|"
  printf "| %.0f MiB | %d | %.1f | %.1f |\n" "$(q "$SRC" "SELECT ('$wal1'::pg_lsn - '$wal0'::pg_lsn) / 1048576.0")" \
    "$(wc -l < "$OUT/idle.lag")" "$(sort -n "$OUT/idle.lag" | tail -1 | awk '{print $1 / 1048576}')" \
    "$(echo "$after / 1048576" | bc -l)"
}

backfill() {
  fresh_dbs
  q "$SRC" "CREATE TABLE seed (id bigint PRIMARY KEY, v int, note text, price numeric(12,2), at timestamptz);
            INSERT INTO seed SELECT g, g % 100, md5(g::text), g * 0.01, now() FROM generate_series(1, $N) g"
  local t0 t1 copy syncs
  t0=$(date +%s.%N)
  "$SLUICE" copy "$SRC" "$DST" --tables seed --state-dir "$OUT/state" --no-progress > "$OUT/copy.log" 2>&1
  t1=$(date +%s.%N); copy=$(echo "$t1 - $t0" | bc)
  q "$DST" "DROP TABLE seed; DROP TABLE IF EXISTS _sluice_checkpoints, _sluice_foreign_keys"
  t0=$(date +%s.%N)
  sync_start cdc_bench_seed "$DST" --tables seed
  t1=$(date +%s.%N); syncs=$(echo "$t1 - $t0" | bc)
  sync_stop
  echo
  echo "| $N rows | wall s | vs sluice copy |"
  echo "|---|---|---|"
  printf "| sluice copy | %.2f | 1.00x |\n| sluice sync, until streaming (slot, publication, copy) | %.2f | %.2fx |\n" \
    "$copy" "$syncs" "$(echo "$copy / $syncs" | bc -l)"
}

for c in $CASES; do
  echo "## $c"
  "$c"
done
