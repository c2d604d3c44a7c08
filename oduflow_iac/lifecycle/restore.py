"""`oduflow-iac restore`: put an environment back to one of its backups (or, `--into`, put a copy
of it into another environment of the same team, neutralised).

What a restore does, in this order (docs/operations.md, "Restoring a backup"):
1. Pick the backup: the newest complete pair (dump + filestore of the SAME run) at or before
   `--at`, the one `--key` names, or the newest; never one whose stamp or versions show it is not
   what the job wrote (backup_ops.stamp_problem: the job's key can PUT any key). Both objects are
   downloaded (their one version, by id) before anything changes, with operator credentials
   (lifecycle/backup_ops.py).
2. Back up the target now (the team job, `backup now`), so the restore itself can be undone.
3. Stop the target's Odoo container (`docker stop`, its naming.py name; never removed).
4. The database, in ONE transaction (`database_restore_script`): end the other sessions on it,
   drop every schema of it the team role may drop, create `public` again, replay the dump
   (`pg_restore --no-owner --no-privileges` as SQL), COMMIT. A failure anywhere rolls everything
   back: the database is as it was. The database object itself (name, owner, encoding, the CONNECT
   revoked from PUBLIC) is never dropped or re-created, so `pulumi preview` shows no change.
   Why not `pg_restore --clean --if-exists`: it drops only what the dump holds, so tables created
   after the backup (a module installed since) survive, and a foreign key from one of them makes
   the DROP of a restored table fail half-way. Why not a new database renamed over the old one:
   the team role has no CREATEDB, and Pulumi's database resource (and its CONNECT grant) would be
   a different object.
5. The filestore of the same backup, staged beside the live one and swapped in (a failed
   extraction leaves the live files as they were), by a one-shot container of the backup image
   with the environment's filestore volume (`filestore_restore_script`).
6. `--into` only: Odoo's neutralisation of the copy (lifecycle/neutralize.py, the same lines a
   staging refresh runs: `odoo neutralize`, its own uuid, secret and admin password, its own
   `web.base.url`), in a one-shot of the target's Odoo image with the target container's volumes,
   odoo.conf and database variables.
7. Start the container again (`docker start`, never re-created).

Where pg_restore runs: in the team's backup job container (`docker exec`), not on the operator's
machine through the SSH tunnel. That container holds the very pg_dump that wrote the dump (a
custom-format archive refuses an older pg_restore), reaches the database as the team role through
the team's PostgreSQL proxy (the database's owner: restored objects are owned as before, no
superuser), and needs no credential from the operator: pg_hba admits team roles only from the
database network, so through the tunnel only the superuser could restore, and in the per-team
layout the operator's stack does not even hold that password. The dump travels S3 -> operator ->
`docker cp`: the read-only restore key never leaves the operator's machine.

A failure after the container was stopped says what state things are in and starts it again,
with one exception: a copy (`--into`) that was replayed but is not neutralised -- its filestore
step failed, its neutralisation failed or raised, the restore was interrupted -- is emptied again
and the container stays stopped (starting it, or a later `up` starting it, would run production's
mail servers and crons against the copy). A copy is never attempted without a neutraliser.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from oduflow_iac import naming, odoo_conf, odoo_init
from oduflow_iac.automation import environment_info
from oduflow_iac.config import Config
from oduflow_iac.errors import UsageError
from oduflow_iac.lifecycle import backup_ops
from oduflow_iac.lifecycle.backup_ops import BackupSet, DockerRun, Store
from oduflow_iac.lifecycle.neutralize import neutralize_script

# Where the files travel inside the containers.
JOB_DUMP_PATH = "/tmp/oduflow-restore.dump"
ARCHIVE_PATH = "/tmp/oduflow-restore-filestore.tar.gz"
FILESTORE_MOUNT = "/restore"
NEUTRALIZE_SCRIPT_PATH = "/tmp/oduflow-neutralize.sh"
REFUSED_ARCHIVE = (
    "the filestore archive holds a symlink, device, fifo, socket, hard link or setuid/setgid file: "
    "refused, the live filestore is untouched"
)
# psql prints this, followed by a nonce of the run, only once the COMMIT went through. The nonce
# is new for every restore, so a dump (whose SQL could print any text) cannot print the marker.
COMMITTED = "oduflow-restore-committed"
# How long the restore waits for a lock held by a session it could not end (another role's).
LOCK_TIMEOUT = "60s"
# The target container's variables the neutralisation one-shot needs (libpq's; never printed).
PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD")


# --------------------------------------------------------------------------------------------
# Which backup (pure)


def parse_time(text: str) -> datetime:
    """`--at`: ISO 8601 (`2026-11-28`, `2026-11-28T03:00`, with `Z` or an offset; without one,
    UTC) or a backup stamp (`20261128T030000Z`)."""
    value = text.strip()
    try:
        if len(value) == 16 and value.endswith("Z") and "T" in value and "-" not in value:
            return backup_ops.stamp_time(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--at {text!r}: not a time (ISO 8601 such as 2026-11-28T03:00Z, or a backup stamp 20261128T030000Z)"
        ) from None
    if len(value) == 10:  # a date alone: the end of that day
        parsed = parsed.replace(hour=23, minute=59, second=59)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def pick_backup(
    sets: Sequence[BackupSet], database: str, *, at: datetime | None = None, key: str | None = None
) -> BackupSet:
    """The backup of `database` to restore: the one `key` names (either object of the pair, or
    `TIER/DATABASE/STAMP`), else the newest complete one at or before `at` (or the newest)."""
    mine = [s for s in sets if s.database == database]
    if key is not None:
        stem = key.removesuffix(backup_ops.DUMP_SUFFIX).removesuffix(backup_ops.FILESTORE_SUFFIX)
        parts = stem.split("/")
        found = [s for s in sets if len(parts) == 3 and s.database == parts[1] and s.stamp == parts[2]]
        if not found or parts[0] not in found[0].tiers:
            raise UsageError(f"--key {key}: no such backup in the bucket (`oduflow-iac backup list` shows them)")
        chosen = found[0]
        if chosen.database != database:
            raise UsageError(f"--key {key}: a backup of {chosen.database}, not of {database}")
    else:
        # A suspicious backup (its stamp or versions are not the job's: backup_ops.stamp_problem)
        # is never the default: a planted future-dated pair would otherwise win every restore.
        candidates = [s for s in mine if s.complete and not s.suspicious and (at is None or s.at <= at)]
        if not candidates:
            when = f" at or before {at.isoformat()}" if at else ""
            raise UsageError(f"no complete backup of {database}{when} (`oduflow-iac backup list` shows them)")
        chosen = max(candidates, key=lambda s: s.stamp)
    if chosen.suspicious:
        raise UsageError(
            f"backup {chosen.stamp} of {chosen.database} is suspicious, refused: {chosen.suspicious} "
            "(`oduflow-iac backup list` shows it)"
        )
    if not chosen.complete:
        missing = "dump" if chosen.dump_size is None else "filestore archive"
        raise UsageError(f"backup {chosen.stamp} of {database} has no {missing}: a restore takes both halves or none")
    return chosen


# --------------------------------------------------------------------------------------------
# The scripts (pure)

# Every schema of the database the team role may drop (its own, and `public`, which belongs to
# pg_database_owner, i.e. the database's owner), then `public` again, empty. Objects of the
# server's own schemas and the database object itself are untouched.
EMPTY_SQL = """DO $oduflow$
DECLARE s name;
BEGIN
  FOR s IN SELECT n.nspname FROM pg_catalog.pg_namespace n
            WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
              AND (pg_catalog.pg_has_role(n.nspowner, 'USAGE') OR n.nspname = 'public')
  LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END $oduflow$;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
