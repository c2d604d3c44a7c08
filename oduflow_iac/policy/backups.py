"""Backups: buckets versioned, locked, encrypted, private; the job's key writes and nothing else;
production covered by the team job."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
)

from oduflow_iac import backup, backup_storage, naming
from oduflow_iac.policy.common import (
    BUCKET_TYPES,
    CONTAINER,
    DATABASE,
    ENCRYPTION_TYPES,
    IAM_USER,
    IAM_USER_GRANTS,
    IAM_USER_POLICY,
    OBJECT_LOCK_TYPES,
    PUBLIC_ACCESS_BLOCK_TYPE,
    PUBLIC_ACCESS_FLAGS,
    ROLE_BACKUP,
    VERSIONING_TYPES,
    _labels,
    _name,
    _production,
)

# --------------------------------------------------------------------------------------------
# backups


def dumped_databases(script: str) -> set[str]:
    """Databases a shell script dumps with `pg_dump` (`--dbname=X`, `--dbname X`, `-d X`, `-dX`)."""
    found: set[str] = set()
    for line in script.splitlines():
        if "pg_dump" not in line or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue  # unbalanced quotes: not a line the shell would run either
        in_dump = wants_value = False  # wants_value: the last word was `-d` or `--dbname`
        for token in words:
            word = token.rstrip(";")
            if wants_value:
                found.add(word)
                wants_value = False
            elif word == "pg_dump" or word.endswith("/pg_dump"):
                in_dump = True
            elif in_dump:
                if word.startswith("--dbname="):
                    found.add(word.split("=", 1)[1])
                elif word in ("--dbname", "-d"):
                    wants_value = True
                elif word.startswith("-d") and not word.startswith("--") and len(word) > 2:
                    found.add(word[2:])
            if token in ("&&", "||", "|") or token.endswith(";"):
                in_dump = wants_value = False
    return found


def _backup_script(props: Mapping[str, Any]) -> str:
    for upload in props.get("uploads") or []:
        if upload.get("file") == backup.SCRIPT_PATH:
            return str(upload.get("content") or "")
    return ""


# --------------------------------------------------------------------------------------------
# The job's key


def _as_list(value: Any) -> list[Any]:
    """IAM's "one or a list" (the engine's lists are Sequences, not lists)."""
    if value is None:
        return []
    return list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]


def _statements(document: Any) -> Iterator[Mapping[str, Any]]:
    """The statements of an IAM policy given as JSON text or as an object."""
    doc = json.loads(document) if isinstance(document, str) else document
    if not isinstance(doc, Mapping):
        raise ValueError("not a JSON object")
    for statement in _as_list(doc.get("Statement")):
        if not isinstance(statement, Mapping):
            raise ValueError("a statement is not a JSON object")
        yield statement


def _is_object_arn(resource: str) -> bool:
    """`arn:PARTITION:s3:::BUCKET/KEY-PATTERN` with a bucket: objects of one bucket, not `*`."""
    parts = resource.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "s3" or parts[3] or parts[4]:
        return False
    bucket, _, key = parts[5].partition("/")
    return bool(bucket) and "*" not in bucket and "?" not in bucket and bool(key)


def job_key_problems(user: str, document: Any) -> list[str]:
    """What an inline policy of a backup job's user allows beyond writing new backup objects.

    An allow-list: every allowed action must be one of `backup_storage.JOB_ACTIONS` (IAM action
    names are case-insensitive; a wildcard such as `s3:Put*` or `s3:*` is refused because it also
    grants PutObjectAcl, PutBucketPolicy, ...), on object ARNs of a bucket; `NotAction` and
    `NotResource` in an Allow are refused (they allow everything they do not name)."""
    allowed = {a.lower() for a in backup_storage.JOB_ACTIONS}
    who = f"the backup job key {user}"
    try:
        statements = list(_statements(document))
    except ValueError as err:
        return [f"{who} has a policy that is not a readable IAM document ({err})"]
    problems: list[str] = []
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{who} has an Allow with NotAction or NotResource, which allows all it does not name")
            continue
        for action in _as_list(statement.get("Action")):
            if str(action).lower() not in allowed:
                problems.append(
                    f"{who} may {action}: a job key only writes new backups "
                    f"({', '.join(backup_storage.JOB_ACTIONS)}), it never reads, lists or deletes"
                )
        for resource in _as_list(statement.get("Resource")):
            if not _is_object_arn(str(resource)):
                problems.append(f"{who} is allowed on {resource}: only objects of its backup bucket")
    return problems


def _backup_user(props: Mapping[str, Any], fallback: str) -> str | None:
    """The name of a backup job's IAM user, or None for any other user."""
    name = _name(props, fallback)
    tags = props.get("tags") or {}
    if isinstance(tags, Mapping) and tags.get("oduflow-role") == ROLE_BACKUP:
        return name
    team = name.removeprefix("oduflow-").removesuffix("-backup")
    return name if name.startswith("oduflow-") and naming.team_backup_user_name(team) == name else None


def _grant_users(props: Mapping[str, Any]) -> list[str]:
    return [str(u) for u in [*_as_list(props.get("user")), *_as_list(props.get("users"))]]


# --------------------------------------------------------------------------------------------


