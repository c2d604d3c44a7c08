#!/usr/bin/env bash
# Run COMMAND with a throw-away PostgreSQL server: scripts/with-postgres.sh COMMAND [ARG...]
#
# The server is a fresh cluster in a temporary directory, listening on a Unix socket in that
# directory and on a free loopback TCP port (password authentication over TCP, so the tests can
# prove which role may log in where). COMMAND sees the superuser's libpq connection string in
# ODUFLOW_TEST_PG_DSN; the cluster and its directory are removed when COMMAND ends, and the script
# exits with COMMAND's status.
#
# Where the server binaries are missing and we are root with apt-get, Debian's `postgresql` package
# is installed first. Where no server can be provided (not root, no apt-get, start failure), COMMAND
# runs anyway without ODUFLOW_TEST_PG_DSN and the tests that need it are skipped with that reason,
# except with CI=true: there a missing server is an error, never a silent skip.
# An ODUFLOW_TEST_PG_DSN already set by the caller (an existing server) is used as it is.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

CMD=("$@")
WORK=""

log() { echo "with-postgres: $*" >&2; }

is_ci() { [ "${CI:-}" = "true" ]; }

# No server: an error under CI, else run COMMAND without one (the tests say why they skip).
unavailable() {
    if is_ci; then
        log "ERROR: cannot provide a PostgreSQL server: $1"
        log "CI=true requires the PostgreSQL tests to run; install the server binaries (Debian: postgresql) or set ODUFLOW_TEST_PG_DSN."
        exit 1
    fi
    log "no PostgreSQL server ($1); running without ODUFLOW_TEST_PG_DSN, PostgreSQL tests will be skipped"
    unset ODUFLOW_TEST_PG_DSN
    trap - EXIT
    [ -z "$WORK" ] || rm -rf "$WORK"
    exec "${CMD[@]}"
}

if [ -n "${ODUFLOW_TEST_PG_DSN:-}" ]; then
    log "using the server given in ODUFLOW_TEST_PG_DSN"
    exec "${CMD[@]}"
fi

# The newest server binaries: on PATH, or Debian's versioned directories.
find_bindir() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

BINDIR="$(find_bindir || true)"
if [ -z "$BINDIR" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing the PostgreSQL server (Debian package postgresql)"
        if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                    postgresql postgresql-client >/dev/null; }; then
            unavailable "apt-get install postgresql failed"
        fi
        BINDIR="$(find_bindir || true)"
        [ -n "$BINDIR" ] || unavailable "postgresql installed but initdb/pg_ctl not found"
    else
        unavailable "initdb/pg_ctl not found and cannot install them (needs root and apt-get)"
    fi
fi

# The client tools the tests run (pg_dump, pg_restore) come from the same version as the server.
export PATH="$BINDIR:$PATH"

# The server refuses to run as root: as root, run it as the `postgres` OS user.
AS=()
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres 2>/dev/null \
            || unavailable "no postgres OS user to run the server as"
    fi
    AS=(runuser -u postgres --)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/oduflow-pg.XXXXXX")" || unavailable "cannot create a temporary directory"
DATA="$WORK/data"
SOCK="$WORK/sock"
mkdir -p "$DATA" "$SOCK"
chmod 700 "$WORK"
if [ "${#AS[@]}" -gt 0 ]; then
    chown -R postgres: "$WORK"
fi

STARTED=0
cleanup() {
    local status=$?
    if [ "$STARTED" -eq 1 ]; then
        "${AS[@]}" "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PASSWORD="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$PASSWORD" >"$WORK/pwfile"
[ "${#AS[@]}" -eq 0 ] || chown postgres: "$WORK/pwfile"

# Durability is off by default (throw-away data, faster tests); ODUFLOW_PG_DURABLE=1 keeps the
# server's defaults, for measurements that must reflect a real server (bench/).
TUNING="-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
[ "${ODUFLOW_PG_DURABLE:-0}" != "1" ] || TUNING=""

# C locale and UTF8, as the platform's databases; SCRAM passwords over TCP.
if ! "${AS[@]}" "$BINDIR/initdb" -D "$DATA" -U postgres --pwfile="$WORK/pwfile" \
        --encoding=UTF8 --locale=C --auth-local=trust --auth-host=scram-sha-256 \
        >"$WORK/initdb.log" 2>&1; then
    cat "$WORK/initdb.log" >&2
    unavailable "initdb failed"
fi
rm -f "$WORK/pwfile"

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

PORT=""
for _ in 1 2 3 4 5 6 7 8; do
    candidate=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    port_in_use "$candidate" && continue
    if "${AS[@]}" "$BINDIR/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $candidate -c unix_socket_directories=$SOCK -c max_connections=200 $TUNING" \
            start >/dev/null 2>&1; then
        PORT="$candidate"
        STARTED=1
        break
    fi
done
if [ -z "$PORT" ]; then
    cat "$WORK/server.log" >&2 2>/dev/null || true
    unavailable "the server did not start"
fi

export ODUFLOW_TEST_PG_DSN="host=127.0.0.1 port=$PORT user=postgres password=$PASSWORD dbname=postgres"
log "PostgreSQL $("$BINDIR/postgres" --version | awk "{print \$3}") on 127.0.0.1:$PORT (data in $DATA)"

set +e
"${CMD[@]}"
status=$?
set -e
exit "$status"
