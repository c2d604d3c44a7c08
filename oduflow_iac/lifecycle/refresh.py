"""Refreshing an environment from another one (`clone_from`), as pure functions: the script of the
refresh one-shot, which runs the environment's own Odoo image (Odoo for `odoo neutralize`, and the
PostgreSQL client the official image ships: odoo/docker `17.0/Dockerfile`, "install latest
postgresql-client" from apt.postgresql.org, so its pg_dump is at least the server's 16) on the
team network, as the team role (libpq's PG* variables), with the source's filestore volume mounted
read-only at SOURCE_FILESTORE_MOUNT and the target's read-write at odoo_conf.FILESTORE_PATH.

1. Sessions on the TARGET database are ended: the SQL runs connected to the target and ends the
   other sessions of `current_database()` only; it names no database, so it cannot reach the
   source's sessions (and a team role can only end sessions of its own role anyway).
2. The target is emptied, not dropped: every schema it owns is dropped (with everything in it) and
   `public` created again. The database object itself (name, owner, encoding, the CONNECT revoked
   from PUBLIC) is the Pulumi resource's and stays as it is: after a refresh, `pulumi preview`
   shows no change. Why not `pg_restore --clean --if-exists`: it drops only what the dump holds,
   so tables of modules installed on the target alone survive, and a foreign key from one of them
   to a table of the dump makes the DROP of that table fail half-way.
3. `pg_dump -Fc SOURCE | pg_restore --no-owner --no-privileges --single-transaction -d TARGET`.
   pg_dump reads one consistent snapshot (REPEATABLE READ) and takes only ACCESS SHARE locks,
   which block nobody but a concurrent ALTER/DROP of the same table: the source keeps serving
   while it is copied. Never `CREATE DATABASE ... TEMPLATE source`: PostgreSQL refuses it while
   any session is connected to the source, i.e. it needs production stopped.
4. The filestore is copied into a new directory named after the TARGET database, then swapped in.
5. Odoo's neutralisation and the copy's own identity (lifecycle/neutralize.py).
6. The marker `oduflow.refresh` = the refresh generation, last.

Failing closed: if anything fails after the target was emptied, the target is emptied again, so
an environment restarted after a failed refresh never runs an un-neutralised copy of production
(its mail servers and crons active).
"""

from __future__ import annotations

import shlex

from oduflow_iac import odoo_conf, odoo_init
from oduflow_iac.lifecycle import neutralize

SOURCE_FILESTORE_MOUNT = "/source"
SCRIPT_PATH = f"{odoo_init.SCRIPT_DIR}/refresh.sh"
MARKER_KEY = "oduflow.refresh"
# What the one-shot says about its source (the plan shows "staging <- copy of main"); read by
# nothing else, ignored by the one-shot's change detection like every other variable.
SOURCE_ENV = "ODUFLOW_CLONE_FROM"
# pg_dump waits this long for a table lock held by a migration on the source, then fails (and the
# refresh with it) rather than queue every later query of the source behind itself.
LOCK_WAIT_TIMEOUT = "60s"

# Run connected to the target: every other session on it, i.e. Odoo's connections that survived
# the container being stopped, each waited for (up to 10 s) so the DROP below never waits on them.
TERMINATE_SQL = (
    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)

# Every schema of the target the team role may drop (its own and `public`, which belongs to
# pg_database_owner, i.e. the database's owner), then `public` as an empty schema again.
EMPTY_SQL = """BEGIN;
DO $$
DECLARE s name;
BEGIN
  FOR s IN SELECT n.nspname FROM pg_namespace n
            WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
              AND (pg_has_role(n.nspowner, 'USAGE') OR n.nspname = 'public')
  LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END $$;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
COMMIT;
"""


def terminate_command(target: str) -> list[str]:
    return [*neutralize.psql_command(target), "-o", "/dev/null", "-c", TERMINATE_SQL]


