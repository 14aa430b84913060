#!/usr/bin/env python3
"""The report of bench/db.sh.

    db_report.py MEASUREMENTS_TSV COLUMNS_TSV

MEASUREMENTS_TSV has the columns report.py reads (rows, case, tool, run,
status, wall_s, rss_kb, in_bytes, out_bytes), where in_bytes is the size of
the CSV holding the same rows and out_bytes the destination table's
pg_total_relation_size. A tool that could not run has one line whose status
starts with "n/a". COLUMNS_TSV (case, tool, types, key) has the column types
of the table each tool left behind.

Prints the Markdown table, the sluice-to-peer ratios and the destination
column types.
"""

import csv
import sys

from report import load


def table(ms):
    out = [
        "| rows | case | tool | wall s | wall range | rows/s | MB/s "
        "| peak RSS MiB | table MiB | status |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in ms:
        head = f"| {m['rows']:,} | {m['case']} | {m['tool']} "
        if m["status"].startswith("n/a"):
            out.append(head + f"| - | - | - | - | - | - | {m['status']} |")
            continue
        wall = max(m["wall"], 0.01)  # time -v rounds to 10 ms
        if m["status"] == "ok":
            rates = f"{m['rows'] / wall:,.0f} | {m['inb'] / 1e6 / wall:,.1f}"
        else:
            rates = "- | -"  # a failed run's speed means nothing
        out.append(
            head + f"| {m['wall']:.2f} | {m['spread']} | {rates} "
            f"| {m['rss'] / 1024:,.1f} | {m['outb'] / 2**20:,.1f} "
            f"| {m['status']} |"
        )
    return out


def ratios(ms):
    ok = {(m["rows"], m["case"], m["tool"]): m for m in ms if m["status"] == "ok"}
    ran = {(m["rows"], m["case"]) for m in ms if m["tool"] == "sluice"}
    sizes = sorted({m["rows"] for m in ms})
    cases = list(dict.fromkeys(m["case"] for m in ms))
    out = []
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        for case in cases:
            a, b = ok.get((lo, case, "sluice")), ok.get((hi, case, "sluice"))
            if a and b:
                out.append(
                    f"- sluice {case} peak RSS {hi:,} / {lo:,} rows: "
                    f"{b['rss'] / a['rss']:.2f} (1.0 means memory does not grow "
                    "with input)"
                )
    for size in sizes:
        for case in cases:
            if (size, case) not in ran:
                continue  # SKIP_SLUICE: nothing to compare
            s = ok.get((size, case, "sluice"))
            peers = [
                m
                for m in ms
                if (m["rows"], m["case"]) == (size, case) and m["tool"] != "sluice"
            ]
            parts = []
            for p in peers:
                if s and p["status"] == "ok":
                    parts.append(f"{p['tool']} {s['wall'] / p['wall']:.2f}")
                else:
                    parts.append(f"{p['tool']} n/a")
            if parts:
                out.append(
                    f"- sluice wall time / peer's, {case}, {size:,} rows: "
                    + ", ".join(parts)
                    + " (below 1.0 means sluice is faster)"
                )
    return out


def columns(path):
    seen = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            seen.setdefault((r["case"], r["tool"]), (r["types"], r["key"]))
    out = ["Destination tables (column types in order; key):", ""]
    for (case, tool), (types, key) in seen.items():
        out.append(f"- {case} {tool}: {types}; {key}")
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ms = load(sys.argv[1])
    out = table(ms) + [""]
    r = ratios(ms)
    if r:
        out += r + [""]
    out += columns(sys.argv[2])
    print("\n".join(out))


if __name__ == "__main__":
    main()