"""

# Sessions still on the database (Odoo's, surviving its container's stop; a psql left open by
# someone of the team), each waited for up to 10 s; the team role can end its own role's only.
TERMINATE_SQL = (
    "SELECT pg_catalog.pg_terminate_backend(pid, 10000) FROM pg_catalog.pg_stat_activity"
    " WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid();"
)


def restore_prelude_sql() -> str:
    return "\n".join(
        [
            "BEGIN;",
            # The DROP ... CASCADE notices list every table: noise in the operator's output.
            "SET LOCAL client_min_messages = warning;",
            f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';",
            # The team role's defaults would end a long COPY; the restore is one long transaction.
            "SET LOCAL statement_timeout = 0;",
            "SET LOCAL idle_in_transaction_session_timeout = 0;",
            f"{TERMINATE_SQL[:-1]} \\g /dev/null",
            EMPTY_SQL.rstrip("\n"),
        ]
    )


def pg_restore_args(dump: str, restrict_key: str) -> list[str]:
    """The dump as SQL: objects owned by whoever runs it (the team role), no GRANTs of the source,
    between `\\restrict KEY` and `\\unrestrict KEY`: psql runs none of its meta-commands (`\\!`
    runs a shell command) in between, so a crafted dump cannot reach the job container's shell
    (CVE-2025-8714; PostgreSQL 13.22, 14.19, 15.14, 16.10, 17.6 and later)."""
    return ["pg_restore", "--no-owner", "--no-privileges", f"--restrict-key={restrict_key}", "--file=-", dump]


# What the script says, and does, when the job image's pg_restore cannot restrict psql.
OLD_PG_RESTORE = (
    "the backup job image's pg_restore has no --restrict-key (PostgreSQL older than 13.22, 14.19, 15.14, "
    "16.10 or 17.6): psql would run a dump's meta-commands; nothing was changed: update platform.backup_image"
)


def psql_args(database: str) -> list[str]:
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={database}"]


def database_restore_script(database: str, dump: str, nonce: str | None = None) -> str:
    """POSIX sh: empty `database` and replay `dump` into it in ONE transaction, with libpq's PG*
    variables saying where and as whom. COMMIT is sent only when pg_restore read the whole dump, and
    the script succeeds only when psql exits 0 and printed the run's marker after the COMMIT (POSIX
    sh has no pipefail): a dump that breaks half-way, an object that fails, a lock not granted --
    all roll back to the database as it was.

    Why psql at all, not `pg_restore --dbname --single-transaction`: the emptying must be in the
    same transaction as the replay, and pg_restore runs nothing of ours in its own. psql reads the
    dump only restricted (pg_restore_args), and the marker carries `nonce` (new for every run):
    neither a meta-command nor a row the dump prints can fake the outcome."""
    nonce = nonce or secrets.token_hex(16)
    marker = f"{COMMITTED}-{nonce}"
    # The restrict key is another secret of the run (pg_restore refuses characters other than
    # letters and digits): the dump cannot name it to lift the restriction.
    restrict_key = secrets.token_hex(16)
    return "\n".join(
        [
            "set -eu",
            "case \"$(pg_restore --help 2>&1)\" in *--restrict-key*) ;;",
            f"  *) echo {shlex.quote(OLD_PG_RESTORE)} >&2; exit 1 ;;",
            "esac",
            "out=$(",
            "  {",
            "    cat <<'ODUFLOW_SQL'",
            restore_prelude_sql(),
            "ODUFLOW_SQL",
            f"    if {shlex.join(pg_restore_args(dump, restrict_key))}; then"
            f" printf 'COMMIT;\\n\\\\echo {marker}\\n'; fi",
            f"  }} | {shlex.join(psql_args(database))}",
            ") || out=''",
            f'case "$out" in *{marker}*) echo "database {database} restored" ;;',
            f'  *) echo "the restore of {database} was rolled back: the database is as it was" >&2; exit 1 ;;',
            "esac",
        ]
    )


def database_empty_script(database: str) -> str:
    """POSIX sh: empty `database` (the same emptying, in one transaction, and nothing replayed).
    What a copy whose neutralisation failed gets: no un-neutralised copy of production is left for
    a later start (`oduflow-iac up` starts a stopped Odoo container) to run."""
    return "\n".join(
        [
            "set -eu",
            f"{shlex.join(psql_args(database))} <<'ODUFLOW_SQL'",
            restore_prelude_sql(),
            "COMMIT;",
            "ODUFLOW_SQL",
            f"echo {shlex.quote(f'database {database} emptied')}",
        ]
    )


def filestore_restore_script(
    source_db: str, target_db: str, archive: str = ARCHIVE_PATH, root: str = FILESTORE_MOUNT
) -> str:
    """POSIX sh (busybox or GNU tar) run as root with the filestore volume at `root`: the archive's
    `filestore/SOURCE` becomes `filestore/TARGET`, staged beside it and swapped in, so an archive
    that fails to extract leaves the live attachments as they were. Owners and modes are the
    archive's. Only that directory: Odoo's `sessions/` of the volume is left as it is."""
    stage = shlex.quote(f"{root}/.oduflow-restore")
    src = shlex.quote(f"{root}/.oduflow-restore/filestore/{source_db}")
    dst = f"{root}/filestore/{target_db}"
    new, old = shlex.quote(f"{dst}.oduflow-new"), shlex.quote(f"{dst}.oduflow-old")
    return "\n".join(
        [
            "set -eu",
            f"rm -rf {stage} {new} {old}",
            f"mkdir -p {stage} {shlex.quote(root + '/filestore')}",
            f"tar -xzf {shlex.quote(archive)} -C {stage}",
            # The archive is the job's, whose key can write anything: extracted as root, a
            # `filestore/SOURCE` that is a symlink (to /etc, /proc/self...) would become the live
            # filestore, and a device, fifo, socket, hard link or setuid/setgid file has no place
            # among attachments. Odoo's filestore holds plain files and directories only.
            # (A find that fails stops the script, `set -e`: refused as well.)
            f"odd=$(find {stage} \\( -type l -o -type b -o -type c -o -type p -o -type s"
            " -o \\( -type f -links +1 \\) -o -perm -4000 -o -perm -2000 \\) -print)",
            f'if [ -L {src} ] || [ -n "$odd" ]; then',
            f"  echo {shlex.quote(REFUSED_ARCHIVE)} >&2; rm -rf {stage}; exit 1",
            "fi",
            # A backup of a database without attachments has no directory: an empty one.
            f"if [ -d {src} ]; then mv {src} {new}; else mkdir {new}; fi",
            f"if [ -e {shlex.quote(dst)} ]; then mv {shlex.quote(dst)} {old}; fi",
            f"mv {new} {shlex.quote(dst)}",
            f"rm -rf {old} {stage}",
            f"echo {shlex.quote(f'filestore of {target_db} restored')}",
        ]
    )


# --------------------------------------------------------------------------------------------
# The plan (pure)


@dataclass(frozen=True)
class RestorePlan:
    team_id: str
    source_branch: str
    target_branch: str
    source_db: str
    target_db: str
    backup: BackupSet
    container: str
    filestore_volume: str
    team_network: str
    odoo_image: str
    backup_image: str
    backup_first: bool
    # The target's own URL: `web.base.url` of a neutralised copy (links in its mail and reports).
    base_url: str | None = None

    @property
    def neutralise(self) -> bool:
        return self.source_db != self.target_db

    def steps(self) -> list[str]:
        what = f"backup {self.backup.stamp} of {self.source_db} ({self.backup.dump_key} + {self.backup.filestore_key})"
        lines = [f"restore {what} into {self.target_db}"]
        if self.backup_first:
            lines.append(f"1. back up {self.target_db} now (the team's backup job)")
        else:
            lines.append(f"1. no backup of {self.target_db} first (--no-backup-first)")
        lines += [
            f"2. stop {self.container}",
            f"3. empty {self.target_db} and replay the dump, in one transaction (name and owner kept)",
            f"4. swap in the filestore of the same backup (volume {self.filestore_volume})",
        ]
        if self.neutralise:
            lines.append(f"5. neutralise {self.target_db} (odoo neutralize, its own uuid, secret, admin password)")
        lines.append(f"{6 if self.neutralise else 5}. start {self.container}")
        return lines


def plan_restore(
    config: Config,
    team_id: str,
    branch: str,
    sets: Sequence[BackupSet],
    *,
    at: datetime | None = None,
    key: str | None = None,
    into: str | None = None,
    backup_first: bool = True,
) -> RestorePlan:
    backup_ops.require_backups(config)
    source = backup_ops.environment(config, team_id, branch)
    target = backup_ops.environment(config, team_id, into) if into is not None else source
    source_db = naming.env_db_name(team_id, source.branch)
    target_db = naming.env_db_name(team_id, target.branch)
    if into is not None and target.type == "production" and source_db != target_db:
        raise UsageError(
            f"{config.path}: team.{team_id}: {into!r} is a production environment: a restore --into "
            "neutralises its target, which production must never be; restore production from its own backups"
        )
    if backup_first and not target.backup:
        raise UsageError(
            f"{config.path}: team.{team_id}: environment {target.branch!r} has backup = false, so it cannot be "
            "backed up before the restore: pass --no-backup-first to restore over it anyway"
        )
    chosen = pick_backup(sets, source_db, at=at, key=key)
    return RestorePlan(
        team_id=team_id,
        source_branch=source.branch,
        target_branch=target.branch,
        source_db=source_db,
        target_db=target_db,
        backup=chosen,
        container=naming.env_container_name(team_id, target.branch),
        filestore_volume=naming.env_filestore_volume_name(team_id, target.branch),
        team_network=naming.team_network_name(team_id),
        odoo_image=config.env_image(team_id, target),
        backup_image=config.platform.backup_image,
        backup_first=backup_first,
        base_url=environment_info(config, team_id, target.branch).url,
    )


# --------------------------------------------------------------------------------------------
# Running it (thin IO)


class DatabaseRunner(Protocol):
    """Runs `database_restore_script` (and `database_empty_script`) where the PostgreSQL client
    tools and the team role are."""

    def restore(self, database: str, dump: Path) -> tuple[int, str]: ...

    def empty(self, database: str) -> tuple[int, str]: ...


class Neutraliser(Protocol):
    def neutralise(self, plan: RestorePlan) -> tuple[int, str]: ...


def _docker_env(host: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"DOCKER_HOST": host, **(extra or {})}


@dataclass
class JobContainerDatabase:
    """pg_restore in the team's backup job container (see the module's docstring for why)."""

    docker: DockerRun
    docker_host: str
    team_id: str

    def restore(self, database: str, dump: Path) -> tuple[int, str]:
        job = naming.team_backup_container_name(self.team_id)
        env = _docker_env(self.docker_host)
        copied = self.docker(["cp", str(dump), f"{job}:{JOB_DUMP_PATH}"], env)
        if copied.code != 0:
            return copied.code, f"could not copy the dump into {job}: {copied.output}"
        try:
            done = self.docker(["exec", job, "/bin/sh", "-c", database_restore_script(database, JOB_DUMP_PATH)], env)
            return done.code, str(done.output)
        finally:
            self.docker(["exec", job, "rm", "-f", JOB_DUMP_PATH], env)

    def empty(self, database: str) -> tuple[int, str]:
        job = naming.team_backup_container_name(self.team_id)
        done = self.docker(
            ["exec", job, "/bin/sh", "-c", database_empty_script(database)], _docker_env(self.docker_host)
        )
        return done.code, str(done.output)


def container_env(docker: DockerRun, host: str, container: str, names: Sequence[str]) -> dict[str, str]:
    """Some variables of a container's environment (read with `docker inspect`, kept in memory)."""
    found = docker(["inspect", "--format", "{{json .Config.Env}}", container], _docker_env(host))
    if found.code != 0:
        raise RuntimeError(f"could not inspect {container}: {found.output}")
    values = {}
    for item in json.loads(str(found.output).strip() or "[]") or []:
        name, _, value = str(item).partition("=")
        if name in names:
            values[name] = value
    return values


