"""The backup job against an S3-compatible server (moto in server mode on 127.0.0.1) that enforces
IAM: the bucket as the program declares it (versioned, Object Lock with a default retention), the
job's key holding exactly the rendered write-only policy, and the job's own script run by a real
AWS CLI. pg_dump and tar are stand-ins writing known bytes (the real dump is proven against
PostgreSQL in tests/postgres/test_backup.py).

Proves: the script's uploads (single-part and multipart) work with nothing but s3:PutObject and
s3:AbortMultipartUpload; the key cannot read, list or delete; a locked version
cannot be deleted even by an operator allowed s3:*; every run writes keys of its own; a failed
run and a stale one make the healthcheck fail; every run records its result as an object under
status/ that the key can write but not read, list, delete or rewrite; a run for one database
backs up that one only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import backup, backup_storage

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")
from botocore.config import Config as BotoConfig  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

BUCKET = "acme-odoo-backups-team-1"
REGION = "eu-west-1"
TIERS = ["daily", "weekly", "monthly"]
# Above the AWS CLI's 8 MiB multipart threshold: CreateMultipartUpload, UploadPart x2, Complete.
BIG = 9 * 1024 * 1024


def _aws_cli() -> str | None:
    beside = Path(sys.executable).parent / "aws"
    return str(beside) if beside.exists() else shutil.which("aws")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Keys:
    access_key_id: str
    secret_access_key: str


@dataclass
class S3Server:
    endpoint: str
    job: Keys
    operator: Keys
    restore: Keys
    bucket: str = BUCKET

    def client(self, keys: Keys) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


def _iam_user(iam: Any, name: str, document: str) -> Keys:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=document)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(key["AccessKeyId"], key["SecretAccessKey"])


@contextlib.contextmanager
def serve_s3(bucket: str = BUCKET, team: str = "1") -> Iterator[S3Server]:
    """moto in server mode on loopback, enforcing IAM, with the team's bucket as TeamStack declares
    it and three keys: the job's (write-only), the restore key (read-only) and an operator's (s3:*)."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        setup = {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": "setup"}
        setup["aws_secret_access_key"] = "setup"
        s3 = boto3.client("s3", config=BotoConfig(s3={"addressing_style": "path"}), **setup)
        iam = boto3.client("iam", **setup)
        # The bucket as TeamStack declares it: Object Lock on, versioned, a default retention.
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}, ObjectLockEnabledForBucket=True
        )
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        rule = backup_storage.object_lock_rule("GOVERNANCE", 7)["default_retention"]
        assert isinstance(rule, dict)
        s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": rule["mode"], "Days": rule["days"]}},
            },
        )
        arn = backup_storage.bucket_arn(bucket, REGION)
        job = _iam_user(iam, f"oduflow-{team}-backup", backup_storage.job_policy_document(arn, TIERS))
        restore = _iam_user(iam, f"oduflow-{team}-backup-restore", backup_storage.restore_policy_document(arn))
        everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        operator = _iam_user(iam, "operator", json.dumps(everything))
        # From now on every request is authenticated and authorised against IAM.
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).close()
        yield S3Server(endpoint, job, operator, restore, bucket)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with serve_s3() as server:
        yield server


def _stub(directory: Path, name: str, text: str) -> None:
    path = directory / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# pg_dump writes $FAKE_DUMP_SIZE bytes of the database's name repeated (or fails for the
# database in $FAIL_DB); tar writes a small archive named after its directory.
FAKE_PG_DUMP = """#!/bin/sh
db=""; out=""
for arg in "$@"; do
  case "$arg" in --dbname=*) db="${arg#--dbname=}" ;; --file=*) out="${arg#--file=}" ;; esac
done
[ "$db" = "${FAIL_DB:-}" ] && { echo "pg_dump: connection refused" >&2; exit 1; }
yes "$db" | head -c "${FAKE_DUMP_SIZE:-1000}" > "$out"
"""
FAKE_TAR = """#!/bin/sh
[ "$1" = "-czf" ] || { echo "unexpected tar call: $*" >&2; exit 64; }
printf 'filestore of %s' "$4" > "$2"
"""


