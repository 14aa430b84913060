#!/usr/bin/env bash
# What reading other encodings costs, and that UTF-8 input pays nothing for
# it: `sluice copy tN.csv null://` with a baseline binary (before encodings
# were supported) and the current one, alternating under hyperfine, then
# the same file declared windows-1252 (transcoded as it is read) and a
# UTF-16LE copy of it (recognised by its byte-order mark).
#
#   SLUICE_BASE=/path/to/old/sluice bench/encoding.sh [ROWS]     (default 10000000)
#
# SLUICE defaults to the release build in the target directory. Without
# SLUICE_BASE only the current binary is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
SLUICE=${SLUICE:-${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}/release/sluice}
RUNS=${RUNS:-5}
DATA=bench/data
mkdir -p "$DATA" bench/out
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
python3 -c 'import duckdb' 2>/dev/null || pip install -q duckdb
csv=$DATA/t$((ROWS / 1000000))m.csv
[ -s "$csv" ] || python3 bench/gen_table.py --rows "$ROWS" --seed 42 --out "$csv"
utf16=$DATA/t$((ROWS / 1000000))m-utf16.csv
[ -s "$utf16" ] || { printf '\xff\xfe' > "$utf16"; iconv -f UTF-8 -t UTF-16LE "$csv" >> "$utf16"; }
state=$(mktemp -d)
cmds=()
names=()
if [ -n "${SLUICE_BASE:-}" ]; then
    cmds+=("$SLUICE_BASE copy $csv null:// -q --fresh --state-dir $state/base")
    names+=(--command-name "utf-8, before")
fi
cmds+=("$SLUICE copy $csv null:// -q --fresh --state-dir $state/new")
names+=(--command-name "utf-8, now")
cmds+=("$SLUICE copy $csv null:// -q --fresh --state-dir $state/w --encoding windows-1252")
names+=(--command-name "declared windows-1252")
cmds+=("$SLUICE copy $utf16 null:// -q --fresh --state-dir $state/u")
names+=(--command-name "utf-16le (BOM)")
hyperfine --warmup 1 --runs "$RUNS" --export-markdown bench/out/encoding.md "${names[@]}" "${cmds[@]}"
rm -rf "$state"
echo
cat bench/out/encoding.md
