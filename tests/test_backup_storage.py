"""The backup bucket's rules, the keys' IAM documents and the job container, as the program
renders them: exactly the actions and resources, the Object Lock retention, the job's network,
limits and healthcheck."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import backup, backup_storage, naming
from oduflow_iac.config import load_config
from oduflow_iac.errors import ConfigError
from oduflow_iac.offline.harness import PlannedRun, Secret, contains_secret, reveal
from oduflow_iac.offline.plan import plan_run
from oduflow_iac.stack_settings import resolve_config
from tests.conftest import ROOT
from tests.test_components import CONTAINER, named, planned

TIERS = [("daily", 7), ("weekly", 28), ("monthly", 186)]
ARN = "arn:aws:s3:::acme-team-1"

# --------------------------------------------------------------------------------------------
# IAM documents


def test_job_policy_is_exactly_write_new_objects_under_the_tier_and_status_prefixes() -> None:
    doc = json.loads(backup_storage.job_policy_document(ARN, ["daily", "weekly", "monthly"]))
    assert doc == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteNewBackups",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": [f"{ARN}/daily/*", f"{ARN}/weekly/*", f"{ARN}/monthly/*", f"{ARN}/status/*"],
            }
        ],
    }


def _actions(document: str) -> set[str]:
    return {a for s in json.loads(document)["Statement"] for a in s["Action"]}


def test_bucket_arn_by_partition() -> None:
    assert backup_storage.bucket_arn("b", "eu-west-1") == "arn:aws:s3:::b"
    assert backup_storage.bucket_arn("b", "cn-north-1") == "arn:aws-cn:s3:::b"
    assert backup_storage.bucket_arn("b", "us-gov-west-1") == "arn:aws-us-gov:s3:::b"


def test_iam_documents_are_known_during_a_preview() -> None:
    # Plain text in the plan, not an Output of the bucket's ARN: the policy pack judges them before
    # the bucket exists.
    run = planned("cloud")
    for policy in run.of_type("aws:iam/userPolicy:UserPolicy"):
        assert isinstance(policy.inputs["policy"], str)
        assert policy.property_dependencies.get("policy", []) == []


def test_restore_policy_reads_and_lists_and_never_writes() -> None:
    doc = backup_storage.restore_policy_document(ARN)
    actions = _actions(doc)
    assert actions == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:GetBucketLocation",
    }
    assert not any(re.search(r"Put|Delete|Bypass|\*", a) for a in actions)
    resources = {s["Resource"] for s in json.loads(doc)["Statement"]}
    assert resources == {ARN, f"{ARN}/*"}
    # The two keys share nothing: the job cannot read, the restore key cannot write.
    assert actions.isdisjoint(_actions(backup_storage.job_policy_document(ARN, ["daily"])))


# --------------------------------------------------------------------------------------------
# Retention


def test_lock_days_default_to_the_shortest_tier() -> None:
    assert backup_storage.lock_days(TIERS, None) == 7
    assert backup_storage.lock_days([("weekly", 28), ("monthly", 186)], None) == 28
    assert backup_storage.lock_days(TIERS, 30) == 30


@pytest.mark.parametrize("locked", [1, 7, 30, 400])
def test_non_current_versions_outlive_the_lock(locked: int) -> None:
    rules = backup_storage.lifecycle_rules(TIERS, locked)
    assert [r["filter"] for r in rules] == [{"prefix": "daily/"}, {"prefix": "weekly/"}, {"prefix": "monthly/"}]
    for rule, (_, days) in zip(rules, TIERS, strict=True):
        assert rule["expiration"] == {"days": days}
        kept = rule["noncurrent_version_expiration"]["noncurrent_days"]  # type: ignore[index]
        assert kept >= locked and kept >= days
        assert rule["abort_incomplete_multipart_upload"] == {"days_after_initiation": 2}


def test_object_lock_rule() -> None:
    assert backup_storage.object_lock_rule("COMPLIANCE", 7) == {"default_retention": {"mode": "COMPLIANCE", "days": 7}}
    with pytest.raises(ValueError, match="not one of GOVERNANCE, COMPLIANCE"):
        backup_storage.object_lock_rule("governance", 7)
    with pytest.raises(ValueError, match="at least one day"):
        backup_storage.object_lock_rule("GOVERNANCE", 0)


# --------------------------------------------------------------------------------------------
# The job's scripts


def test_backup_script_never_reads_or_lists_the_bucket() -> None:
    script = backup.backup_script("acme-team-1", [backup.BackupTarget("oduflow_1_main", "v")], ["daily", "weekly"])
    aws_calls = [line.strip() for line in script.splitlines() if re.search(r"\baws\b", line)]
    # Two AWS CLI calls in the whole script, both copies from a local file to the bucket: the
    # run's result under status/, and the backups under each tier.
    assert len(aws_calls) == 2
    assert re.fullmatch(
        r'if aws s3 cp --only-show-errors /tmp/oduflow-backup.results "s3://acme-team-1/status/\$run.\$result"; '
        r'then echo "wrote s3://acme-team-1/status/\$run.\$result"; '
        r'else echo "could not record the run\'s result in the bucket" >&2; fi',
        aws_calls[0],
    )
    assert re.fullmatch(
        r'for tier in \$tiers; do aws s3 cp --only-show-errors "\$1" "s3://acme-team-1/\$tier/\$2" '
        r'\|\| return 1; echo "wrote s3://acme-team-1/\$tier/\$2"; done',
        aws_calls[1],
    )
    for call in aws_calls:
        command = call.removeprefix("if ").split(";")[0].split("||")[0]
        assert not re.search(r"\b(ls|sync|rm|mv|s3api|presign|get-object|head-object)\b", command)
    # Keys carry the run's timestamp.
    assert 'upload /tmp/oduflow-backup/oduflow_1_main.dump "oduflow_1_main/$stamp.dump"' in script


def test_scripts_are_valid_posix_shell() -> None:
    for text in (
        backup.backup_script("b", [backup.BackupTarget("db", "v")]),
        backup.entrypoint_script("0 3 * * *"),
        backup.healthcheck_script(3600),
    ):
        assert subprocess.run(["sh", "-n"], input=text, text=True, check=False).returncode == 0


def test_entrypoint_records_start_and_hands_over_to_go_cron(tmp_path: Path) -> None:
    script = backup.entrypoint_script("0 3 * * *; echo injected")
    fake = tmp_path / "go-cron"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    text = script.replace("/tmp/oduflow-backup", f"{tmp_path}/oduflow-backup")
    sh = shutil.which("sh")
    assert sh is not None
    out = subprocess.run(
        [sh, "-c", text], capture_output=True, text=True, check=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}
    ).stdout
    assert out.splitlines() == ["0 3 * * *; echo injected", "/bin/sh", backup.SCRIPT_PATH]
    assert (tmp_path / "oduflow-backup.started").read_text().strip().isdigit()


# --------------------------------------------------------------------------------------------
# What the program declares (the cloud example)


def _one(run: PlannedRun, type_: str, team: str) -> Any:
    (found,) = [r for r in run.of_type(type_) if f"team-{team}-" in r.urn]
    return found


def test_bucket_is_locked_versioned_and_keeps_history_for_the_lock() -> None:
    run = planned("cloud")
    bucket = _one(run, "aws:s3/bucket:Bucket", "1")
    assert reveal(bucket.inputs)["objectLockEnabled"] is True
    # ForceNew upstream: an existing bucket is not replaced, Object Lock is turned on in place.
    assert bucket.ignore_changes == ["objectLockEnabled"] and bucket.protect
    lock = _one(run, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "1")
    assert reveal(lock.inputs)["objectLockEnabled"] == "Enabled"
    assert reveal(lock.inputs)["rule"] == {"defaultRetention": {"mode": "GOVERNANCE", "days": 7}}
    versioning = _one(run, "aws:s3/bucketVersioning:BucketVersioning", "1")
    assert versioning.urn in lock.dependencies
    lifecycle = _one(run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "1")
    for rule in lifecycle.inputs["rules"]:
        assert rule["noncurrentVersionExpiration"]["noncurrentDays"] >= 7


def test_backup_job_container_is_on_its_team_network_only_and_hardened() -> None:
    run = planned("cloud")
    for team in ("1", "2"):
        job = reveal(named(run, CONTAINER, naming.team_backup_container_name(team)).inputs)
        assert [n["name"] for n in job["networksAdvanced"]] == [naming.team_network_name(team)]
        envs = dict(e.split("=", 1) for e in job["envs"])
        assert envs["PGHOST"] == naming.team_db_proxy_container_name(team)
        assert envs["PGPORT"] == "5432"
        assert job["memory"] == 512 and job["memorySwap"] == 512
        assert job["securityOpts"] == ["no-new-privileges:true"]
        assert job["capabilities"] == {"drops": ["ALL"], "adds": ["CAP_DAC_READ_SEARCH"]}
        assert job["entrypoints"] == ["/bin/sh", backup.ENTRYPOINT_PATH]
        assert job["healthcheck"]["tests"] == ["CMD", "/bin/sh", backup.HEALTHCHECK_PATH]
        uploads = {u["file"]: u["content"] for u in job["uploads"]}
        assert set(uploads) == {backup.SCRIPT_PATH, backup.ENTRYPOINT_PATH, backup.HEALTHCHECK_PATH}
        assert uploads[backup.HEALTHCHECK_PATH] == backup.healthcheck_script(26 * 3600)
        assert "exec go-cron '0 3 * * *' /bin/sh /oduflow/backup.sh" in uploads[backup.ENTRYPOINT_PATH]
        # Every filestore mounted read-only.
        assert job["volumes"] and all(v["readOnly"] is True for v in job["volumes"])


def test_lock_settings_come_from_the_config(tmp_path: Path) -> None:
    text = (ROOT / "examples/cloud/oduflow.toml").read_text()
    text = text.replace(
        'schedule = "0 3 * * *"\n', 'schedule = "0 3 * * *"\nlock_mode = "COMPLIANCE"\nlock_days = 30\n'
    )
    (tmp_path / "oduflow.toml").write_text(text)
    shutil.copy(ROOT / "examples/cloud/oduflow.ports.json", tmp_path / "oduflow.ports.json")
    config, settings = resolve_config(tmp_path / "oduflow.toml", "cloud", ROOT)
    run = plan_run(config, settings)[0]
    lock = _one(run, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "2")
    assert reveal(lock.inputs)["rule"] == {"defaultRetention": {"mode": "COMPLIANCE", "days": 30}}
    lifecycle = _one(run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "2")
    days = {
        r["filter"]["prefix"]: r["noncurrentVersionExpiration"]["noncurrentDays"] for r in lifecycle.inputs["rules"]
    }
    assert days == {"daily/": 30, "weekly/": 30, "monthly/": 186}


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('lock_mode = "governance"', "backup.lock_mode"),
        ("lock_days = 0", "backup.lock_days"),
        ("memory_mb = 16", "backup.memory_mb"),
        ('restore_user = "yes"', "backup.restore_user"),
    ],
)
def test_bad_lock_settings_name_their_key(tmp_path: Path, line: str, key: str) -> None:
    text = (ROOT / "examples/cloud/oduflow.toml").read_text()
    path = tmp_path / "oduflow.toml"
    path.write_text(text.replace('schedule = "0 3 * * *"\n', f'schedule = "0 3 * * *"\n{line}\n'))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value)


def test_no_restore_key_without_restore_user() -> None:
    run = planned("cloud")
    users = [reveal(u.inputs)["name"] for u in run.of_type("aws:iam/user:User")]
    assert users == ["oduflow-1-backup", "oduflow-2-backup"]
    assert "backupRestore" not in run.outputs


def test_restore_key_is_a_secret_output_given_to_no_container(tmp_path: Path) -> None:
    text = (ROOT / "examples/cloud/oduflow.toml").read_text()
    (tmp_path / "oduflow.toml").write_text(
        text.replace('schedule = "0 3 * * *"\n', 'schedule = "0 3 * * *"\nrestore_user = true\n')
    )
    shutil.copy(ROOT / "examples/cloud/oduflow.ports.json", tmp_path / "oduflow.ports.json")
    config, settings = resolve_config(tmp_path / "oduflow.toml", "cloud", ROOT)
    run = plan_run(config, settings)[0]
    policies = {
        reveal(p.inputs)["user"]: reveal(p.inputs)["policy"] for p in run.of_type("aws:iam/userPolicy:UserPolicy")
    }
    assert set(policies) == {"oduflow-1-backup", "oduflow-2-backup", "oduflow-1-restore", "oduflow-2-restore"}
    assert policies["oduflow-1-restore"] == backup_storage.restore_policy_document(
        "arn:aws:s3:::acme-odoo-backups-team-1"
    )
    output = run.outputs["backupRestore"]
    assert isinstance(output, Secret) or contains_secret(output)
    creds = reveal(output)
    assert set(creds) == {"1", "2"}
    assert set(creds["1"]) == {"accessKeyId", "secretAccessKey", "bucket", "region"}
    assert creds["1"]["bucket"] == "acme-odoo-backups-team-1"
    restore_values = [creds[t][k] for t in creds for k in ("accessKeyId", "secretAccessKey")]
    assert len(set(restore_values)) == 4 and all(len(v) >= 16 for v in restore_values)
    job_key = next(
        e
        for e in reveal(named(run, CONTAINER, "oduflow-1-backup").inputs)["envs"]
        if e.startswith("AWS_ACCESS_KEY_ID=")
    )
    assert job_key.split("=", 1)[1] not in restore_values  # the job holds its own key, not the restore key
    for container in run.of_type(CONTAINER):
        text = json.dumps(reveal(container.inputs))
        assert not any(v in text for v in restore_values), container.urn
