#!/usr/bin/env python3
"""Deterministic search documents for bench/search.sh, as elasticdump lines:

    {"_index":"bench","_id":"<n>","_source":{...}}

About 330 bytes a line: integers, floats, keywords, free text, a date, a
nested object, an array and the odd null, like an order or log index.

    python3 bench/gen_docs.py N [SEED] > docs.ndjson
"""
import json
import random
import sys

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda sigma omega".split()


def main():
    n = int(sys.argv[1])
    rnd = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 42)
    out = sys.stdout
    for i in range(n):
        doc = {
            "order_id": i,
            "customer": f"c{rnd.randrange(100000):06d}",
            "region": rnd.choice(["eu", "us", "apac", "latam"]),
            "amount": round(rnd.uniform(1, 5000), 2),
            "quantity": rnd.randrange(1, 50),
            "status": rnd.choice(["new", "paid", "shipped", "returned"]),
            "created_at": f"2026-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00Z",
            "note": " ".join(rnd.choice(WORDS) for _ in range(rnd.randrange(3, 12))),
            "address": {"city": rnd.choice(["Lyon", "Oslo", "Pune", "Lima"]), "zip": f"{rnd.randrange(99999):05d}"},
            "tags": [rnd.choice(WORDS) for _ in range(rnd.randrange(0, 4))],
            "coupon": None if rnd.random() < 0.7 else f"SAVE{rnd.randrange(5, 50)}",
        }
        out.write(json.dumps({"_index": "bench", "_id": str(i), "_source": doc}, separators=(",", ":")))
        out.write("\n")


if __name__ == "__main__":
    main()
