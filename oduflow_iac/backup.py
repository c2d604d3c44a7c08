"""The team backup job: what it runs, as pure functions, so tests can run the very same commands.

One container per team runs `backup.sh` on a schedule. For every environment it dumps the database
in PostgreSQL's custom format (restorable with `pg_restore`, compressed, selective) and tars the
filestore, then copies both to the team's S3 bucket under `{tier}/{database}/{timestamp}.*` for each
retention tier the night belongs to (daily; weekly on Sundays; monthly on the 1st). Each tier's prefix
has its own lifecycle expiry (see `config.Retention.tiers`).

The job only writes: no command of the script reads or lists the bucket (its key could not), and
every run writes keys of its own (the run's UTC timestamp; runs are serialised by a lock directory,
and a run takes longer than the timestamp's one-second resolution), so nothing is ever overwritten.

Besides the environments, every run backs up the team's templates (database and filestore, like an
environment) and the definitions of the team's roles (`roles_query`: a SQL file recreating their
attributes, settings and memberships, never a password), under `{tier}/roles/{timestamp}.sql`.

Each run records its result in `STATUS_FILE` (`<epoch seconds> ok|failed`), whatever ends it (an
EXIT trap); the container's healthcheck (`healthcheck_script`) fails when the last run failed or is
older than the schedule allows, so `docker ps` shows the job unhealthy. The same trap writes the
run's result to the bucket as `status/{timestamp}.ok|failed` (a new key each run; its body says
which database succeeded or failed), so `oduflow-iac backup list` shows a failed run without
anyone reading a container log.

`backup.sh DATABASE` backs up that one database only (`oduflow-iac backup now`); an unknown name
exits 64 before anything is recorded.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

SCRIPT_PATH = "/oduflow/backup.sh"
ENTRYPOINT_PATH = "/oduflow/start.sh"
HEALTHCHECK_PATH = "/oduflow/healthcheck.sh"
FILESTORE_MOUNT_ROOT = "/filestores"
WORK_DIR = "/tmp/oduflow-backup"
# Outside WORK_DIR, which a run empties: the result of the last run, and when the container started.
STATUS_FILE = "/tmp/oduflow-backup.status"
STARTED_FILE = "/tmp/oduflow-backup.started"
LOCK_DIR = "/tmp/oduflow-backup.lock"
# What each target of the current run gave (`ok DATABASE` / `failed DATABASE`): the body of the
# run's status object.
RESULTS_FILE = "/tmp/oduflow-backup.results"
# Bucket prefixes besides the tiers: the run results, and (inside each tier) the roles' definitions.
STATUS_PREFIX = "status/"
ROLES_DIR = "roles"
# Exit status of a run asked for a database this job does not back up (EX_USAGE).
EXIT_UNKNOWN_DATABASE = 64
# Exit status of a run started while another one holds the lock (EX_TEMPFAIL).
EXIT_BUSY = 75


@dataclass(frozen=True)
class BackupTarget:
    database: str
    filestore_volume: str


def filestore_mount(database: str) -> str:
    """Where the backup container sees an environment's filestore volume (read-only)."""
    return f"{FILESTORE_MOUNT_ROOT}/{database}"


def pg_dump_args(database: str, output: str) -> list[str]:
    """The dump of one environment database. Connection settings come from the libpq variables
    PGHOST, PGPORT, PGUSER and PGPASSWORD of the container (never on the command line)."""
    return [
        "pg_dump",
        "--format=custom",
        "--compress=6",
        "--no-owner",
        "--no-privileges",
        f"--dbname={database}",
        f"--file={output}",
    ]


def filestore_tar_args(database: str, output: str) -> list[str]:
    return ["tar", "-czf", output, "-C", filestore_mount(database), "."]


TIER_DAYS = {"daily": None, "weekly": ("%u", "7"), "monthly": ("%d", "01")}  # date field, value


def tier_selection(tiers: Sequence[str]) -> list[str]:
    """Shell lines setting `$tiers` to the retention tiers tonight's backup belongs to."""
    lines = ['tiers=""']
    for tier in tiers:
        when = TIER_DAYS[tier]
        test = f'[ "$(date -u +{when[0]})" = {when[1]} ] && ' if when else ""
        lines.append(f'{test}tiers="$tiers {tier}"')
    return lines