def _relocated(script: str, root: Path) -> str:
    """The script with its /tmp paths (work dir, status, start time, lock) under `root`."""
    return script.replace("/tmp/oduflow-backup", f"{root}/oduflow-backup").replace(
        backup.FILESTORE_MOUNT_ROOT, f"{root}/filestores"
    )


@dataclass
class Job:
    root: Path
    env: dict[str, str]
    script: Path
    healthcheck: Path

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(self.script), *args], env={**self.env, **extra}, capture_output=True, text=True, timeout=300
        )

    def health(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(self.healthcheck)], env=self.env, capture_output=True, text=True, timeout=30)

    @property
    def status(self) -> list[str]:
        return (self.root / "oduflow-backup.status").read_text().split()


def _job(s3: S3Server, root: Path, databases: list[str], max_age: int = 3600) -> Job:
    """The job's script for `databases` with stand-ins for pg_dump and tar, the real AWS CLI."""
    aws = _aws_cli()
    if aws is None:
        pytest.skip("the AWS CLI (dev extra awscli) is not installed")
    bindir = root / "bin"
    bindir.mkdir()
    _stub(bindir, "pg_dump", FAKE_PG_DUMP)
    _stub(bindir, "tar", FAKE_TAR)
    os.symlink(aws, bindir / "aws")
    targets = [backup.BackupTarget(db, f"{db}-filestore") for db in databases]
    script = root / "backup.sh"
    script.write_text(_relocated(backup.backup_script(s3.bucket, targets, TIERS), root))
    health = root / "healthcheck.sh"
    health.write_text(_relocated(backup.healthcheck_script(max_age), root))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG"))},
        "PATH": f"{bindir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "AWS_ACCESS_KEY_ID": s3.job.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.job.secret_access_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
    }
    return Job(root, env, script, health)


def _keys(s3: S3Server) -> dict[str, list[str]]:
    """Every version of every key, as the operator sees them."""
    found: dict[str, list[str]] = {}
    pages = s3.client(s3.operator).get_paginator("list_object_versions").paginate(Bucket=BUCKET)
    for page in pages:
        for v in page.get("Versions", []):
            found.setdefault(v["Key"], []).append(v["VersionId"])
    return found


