#!/usr/bin/env python3
"""Markdown tables for bench/search.sh: throughput against elasticdump, the
429 storm's accounting, and the adaptive concurrency limit over time.

    python3 bench/search_report.py RESULTS.tsv WORKDIR BYTES
"""
import json
import os
import sys


def settle(path, n):
    """Time-weighted mean, min and max of the limit over the second half of
    the run, and a coarse trace (limit at 0.25 s steps)."""
    steps = []
    with open(path) as f:
        for line in f:
            t, limit = line.split()
            steps.append((float(t), int(limit)))
    if not steps:
        return None
    end = steps[-1][0] + 0.5
    half = end / 2
    total = weight = 0.0
    lo = hi = None
    for i, (t, limit) in enumerate(steps):
        nxt = steps[i + 1][0] if i + 1 < len(steps) else end
        a, b = max(t, half), max(nxt, half)
        if b > a:
            total += limit * (b - a)
            weight += b - a
            lo = limit if lo is None else min(lo, limit)
            hi = limit if hi is None else max(hi, limit)
    mean = total / weight if weight else steps[-1][1]
    trace = []
    t = 0.0
    j = 0
    while t <= end:
        while j + 1 < len(steps) and steps[j + 1][0] <= t:
            j += 1
        trace.append(steps[j][1])
        t += 0.25
    return mean, lo, hi, trace


def main():
    rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
    work, size = sys.argv[2], int(sys.argv[3])
    loads = [r for r in rows if r[0] == "load"]
    print("### Bulk load into the same local `_bulk` endpoint\n")
    print("| tool | documents | seconds | docs/s | MB/s | peak RSS | indexed | vs elasticdump |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rates = {}
    for _, tool, docs, secs, rss, stats in loads:
        docs, secs = int(docs), float(secs)
        rates[tool] = docs / secs
    for _, tool, docs, secs, rss, stats in loads:
        docs, secs = int(docs), float(secs)
        indexed = sum(i["docs"] for i in json.loads(stats)["indices"].values())
        ratio = rates[tool] / rates["elasticdump"] if "elasticdump" in rates else float("nan")
        print(f"| {tool} | {docs:,} | {secs:.1f} | {docs / secs:,.0f} | {size / secs / 1e6:.1f} | "
              f"{int(rss) / 1024:.0f} MB | {indexed:,} | {ratio:.1f}x |")
    storm = [r for r in rows if r[0] == "storm"]
    if storm:
        print("\n### 30% of items refused with 429\n")
        print("| documents sent | seconds | indexed | missing | duplicated `_id`s | bulk requests |")
        print("|---:|---:|---:|---:|---:|---:|")
        for _, _, docs, secs, _, stats in storm:
            s = json.loads(stats)
            idx = next(iter(s["indices"].values()))
            print(f"| {int(docs):,} | {float(secs):.1f} | {idx['docs']:,} | {int(docs) - idx['docs']:,} | "
                  f"{idx['duplicates']} | {s['bulk_requests']:,} |")
    throttle = [r for r in rows if r[0] == "throttle"]
    if throttle:
        print("\n### Adaptive concurrency against an endpoint serving N requests at once\n")
        print("Limit averaged over the second half of the run (time-weighted), its range there, "
              "and the limit every 0.25 s from the start.\n")
        print("| N | settled limit | within ±20% | range | limit over time |")
        print("|---:|---:|:-:|---:|---|")
        for _, _, _, n, _, _ in throttle:
            path = os.path.join(work, f"limit-{n}.tsv")
            got = settle(path, int(n)) if os.path.exists(path) else None
            if not got:
                print(f"| {n} | - | - | - | no trace |")
                continue
            mean, lo, hi, trace = got
            ok = "yes" if abs(mean - int(n)) <= 0.2 * int(n) else "NO"
            print(f"| {n} | {mean:.1f} | {ok} | {lo}–{hi} | {' '.join(map(str, trace[:60]))} |")


if __name__ == "__main__":
    main()