def container_image(docker: DockerRun, host: str, container: str) -> str | None:
    """The id of the image a container runs (None when there is no such container)."""
    found = docker(["inspect", "--format", "{{.Image}}", container], _docker_env(host))
    return str(found.output).strip() or None if found.code == 0 else None


@dataclass
class OneShotNeutraliser:
    """The target's Odoo image, on the team network, with the target container's volumes (its
    filestore, its addons), its odoo.conf and its database variables; the admin password from the
    stack output `odooAdmin`. Secrets reach the container through the docker client's environment
    (`-e NAME`), never a command line."""

    docker: DockerRun
    docker_host: str
    admin_password: Callable[[], str]

    def neutralise(self, plan: RestorePlan) -> tuple[int, str]:
        name = naming.env_restore_container_name(plan.team_id, plan.target_branch, "neutralize")
        try:
            secrets = container_env(self.docker, self.docker_host, plan.container, PG_VARIABLES)
        except (RuntimeError, ValueError) as exc:  # no such container, unreadable answer
            return 1, str(exc)
        # Exactly the image the target runs (its Odoo, its addons' Python dependencies), by id.
        image = container_image(self.docker, self.docker_host, plan.container) or plan.odoo_image
        secrets[odoo_init.ADMIN_PASSWORD_ENV] = self.admin_password()
        env = _docker_env(self.docker_host, secrets)
        script = neutralize_script(plan.target_db, base_url=plan.base_url)
        with tempfile.TemporaryDirectory(prefix="oduflow-neutralize-") as tmp:
            conf, script_file = Path(tmp) / "odoo.conf", Path(tmp) / "neutralize.sh"
            script_file.write_text("#!/bin/sh\nset -eu\n" + script, encoding="utf-8")
            self.docker(["rm", "-f", name], env)
            steps = [
                ["cp", f"{plan.container}:{odoo_conf.ODOO_CONF_PATH}", str(conf)],
                [
                    "create",
                    "--name",
                    name,
                    "--network",
                    plan.team_network,
                    "--volumes-from",
                    plan.container,
                    "--security-opt",
                    "no-new-privileges",
                    "--label",
                    f"{naming.LABEL_TEAM}={plan.team_id}",
                    *[arg for variable in sorted(secrets) for arg in ("-e", variable)],
                    "--entrypoint",
                    "/bin/sh",
                    image,
                    NEUTRALIZE_SCRIPT_PATH,
                ],
                ["cp", str(conf), f"{name}:{odoo_conf.ODOO_CONF_PATH}"],
                ["cp", str(script_file), f"{name}:{NEUTRALIZE_SCRIPT_PATH}"],
                ["start", "--attach", name],
            ]
            output: list[str] = []
            try:
                for args in steps:
                    result = self.docker(args, env)
                    if result.output and args[0] != "create":  # not the new container's id
                        output.append(str(result.output))
                    if result.code != 0:
                        return result.code, "\n".join(output)
                return 0, "\n".join(output)
            finally:
                self.docker(["rm", "-f", name], _docker_env(self.docker_host))


