#!/usr/bin/env python3
"""Helpers for bench/run.sh.

    report.py timev FILE       print "WALL_SECONDS PEAK_RSS_KB EXIT_STATUS"
                               from the output of /usr/bin/time -v -o FILE
    report.py table TSV        print the Markdown results table and ratios
                               for the measurements run.sh collected

TSV columns: rows, case, tool, run, status, wall_s, rss_kb, in_bytes,
out_bytes; one line per run. Runs of the same (rows, case, tool) are folded
into one table row: median wall time, largest peak RSS, and "ok" only if
every run was.
"""

import csv
import statistics
import sys


def parse_timev(path):
    wall = rss = status = None
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().rpartition(": ")
            if key.startswith("Elapsed (wall clock) time"):
                wall = 0.0
                for part in value.split(":"):  # h:mm:ss or m:ss.ss
                    wall = wall * 60 + float(part)
            elif key == "Maximum resident set size (kbytes)":
                rss = int(value)
            elif key == "Exit status":
                status = int(value)
    if wall is None or rss is None:
        sys.exit(f"report.py: no wall time / peak RSS in {path}")
    # time -v leaves out "Exit status" when the command died from a signal.
    return wall, rss, 128 if status is None else status


def load(path):
    groups = {}  # insertion-ordered: the table follows the run order
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            key = (int(r["rows"]), r["case"], r["tool"])
            groups.setdefault(key, []).append(r)
    ms = []
    for (rows, case, tool), runs in groups.items():
        bad = [r["status"] for r in runs if r["status"] != "ok"]
        good = [r for r in runs if r["status"] == "ok"] or runs
        walls = [float(r["wall_s"]) for r in good]
        ms.append(
            dict(
                rows=rows,
                case=case,
                tool=tool,
                runs=len(runs),
                status=bad[0] if bad else "ok",
                wall=statistics.median(walls),
                spread=f"{min(walls):.2f}-{max(walls):.2f}",
                rss=max(int(r["rss_kb"]) for r in good),
                inb=int(runs[-1]["in_bytes"]),
                outb=int(runs[-1]["out_bytes"]),
            )
        )
    return ms


def table(path):
    ms = load(path)
    out = [
        "| rows | case | tool | wall s | wall range | rows/s | MB/s "
        "| peak RSS MiB | output MiB | status |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in ms:
        wall = max(m["wall"], 0.01)  # time -v rounds to 10 ms
        if m["status"] == "ok":
            rates = f"{m['rows'] / wall:,.0f} | {m['inb'] / 1e6 / wall:,.1f}"
        else:
            rates = "- | -"  # a failed run's speed means nothing
        out.append(
            f"| {m['rows']:,} | {m['case']} | {m['tool']} | {m['wall']:.2f} "
            f"| {m['spread']} | {rates} "
            f"| {m['rss'] / 1024:,.1f} | {m['outb'] / 2**20:,.1f} "
            f"| {m['status']} |"
        )

    def get(rows, case, tool):
        for m in ms:
            if (m["rows"], m["case"], m["tool"]) == (rows, case, tool):
                if m["status"] == "ok":
                    return m
        return None

    sizes = sorted({m["rows"] for m in ms})
    out.append("")
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        for case in ("csv->null", "csv->parquet"):
            a, b = get(lo, case, "sluice"), get(hi, case, "sluice")
            ratio = f"{b['rss'] / a['rss']:.2f}" if a and b else "n/a"
            out.append(
                f"- sluice {case} peak RSS {hi:,} / {lo:,} rows: {ratio}"
                " (1.0 means memory does not grow with input)"
            )
    for size in sizes:
        for case in ("csv->parquet", "csv->null"):
            s, d = get(size, case, "sluice"), get(size, case, "duckdb")
            ratio = f"{s['wall'] / d['wall']:.2f}" if s and d else "n/a"
            out.append(
                f"- sluice / duckdb wall time, {case}, {size:,} rows: {ratio}"
                " (below 1.0 means sluice is faster)"
            )
    print("\n".join(out))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "timev":
        print("%.2f %d %d" % parse_timev(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
