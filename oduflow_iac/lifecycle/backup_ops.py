"""`oduflow-iac backup list` and `backup now`: what a team's bucket holds, and one backup now.

Pure functions read the bucket's keys, which the job writes as (backup.py):
- `{tier}/{database}/{stamp}.dump` and `{tier}/{database}/{stamp}.filestore.tar.gz`: one backup of
  a database (an environment's or a template's) is the PAIR with the same stamp; a night that
  belongs to several tiers has the same pair under each;
- `{tier}/roles/{stamp}.sql`: the team roles' definitions;
- `status/{stamp}.ok|failed`: each run's result, its body one `ok|failed NAME` line per target.

The thin IO around them reads the bucket with operator credentials only: the team's read-only
restore key (stack output `backupRestore`, when `[backup] restore_user = true`) or the ambient AWS
credentials of the operator. Never the job's write-only key: it cannot list anyway, and ambient
credentials that turn out to be the job's user are refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from oduflow_iac import backup, backup_storage, naming
from oduflow_iac.config import Config
from oduflow_iac.errors import UsageError

DUMP_SUFFIX = ".dump"
FILESTORE_SUFFIX = ".filestore.tar.gz"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_STAMP = re.compile(r"^\d{8}T\d{6}Z$")
# A database name as naming.py makes them (and PostgreSQL accepts: 63 bytes at most). The job's
# write key may PUT any key: one with terminal escapes or markup in it is not shown, nor restored.
_DATABASE = re.compile(r"[A-Za-z0-9_.-]{1,63}")
RESTORE_OUTPUT = "backupRestore"
# What a key's stamp may be trusted for. The job's key can PUT any key under the tiers and status/,
# with any stamp in its name, but S3 sets LastModified itself: a run's objects are stored after the
# run's stamp (by its clock, give or take CLOCK_SKEW) and within LONGEST_RUN of it. A stamp in the
# future, after its object was stored, or long before it, is not the job's: such a backup is shown
# as suspicious and never restored by default, such a status object counts as a failed run.
CLOCK_SKEW = timedelta(minutes=10)
LONGEST_RUN = timedelta(hours=24)
# How many of the newest status objects `list --branch` reads to find the last run that covered
# the branch (a `backup now` of another branch is a run too).
STATUS_LOOKBACK = 20


def stamp_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=timezone.utc)


def format_stamp(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime(STAMP_FORMAT)


# --------------------------------------------------------------------------------------------
# What the bucket holds (pure)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime | None = None  # LastModified, set by S3 (not by whoever wrote the object)
    versions: int = 1  # the job writes a key once: more is someone rewriting it


def stamp_problem(stamp: str, obj: StoredObject, now: datetime) -> str | None:
    """Why `obj`'s key stamp cannot be the job's (see CLOCK_SKEW), or None."""
    if obj.versions > 1:
        return f"{obj.key} was written {obj.versions} times (the job writes a key once)"
    at = stamp_time(stamp)
    if at > now + CLOCK_SKEW:
        return f"{obj.key} is dated in the future"
    if obj.modified is not None:
        stored = obj.modified.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        if at > obj.modified + CLOCK_SKEW:
            return f"{obj.key} is dated after it was stored ({stored} UTC)"
        if obj.modified - at > LONGEST_RUN:
            return f"{obj.key} was stored ({stored} UTC) more than {LONGEST_RUN} after its date"
    return None


@dataclass(frozen=True)
class BackupSet:
    """One backup of one database: its dump and filestore archive of the same run (`stamp`)."""

    database: str
    stamp: str
    tiers: tuple[str, ...]
    dump_size: int | None
    filestore_size: int | None
    # Why a half's key or version is not what the job writes (stamp_problem), or None.
    suspicious: str | None = None

    @property
    def at(self) -> datetime:
        return stamp_time(self.stamp)

    @property
    def complete(self) -> bool:
        """Both halves are there: a restore never pairs a dump with another run's filestore."""
        return self.dump_size is not None and self.filestore_size is not None

    def key(self, suffix: str, tier: str | None = None) -> str:
        return f"{tier or self.tiers[0]}/{self.database}/{self.stamp}{suffix}"

    @property
    def dump_key(self) -> str:
        return self.key(DUMP_SUFFIX)

    @property
    def filestore_key(self) -> str:
        return self.key(FILESTORE_SUFFIX)


