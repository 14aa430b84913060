#!/usr/bin/env bash
# End-to-end benchmark of bulk loads into a search engine: sluice against
# elasticdump, both sending the same documents to the same fast local
# `_bulk` endpoint (the fault-injecting proxy of the tests, built as
# `cargo build --release --example es_endpoint`, answering bulk requests
# itself in front of osmem-server, which serves everything else), then two
# robustness runs:
#
#   storm      30% of items refused with 429: every document must arrive
#              once (0 missing, 0 duplicated _ids).
#   throttle   an endpoint that serves N bulk requests at once and answers
#              429 above that: the adaptive limit over time, against N.
#
#   bench/search.sh [DOCS]          default 1000000
#
# Environment:
#   SLUICE        sluice binary (default: the release build in the target dir)
#   ENDPOINT      es_endpoint binary (default: the release example)
#   OSMEM         osmem-server binary (default: the one pip installed)
#   ELASTICDUMP   elasticdump binary (default: elasticdump on PATH, installed
#                 with npm when missing)
#   ED_LIMIT      elasticdump --limit, documents per bulk request (default 1000;
#                 its own default is 100)
#   REPEAT        runs of each tool in the load comparison; the median wall
#                 time and the largest peak RSS are reported (default 3)
#   THROTTLE      the N values of the throttle run (default "4 8 16")
#   SKIP          runs to leave out: elasticdump storm throttle
set -euo pipefail
cd "$(dirname "$0")/.."

DOCS=${1:-1000000}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}
SLUICE=${SLUICE:-$TARGET/release/sluice}
ENDPOINT=${ENDPOINT:-$TARGET/release/examples/es_endpoint}
ED_LIMIT=${ED_LIMIT:-1000}
THROTTLE=${THROTTLE:-4 8 16}
REPEAT=${REPEAT:-3}
SKIP=${SKIP:-}
WORK=${WORK:-/tmp/sluice-search-bench}
PORT=${PORT:-9299}
mkdir -p "$WORK"
OUT="$WORK/results.tsv"
: >"$OUT"

OSMEM=${OSMEM:-$(python3 -c 'import osmem_server,os;print(os.path.dirname(osmem_server.__file__))' 2>/dev/null)/bin/osmem-server}
OSMEM_PORT=${OSMEM_PORT:-9298}

for bin in "$SLUICE" "$ENDPOINT" "$OSMEM"; do
    [ -x "$bin" ] || { echo "missing $bin: cargo build --release -p sluice-cli && cargo build --release -p sluice-connectors --example es_endpoint && pip install osmem-server" >&2; exit 1; }
done
skip() { [[ " $SKIP " == *" $1 "* ]]; }

DATA="$WORK/docs-$DOCS.ndjson"
if [ ! -s "$DATA" ]; then
    echo "generating $DOCS documents -> $DATA" >&2
    python3 bench/gen_docs.py "$DOCS" >"$DATA"
fi
BYTES=$(stat -c %s "$DATA")

ENDPOINT_PID=
OSMEM_PID=
start_endpoint() {
    stop_endpoint
    "$OSMEM" --addr "127.0.0.1:$OSMEM_PORT" --no-stdin-watch --no-ja >"$WORK/osmem.log" 2>&1 &
    OSMEM_PID=$!
    # --lean: the endpoint checks every document is JSON and counts writes
    # per _id, but keeps no bodies, so it is not the bottleneck.
    "$ENDPOINT" --port "$PORT" --upstream "http://127.0.0.1:$OSMEM_PORT" --lean true "$@" >"$WORK/endpoint.log" 2>&1 &
    ENDPOINT_PID=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$PORT/" >/dev/null && return 0
        sleep 0.1
    done
    echo "the endpoint did not start" >&2
    exit 1
}
stop_endpoint() {
    for pid in $ENDPOINT_PID $OSMEM_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    ENDPOINT_PID=
    OSMEM_PID=
}
trap stop_endpoint EXIT