def empty_function(target: str) -> list[str]:
    """The shell function `empty_target`: EMPTY_SQL on the target (used twice: before the copy, and
    again when the refresh fails)."""
    return [
        "empty_target() {",
        f"{shlex.join(neutralize.psql_command(target))} <<'ODUFLOW_SQL'",
        EMPTY_SQL.rstrip("\n"),
        "ODUFLOW_SQL",
        "}",
    ]


def dump_command(source: str) -> list[str]:
    """The source, in the custom format (pg_restore reads it), as one consistent snapshot."""
    return ["pg_dump", "-Fc", f"--lock-wait-timeout={LOCK_WAIT_TIMEOUT}", "-d", source]


def restore_command(target: str) -> list[str]:
    """Into the emptied target, owned by whoever restores (the team role), no GRANTs of the source,
    all or nothing."""
    return ["pg_restore", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "-d", target]


def copy_lines(source: str, target: str) -> list[str]:
    """dump | restore, failing when either side fails (POSIX sh has no pipefail)."""
    return [
        "rm -f /tmp/oduflow-dump-failed",
        f"{{ {shlex.join(dump_command(source))} || echo $? > /tmp/oduflow-dump-failed; }} | "
        f"{shlex.join(restore_command(target))}",
        "if [ -e /tmp/oduflow-dump-failed ]; then echo 'pg_dump of the source failed' >&2; exit 1; fi",
    ]


def filestore_lines(
    source: str, target: str, source_root: str = SOURCE_FILESTORE_MOUNT, target_root: str = odoo_conf.FILESTORE_PATH
) -> list[str]:
    """The source's attachments under the target's name: copied beside, then swapped in, so a copy
    that fails half-way never leaves a mixed filestore. A source without a filestore gives an empty
    one."""
    src = shlex.quote(f"{source_root}/filestore/{source}")
    dst = f"{target_root}/filestore/{target}"
    new, old = shlex.quote(f"{dst}.refresh-new"), shlex.quote(f"{dst}.refresh-old")
    dst_q = shlex.quote(dst)
    return [
        f"mkdir -p {shlex.quote(target_root + '/filestore')}",
        f"rm -rf {new} {old}",
        f"if [ -d {src} ]; then cp -a {src} {new}; else mkdir {new}; fi",
        f"if [ -e {dst_q} ]; then mv {dst_q} {old}; fi",
        f"mv {new} {dst_q}",
        f"rm -rf {old}",
    ]


def marker_sql(generation: int) -> str:
    return neutralize.upsert_parameter_sql(f"'{MARKER_KEY}'", f"'{int(generation)}'")


def refresh_script(
    source: str,
    target: str,
    generation: int,
    *,
    base_url: str | None = None,
    source_root: str = SOURCE_FILESTORE_MOUNT,
    target_root: str = odoo_conf.FILESTORE_PATH,
) -> str:
    """The whole job: databases are `source` and `target` (never the same: the config refuses it);
    the filestores' roots are the one-shot's mounts (other roots only for tests)."""
    if source == target:
        raise ValueError("a database cannot be refreshed from itself")
    lines = [
        "set -eu",
        f"echo {shlex.quote(f'refresh {generation}: {target} <- copy of {source}')}",
        "emptied=0",
        *empty_function(target),
        # Fail closed: a target emptied and not fully neutralised is emptied again.
        'fail_closed() { status=$?; if [ "$status" -ne 0 ] && [ "$emptied" = 1 ]; then '
        "echo 'the refresh failed: emptying the target again (no un-neutralised copy is left)' >&2; "
        "empty_target || true; fi; exit $status; }",
        "trap fail_closed EXIT",
        shlex.join(terminate_command(target)),
        "emptied=1",
        "empty_target",
        *copy_lines(source, target),
        *filestore_lines(source, target, source_root, target_root),
        neutralize.neutralize_script(target, base_url=base_url).rstrip("\n"),
        f"{shlex.join(neutralize.psql_command(target))} <<'ODUFLOW_SQL'",
        marker_sql(generation),
        "ODUFLOW_SQL",
        "emptied=0",
        f"echo {shlex.quote(f'refresh {generation} of {target} done')}",
    ]
    return "\n".join(lines) + "\n"