def _denied(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return str(err.value.response["Error"]["Code"])


def test_job_uploads_with_the_write_only_key_and_nothing_more(s3_server: S3Server, tmp_path: Path) -> None:
    s3 = s3_server
    job = _job(s3, tmp_path, ["oduflow_1_main", "oduflow_1_staging"])
    done = job.run(FAKE_DUMP_SIZE=str(BIG))
    assert done.returncode == 0, done.stderr
    assert "backed up oduflow_1_main" in done.stdout and "backed up oduflow_1_staging" in done.stdout
    assert job.status[1] == "ok"

    keys = _keys(s3)
    dumps = sorted(k for k in keys if k.startswith("daily/oduflow_1_main/") and k.endswith(".dump"))
    assert len(dumps) == 1, sorted(keys)
    operator = s3.client(s3.operator)
    body = operator.get_object(Bucket=BUCKET, Key=dumps[0])["Body"].read()
    expected = (b"oduflow_1_main\n" * (BIG // len(b"oduflow_1_main\n") + 1))[:BIG]
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(expected).hexdigest()
    # A stored version carries the bucket's default retention. (Checked on the single-part
    # filestore archive: moto applies the default retention to PutObject but not to a completed
    # multipart upload; S3 applies it to every new version, whatever the upload path.)
    tar = dumps[0].removesuffix(".dump") + ".filestore.tar.gz"
    assert (
        operator.get_object(Bucket=BUCKET, Key=tar)["Body"].read()
        == b"filestore of " + str(tmp_path / "filestores" / "oduflow_1_main").encode()
    )
    head = operator.head_object(Bucket=BUCKET, Key=tar)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(timezone.utc) + timedelta(days=6)

    writer = s3.client(s3.job)
    key = dumps[0]
    assert _denied(writer.get_object, Bucket=BUCKET, Key=key) == "AccessDenied"
    assert _denied(writer.head_object, Bucket=BUCKET, Key=key) in ("403", "AccessDenied")
    assert _denied(writer.list_objects_v2, Bucket=BUCKET) == "AccessDenied"
    assert _denied(writer.list_object_versions, Bucket=BUCKET) == "AccessDenied"
    assert _denied(writer.delete_object, Bucket=BUCKET, Key=key) == "AccessDenied"
    version = keys[key][0]
    assert _denied(writer.delete_object, Bucket=BUCKET, Key=key, VersionId=version) == "AccessDenied"
    # (Shortening a lock needs s3:PutObjectRetention, which the key does not hold; moto cannot
    # show it: it authorises PUT ?retention as s3:PutObject. The rendered policy's exact actions
    # are asserted in tests/test_backup_storage.py.)
    # Outside the tier prefixes, nothing either.
    assert _denied(writer.put_object, Bucket=BUCKET, Key="elsewhere.dump", Body=b"x") == "AccessDenied"
    # The bytes are all still there.
    assert operator.get_object(Bucket=BUCKET, Key=key, VersionId=version)["ContentLength"] == BIG


def test_a_locked_version_cannot_be_deleted_even_by_an_operator(s3_server: S3Server, tmp_path: Path) -> None:
    s3 = s3_server
    job = _job(s3, tmp_path, ["oduflow_1_locked"])
    assert job.run().returncode == 0
    key = next(k for k in _keys(s3) if k.startswith("daily/oduflow_1_locked/") and k.endswith(".dump"))
    version = _keys(s3)[key][0]
    operator = s3.client(s3.operator)
    assert _denied(operator.delete_object, Bucket=BUCKET, Key=key, VersionId=version) == "AccessDenied"
    # A plain delete only adds a delete marker (what the lifecycle expiry does): the version stays.
    operator.delete_object(Bucket=BUCKET, Key=key)
    assert version in _keys(s3)[key]
    assert operator.get_object(Bucket=BUCKET, Key=key, VersionId=version)["ContentLength"] == 1000


def test_every_run_writes_keys_of_its_own(s3_server: S3Server, tmp_path: Path) -> None:
    s3 = s3_server
    job = _job(s3, tmp_path, ["oduflow_1_twice"])
    assert job.run().returncode == 0
    time.sleep(1.1)  # the timestamp has a one-second resolution; a run takes longer in real life
    assert job.run().returncode == 0
    keys = {k: v for k, v in _keys(s3).items() if "/oduflow_1_twice/" in k}
    dumps = [k for k in keys if k.startswith("daily/") and k.endswith(".dump")]
    assert len(dumps) == 2
    assert all(len(versions) == 1 for versions in keys.values()), keys  # nothing written twice


def test_a_failed_run_is_recorded_and_makes_the_job_unhealthy(s3_server: S3Server, tmp_path: Path) -> None:
    job = _job(s3_server, tmp_path, ["oduflow_1_ok", "oduflow_1_broken"])
    (tmp_path / "oduflow-backup.started").write_text(f"{int(time.time())}\n")
    assert job.health().returncode == 0  # started, no run yet, within the allowed age
    done = job.run(FAIL_DB="oduflow_1_broken")
    assert done.returncode == 1
    assert "backup of oduflow_1_broken FAILED" in done.stderr and "backed up oduflow_1_ok" in done.stdout
    assert job.status[1] == "failed"
    health = job.health()
    assert health.returncode == 1 and "the last backup run failed" in health.stdout
    # The next good run makes it healthy again.
    assert job.run().returncode == 0
    assert job.health().returncode == 0
    assert not (tmp_path / "oduflow-backup.lock").exists()


def test_a_stale_run_or_no_run_makes_the_job_unhealthy(tmp_path: Path) -> None:
    health = tmp_path / "healthcheck.sh"
    health.write_text(_relocated(backup.healthcheck_script(3600), tmp_path))
    status, started = tmp_path / "oduflow-backup.status", tmp_path / "oduflow-backup.started"

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(health)], capture_output=True, text=True, timeout=30)

    assert check().returncode == 1  # no start time, no run
    started.write_text(f"{int(time.time()) - 7200}\n")
    result = check()
    assert result.returncode == 1 and "no backup run in the" in result.stdout
    status.write_text(f"{int(time.time()) - 7200} ok\n")
    result = check()
    assert result.returncode == 1 and "more than 3600 s" in result.stdout
    status.write_text(f"{int(time.time()) - 60} ok\n")
    assert check().returncode == 0


def test_a_second_run_while_one_is_going_changes_nothing(s3_server: S3Server, tmp_path: Path) -> None:
    job = _job(s3_server, tmp_path, ["oduflow_1_busy"])
    (tmp_path / "oduflow-backup.lock").mkdir()
    done = job.run()
    assert done.returncode == 75 and "another backup run is in progress" in done.stderr
    assert not (tmp_path / "oduflow-backup.status").exists()
    assert (tmp_path / "oduflow-backup.lock").is_dir()  # the running one's lock is left alone


def _status_objects(s3: S3Server) -> dict[str, bytes]:
    operator = s3.client(s3.operator)
    found = {}
    for key in _keys(s3):
        if key.startswith(backup_storage.STATUS_PREFIX):
            found[key] = operator.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return found


def test_every_run_records_its_result_in_the_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    s3 = s3_server
    before = set(_status_objects(s3))
    job = _job(s3, tmp_path, ["oduflow_1_st_ok", "oduflow_1_st_broken"])
    assert job.run().returncode == 0
    time.sleep(1.1)
    assert job.run(FAIL_DB="oduflow_1_st_broken").returncode == 1
    new = {k: v for k, v in _status_objects(s3).items() if k not in before}
    assert sorted(k.rsplit(".", 1)[1] for k in new) == ["failed", "ok"], new
    ok = next(v for k, v in new.items() if k.endswith(".ok"))
    failed_key, failed = next((k, v) for k, v in new.items() if k.endswith(".failed"))
    assert ok.decode().split("\n")[:2] == ["ok oduflow_1_st_ok", "ok oduflow_1_st_broken"]
    assert "failed oduflow_1_st_broken" in failed.decode() and "ok oduflow_1_st_ok" in failed.decode()
    assert not (tmp_path / "oduflow-backup.results").exists()

    # The job key writes results, and only that: no read, no list, no delete.
    writer = s3.client(s3.job)
    assert _denied(writer.get_object, Bucket=BUCKET, Key=failed_key) == "AccessDenied"
    assert _denied(writer.list_objects_v2, Bucket=BUCKET, Prefix="status/") == "AccessDenied"
    assert _denied(writer.delete_object, Bucket=BUCKET, Key=failed_key) == "AccessDenied"
    # A stolen key "rewriting" a failed run as ok only adds a version: the recorded one stays.
    writer.put_object(Bucket=BUCKET, Key=failed_key, Body=b"ok oduflow_1_st_broken\n")
    versions = _keys(s3)[failed_key]
    assert len(versions) == 2
    operator = s3.client(s3.operator)
    bodies = {operator.get_object(Bucket=BUCKET, Key=failed_key, VersionId=v)["Body"].read() for v in versions}
    assert failed in bodies
    written = {v: operator.head_object(Bucket=BUCKET, Key=failed_key, VersionId=v)["LastModified"] for v in versions}
    first = min(versions, key=lambda v: written[v])
    assert _denied(writer.delete_object, Bucket=BUCKET, Key=failed_key, VersionId=first) == "AccessDenied"
    # Nothing outside the tiers and status/.
    assert _denied(writer.put_object, Bucket=BUCKET, Key="statusx/1.ok", Body=b"x") == "AccessDenied"


def test_a_run_for_one_database_backs_up_that_one(s3_server: S3Server, tmp_path: Path) -> None:
    s3 = s3_server
    job = _job(s3, tmp_path, ["oduflow_1_one_a", "oduflow_1_one_b"])
    before = set(_status_objects(s3))
    done = job.run("oduflow_1_one_b")
    assert done.returncode == 0, done.stderr
    assert "backed up oduflow_1_one_b" in done.stdout and "oduflow_1_one_a" not in done.stdout
    keys = _keys(s3)
    assert not [k for k in keys if "/oduflow_1_one_a/" in k]
    assert len([k for k in keys if k.startswith("daily/oduflow_1_one_b/")]) == 2
    new = {k: v for k, v in _status_objects(s3).items() if k not in before}
    assert list(new.values()) == [b"ok oduflow_1_one_b\n"]

    # A database the job does not back up: refused before anything is locked or recorded.
    refused = job.run("oduflow_2_main")
    assert refused.returncode == backup.EXIT_UNKNOWN_DATABASE
    assert "does not back up database oduflow_2_main" in refused.stderr
    assert set(_status_objects(s3)) == before | set(new)
    assert not (tmp_path / "oduflow-backup.lock").exists()


# --------------------------------------------------------------------------------------------
# `oduflow-iac backup list`, with the restore key


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    path = tmp_path / "oduflow.toml"
    text = (Path(__file__).resolve().parents[1] / "examples" / "oduflow.toml").read_text(encoding="utf-8")
    path.write_text(text + '\n[backup]\nbucket_prefix = "oduflow-test"\nregion = "eu-west-1"\n', encoding="utf-8")
    return path


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oduflow_iac.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_backup_list_shows_pairs_and_the_failed_last_run(
    example_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oduflow_iac.config import load_config
    from oduflow_iac.lifecycle import backup_ops

    config = load_config(example_config)
    bucket = backup_ops.bucket_of(config, "1")
    with serve_s3(bucket) as s3:
        (tmp_path / "job").mkdir()
        job = _job(s3, tmp_path / "job", ["oduflow_1_main", "oduflow_1_staging"])
        assert job.run().returncode == 0
        time.sleep(1.1)
        assert job.run(FAIL_DB="oduflow_1_staging").returncode == 1

        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        key = backup_ops.RestoreKey(s3.restore.access_key_id, s3.restore.secret_access_key, REGION)
        store = backup_ops.S3Store(bucket, REGION, key)
        listing = backup_ops.listing(config, "1", store)
        assert listing.last_run is not None and listing.last_run_failed
        assert listing.last_run.failed_targets == ["oduflow_1_staging"]
        assert "FAILED" in listing.last_run_line() and "oduflow_1_staging" in listing.last_run_line()
        main = [b for b in listing.sets if b.database == "oduflow_1_main"]
        staging = [b for b in listing.sets if b.database == "oduflow_1_staging"]
        assert len(main) == 2 and all(b.complete for b in main) and main[0].stamp > main[1].stamp
        assert len(staging) == 1  # the failed run wrote nothing for it
        assert main[0].tiers[0] == "daily" and main[0].dump_size == 1000
        # For one branch: the last run covering it, and whether IT failed there.
        assert not backup_ops.listing(config, "1", store, "main").last_run_failed
        assert backup_ops.listing(config, "1", store, "staging").last_run_failed

        # The command line, as an operator runs it with the restore key in the environment.
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "AWS_ACCESS_KEY_ID": s3.restore.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3.restore.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": s3.endpoint,
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "COLUMNS": "200",
        }
        args = ["backup", "list", "--config", str(example_config), "--team", "1", "--ambient-credentials"]
        done = _cli([*args, "--json"], env)
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert data["lastRun"]["ok"] is False and data["lastRun"]["failed"] == ["oduflow_1_staging"]
        assert {b["database"] for b in data["backups"]} == {"oduflow_1_main", "oduflow_1_staging"}
        table = _cli(args, env)
        assert table.returncode == 0 and "last run: FAILED" in table.stdout and "oduflow_1_main" in table.stdout

        # The job's write-only key as "operator" credentials: refused, one line, exit 2, no secret.
        job_env = {**env, "AWS_ACCESS_KEY_ID": s3.job.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.job.secret_access_key}
        refused = _cli(args, job_env)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "write-only" in refused.stderr or "may not read" in refused.stderr
        assert s3.job.secret_access_key not in refused.stderr + refused.stdout


def test_what_the_job_key_plants_is_neither_restored_nor_hides_a_failure(
    example_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's key may PUT any key under the tiers and status/: a future-dated backup, a status
    object dated 9999, a second version of a real backup. None becomes what a restore takes or
    what `backup list` calls the last run."""
    from oduflow_iac.config import load_config
    from oduflow_iac.errors import UsageError
    from oduflow_iac.lifecycle import backup_ops, restore

    config = load_config(example_config)
    bucket = backup_ops.bucket_of(config, "1")
    with serve_s3(bucket) as s3:
        (tmp_path / "job").mkdir()
        job = _job(s3, tmp_path / "job", ["oduflow_1_main", "oduflow_1_staging"])
        assert job.run().returncode == 0
        time.sleep(1.1)
        assert job.run().returncode == 0
        time.sleep(1.1)
        assert job.run(FAIL_DB="oduflow_1_staging").returncode == 1

        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        key = backup_ops.RestoreKey(s3.restore.access_key_id, s3.restore.secret_access_key, REGION)
        store = backup_ops.S3Store(bucket, REGION, key)
        genuine = [b for b in backup_ops.listing(config, "1", store).sets if b.database == "oduflow_1_main"]
        assert len(genuine) == 3 and not any(b.suspicious for b in genuine)
        newest, middle = genuine[0], genuine[1]

        writer = s3.client(s3.job)
        planted = "daily/oduflow_1_main/99991231T235959Z"
        for suffix in (".dump", ".filestore.tar.gz"):
            writer.put_object(Bucket=bucket, Key=planted + suffix, Body=b"planted")
        writer.put_object(Bucket=bucket, Key="status/99991231T235959Z.ok", Body=b"ok oduflow_1_staging\n")
        writer.put_object(Bucket=bucket, Key=newest.dump_key, Body=b"planted over a real backup")

        listing = backup_ops.listing(config, "1", store)
        sets = {b.stamp: b for b in listing.sets if b.database == "oduflow_1_main"}
        assert "in the future" in (sets["99991231T235959Z"].suspicious or "")
        assert "written 2 times" in (sets[newest.stamp].suspicious or "")
        assert sets[middle.stamp].suspicious is None
        # The default restore is the newest backup nobody tampered with.
        assert restore.pick_backup(listing.sets, "oduflow_1_main").stamp == middle.stamp
        with pytest.raises(UsageError, match="suspicious"):
            restore.pick_backup(listing.sets, "oduflow_1_main", key=planted + ".dump")
        # And the rewritten key itself is refused at download, whatever the listing said.
        with pytest.raises(UsageError, match="written 2 times"):
            store.download(newest.dump_key, tmp_path / "x.dump")
        store.download(middle.dump_key, tmp_path / "y.dump")
        assert (tmp_path / "y.dump").stat().st_size == 1000
        # The planted "ok" does not hide the failed run: it shows, as a failure.
        assert listing.last_run is not None and listing.last_run_failed
        assert "SUSPICIOUS" in listing.last_run_line() and "99991231T235959Z" in listing.last_run_line()
        assert backup_ops.listing(config, "1", store, "staging").last_run_failed

        # Once the next real run is stored, the planted status is older than it: the real result shows.
        time.sleep(1.1)
        assert job.run(FAIL_DB="oduflow_1_staging").returncode == 1
        last = backup_ops.listing(config, "1", store)
        assert last.last_run is not None and last.last_run.suspicious is None
        assert last.last_run.failed_targets == ["oduflow_1_staging"]