def parse_backup_key(key: str, tiers: Iterable[str]) -> tuple[str, str, str, str] | None:
    """(tier, database, stamp, suffix) of a backup object's key, or None for any other key."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] not in set(tiers) or parts[1] == backup.ROLES_DIR:
        return None
    tier, database, name = parts
    if not _DATABASE.fullmatch(database):
        return None
    for suffix in (DUMP_SUFFIX, FILESTORE_SUFFIX):
        if name.endswith(suffix) and _STAMP.match(name[: -len(suffix)]):
            return tier, database, name[: -len(suffix)], suffix
    return None


def group_backups(
    objects: Iterable[StoredObject], tiers: Sequence[str], now: datetime | None = None
) -> list[BackupSet]:
    """The backups in the bucket, newest first per database, databases in name order; each marked
    suspicious when one of its objects' stamp or versions is not the job's (stamp_problem)."""
    now = now or datetime.now(timezone.utc)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for obj in objects:
        parsed = parse_backup_key(obj.key, tiers)
        if parsed is None:
            continue
        tier, database, stamp, suffix = parsed
        entry = found.setdefault(
            (database, stamp), {"tiers": set(), DUMP_SUFFIX: None, FILESTORE_SUFFIX: None, "problems": []}
        )
        entry["tiers"].add(tier)
        entry[suffix] = obj.size
        problem = stamp_problem(stamp, obj, now)
        if problem is not None:
            entry["problems"].append(problem)
    order = {t: i for i, t in enumerate(tiers)}
    sets = [
        BackupSet(
            database,
            stamp,
            tuple(sorted(entry["tiers"], key=lambda t: order[t])),
            entry[DUMP_SUFFIX],
            entry[FILESTORE_SUFFIX],
            "; ".join(sorted(entry["problems"])) or None,
        )
        for (database, stamp), entry in found.items()
    ]
    return sorted(sets, key=lambda s: (s.database, _reverse(s.stamp)))


def _reverse(stamp: str) -> str:
    """Sort key putting later stamps first (stamps are fixed-width digits)."""
    return "".join(chr(ord("9") - ord(c) + ord("0")) if c.isdigit() else c for c in stamp)


@dataclass(frozen=True)
class RunStatus:
    """One run of the job as it recorded itself under status/."""

    stamp: str
    ok: bool
    results: dict[str, bool] = field(default_factory=dict)  # target -> ok
    modified: datetime | None = None  # its object's LastModified: the order of runs
    # Why its object is not what the job writes (stamp_problem): then it counts as a failed run.
    suspicious: str | None = None

    @property
    def at(self) -> datetime:
        return stamp_time(self.stamp)

    @property
    def failed_targets(self) -> list[str]:
        return sorted(t for t, ok in self.results.items() if not ok)


def parse_status_key(key: str) -> tuple[str, bool] | None:
    prefix = backup_storage.STATUS_PREFIX
    if not key.startswith(prefix):
        return None
    stamp, _, result = key[len(prefix) :].partition(".")
    if not _STAMP.match(stamp) or result not in ("ok", "failed"):
        return None
    return stamp, result == "ok"


def parse_status_body(text: str) -> dict[str, bool]:
    results: dict[str, bool] = {}
    for line in text.splitlines():
        word, _, target = line.strip().partition(" ")
        if word in ("ok", "failed") and _DATABASE.fullmatch(target):
            results[target] = word == "ok"
    return results


def status_keys_newest_first(keys: Iterable[str]) -> list[tuple[str, str, bool]]:
    """(key, stamp, ok) of every status object, the newest stamp first."""
    parsed = [(k, *p) for k in keys if (p := parse_status_key(k)) is not None]
    return sorted(parsed, key=lambda item: item[1], reverse=True)


def status_objects_newest_first(objects: Iterable[StoredObject]) -> list[tuple[StoredObject, str, bool]]:
    """(object, stamp, ok) of every status object, the most recently STORED first: the order S3
    saw them in, not the stamps the writer chose (a planted `status/99991231T235959Z.ok` would
    otherwise stay "the last run" forever)."""
    parsed = [(o, *p) for o in objects if (p := parse_status_key(o.key)) is not None]
    return sorted(parsed, key=lambda item: (item[0].modified or stamp_time(item[1]), item[1]), reverse=True)


def last_run_for(statuses: Iterable[RunStatus], database: str | None = None) -> RunStatus | None:
    """The newest run, or the newest that covered `database`; a suspicious status object newer
    than that run is returned instead (it must not hide a failure behind it)."""
    for status in sorted(statuses, key=lambda s: (s.modified or s.at, s.stamp), reverse=True):
        if status.suspicious or database is None or database in status.results:
            return status
    return None


def human_size(size: int | None) -> str:
    if size is None:
        return "missing"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def human_age(delta_seconds: float) -> str:
    seconds = max(0, int(delta_seconds))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


@dataclass(frozen=True)
class Listing:
    """What `backup list` shows, as data (the table and `--json` both come from it)."""

    team: str
    bucket: str
    databases: dict[str, str]  # database -> what it is ("environment main", "template default", ...)
    sets: list[BackupSet]
    last_run: RunStatus | None
    now: datetime
    database: str | None = None  # `--branch`: the last run that covered this database

    @property
    def last_run_failed(self) -> bool:
        """The last run failed (for `--branch`: failed to back up that environment); a suspicious
        status object counts as a failure."""
        run = self.last_run
        if run is None:
            return False
        if run.suspicious:
            return True
        if self.database is not None and self.database in run.results:
            return not run.results[self.database]
        return not run.ok

    def to_json(self) -> dict[str, Any]:
        last = None
        if self.last_run is not None:
            last = {
                "stamp": self.last_run.stamp,
                "at": self.last_run.at.isoformat(),
                "ok": not self.last_run_failed,
                "runOk": self.last_run.ok,
                "failed": self.last_run.failed_targets,
                "suspicious": self.last_run.suspicious,
            }
        return {
            "team": self.team,
            "bucket": self.bucket,
            "lastRun": last,
            "backups": [
                {
                    "database": s.database,
                    "what": self.databases.get(s.database, "not in the config"),
                    "stamp": s.stamp,
                    "at": s.at.isoformat(),
                    "ageSeconds": int((self.now - s.at).total_seconds()),
                    "tiers": list(s.tiers),
                    "dumpKey": s.dump_key,
                    "filestoreKey": s.filestore_key,
                    "dumpBytes": s.dump_size,
                    "filestoreBytes": s.filestore_size,
                    "complete": s.complete,
                    "suspicious": s.suspicious,
                }
                for s in self.sets
            ],
        }

    def last_run_line(self) -> str:
        run = self.last_run
        if run is None:
            return "last run: none recorded in the bucket"
        if run.suspicious:
            return f"last run: SUSPICIOUS status object, counted as FAILED: {run.suspicious}"
        when = f"{run.stamp} ({human_age((self.now - run.at).total_seconds())} ago)"
        if not self.last_run_failed:
            return f"last run: ok, {when}"
        failed = ", ".join(run.failed_targets) or "see the job's log: docker logs " + naming.team_backup_container_name(
            self.team
        )
        return f"last run: FAILED, {when}: {failed}"


def databases_of(config: Config, team_id: str) -> dict[str, str]:
    """Every database the team's job backs up (or would), with what it is."""
    team = config.team[team_id]
    found = {naming.env_db_name(team_id, e.branch): f"{e.type} {e.branch}" for e in team.environments}
    found.update({naming.template_db_name(team_id, t): f"template {t}" for t in team.templates})
    return found


