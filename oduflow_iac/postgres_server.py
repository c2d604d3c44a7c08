"""The shared PostgreSQL server's own configuration, as pure functions: its command line, its
`pg_hba.conf`, the wrapper entrypoint that keeps the superuser password in force, and the
per-team connection budget.

Who may connect, and how (first matching line wins; everything else is refused):

- the superuser `postgres`: over the local socket as the OS user `postgres` (`peer`: the image's
  own scripts and the password wrapper), from the container's own loopback (the healthcheck), and
  from the address the published port delivers connections from (the postgresql provider's
  admin connection, see `render_pg_hba`);
- each team's provisioning role (member of `TENANT_ADMIN_GROUP`): only from that published path,
  like the superuser; it is what a per-team stack's provider logs in as;
- each team role (member of `TENANT_GROUP`): only from the networks the container is attached to
  (`samenet`), never from the published path (no team container is on the host);
- nobody without a password (scram-sha-256 only), and no `trust` line at all.

Group roles (`+group` lines) rather than regular expressions on the role name: PostgreSQL only
accepts regular expressions in pg_hba.conf's user field from version 16 on.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from oduflow_iac import naming

SUPERUSER = "postgres"
# Where the files are uploaded into the PostgreSQL container.
CONFIG_DIR = "/etc/oduflow"
ENTRYPOINT_PATH = f"{CONFIG_DIR}/postgres-entrypoint.sh"
HBA_TEMPLATE_PATH = f"{CONFIG_DIR}/pg_hba.conf.in"
# The rendered file: written by the wrapper at every start (the published path's source address is
# only known inside the container), beside the socket, which a read-only root file system keeps
# writable anyway.
SOCKET_DIR = "/var/run/postgresql"
HBA_PATH = f"{SOCKET_DIR}/oduflow_pg_hba.conf"
# The official image's entrypoint (docker-library/postgres, 16/bookworm/Dockerfile: ENTRYPOINT).
IMAGE_ENTRYPOINT = "docker-entrypoint.sh"
# The password the image uses at initdb, and the wrapper re-applies at every start.
PASSWORD_VARIABLE = "POSTGRES_PASSWORD"
# Replaced by the wrapper with the container's default gateway (see render_pg_hba).
GATEWAY_PLACEHOLDER = "@ODUFLOW_PUBLISHED_SOURCE@"

TENANT_GROUP = naming.TENANT_GROUP_ROLE
TENANT_ADMIN_GROUP = naming.TENANT_ADMIN_GROUP_ROLE

# Connections Odoo holds per process: the request (or job) cursor and one more, taken now and then
# (a second cursor for the bus, the registry signalling or a savepoint-free check).
CONNECTIONS_PER_PROCESS = 2
# A threaded Odoo (workers = 0, development) serves several requests at once from one process.
THREADED_ODOO_CONNECTIONS = 8
# Per team, besides its environments: an init one-shot and the backup job's pg_dump.
TEAM_EXTRA_CONNECTIONS = 2
# The per-team provisioning role's limit: the provider opens one pool per database it acts on.
PROVISIONER_CONNECTION_LIMIT = 10


def environment_connections(workers: int) -> int:
    """Connections one Odoo environment needs at most: every HTTP worker, the cron worker and the
    gevent (longpolling) process hold up to two each (`odoo_conf`: max_cron_threads is 1 with
    workers); a threaded Odoo holds one per concurrent request."""
    if workers <= 0:
        return THREADED_ODOO_CONNECTIONS
    return CONNECTIONS_PER_PROCESS * (workers + 2)


def default_team_connections(workers: Sequence[int]) -> int:
    """A team role's connection limit when its quota names none: what its environments need
    (disabled ones included: enabling one must not exceed the limit), plus the one-shots and the
    backup job."""
    return sum(environment_connections(w) for w in workers) + TEAM_EXTRA_CONNECTIONS


def server_command(
    *, max_connections: int, reserved_connections: int, temp_file_limit_mb: int, hba_path: str = HBA_PATH
) -> list[str]:
    """`postgres` and its settings, as the image's entrypoint passes them on to the server (and to
    the temporary server it runs at initdb: docker-entrypoint.sh, docker_temp_server_start)."""
    settings = {
        "hba_file": hba_path,
        "password_encryption": "scram-sha-256",
        "max_connections": str(max_connections),
        # Kept for superusers (the provider, an operator) when the teams have used every other slot.
        "superuser_reserved_connections": str(reserved_connections),
        # temp_file_limit is superuser-only (PGC_SUSET): a team cannot raise it in its session. The
        # provider's Role has no attribute for it, so it is server-wide (docs/postgresql-provider.md).
        "temp_file_limit": f"{temp_file_limit_mb}MB" if temp_file_limit_mb > 0 else "-1",
    }
    command = ["postgres"]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    return command


def render_pg_hba() -> str:
    """The server's pg_hba.conf, with `GATEWAY_PLACEHOLDER` for the published path's source address.

    The postgresql provider reaches the server through the port Docker publishes on the host's
    loopback. Docker forwards such a connection to the container from the host side of the bridge
    the port is published on: docker-proxy (the default userland proxy) dials the container from
    the host, whose address on that bridge is the network's gateway; without the userland proxy,
    the loopback DNAT is masqueraded to the same gateway address. Docker publishes a container's
    ports on its gateway network, the one its default route goes through, so the source of the
    admin connection is the container's default gateway. The wrapper reads it from the container's
    routing table at every start and writes it in place of the placeholder; a container without a
    default route (only on internal networks) publishes nothing, and its gateway lines are dropped.
    """
    gw = f"{GATEWAY_PLACEHOLDER}/32"
    tenants, admins = f"+{TENANT_GROUP}", f"+{TENANT_ADMIN_GROUP}"
    rows = [
        ("# TYPE", "DATABASE", "USER", "ADDRESS", "METHOD"),
        # The image's scripts (initdb, init files) and the password wrapper: OS user postgres only.
        ("local", "all", SUPERUSER, "", "peer"),
        ("local", "all", "all", "", "reject"),
        # The healthcheck (pg_isready -h 127.0.0.1) and `docker exec` from inside the container.
        ("host", "all", SUPERUSER, "127.0.0.1/32", "scram-sha-256"),
        ("host", "all", SUPERUSER, "::1/128", "scram-sha-256"),
        # The postgresql provider, through the published port.
        ("host", "all", SUPERUSER, gw, "scram-sha-256"),
        ("host", "all", admins, gw, "scram-sha-256"),
        # Provisioning roles are members of their team's role: refuse them before the team lines.
        ("host", "all", admins, "all", "reject"),
        # Team roles: from the database network only, never from the host's published port.
        ("host", "all", tenants, gw, "reject"),
        ("host", "all", tenants, "samenet", "scram-sha-256"),
        ("host", "all", "all", "all", "reject"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["# Written by oduflow-iac (oduflow_iac/postgres_server.py); first match wins."]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_entrypoint(
    *,
    image_entrypoint: str = IMAGE_ENTRYPOINT,
    hba_template: str = HBA_TEMPLATE_PATH,
    hba_path: str = HBA_PATH,
    socket_dir: str = SOCKET_DIR,
    route_file: str = "/proc/net/route",
    wait_seconds: int = 600,
) -> str:
    """The PostgreSQL container's entrypoint: write pg_hba.conf, start the password keeper in the
    background, then `exec` the image's entrypoint with the same arguments.

    `exec` keeps the process tree the image expects: the image's entrypoint, then `gosu`, then
    `postgres` itself replace this script as PID 1, so `docker stop` delivers the image's stop
    signal (SIGINT, a fast shutdown) to the postmaster and the stop timeout gives it its time.

    The keeper waits until the server accepts connections on the local socket, then, as the OS
    user postgres (peer authentication), runs `ALTER ROLE postgres PASSWORD` with the password of
    the container's environment (psql's `\\getenv`: never on a command line, never in the process
    list) and with statement logging off for that session, so the password reaches no log even
    when the statement fails. It retries until it succeeds or `wait_seconds` have passed and
    always exits 0: after the exec its parent is the postmaster, whose reaper treats a child that
    exits with another status (or a signal) as a crashed backend and restarts every session
    (postgres, src/backend/postmaster/postmaster.c, CleanupBackend).
    """
    q = shlex.quote
    marker = GATEWAY_PLACEHOLDER
    return f"""#!/bin/sh
