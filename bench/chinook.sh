#!/usr/bin/env bash
# The Chinook SQLite database (the one pgloader's own tests load) copied to
# PostgreSQL by pgloader and by sluice in the same run: time, peak memory,
# `sluice verify`, and the schemas compared (column types, NOT NULL,
# auto-increment, primary keys, foreign keys, indexes). Then the same copy
# into MariaDB/MySQL, with its keys and AUTO_INCREMENT counted.
#
#   bench/chinook.sh PATH/TO/Chinook_Sqlite_AutoIncrementPKs.sqlite
#
# The database file is not in this repository: pgloader's source tree has it
# as test/sqlite/Chinook_Sqlite_AutoIncrementPKs.sqlite (the Chinook
# project publishes Chinook_Sqlite_AutoIncrementPKs.sqlite too).
#
# Environment:
#   SLUICE       sluice binary (default: the release build in the target dir)
#   PG_HOST PG_PORT PG_USER   PostgreSQL server (127.0.0.1, 5432, postgres)
#   MY_HOST MY_PORT MY_USER   MariaDB/MySQL server (127.0.0.1, 3306, root); SKIP_MYSQL=1 leaves it out
#
# Drops and recreates the databases chinook_pgloader and chinook_sluice
# (PostgreSQL) and chinook_sluice (MariaDB). Names are compared lowercased:
# pgloader lowercases them, sluice keeps SQLite's spelling.
set -euo pipefail

if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
SRC=$(realpath "$1")
cd "$(dirname "$0")/.."
source bench/servers.sh
SKIP_MYSQL=${SKIP_MYSQL:-0}
OUT=bench/out/chinook
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
rm -rf "$OUT/state"
PG="postgresql://$PG_USER@$PG_HOST:$PG_PORT"

psql_() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
for tool in pgloader psql "$SLUICE"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

# Runs a command under /usr/bin/time; prints "seconds peak_rss_mb".
measure() {
    local log=$1; shift
    /usr/bin/time -f '%e %M' -o "$OUT/time" "$@" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
    awk '{ printf "%s %.0f\n", $1, $2 / 1024 }' "$OUT/time"
}

# One line per column, key, foreign key and index of the public schema,
# names lowercased, so the two databases compare line by line.
CATALOG=$(cat <<'SQL'
SELECT 'column ' || lower(c.relname) || '.' || lower(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || CASE WHEN pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL
               THEN ' auto-increment' ELSE '' END
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
   AND c.relname NOT LIKE '\_sluice%'
UNION ALL
SELECT CASE contype WHEN 'p' THEN 'primary key ' WHEN 'f' THEN 'foreign key ' ELSE 'unique constraint ' END
       || lower(replace(conrelid::regclass::text || ' ' || pg_get_constraintdef(oid), '"', ''))
  FROM pg_constraint c
 WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'f', 'u')
   AND conrelid::regclass::text NOT LIKE '\_sluice%'
UNION ALL
SELECT 'index ' || lower(t.relname) || CASE WHEN i.indisunique THEN ' unique' ELSE '' END
       || ' (' || lower(string_agg(a.attname, ', ' ORDER BY k.ord)) || ')'
  FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_class ix ON ix.oid = i.indexrelid
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
 WHERE t.relnamespace = 'public'::regnamespace AND NOT i.indisprimary AND t.relname NOT LIKE '\_sluice%'
 GROUP BY t.relname, ix.relname, i.indisunique
 ORDER BY 1
SQL
)

for db in chinook_pgloader chinook_sluice; do
    psql_ "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done
cp "$SRC" "$OUT/chinook.db"

log "pgloader $(pgloader --version | head -1)"
read -r PGL_S PGL_MB < <(measure "$OUT/pgloader.log" pgloader "$OUT/chinook.db" "$PG/chinook_pgloader")
log "sluice copy"
read -r SL_S SL_MB < <(measure "$OUT/sluice.log" "$SLUICE" copy "$OUT/chinook.db" "$PG/chinook_sluice" \
    --state-dir "$OUT/state" --no-progress)

cat >"$OUT/verify-pg.toml" <<EOF
[source]
type = "sqlite"
path = "$OUT/chinook.db"

[[sinks]]
type = "postgres"
url = "$PG/chinook_sluice"

