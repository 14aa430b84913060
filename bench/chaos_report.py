#!/usr/bin/env python3
"""Helpers for bench/chaos.sh: random instants, id comparison, summary.

    python3 bench/chaos_report.py instants SEED SCENARIO TRIAL RUNS REKILL_PCT MAX_REKILLS
    python3 bench/chaos_report.py compare SRC_IDS DST_IDS
    python3 bench/chaos_report.py summary TRIALS_TSV

instants: one line of RUNS + 1 words. The first is the fraction of the
uninterrupted run time T at which the first run is killed, uniform in
[0.05, 0.95]. Word k (k = 1..RUNS) is for the k-th resumed run: a fraction
of T at which it is killed too (with probability REKILL_PCT %, at most
MAX_REKILLS of them), or "-" to let it finish. The generator is seeded with
the string "SEED:SCENARIO:TRIAL", so a trial gets the same instants whatever
other scenarios or trials run with it (Python's str seeding and random()
sequence are stable across versions).

compare: SRC_IDS and DST_IDS hold one integer id a line (as dumped by
`SELECT id ... ORDER BY id`). Prints `lost duplicated extra dst_rows`:
  lost        source ids absent from the destination
  duplicated  destination rows minus distinct destination ids
  extra       distinct destination ids absent from the source
The files are merged as two sorted streams in constant memory; if either is
not in ascending order, both are read whole and sorted instead. Up to five
example ids of each kind go to stderr.

summary: per-scenario totals of the trials TSV written by chaos.sh, as a
Markdown table. Trial 0 is the uninterrupted baseline run: it counts in
failures but not in trials.
"""

import csv
import random
import sys
from collections import defaultdict

LOW, HIGH = 0.05, 0.95
EXAMPLES = 5


def instants(seed, scenario, trial, runs, rekill_pct, max_rekills):
    rng = random.Random(f"{seed}:{scenario}:{trial}")

    def fraction():
        return LOW + (HIGH - LOW) * rng.random()

    words = [f"{fraction():.4f}"]
    rekills = 0
    for _ in range(runs):
        # Two draws per run whatever the outcome, so that MAX_REKILLS does
        # not shift the instants of later runs.
        kill = rng.random() * 100 < rekill_pct
        at = fraction()
        if kill and rekills < max_rekills:
            rekills += 1
            words.append(f"{at:.4f}")
        else:
            words.append("-")
    print(" ".join(words))
    return 0


class Unsorted(Exception):
    pass


def ids(path):
    """The ids of PATH, in file order; raises Unsorted on a descent."""
    prev = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            v = int(line)
            if prev is not None and v < prev:
                raise Unsorted(path)
            prev = v
            yield v


def merge(src, dst):
    """(lost, duplicated, extra, dst_rows, examples) of two ascending streams."""
    lost = dup = extra = rows = 0
    ex = {"lost": [], "duplicated": [], "extra": []}

    def note(kind, v):
        if len(ex[kind]) < EXAMPLES:
            ex[kind].append(v)

    s = next(src, None)
    d = next(dst, None)
    last_d = None
    while d is not None:
        rows += 1
        if d == last_d:
            dup += 1
            note("duplicated", d)
            d = next(dst, None)
            continue
        last_d = d
        while s is not None and s < d:
            lost += 1
            note("lost", s)
            s = next(src, None)
        if s == d:
            s = next(src, None)
        else:
            extra += 1
            note("extra", d)
        d = next(dst, None)
    while s is not None:
        lost += 1
        note("lost", s)
        s = next(src, None)
    return lost, dup, extra, rows, ex


def compare(src_path, dst_path):
    try:
        result = merge(ids(src_path), ids(dst_path))
    except Unsorted:
        result = merge(iter(sorted(ids_any(src_path))), iter(sorted(ids_any(dst_path))))
    lost, dup, extra, rows, ex = result
    for kind, values in ex.items():
        if values:
            print(f"   {kind} ids, e.g.: {' '.join(map(str, values))}", file=sys.stderr)
    print(lost, dup, extra, rows)
    return 0


def ids_any(path):
    with open(path) as f:
        return [int(line) for line in f if line.strip()]


def summary(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    keys = []
    acc = defaultdict(lambda: defaultdict(int))
    for r in rows:
        sc = r["scenario"]
        if sc not in acc:
            keys.append(sc)
        a = acc[sc]
        baseline = r["trial"] == "0"
        if not baseline:
            a["trials"] += 1
            a["kills"] += int(r["kills"])
            a["resumed"] += int(r["resumed_runs"])
        if r["result"] != "OK":
            a["failures"] += 1
        for k in ("lost", "duplicated", "extra"):
            try:
                a[k] += int(r[k])
            except ValueError:  # "-": not measured
                pass
        try:
            a["max reread"] = max(a["max reread"], int(r["reread"]))
        except ValueError:  # "-": not a killed trial
            pass
    cols = ["trials", "failures", "kills", "resumed", "lost", "duplicated", "extra", "max reread"]
    print("| scenario | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for sc in keys:
        print(f"| {sc} | " + " | ".join(str(acc[sc][c]) for c in cols) + " |")
    return 0


def main(argv):
    usage = __doc__.split("\n\n")[1]
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "instants" and len(args) == 6:
        seed, scenario, trial, runs, pct, max_rekills = args
        return instants(seed, scenario, trial, int(runs), float(pct), int(max_rekills))
    if cmd == "compare" and len(args) == 2:
        return compare(*args)
    if cmd == "summary" and len(args) == 1:
        return summary(*args)
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