def environment(config: Config, team_id: str, branch: str) -> Any:
    for env in config.team[team_id].environments:
        if env.branch == branch:
            return env
    known = ", ".join(e.branch for e in config.team[team_id].environments) or "none"
    raise UsageError(f"{config.path}: team {team_id} has no environment for branch {branch!r} (branches: {known})")


def env_docker_host(config: Config, team_id: str, branch: str, stack_host: str) -> str:
    """The Docker host an environment (its Odoo container, its team's backup job) runs on: its
    server's when the file declares servers, else the stack's (`oduflow:dockerHost` or
    `platform.docker_host`)."""
    if not config.server:
        return stack_host
    return config.servers[config.env_server(team_id, environment(config, team_id, branch))].docker_host


def require_backups(config: Config) -> Any:
    if config.backup is None:
        raise UsageError(f"{config.path}: backup: no [backup] is configured, so there are no backups")
    return config.backup


def bucket_of(config: Config, team_id: str) -> str:
    return naming.team_backup_bucket_name(require_backups(config).bucket_prefix, team_id)


def tiers_of(config: Config) -> list[str]:
    return [t for t, _ in require_backups(config).retention.tiers()]


# --------------------------------------------------------------------------------------------
# The bucket, read with operator credentials (thin IO)


class Store(Protocol):
    """Read access to one team's bucket."""

    bucket: str

    def list(self, prefix: str) -> list[StoredObject]: ...

    def read(self, key: str) -> bytes: ...

    def download(self, key: str, path: Path) -> None: ...


