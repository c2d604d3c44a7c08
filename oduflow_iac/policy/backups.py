"""Backups: buckets versioned, encrypted, private; production covered by the team job."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
)

from oduflow_iac import backup, naming
from oduflow_iac.policy.common import (
    BUCKET_TYPES,
    CONTAINER,
    DATABASE,
    ENCRYPTION_TYPES,
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


def validate_backups(args: StackValidationArgs, report: ReportViolation) -> None:
    """Backup buckets are versioned, encrypted and closed to the public; when backups are
    configured every production environment's database is dumped, and its filestore mounted, by
    its team's backup job."""
    config = args.get_config()
    buckets: dict[str, PolicyResource] = {}  # urn -> bucket
    bucket_by_name: dict[str, str] = {}  # bucket name -> urn
    settings: list[tuple[str, PolicyResource]] = []  # (kind, resource)
    jobs: dict[str, PolicyResource] = {}  # team -> backup container
    databases: set[str] = set()
    for r in args.resources:
        t = r.resource_type
        if t in BUCKET_TYPES:
            buckets[r.urn] = r
            bucket_by_name[str(r.props.get("bucket") or r.name)] = r.urn
        elif t in VERSIONING_TYPES:
            settings.append(("versioning", r))
        elif t in ENCRYPTION_TYPES:
            settings.append(("encryption", r))
        elif t == PUBLIC_ACCESS_BLOCK_TYPE:
            settings.append(("public-access-block", r))
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
        if "encryption" not in good[urn]:
            report(f"backup bucket {name} has no default server-side encryption", urn)
        if "public-access-block" not in good[urn]:
            report(f"backup bucket {name} has no BucketPublicAccessBlock with all four blocks on", urn)

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
    if kind == "encryption":
        return any(
            (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            for rule in props.get("rules") or []
        )
    return all(props.get(flag) is True for flag in PUBLIC_ACCESS_FLAGS)