@dataclass
class RestoreResult:
    ok: bool
    lines: list[str] = field(default_factory=list)
    state: str = ""
    pre_restore_keys: list[str] = field(default_factory=list)


@dataclass
class Restorer:
    """Runs a RestorePlan; every step's IO is injected (the CLI wires the real ones)."""

    store: Store
    docker: DockerRun
    docker_host: str
    database: DatabaseRunner
    backup_now: Callable[[], backup_ops.NowResult]
    neutraliser: Neutraliser | None = None
    out: Callable[[str], None] | None = None
    workdir: Path | None = None

    def _say(self, result: RestoreResult, line: str) -> None:
        result.lines.append(line)
        if self.out is not None:
            self.out(line)

    def _docker(self, *args: str) -> Any:
        return self.docker(list(args), _docker_env(self.docker_host))

    def _running(self, container: str) -> bool | None:
        """True/False, or None when there is no such container (a disabled environment)."""
        found = self._docker("inspect", "--format", "{{.State.Running}}", container)
        if found.code != 0:
            return None
        return str(found.output).strip() == "true"

    def run(self, plan: RestorePlan) -> RestoreResult:
        if plan.neutralise and self.neutraliser is None:
            raise UsageError("a restore into another environment is neutralised: no neutralisation was given")
        result = RestoreResult(ok=False)
        for line in plan.steps():
            self._say(result, line)
        with tempfile.TemporaryDirectory(prefix="oduflow-restore-", dir=self.workdir) as tmp:
            dump, archive = Path(tmp) / "backup.dump", Path(tmp) / "filestore.tar.gz"
            # Both halves before anything changes: a missing object or a refused key stops here.
            self.store.download(plan.backup.dump_key, dump)
            self.store.download(plan.backup.filestore_key, archive)
            self._say(result, f"downloaded {plan.backup.dump_key} and {plan.backup.filestore_key}")
            if plan.backup_first:
                now = self.backup_now()
                if not now.ok:
                    result.state = f"nothing was changed: {now.message}"
                    self._say(result, result.state)
                    return result
                result.pre_restore_keys = now.keys
                self._say(result, f"{plan.target_db} backed up first (run {now.stamp or '?'}): {now.message}")
            return self._restore(plan, dump, archive, result)

    def _restore(self, plan: RestorePlan, dump: Path, archive: Path, result: RestoreResult) -> RestoreResult:
        undo = _undo_hint(result.pre_restore_keys)
        running = self._running(plan.container)
        if running:
            stopped = self._docker("stop", plan.container)
            if stopped.code != 0:
                result.state = f"nothing was changed: could not stop {plan.container}: {stopped.output}"
                self._say(result, result.state)
                return result
            self._say(result, f"stopped {plan.container}")
        else:
            self._say(result, f"{plan.container} is not running; it is left stopped")
        keep_stopped = False
        copy_in_place = False  # an un-neutralised copy of another environment is in the database
        try:
            code, output = self.database.restore(plan.target_db, dump)
            if output:
                self._say(result, output)
            if code != 0:
                result.state = f"nothing was changed: the database restore failed and was rolled back (exit {code})"
                return result
            copy_in_place = plan.neutralise
            code, output = self._filestore(plan, archive)
            if output:
                self._say(result, output)
            if code != 0 and plan.neutralise:
                # The copy is not neutralised yet: fail closed, as when its neutralisation fails.
                keep_stopped = True
                result.state = self._fail_closed(
                    plan, f"the filestore of the copy could not be restored (exit {code})", undo, result
                )
                return result
            if code != 0:
                result.state = (
                    f"PARTLY RESTORED: {plan.target_db} holds backup {plan.backup.stamp}, but its filestore could "
                    f"not be restored (exit {code}) and still holds the files from before the restore{undo}"
                )
                return result
            if plan.neutralise and self.neutraliser is not None:
                code, output = self.neutraliser.neutralise(plan)
                if output:
                    self._say(result, output)
                if code != 0:
                    # Fail closed: no copy of production with its mail servers and crons on.
                    keep_stopped = True
                    result.state = self._fail_closed(
                        plan, f"the neutralisation of the copy failed (exit {code})", undo, result
                    )
                    return result
            copy_in_place = False
            result.ok = True
            result.state = f"{plan.target_db} and its filestore hold backup {plan.backup.stamp} of {plan.source_db}"
            return result
        except BaseException as exc:  # Ctrl-C, a missing docker client...: say where things stand
            if copy_in_place:  # fail closed, as when the neutralisation fails
                keep_stopped = True
                with contextlib.suppress(Exception):
                    self.database.empty(plan.target_db)
            result.state = (
                f"INTERRUPTED ({exc.__class__.__name__}) after {plan.container} was stopped: the database "
                "restore is one transaction (committed only if a line above says it was restored), the "
                f"filestore is swapped in one step (restored only if a line above says so){undo}"
            )
            raise
        finally:
            # Whatever way out this is, an un-neutralised copy of another environment is never
            # started (the paths above have emptied it; this only guards paths added later).
            if copy_in_place and not result.ok:
                keep_stopped = True
            if result.state:
                self._say(result, result.state)
            if running and not keep_stopped:
                started = self._docker("start", plan.container)
                if started.code == 0:
                    self._say(result, f"started {plan.container}")
                else:
                    result.ok = False
                    self._say(result, f"could not start {plan.container} again: {started.output}")

    def _fail_closed(self, plan: RestorePlan, why: str, undo: str, result: RestoreResult) -> str:
        """Empty the copy that could not be neutralised (the caller keeps its Odoo stopped: a later
        `up` starts a stopped container); the state line saying so."""
        emptied, said = self.database.empty(plan.target_db)
        if said:
            self._say(result, said)
        now = "is now EMPTY" if emptied == 0 else "could NOT be emptied: do not start it"
        return (
            f"NOT NEUTRALISED: {why}, in {plan.target_db} (a copy of {plan.source_db}); the database {now} and "
            f"{plan.container} is left STOPPED: fix the cause and run the restore again{undo}"
        )

    def _filestore(self, plan: RestorePlan, archive: Path) -> tuple[int, str]:
        name = naming.env_restore_container_name(plan.team_id, plan.target_branch, "filestore")
        script = filestore_restore_script(plan.source_db, plan.target_db)
        # The image the team's job runs (it wrote the archive with its tar), by id when it runs.
        job = naming.team_backup_container_name(plan.team_id)
        image = container_image(self.docker, self.docker_host, job) or plan.backup_image
        self._docker("rm", "-f", name)
        steps = [
            (
                "create",
                "--name",
                name,
                "--network",
                "none",
                "--security-opt",
                "no-new-privileges",
                "--user",
                "0:0",
                "--label",
                f"{naming.LABEL_TEAM}={plan.team_id}",
                "--volume",
                f"{plan.filestore_volume}:{FILESTORE_MOUNT}",
                "--entrypoint",
                "/bin/sh",
                image,
                "-c",
                script,
            ),
            ("cp", str(archive), f"{name}:{ARCHIVE_PATH}"),
            ("start", "--attach", name),
        ]
        output: list[str] = []
        try:
            for args in steps:
                done = self._docker(*args)
                if done.output and args[0] != "create":  # not the new container's id
                    output.append(str(done.output))
                if done.code != 0:
                    return done.code, "\n".join(output)
            return 0, "\n".join(output)
        finally:
            self._docker("rm", "-f", name)


def _undo_hint(keys: Sequence[str]) -> str:
    """How to go back to the state before the restore: the backup taken first."""
    dumps = [k for k in keys if k.endswith(backup_ops.DUMP_SUFFIX)]
    return f"; the backup taken first can be restored with --key {dumps[0]}" if dumps else ""
