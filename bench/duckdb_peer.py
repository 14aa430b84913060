#!/usr/bin/env python3
"""The DuckDB side of the benchmark, one process per measured run.

    duckdb_peer.py parquet IN.csv OUT.parquet
    duckdb_peer.py null IN.csv

"null" must parse every column of every row and keep nothing, like
`sluice copy ... null://`. SELECT count(*) does not qualify: DuckDB would
skip converting the columns no one asked for. Instead count(col) over all
ten columns: each column is projected, so each value is parsed into its
type, while the aggregate itself costs next to nothing and holds no rows.
The result is printed so run.sh can check the row count.

DuckDB runs with its defaults: type sniffing by read_csv_auto, one thread
per core, Parquet with its default (snappy) compression.
"""

import sys

import duckdb

COLUMNS = (
    "id user_id amount price created_at event_date code comment ok score"
).split()


def quote(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    mode, src = sys.argv[1], sys.argv[2]
    scan = f"read_csv_auto({quote(src)})"
    con = duckdb.connect()
    if mode == "parquet":
        con.execute(
            f"COPY (SELECT * FROM {scan}) TO {quote(sys.argv[3])} "
            "(FORMAT parquet)"
        )
    elif mode == "null":
        counts = ", ".join(f"count({c})" for c in COLUMNS)
        row = con.execute(f"SELECT {counts} FROM {scan}").fetchone()
        # score is the one column with nulls; id counts every row.
        print(row[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
