#!/usr/bin/env bash
# Fuzzes the CSV and NDJSON framers and decoders for a fixed time each with
# cargo-fuzz (libFuzzer, coverage-guided), starting from the kept cases in
# crates/sluice-connectors/tests/data/fuzz/TARGET/. Every input that fails
# is copied there, so `cargo test -p sluice-connectors fuzzing` replays it
# from then on.
#
#   bench/fuzz.sh [SECONDS_PER_TARGET]      (default 300)
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. `cargo install cargo-fuzz` once if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/sluice/fuzz-target}"
kept=crates/sluice-connectors/tests/data/fuzz
status=0
for target in csv ndjson; do
    corpus=$(mktemp -d)
    cp "$kept/$target"/* "$corpus"/
    artifacts=$(mktemp -d)
    echo "== $target: ${secs}s"
    if ! (cd fuzz && cargo fuzz run "$target" "$corpus" -- \
            -max_total_time="$secs" -max_len=4096 -artifact_prefix="$artifacts/" 2>&1 | tail -n 20); then
        status=1
    fi
    for f in "$artifacts"/*; do
        [ -e "$f" ] || continue
        cp "$f" "$kept/$target/found-$(basename "$f")"
        echo "kept $kept/$target/found-$(basename "$f")"
        status=1
    done
    echo "$target: $(ls "$corpus" | wc -l) corpus inputs after the run"
    rm -rf "$corpus" "$artifacts"
done
exit $status