@dataclass(frozen=True)
class RestoreKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str | None = None


class S3Store:
    """boto3 on the team's bucket. `AWS_ENDPOINT_URL` (an S3-compatible server) is honoured by
    boto3 itself."""

    def __init__(self, bucket: str, region: str, key: RestoreKey | None = None, job_user: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        kwargs: dict[str, Any] = {"region_name": (key.region if key and key.region else region)}
        if key is not None:
            kwargs.update(aws_access_key_id=key.access_key_id, aws_secret_access_key=key.secret_access_key)
        self._session = boto3.session.Session(**kwargs)
        self._client = self._session.client("s3")
        if key is None and job_user is not None:
            self._refuse_job_key(job_user)

    def _refuse_job_key(self, job_user: str) -> None:
        """Ambient credentials that are the job's own user: refused, whatever they could do."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            arn = str(self._session.client("sts").get_caller_identity().get("Arn", ""))
        except (BotoCoreError, ClientError):
            return  # an S3-compatible server without STS: the job key cannot list anyway
        if arn.endswith(f":user/{job_user}"):
            raise UsageError(
                f"the ambient AWS credentials are the backup job's write-only key ({job_user}): "
                "use the team's restore key or your own operator credentials"
            )

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "error"))
            hint = ""
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                hint = ": these credentials may not read the backups (use the restore key or operator credentials)"
            raise UsageError(f"s3://{self.bucket}: {what}: {code}{hint}") from None
        except BotoCoreError as exc:
            raise UsageError(f"s3://{self.bucket}: {what}: {exc.__class__.__name__}: {exc}") from None

    def _versions(self, prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Every stored version of every key under `prefix`, oldest first (delete markers aside:
        the job's key cannot delete). The bucket is versioned (backup_storage.py): a PutObject on
        an existing key adds a version, which is how a rewritten key shows."""
        found: dict[str, list[dict[str, Any]]] = {}
        paginator = self._client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                found.setdefault(version["Key"], []).append(version)
        for versions in found.values():
            versions.sort(key=lambda v: v["LastModified"])
        return found

    def list(self, prefix: str) -> list[StoredObject]:
        def run() -> list[StoredObject]:
            return [
                StoredObject(key, int(versions[-1]["Size"]), versions[-1]["LastModified"], len(versions))
                for key, versions in self._versions(prefix).items()
            ]

        return list(self._call(f"list {prefix}", run))

    def _only_version(self, key: str) -> str:
        """The id of `key`'s one version; refused when it has several: the job writes a key once,
        so a second version is someone with the job's key replacing a backup (or a status), and
        which one is the job's cannot be told (a key can be planted before the job's run)."""
        versions = self._call(f"list the versions of {key}", lambda: self._versions(key)).get(key, [])
        if not versions:
            raise UsageError(f"s3://{self.bucket}/{key}: no such object")
        if len(versions) > 1:
            raise UsageError(
                f"s3://{self.bucket}/{key}: written {len(versions)} times, but the backup job writes a key once: "
                "someone with the job's key may have replaced it; refused (pick another backup with --key)"
            )
        return str(versions[0]["VersionId"])

    def read(self, key: str) -> bytes:
        return bytes(
            self._call(f"read {key}", lambda: self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        )

    def download(self, key: str, path: Path) -> None:
        """The key's one version, pinned by its id (a version added after the check is not it)."""
        version = self._only_version(key)
        self._call(
            f"download {key}",
            lambda: self._client.download_file(self.bucket, key, str(path), ExtraArgs={"VersionId": version}),
        )


def restore_key_from_outputs(outputs: Mapping[str, Any], stack: str, team_id: str) -> RestoreKey:
    table = outputs.get(RESTORE_OUTPUT)
    entry = table.get(team_id) if isinstance(table, Mapping) else None
    if not isinstance(entry, Mapping):
        raise UsageError(
            f"stack {stack} has no {RESTORE_OUTPUT} output for team {team_id}: deploy it with "
            "[backup] restore_user = true, or pass --ambient-credentials to use your own AWS credentials"
        )
    key_id, secret = entry.get("accessKeyId"), entry.get("secretAccessKey")
    if not isinstance(key_id, str) or not isinstance(secret, str):
        raise UsageError(f"stack {stack}: {RESTORE_OUTPUT}[{team_id!r}] is not an access key")
    region = entry.get("region")
    return RestoreKey(key_id, secret, region if isinstance(region, str) else None)


def read_restore_key(project_dir: Path, stack: str, team_id: str) -> RestoreKey:
    """The team's read-only restore key from the stack's secret output (decrypted by the Pulumi
    CLI, only returned: never printed)."""
    from pulumi import automation as auto

    from oduflow_iac import automation

    automation.require_pulumi_cli()
    try:
        selected = auto.select_stack(stack, work_dir=str(project_dir.resolve()))
        outputs = {k: v.value for k, v in selected.outputs().items()}
    except auto.StackNotFoundError:
        raise UsageError(f"stack {stack} does not exist: deploy it first") from None
    except auto.CommandError as exc:
        raise UsageError(
            f"could not read the outputs of stack {stack}: {automation.command_error_message(exc)}"
        ) from None
    return restore_key_from_outputs(outputs, stack, team_id)


# --------------------------------------------------------------------------------------------
# backup list


def read_statuses(store: Store, database: str | None, lookback: int = STATUS_LOOKBACK) -> list[RunStatus]:
    """The newest runs' results: the newest one, or, for a database, back to the newest run that
    covered it (at most `lookback` objects read)."""
    found = status_objects_newest_first(store.list(backup_storage.STATUS_PREFIX))
    now = datetime.now(timezone.utc)
    statuses = []
    for obj, stamp, ok in found[:lookback]:
        problem = stamp_problem(stamp, obj, now)
        if problem is not None:  # not read: counted as a failed run, and the search stops here
            statuses.append(RunStatus(stamp, False, {}, obj.modified, problem))
            break
        status = RunStatus(stamp, ok, parse_status_body(store.read(obj.key).decode("utf-8", "replace")), obj.modified)
        statuses.append(status)
        if database is None or database in status.results:
            break
    return statuses


def listing(
    config: Config, team_id: str, store: Store, branch: str | None = None, now: datetime | None = None
) -> Listing:
    tiers = tiers_of(config)
    databases = databases_of(config, team_id)
    database = naming.env_db_name(team_id, environment(config, team_id, branch).branch) if branch else None
    objects: list[StoredObject] = []
    for tier in tiers:
        objects += store.list(f"{tier}/{database}/" if database else f"{tier}/")
    now = now or datetime.now(timezone.utc)
    sets = group_backups(objects, tiers, now)
    last = last_run_for(read_statuses(store, database), database)
    return Listing(team_id, store.bucket, databases, sets, last, now, database)


def print_listing(result: Listing) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"backups of team {result.team} (s3://{result.bucket})")
    for column in ("database", "what", "taken (UTC)", "age", "tiers", "dump", "filestore"):
        table.add_column(column, justify="right" if column in ("age", "dump", "filestore") else "left")
    for s in result.sets:
        filestore = human_size(s.filestore_size)
        dump = human_size(s.dump_size)
        taken = s.at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            escape(s.database),
            escape(result.databases.get(s.database, "not in the config")),
            f"[red]{taken} SUSPICIOUS[/red]" if s.suspicious else taken,
            human_age((result.now - s.at).total_seconds()),
            ",".join(s.tiers),
            dump if s.dump_size is not None else "[red]missing[/red]",
            filestore if s.filestore_size is not None else "[red]missing[/red]",
        )
    if result.sets:
        console.print(table)
        for s in result.sets:
            if s.suspicious:
                console.print(
                    f"[bold red]SUSPICIOUS[/bold red] {escape(s.database)} {s.stamp}: {escape(s.suspicious)} "
                    "(a restore never takes it)"
                )
    else:
        console.print(f"no backups in s3://{escape(result.bucket)}")
    line = escape(result.last_run_line())
    failed = result.last_run_failed
    console.print(f"[bold red]{line}[/bold red]" if failed else line)