def upload_function(bucket: str) -> list[str]:
    """`upload FILE KEY`: copy a file to every tier of tonight (names are [a-z0-9._-]: safe in quotes),
    saying each key written (`oduflow-iac backup now` reports them)."""
    return [
        "upload() {",
        f'  for tier in $tiers; do aws s3 cp --only-show-errors "$1" "s3://{bucket}/$tier/$2" || return 1; '
        f'echo "wrote s3://{bucket}/$tier/$2"; done',
        "}",
    ]


def _line(args: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def status_key(stamp: str, ok: bool) -> str:
    """The key of a run's status object: `status/<timestamp>.ok` or `.failed`."""
    return f"{STATUS_PREFIX}{stamp}.{'ok' if ok else 'failed'}"


def status_recording(bucket: str | None = None) -> list[str]:
    """Shell lines that take the run lock and record the run's result in STATUS_FILE on exit, and,
    given the bucket, as the object `status/<timestamp>.ok|failed` holding RESULTS_FILE.

    The status is written to a temporary file and renamed, so the healthcheck never reads half a
    line. A second run while one is going (`backup now` during the nightly run) exits 75 without
    touching the status or the first run's files. A status object that cannot be written is said
    on stderr and changes nothing else: the local status and the healthcheck still tell."""
    upload = []
    if bucket is not None:
        upload = [
            '  run="${stamp:-$(date -u +%Y%m%dT%H%M%SZ)}"',
            f"  [ -e {RESULTS_FILE} ] || : > {RESULTS_FILE}",
            f'  if aws s3 cp --only-show-errors {RESULTS_FILE} "s3://{bucket}/{STATUS_PREFIX}$run.$result"; '
            f'then echo "wrote s3://{bucket}/{STATUS_PREFIX}$run.$result"; '
            'else echo "could not record the run\'s result in the bucket" >&2; fi',
        ]
    return [
        f"if ! mkdir {LOCK_DIR} 2>/dev/null; then",
        f'  echo "another backup run is in progress" >&2; exit {EXIT_BUSY}',
        "fi",
        f"rm -f {RESULTS_FILE}",
        "record() {",
        '  if [ "$1" = 0 ]; then result=ok; else result=failed; fi',
        f'  printf \'%s %s\\n\' "$(date -u +%s)" "$result" > {STATUS_FILE}.tmp',
        f"  mv -f {STATUS_FILE}.tmp {STATUS_FILE}",
        *upload,
        f"  rm -f {RESULTS_FILE}",
        f"  rmdir {LOCK_DIR}",
        "}",
        "trap 'record \"$?\"' EXIT",
        # A signal ends the run through the EXIT trap, as a failure.
        "trap 'exit 143' TERM INT HUP",
    ]


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def roles_query(roles: Sequence[str]) -> str:
    """A query any role may run (pg_roles, pg_db_role_setting, pg_auth_members and pg_database are
    readable by PUBLIC) whose rows, in order, are a SQL file recreating `roles` as they are now:
    created if missing, their attributes and connection limit, their settings (all of them reset
    first, so the file gives exactly these), and the groups they are members of.

    Only the roles named (the team's own): another team's role is never selected, even where it is
    a member of the same group. Never a password: pg_roles shows `********` in its place, and the
    query does not even read that column. A setting holding a list (`search_path = a, b`) comes
    back as one quoted value; the team roles carry only numeric timeouts."""
    names = ", ".join(_sql_literal(r) for r in roles)
    flag = "CASE WHEN {col} THEN '{yes}' ELSE '{no}' END"
    attributes = " || ' ' || ".join(
        flag.format(col=col, yes=yes, no=f"NO{yes}")
        for col, yes in (
            ("rolsuper", "SUPERUSER"),
            ("rolinherit", "INHERIT"),
            ("rolcreaterole", "CREATEROLE"),
            ("rolcreatedb", "CREATEDB"),
            ("rolcanlogin", "LOGIN"),
            ("rolreplication", "REPLICATION"),
            ("rolbypassrls", "BYPASSRLS"),
        )
    )
    return f"""WITH r AS (SELECT * FROM pg_catalog.pg_roles WHERE rolname IN ({names}))
SELECT line FROM (
  SELECT 1 AS part, rolname AS role, '' AS detail,
         format('DO $oduflow$ BEGIN CREATE ROLE %I; EXCEPTION WHEN duplicate_object THEN NULL; END $oduflow$;',
                rolname) AS line FROM r
  UNION ALL
  SELECT 2, rolname, '',
         format('ALTER ROLE %I WITH %s CONNECTION LIMIT %s;', rolname, {attributes}, rolconnlimit) FROM r
  UNION ALL
  SELECT 3, rolname, '', format('ALTER ROLE %I RESET ALL;', rolname) FROM r
  UNION ALL
  SELECT 4, r.rolname, coalesce(d.datname, '') || '=' || c.setting,
         CASE WHEN s.setdatabase = 0
              THEN format('ALTER ROLE %I SET %s = %L;', r.rolname,
                          split_part(c.setting, '=', 1), substr(c.setting, strpos(c.setting, '=') + 1))
              ELSE format('ALTER ROLE %I IN DATABASE %I SET %s = %L;', r.rolname, d.datname,
                          split_part(c.setting, '=', 1), substr(c.setting, strpos(c.setting, '=') + 1))
         END
    FROM r JOIN pg_catalog.pg_db_role_setting s ON s.setrole = r.oid
    LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
    CROSS JOIN LATERAL unnest(s.setconfig) AS c(setting)
   WHERE s.setdatabase = 0 OR d.datname IS NOT NULL
  UNION ALL
  SELECT 5, r.rolname, g.rolname,
         format('GRANT %I TO %I%s;', g.rolname, r.rolname,
                CASE WHEN m.admin_option THEN ' WITH ADMIN OPTION' ELSE '' END)
    FROM r JOIN pg_catalog.pg_auth_members m ON m.member = r.oid
    JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
) AS definitions
ORDER BY part, role, detail"""


# The file is for reading, never for applying: the job's key, which writes it, can write any content
# under this key (an `ALTER ROLE ... SUPERUSER` among the lines), and applying it as a superuser
# would run that. The roles are declared by Pulumi: `oduflow-iac up` creates them again, with
# their attributes, limits and passwords. The file shows what they were at the run's time.
ROLES_HEADER = (
    "-- The team's PostgreSQL roles as the backup job saw them (oduflow-iac), FOR READING ONLY.\n"
    "-- Do not apply this file: whoever holds the backup job's key can write it. The roles are\n"
    "-- declared by the stack: `oduflow-iac up` creates them again as declared.\n"
)


def roles_psql(database_word: str) -> str:
    """psql printing bare rows, connected as the team role to one of its databases (the team role
    may connect to no other). `database_word` is a shell word, already quoted."""
    return "psql -X -q -A -t -v ON_ERROR_STOP=1 --dbname=" + database_word


def roles_dump_lines(
    database_word: str, roles: Sequence[str], output: str, tail: str = "", head: str = ""
) -> list[str]:
    """Shell lines of one compound command writing the roles' definitions to `output`, between
    `head` (e.g. `if `) and `tail` (e.g. ` && upload ...; then`)."""
    return [
        f"{head}{{ printf '%s' {shlex.quote(ROLES_HEADER)} && {roles_psql(database_word)} <<'ODUFLOW_SQL'",
        roles_query(roles),
        "ODUFLOW_SQL",
        f"}} > {shlex.quote(output)}{tail}",
    ]


def argument_check(targets: Sequence[BackupTarget]) -> list[str]:
    """`backup.sh [DATABASE]`: nothing, or one of the targets; anything else exits 64 before the
    lock is taken, so a mistyped `backup now` is not recorded as a failed run."""
    names = " ".join(t.database for t in targets) or "(none)"
    cases = "|".join(['""', *(shlex.quote(t.database) for t in targets)])
    return [
        'only="${1:-}"',
        f'case "$only" in {cases}) ;; *) echo "this job does not back up database $only '
        f'(it backs up: {names})" >&2; exit {EXIT_UNKNOWN_DATABASE} ;; esac',
    ]


def backup_script(
    bucket: str,
    targets: Sequence[BackupTarget],
    tiers: Sequence[str] = ("daily",),
    roles: Sequence[str] = (),
) -> str:
    """The POSIX shell script the backup container runs at each scheduled time (no argument), or
    for one database now (`backup.sh DATABASE`). `targets` are the team's environments and
    templates; `roles` the team's PostgreSQL roles, whose definitions every run saves."""
    lines = [
        "#!/bin/sh",
        "# Generated by oduflow-iac: dump every environment and template of this team to its S3 bucket.",
        "set -eu",
        *argument_check(targets),
        *status_recording(bucket),
        'stamp="$(date -u +%Y%m%dT%H%M%SZ)"',
        *tier_selection(tiers),
        *upload_function(bucket),
        f"mkdir -p {WORK_DIR}",
        "failed=0",
    ]
    for t in targets:
        dump = f"{WORK_DIR}/{t.database}.dump"
        tar = f"{WORK_DIR}/{t.database}.filestore.tar.gz"
        lines += [
            f"# {t.database}",
            f'if [ -z "$only" ] || [ "$only" = {shlex.quote(t.database)} ]; then',
            "if "
            + " && ".join(
                (
                    _line(pg_dump_args(t.database, dump)),
                    _line(filestore_tar_args(t.database, tar)),
                    f'upload {shlex.quote(dump)} "{t.database}/$stamp.dump"',
                    f'upload {shlex.quote(tar)} "{t.database}/$stamp.filestore.tar.gz"',
                )
            )
            + "; then",
            f'  echo "backed up {t.database}"; echo "ok {t.database}" >> {RESULTS_FILE}',
            "else",
            f'  echo "backup of {t.database} FAILED" >&2; failed=1; echo "failed {t.database}" >> {RESULTS_FILE}',
            "fi",
            f"rm -f {shlex.quote(dump)} {shlex.quote(tar)}",
            "fi",
        ]
    if roles and targets:
        sql = f"{WORK_DIR}/roles.sql"
        lines += [
            "# the team's roles (attributes, settings, memberships; never a password)",
            *roles_dump_lines(
                f'"${{only:-{targets[0].database}}}"',
                roles,
                sql,
                f' && upload {shlex.quote(sql)} "{ROLES_DIR}/$stamp.sql"; then',
                head="if ",
            ),
            f'  echo "backed up the role definitions"; echo "ok {ROLES_DIR}" >> {RESULTS_FILE}',
            "else",
            '  echo "backup of the role definitions FAILED" >&2; failed=1; '
            f'echo "failed {ROLES_DIR}" >> {RESULTS_FILE}',
            "fi",
            f"rm -f {shlex.quote(sql)}",
        ]
    lines.append('exit "$failed"')
    return "\n".join(lines) + "\n"


def entrypoint_script(schedule: str) -> str:
    """The container's entrypoint: note when it started (the healthcheck's reference before the
    first run), then hand over to go-cron, which runs the backup script at each scheduled time."""
    return (
        "\n".join(
            [
                "#!/bin/sh",
                "set -eu",
                f"date -u +%s > {STARTED_FILE}",
                # A run killed with the previous container left its lock behind in a restarted one.
                f"rmdir {LOCK_DIR} 2>/dev/null || true",
                f"exec go-cron {shlex.quote(schedule)} /bin/sh {SCRIPT_PATH}",
            ]
        )
        + "\n"
    )


def healthcheck_script(max_age_seconds: int) -> str:
    """Exit 0 when the last run succeeded less than `max_age_seconds` ago (or, before any run, the
    container started less than that ago); otherwise print why and exit 1."""
    return (
        "\n".join(
            [
                "#!/bin/sh",
                'now="$(date -u +%s)"',
                f"if [ -r {STATUS_FILE} ]; then",
                f"  read -r at result < {STATUS_FILE} || {{ echo 'unreadable backup status'; exit 1; }}",
                '  [ "$result" = ok ] || { echo "the last backup run failed (at $at)"; exit 1; }',
                f"  [ $((now - at)) -le {max_age_seconds} ] || "
                f'{{ echo "the last backup run ended $((now - at)) s ago (more than {max_age_seconds} s)"; exit 1; }}',
                '  echo "last backup run ok (at $at)"; exit 0',
                "fi",
                f"read -r started < {STARTED_FILE} || {{ echo 'no backup run yet and no start time'; exit 1; }}",
                f"[ $((now - started)) -le {max_age_seconds} ] || "
                f'{{ echo "no backup run in the $((now - started)) s since the job started"; exit 1; }}',
                'echo "no backup run yet"',
            ]
        )
        + "\n"
    )