# Written by oduflow-iac (oduflow_iac/postgres_server.py). See the docstring of render_entrypoint.
set -eu

# The default gateway (little-endian hex in the routing table): the source address of connections
# that arrive through the port Docker publishes on the host.
gateway=$(awk '$2 == "00000000" && $3 != "00000000" {{ print $3; exit }}' {q(route_file)} 2>/dev/null || true)
if [ -n "$gateway" ]; then
    a=$(printf '%d' "0x$(echo "$gateway" | cut -c7-8)")
    b=$(printf '%d' "0x$(echo "$gateway" | cut -c5-6)")
    c=$(printf '%d' "0x$(echo "$gateway" | cut -c3-4)")
    d=$(printf '%d' "0x$(echo "$gateway" | cut -c1-2)")
    sed "s|{marker}|$a.$b.$c.$d|g" {q(hba_template)} > {q(hba_path)}.tmp
else
    grep -v '{marker}' {q(hba_template)} > {q(hba_path)}.tmp
fi
chmod 0644 {q(hba_path)}.tmp
mv -f {q(hba_path)}.tmp {q(hba_path)}

keep_password() {{
    as_postgres=""
    if [ "$(id -u)" = 0 ]; then as_postgres="gosu postgres"; fi
    socket={q(socket_dir)}
    waited=0
    while [ "$waited" -lt {int(wait_seconds)} ]; do
        if $as_postgres pg_isready -q -h "$socket" -U {SUPERUSER} -d postgres 2>/dev/null \\
            && $as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$socket" -U {SUPERUSER} -d postgres <<'SQL' 2>/dev/null
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
\\getenv oduflow_password {PASSWORD_VARIABLE}
ALTER ROLE {SUPERUSER} PASSWORD :'oduflow_password';
SQL
        then
            echo "oduflow: the {SUPERUSER} password is in force" >&2
            return 0
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "oduflow: could not apply the {SUPERUSER} password within {int(wait_seconds)} s" >&2
}}

if [ -n "${{{PASSWORD_VARIABLE}:-}}" ]; then
    ( set +e; keep_password; exit 0 ) &
fi

exec {q(image_entrypoint)} "$@"
"""