# Runs a command under /usr/bin/time -v; prints "seconds peak_rss_kb".
timed() {
    local log=$1
    shift
    /usr/bin/time -v "$@" >"$log.out" 2>"$log.err" || { echo "FAILED: $* (see $log.err)" >&2; tail -5 "$log.err" >&2; exit 1; }
    local wall rss
    wall=$(grep "Elapsed (wall clock)" "$log.err" | awk '{print $NF}')
    rss=$(grep "Maximum resident set size" "$log.err" | awk '{print $NF}')
    python3 - "$wall" "$rss" <<'PY'
import sys
wall, rss = sys.argv[1], sys.argv[2]
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
print(f"{secs:.2f} {rss}")
PY
}

stats() { curl -s "http://127.0.0.1:$PORT/_proxy/stats"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
largest() { printf '%s\n' "$@" | sort -n | tail -n1; }

run_sluice() {
    local name=$1 index=$2
    shift 2
    rm -rf "$WORK/state"
    XDG_STATE_HOME="$WORK/state" timed "$WORK/$name" "$SLUICE" copy "$DATA" "elasticsearch://127.0.0.1:$PORT/$index" -q "$@"
}

# 1. Throughput: sluice and elasticdump into the same endpoint, REPEAT runs
#    each against a fresh endpoint; the endpoint's counts are the last run's.
#    load TOOL COMMAND...: appends the median wall time and largest RSS.
load() {
    local tool=$1 walls=() rsss=() secs rss counted
    shift
    for i in $(seq 1 "$REPEAT"); do
        start_endpoint
        read -r secs rss < <("$@")
        walls+=("$secs"); rsss+=("$rss"); counted=$(stats)
        echo "$tool run $i/$REPEAT: $DOCS docs in ${secs}s, peak RSS ${rss} KB" >&2
    done
    secs=$(median "${walls[@]}"); rss=$(largest "${rsss[@]}")
    printf 'load\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$DOCS" "$secs" "$rss" "$counted" >>"$OUT"
    echo "$tool: median ${secs}s of ${walls[*]}" >&2
}
load sluice run_sluice sluice bench

if ! skip elasticdump; then
    ED=${ELASTICDUMP:-$(command -v elasticdump || true)}
    if [ -z "$ED" ]; then
        npm install -g elasticdump@6.125.1 >&2
        ED=$(command -v elasticdump)
    fi
    load elasticdump timed "$WORK/elasticdump" "$ED" --input="$DATA" --output="http://127.0.0.1:$PORT/bench" \
        --type=data --limit="$ED_LIMIT" --noRefresh --quiet
fi

# 2. Storm: 30% of items refused with 429.
if ! skip storm; then
    start_endpoint --reject-429 0.3 --seed 11
    read -r secs rss < <(run_sluice storm storm)
    printf 'storm\tsluice\t%s\t%s\t%s\t%s\n' "$DOCS" "$secs" "$rss" "$(stats)" >>"$OUT"
    echo "storm: ${secs}s $(stats)" >&2
fi

# 3. Throttle: the endpoint serves N requests at once, 20 ms each, and
#    answers 429 above that; requests of 500 documents.
if ! skip throttle; then
    for n in $THROTTLE; do
        start_endpoint --max-concurrent "$n" --latency-ms 20
        # Small requests, so the run is long enough to watch the limit settle.
        read -r secs _ < <(SLUICE_CONCURRENCY_LOG="$WORK/limit-$n.tsv" run_sluice "throttle-$n" "throttle$n?bulk_docs=500")
        echo "throttle N=$n: ${secs}s" >&2
        printf 'throttle\tsluice\t%s\t%s\t-\t%s\n' "$DOCS" "$n" "$(stats)" >>"$OUT"
    done
fi
stop_endpoint

python3 bench/search_report.py "$OUT" "$WORK" "$BYTES"
