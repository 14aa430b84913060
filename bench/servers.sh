# Shared by the database benchmarks (sourced, not run): the sluice binary,
# the local servers and the helpers that talk to them. Each variable can be
# set in the environment first.
#
#   SLUICE                   sluice binary (default: the release build in the target dir)
#   PG_HOST PG_PORT PG_USER  PostgreSQL server (127.0.0.1, 5432, postgres)
#   MY_HOST MY_PORT MY_USER  MariaDB/MySQL server (127.0.0.1, 3306, root)
SLUICE=${SLUICE:-${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}/release/sluice}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
MY_HOST=${MY_HOST:-127.0.0.1}
MY_PORT=${MY_PORT:-3306}
MY_USER=${MY_USER:-root}
# sluice talks to PostgreSQL without TLS; every peer is told to do the same.
export PGSSLMODE=disable

log() { printf '== %s\n' "$*" >&2; }
pg() {  # DB [psql args...]
    local db=$1
    shift
    PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 \
        -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"
}
my() {  # [mariadb args...]
    mariadb -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" "$@"
}
