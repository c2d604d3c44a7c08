"""The backup bucket and who may touch it, as pure functions of the config: the lifecycle rules,
the Object Lock default retention, and the IAM documents of the job's write-only key and of the
optional read-only restore key.

Standard library only: the policy pack imports the action sets to judge a rendered document.

Why these documents (see docs/architecture.md, "Backups"):
- The job's key can add objects under the tier prefixes and under `status/` (each run's result, see
  backup.status_key) and nothing else. `aws s3 cp` uploads a
  file in one PutObject, or above its multipart threshold (8 MiB) in CreateMultipartUpload,
  UploadPart and CompleteMultipartUpload; all three are authorised by `s3:PutObject` (AWS S3 User
  Guide, "Multipart upload API and permissions"). When a part fails the CLI aborts the upload
  (AbortMultipartUpload), which needs its own action; an abort removes only unfinished uploads,
  never a stored object. No Get, no List, no Delete: a stolen job key reads nothing and destroys
  nothing.
- A PutObject on an existing key does not destroy history: the bucket is versioned, so the old
  object becomes a non-current version, which Object Lock keeps for the retention, and non-current
  versions are kept at least that long. It does ADD a version, and the key can also create keys
  with any stamp in their name (a future-dated backup, `status/99991231T235959Z.ok`): a stolen job
  key can plant content. The operator tools therefore trust a key only as far as S3's own record
  agrees (lifecycle/backup_ops.stamp_problem: LastModified, the number of versions; the job never
  writes the same key twice: one timestamp per run, runs serialised by a lock) and download a
  backup by the id of its one version.
- Restores use other credentials (`restore_policy_document`): reading and listing, never writing
  or deleting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

# What the job's key is allowed, exactly.
JOB_ACTIONS: tuple[str, ...] = ("s3:PutObject", "s3:AbortMultipartUpload")
# What the restore key is allowed: list what exists (every version), read it.
RESTORE_OBJECT_ACTIONS: tuple[str, ...] = ("s3:GetObject", "s3:GetObjectVersion")
RESTORE_BUCKET_ACTIONS: tuple[str, ...] = ("s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation")

# Where each run of the job records its result (`status/<timestamp>.ok|failed`): written by the job
# key, read by `oduflow-iac backup list` with operator credentials.
STATUS_PREFIX = "status/"

LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
# Unfinished multipart uploads (a run killed mid-upload) are removed after this many days.
ABORT_INCOMPLETE_UPLOAD_DAYS = 2


def partition(region: str) -> str:
    """The AWS partition of a region (ARNs differ: `arn:aws-cn:s3:::…` in China)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def bucket_arn(bucket: str, region: str) -> str:
    """An S3 bucket's ARN, known from its name (S3 ARNs carry no account or region), so the IAM
    documents are plain text in the plan and the policy pack can judge them during a preview."""
    return f"arn:{partition(region)}:s3:::{bucket}"


def tier_prefix(tier: str) -> str:
    return f"{tier}/"


def job_object_arns(bucket_arn: str, tiers: Iterable[str]) -> list[str]:
    """The keys the job may create: everything under each tier's prefix and the run results under
    `status/`, nothing at the top."""
    return [*(f"{bucket_arn}/{tier_prefix(t)}*" for t in tiers), f"{bucket_arn}/{STATUS_PREFIX}*"]


def job_policy(bucket_arn: str, tiers: Sequence[str]) -> dict[str, object]:
    """The job's IAM policy: write new objects under the tier prefixes and `status/`, and nothing
    else. A PutObject on a key that exists adds a version; the earlier one stays (versioning,
    Object Lock), so a stolen key cannot destroy a run's recorded result, but it can add a version
    or a new key: the readers refuse a key with several versions and order runs by LastModified
    (lifecycle/backup_ops.py), never by the stamp the writer chose."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteNewBackups",
                "Effect": "Allow",
                "Action": list(JOB_ACTIONS),
                "Resource": job_object_arns(bucket_arn, tiers),
            }
        ],
    }


def job_policy_document(bucket_arn: str, tiers: Sequence[str]) -> str:
    return json.dumps(job_policy(bucket_arn, tiers))


def restore_policy_document(bucket_arn: str) -> str:
    """The restore key's IAM policy: list and read every version; no write, no delete."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListBackups",
                    "Effect": "Allow",
                    "Action": list(RESTORE_BUCKET_ACTIONS),
                    "Resource": bucket_arn,
                },
                {
                    "Sid": "ReadBackups",
                    "Effect": "Allow",
                    "Action": list(RESTORE_OBJECT_ACTIONS),
                    "Resource": f"{bucket_arn}/*",
                },
            ],
        }
    )


def lock_days(tiers: Sequence[tuple[str, int]], configured: int | None) -> int:
    """Days every new object version is locked: the configured value, else the shortest kept tier's
    retention (so each backup is undeletable for at least as long as its newest tier keeps it).

    S3 has one default retention per bucket, not one per prefix, and a per-object retention needs
    `s3:PutObjectRetention`, which the write-only key must not hold; so locking for the longest
    tier would keep every nightly backup that long (with the default tiers, 186 nightly copies
    instead of 17)."""
    if configured is not None:
        return configured
    return min((days for _, days in tiers), default=1)


def noncurrent_days(tier_days: int, locked_days: int) -> int:
    """Non-current versions of a tier live at least as long as the lock: a version can only be
    deleted once its lock has expired, and a lifecycle rule that tried earlier would only fail
    silently, so the rule says what really happens."""
    return max(1, tier_days, locked_days)


def lifecycle_rules(tiers: Sequence[tuple[str, int]], locked_days: int) -> list[dict[str, object]]:
    """One rule per retention tier's prefix: the current version expires after the tier's days
    (S3 adds a delete marker, which Object Lock allows), the non-current version is removed when
    its lock allows (`noncurrent_days`), and unfinished uploads go after two days.

    Plain dicts in the snake_case shape of pulumi-aws's `BucketLifecycleConfigurationRuleArgsDict`."""
    return [
        {
            "id": f"expire-{prefix}",
            "status": "Enabled",
            "filter": {"prefix": tier_prefix(prefix)},
            "expiration": {"days": days},
            "noncurrent_version_expiration": {"noncurrent_days": noncurrent_days(days, locked_days)},
            "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_INCOMPLETE_UPLOAD_DAYS},
        }
        for prefix, days in tiers
    ]


def object_lock_rule(mode: str, days: int) -> dict[str, object]:
    """The bucket's default retention, in the shape of `BucketObjectLockConfigurationRuleArgsDict`."""
    if mode not in LOCK_MODES:
        raise ValueError(f"object lock mode {mode!r} is not one of {', '.join(LOCK_MODES)}")
    if days < 1:
        raise ValueError("object lock retention is at least one day")
    return {"default_retention": {"mode": mode, "days": days}}
