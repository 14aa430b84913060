#!/usr/bin/env python3
"""Write a deterministic N-row, 10-column mixed-type CSV for the benchmarks.

    python3 bench/gen_table.py --rows 1000000 --seed 42 --out bench/data/t1m.csv

Columns:
    id          int64, 1..N in order
    user_id     int, about 10% negative
    amount      float, full double precision, both signs
    price       decimal text with 2 decimals (0.00 .. 99999.99)
    created_at  timestamp YYYY-MM-DDTHH:MM:SS (2015 .. 2024)
    event_date  date YYYY-MM-DD (2000 .. 2032)
    code        3-8 letters
    comment     60-200 chars of words; contains commas (so it is quoted) and
                now and then a double quote (so it exercises "" escaping)
    ok          true/false
    score       int 0..999, about 10% empty (null)

The rows are computed by DuckDB SQL, which is what makes 10M rows take
seconds rather than minutes. Every random-looking value is cut from md5 of
"<seed>:<row>": md5 is fixed by its standard, unlike DuckDB's hash(), whose
output may change between DuckDB releases. Order is kept by DuckDB's
preserve_insertion_order (on by default, forced on here), so the same
--rows and --seed give the same bytes, however many threads run.
"""

import argparse
import os
import random
import sys

import duckdb

WORDS = (
    "order shipped late again, customer asked for a refund; warehouse said "
    "stock was low. payment cleared after retry, invoice sent twice by "
    "mistake. tracking number missing, carrier contacted. parcel arrived "
    "damaged, photo attached. discount code applied at checkout, total "
    "changed. address updated before dispatch, courier notified. item "
    "replaced under warranty, old unit returned. review left, rating five "
    "stars. subscription renewed, card expired, reminder sent"
).split()

# Sized so that any 200-char window starting below len - 210 stays inside.
CORPUS_CHARS = 4096


def corpus(seed: int) -> str:
    """A fixed text that comments are cut from.

    Only Random.random() is used: Python promises its sequence for a given
    seed across versions, which it does not for choice() and friends.
    """
    rng = random.Random(seed)
    parts = []
    size = 0
    while size < CORPUS_CHARS:
        word = WORDS[int(rng.random() * len(WORDS))]
        if len(parts) % 150 == 75:
            word = '"' + word + '"'
        elif rng.random() < 0.15:
            word = word.rstrip(",.;") + ","
        parts.append(word)
        size += len(word) + 1
    text = " ".join(parts)
    # Spliced into SQL as a literal; the word list has no single quotes.
    assert "'" not in text
    return text


def sql(rows: int, seed: int, out: str) -> str:
    text = corpus(seed)
    span = len(text) - 210

    # w(h, k): the k-th 32-bit word (k = 0..3) of the md5 hex string h.
    def w(h: str, k: int) -> str:
        return f"('0x' || substr({h}, {8 * k + 1}, 8))::UBIGINT"

    path = out.replace("'", "''")
    return f"""
    COPY (
      SELECT
        i AS id,
        ({w('h1', 0)} % 2000000)::BIGINT - 200000 AS user_id,
        ({w('h1', 1)}::BIGINT - 2147483648) / 997.0 AS amount,
        ({w('h1', 2)} % 10000000 // 100)::VARCHAR || '.' ||
          lpad(({w('h1', 2)} % 100)::VARCHAR, 2, '0') AS price,
        strftime(TIMESTAMP '2015-01-01 00:00:00'
                   + to_seconds(({w('h1', 3)} % 315360000)::BIGINT),
                 '%Y-%m-%dT%H:%M:%S') AS created_at,
        DATE '2000-01-01' + ({w('h2', 0)} % 12000)::INTEGER AS event_date,
        translate(substr(h2, 9, 3 + ({w('h2', 1)} % 6)::INTEGER),
                  '0123456789', 'ghijklmnop') AS code,
        trim(substr(c.text, 1 + ({w('h2', 2)} % {span})::INTEGER,
                    62 + ({w('h2', 3)} % 139)::INTEGER)) AS comment,
        ({w('h2', 1)} // 8) % 2 = 1 AS ok,
        CASE WHEN ({w('h2', 3)} // 256) % 10 = 0 THEN NULL
             ELSE (({w('h2', 2)} // 65536) % 1000)::INTEGER END AS score
      FROM (
        SELECT i,
               md5('{seed}:' || i) AS h1,
               md5('{seed}:' || i || ':b') AS h2
        FROM range(1, {rows} + 1) r(i)
      ) AS g,
      (SELECT '{text}' AS text) AS c
    ) TO '{path}' (FORMAT csv, HEADER true, DELIMITER ',', QUOTE '"')
    """


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.rows < 0:
        ap.error("--rows must be >= 0")

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    # Write beside the target and rename, so an interrupted run never
    # leaves a file that looks complete.
    tmp = args.out + ".tmp"
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    con.execute(sql(args.rows, args.seed, tmp))
    con.close()
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
