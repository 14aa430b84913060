#!/usr/bin/env python3
"""What a sluice binary is made of.

    bench/binsize.py [BINARY]     default: the release build in the target dir

Prints the file size, the size of each large ELF section, and the machine
code per crate: every function symbol's size (`nm -S -C`) summed by the
crate its demangled name starts with (`<arrow_array::… as …>` counts for
arrow_array). Generic code instantiated for another crate's types is
counted under the crate that defines the function (`core::ptr::drop_in_place`
under core), as `cargo bloat --crates` does. Symbols without a Rust path
(C code such as SQLite and zstd, the runtime) are one line.
"""

import collections
import os
import re
import subprocess
import sys


def crate_of(name):
    name = name.lstrip("<&*")
    for prefix in ("dyn ", "mut ", "const ", "unsafe "):
        if name.startswith(prefix):
            name = name[len(prefix):]
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
    return m.group(1) if m else "C / runtime (no Rust path)"


def main():
    default = os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/sluice/target")), "release", "sluice"
    )
    binary = sys.argv[1] if len(sys.argv) > 1 else default
    size = os.path.getsize(binary)
    print(f"binary: {binary}")
    print(f"file size: {size / 1e6:.1f} MB\n")

    sections = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    print("| section | MB |")
    print("|---|---:|")
    for line in sections.splitlines():
        m = re.search(r"\]\s+(\.\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and int(m.group(2), 16) >= 1_000_000:
            print(f"| {m.group(1)} | {int(m.group(2), 16) / 1e6:.1f} |")

    nm = subprocess.run(["nm", "-S", "-C", "--defined-only", binary], capture_output=True, text=True, check=True)
    by_crate = collections.Counter()
    for line in nm.stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4 or parts[2] not in "tTwW":
            continue
        by_crate[crate_of(parts[3])] += int(parts[1], 16)
    total = sum(by_crate.values())
    print(f"\nfunction code: {total / 1e6:.1f} MB\n")
    print("| crate | code MB | share |")
    print("|---|---:|---:|")
    for crate, n in by_crate.most_common(15):
        print(f"| {crate} | {n / 1e6:.1f} | {100 * n / total:.1f}% |")


if __name__ == "__main__":
    main()