[runtime]
state_dir = "$OUT/state"
EOF
VERIFY=match
"$SLUICE" verify "$OUT/verify-pg.toml" >"$OUT/verify-pg.txt" 2>&1 || VERIFY=DIFFERENT

psql_ "$PG/chinook_pgloader" -c "$CATALOG" >"$OUT/pgloader.schema"
psql_ "$PG/chinook_sluice" -c "$CATALOG" >"$OUT/sluice.schema"
ROWS_PGL=$(psql_ "$PG/chinook_pgloader" -c "SELECT sum(n_live_tup) FROM pg_stat_user_tables")
SAME=$(comm -12 "$OUT/pgloader.schema" "$OUT/sluice.schema" | wc -l)

{
    echo "### Chinook SQLite → PostgreSQL ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD))"
    echo
    echo "| tool | wall time | peak RSS | verify |"
    echo "|---|---|---|---|"
    echo "| pgloader | ${PGL_S} s | ${PGL_MB} MB | — |"
    echo "| sluice | ${SL_S} s | ${SL_MB} MB | ${VERIFY} (11 tables) |"
    echo
    echo "Schema lines equal in both: $SAME of $(wc -l <"$OUT/pgloader.schema") (pgloader) and $(wc -l <"$OUT/sluice.schema") (sluice); pgloader's row estimate: ${ROWS_PGL:-?} rows."
    echo
    echo "| only with pgloader | only with sluice |"
    echo "|---|---|"
    # A column differing on both sides is one row; other lines stand alone.
    keyed() { awk '{ print ($1 == "column" ? $1 " " $2 : $0) "\t" $0 }' | sort -t $'\t' -k1,1; }
    join -t $'\t' -a1 -a2 -e '' -o '1.2,2.2' \
        <(comm -23 "$OUT/pgloader.schema" "$OUT/sluice.schema" | keyed) \
        <(comm -13 "$OUT/pgloader.schema" "$OUT/sluice.schema" | keyed) |
        awk -F '\t' '{ printf "| %s | %s |\n", ($1 == "" ? "—" : "`"$1"`"), ($2 == "" ? "—" : "`"$2"`") }'
} | tee "$OUT/report.md"

if [ "$SKIP_MYSQL" != 1 ]; then
    MY="mysql://$MY_USER@$MY_HOST:$MY_PORT"
    mysql -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -e "DROP DATABASE IF EXISTS chinook_sluice; CREATE DATABASE chinook_sluice"
    log "sluice copy to MySQL"
    read -r MY_S MY_MB < <(measure "$OUT/sluice-mysql.log" "$SLUICE" copy "$OUT/chinook.db" "$MY/chinook_sluice" \
        --state-dir "$OUT/state" --no-progress)
    sed -e 's#type = "postgres"#type = "mysql"#' -e "s#url = .*#url = \"$MY/chinook_sluice\"#" \
        "$OUT/verify-pg.toml" >"$OUT/verify-my.toml"
    MY_VERIFY=match
    "$SLUICE" verify "$OUT/verify-my.toml" >"$OUT/verify-my.txt" 2>&1 || MY_VERIFY=DIFFERENT
    count() { mysql -N -B -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -e "$1"; }
    WHERE="TABLE_SCHEMA = 'chinook_sluice' AND TABLE_NAME NOT LIKE '\\_sluice%'"
    {
        echo
        echo "### Chinook SQLite → MariaDB/MySQL"
        echo
        echo "| wall time | peak RSS | verify | primary keys | indexes | foreign keys | AUTO_INCREMENT columns |"
        echo "|---|---|---|---|---|---|---|"
        echo "| ${MY_S} s | ${MY_MB} MB | ${MY_VERIFY} |" \
            "$(count "SELECT COUNT(DISTINCT TABLE_NAME) FROM information_schema.STATISTICS WHERE $WHERE AND INDEX_NAME = 'PRIMARY'") |" \
            "$(count "SELECT COUNT(DISTINCT TABLE_NAME, INDEX_NAME) FROM information_schema.STATISTICS WHERE $WHERE AND INDEX_NAME <> 'PRIMARY'") |" \
            "$(count "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = 'chinook_sluice'") |" \
            "$(count "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE $WHERE AND EXTRA LIKE '%auto_increment%'") |"
    } | tee -a "$OUT/report.md"
fi