def validate_backups(args: StackValidationArgs, report: ReportViolation) -> None:
    """Backup buckets are versioned, locked (Object Lock default retention), encrypted and closed
    to the public; a backup job's key only writes new objects; when backups are configured every
    production environment's database is dumped, and its filestore mounted, by its team's backup
    job."""
    config = args.get_config()
    buckets: dict[str, PolicyResource] = {}  # urn -> bucket
    bucket_by_name: dict[str, str] = {}  # bucket name -> urn
    settings: list[tuple[str, PolicyResource]] = []  # (kind, resource)
    jobs: dict[str, PolicyResource] = {}  # team -> backup container
    databases: set[str] = set()
    backup_users: set[str] = set()
    user_policies: list[PolicyResource] = []
    grants: list[PolicyResource] = []
    for r in args.resources:
        t = r.resource_type
        if t in BUCKET_TYPES:
            buckets[r.urn] = r
            bucket_by_name[str(r.props.get("bucket") or r.name)] = r.urn
        elif t in VERSIONING_TYPES:
            settings.append(("versioning", r))
        elif t in OBJECT_LOCK_TYPES:
            settings.append(("object-lock", r))
        elif t in ENCRYPTION_TYPES:
            settings.append(("encryption", r))
        elif t == PUBLIC_ACCESS_BLOCK_TYPE:
            settings.append(("public-access-block", r))
        elif t == IAM_USER:
            user = _backup_user(r.props, r.name)
            if user is not None:
                backup_users.add(user)
        elif t == IAM_USER_POLICY:
            user_policies.append(r)
        elif t in IAM_USER_GRANTS:
            grants.append(r)
        elif t == DATABASE:
            databases.add(str(r.props.get("name") or ""))
        elif t == CONTAINER:
            labels = _labels(r.props, naming.LABEL_ROLE, naming.LABEL_TEAM)
            team = labels.get(naming.LABEL_TEAM)
            if team is not None and (
                labels.get(naming.LABEL_ROLE) == ROLE_BACKUP
                or _name(r.props, r.name) == naming.team_backup_container_name(team)
            ):
                jobs[team] = r

    good: dict[str, set[str]] = {urn: set() for urn in buckets}
    for kind, r in settings:
        # The engine relates a setting to its bucket by dependency; the `bucket` name is read only
        # when no dependency is a bucket (it may be unknown during a preview of a new bucket).
        targets = [d.urn for d in r.dependencies if d.urn in buckets]
        if not targets:
            urn = bucket_by_name.get(str(r.props.get("bucket")))
            targets = [urn] if urn else []
        if _setting_ok(kind, r.props):
            for urn in targets:
                good[urn].add(kind)
    for urn, bucket in buckets.items():
        name = str(bucket.props.get("bucket") or bucket.name)
        if "versioning" not in good[urn]:
            report(f"backup bucket {name} has no BucketVersioning with status Enabled", urn)
        if "object-lock" not in good[urn]:
            report(
                f"backup bucket {name} has no Object Lock default retention "
                f"(BucketObjectLockConfiguration, {' or '.join(backup_storage.LOCK_MODES)}, at least one day)",
                urn,
            )
        if "encryption" not in good[urn]:
            report(f"backup bucket {name} has no default server-side encryption", urn)
        if "public-access-block" not in good[urn]:
            report(f"backup bucket {name} has no BucketPublicAccessBlock with all four blocks on", urn)

    for r in user_policies:
        user = str(r.props.get("user"))
        if user in backup_users:
            for problem in job_key_problems(user, r.props.get("policy")):
                report(problem, r.urn)
    for r in grants:
        for user in _grant_users(r.props):
            if user in backup_users:
                report(
                    f"the backup job key {user} gets permissions from {r.resource_type.rsplit(':', 1)[-1]} "
                    f"{r.name}, which this pack cannot read: a job key has only its inline write-only policy",
                    r.urn,
                )

    if not config.get("configured"):
        return
    scripts: dict[str, tuple[set[str], set[str]]] = {}
    for env in _production(config):
        if env.database not in databases:
            continue  # not part of this stack (another team's stack, or the shared one)
        job = jobs.get(env.team)
        if job is None:
            report(f"production environment {env.branch} of team {env.team} has no backup job", None)
            continue
        if env.team not in scripts:
            mounted = {str(v.get("volumeName")) for v in job.props.get("volumes") or [] if v.get("volumeName")}
            scripts[env.team] = (dumped_databases(_backup_script(job.props)), mounted)
        dumped, mounted = scripts[env.team]
        if env.database not in dumped:
            report(
                f"the backup job of team {env.team} does not dump database {env.database} "
                f"of production environment {env.branch}",
                job.urn,
            )
        if env.filestore not in mounted:
            report(
                f"the backup job of team {env.team} does not mount filestore {env.filestore} "
                f"of production environment {env.branch}",
                job.urn,
            )


def _setting_ok(kind: str, props: Mapping[str, Any]) -> bool:
    if kind == "versioning":
        return (props.get("versioningConfiguration") or {}).get("status") == "Enabled"
    if kind == "object-lock":
        if props.get("objectLockEnabled") not in (None, "Enabled"):
            return False
        retention = (props.get("rule") or {}).get("defaultRetention") or {}
        period = [v for v in (retention.get("days"), retention.get("years")) if v is not None]
        return (
            retention.get("mode") in backup_storage.LOCK_MODES
            and bool(period)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 for v in period)
        )
    if kind == "encryption":
        return any(
            (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            for rule in props.get("rules") or []
        )
    return all(props.get(flag) is True for flag in PUBLIC_ACCESS_FLAGS)