# --------------------------------------------------------------------------------------------
# backup now


DockerRun = Callable[[list[str], Mapping[str, str]], Any]  # automation.DockerRunner


def backup_now_command(team_id: str, database: str) -> list[str]:
    """The team job's own script, limited to one database, in the job's container."""
    return ["exec", naming.team_backup_container_name(team_id), "/bin/sh", backup.SCRIPT_PATH, database]


_WROTE = re.compile(r"^wrote s3://[^/]+/(\S+)$")


def written_keys(output: str) -> list[str]:
    """The keys a run says it wrote (`wrote s3://BUCKET/KEY` lines of the job's script)."""
    return [m.group(1) for line in output.splitlines() if (m := _WROTE.match(line.strip()))]


@dataclass
class NowResult:
    ok: bool
    keys: list[str]
    output: str
    message: str

    @property
    def stamp(self) -> str | None:
        for key in self.keys:
            parsed = key.rsplit("/", 1)[-1].split(".", 1)[0]
            if _STAMP.match(parsed):
                return parsed
        return None


def backup_now(config: Config, team_id: str, branch: str, docker: DockerRun, docker_host: str) -> NowResult:
    """Run the team's job for one environment now (its container, its credentials, its script)."""
    require_backups(config)
    env = environment(config, team_id, branch)
    database = naming.env_db_name(team_id, env.branch)
    if not env.backup:
        raise UsageError(
            f"{config.path}: team.{team_id}: environment {branch!r} has backup = false: the job does not back it up"
        )
    result = docker(backup_now_command(team_id, database), {"DOCKER_HOST": docker_host})
    output = str(result.output)
    keys = written_keys(output)
    if result.code == 0:
        return NowResult(True, keys, output, f"backed up {database} ({len(keys)} objects written)")
    reasons = {
        backup.EXIT_BUSY: "another run of the job is in progress; try again when it ends",
        backup.EXIT_UNKNOWN_DATABASE: (
            "the deployed job does not back up this database yet: deploy first (`oduflow-iac up`)"
        ),
    }
    reason = reasons.get(result.code, f"the backup job failed (exit {result.code})")
    return NowResult(False, keys, output, f"backup of {database} failed: {reason}")
