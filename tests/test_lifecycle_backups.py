"""The operator side of backups as pure functions and with a recording Docker client: keys paired
into backups, the last run's result, which backup a restore picks, the restore's scripts (valid
POSIX sh, one transaction, a swap), the order of a restore's steps and what a failure leaves.
The same code runs against the real engines in tests/docker/test_restore.py."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from oduflow_iac import backup, naming
from oduflow_iac.automation import DockerResult
from oduflow_iac.cli import main
from oduflow_iac.config import load_config
from oduflow_iac.errors import UsageError
from oduflow_iac.lifecycle import backup_ops, restore
from oduflow_iac.lifecycle.backup_ops import BackupSet, StoredObject

ROOT = Path(__file__).resolve().parents[1]
TIERS = ["daily", "weekly", "monthly"]
DB = "oduflow_1_main"


def objects(*keys: str) -> list[StoredObject]:
    return [StoredObject(k, 100 + i) for i, k in enumerate(keys)]


def test_keys_are_paired_by_run_and_tiers_merged() -> None:
    sets = backup_ops.group_backups(
        objects(
            f"daily/{DB}/20261101T030000Z.dump",
            f"daily/{DB}/20261101T030000Z.filestore.tar.gz",
            f"monthly/{DB}/20261101T030000Z.dump",
            f"monthly/{DB}/20261101T030000Z.filestore.tar.gz",
            f"daily/{DB}/20261102T030000Z.dump",  # its archive never arrived
            "daily/roles/20261102T030000Z.sql",
            "status/20261102T030000Z.failed",
            f"daily/{DB}/notes.txt",
            f"yearly/{DB}/20261101T030000Z.dump",
        ),
        TIERS,
    )
    assert [(s.stamp, s.tiers, s.complete) for s in sets] == [
        ("20261102T030000Z", ("daily",), False),
        ("20261101T030000Z", ("daily", "monthly"), True),
    ]
    assert sets[1].dump_key == f"daily/{DB}/20261101T030000Z.dump"
    assert sets[1].at == datetime(2026, 11, 1, 3, tzinfo=timezone.utc)


def _set(stamp: str, complete: bool = True, database: str = DB) -> BackupSet:
    return BackupSet(database, stamp, ("daily",), 10, 10 if complete else None)


SETS = [
    _set("20261103T030000Z", complete=False),
    _set("20261102T030000Z"),
    _set("20261101T030000Z"),
    _set("20261102T030000Z", database="oduflow_1_staging"),
]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (None, "20261102T030000Z"),  # the newest COMPLETE one
        ("2026-11-02T03:00:00Z", "20261102T030000Z"),  # at: inclusive
        ("2026-11-02T02:59:59Z", "20261101T030000Z"),
        ("2026-11-02T04:00+01:00", "20261102T030000Z"),  # 03:00 UTC
        ("2026-11-01", "20261101T030000Z"),  # a date: the end of that day
        ("20261101T030000Z", "20261101T030000Z"),
    ],
)
def test_at_picks_the_newest_complete_backup_at_or_before(at: str | None, expected: str) -> None:
    when = restore.parse_time(at) if at else None
    assert restore.pick_backup(SETS, DB, at=when).stamp == expected


def test_pick_refuses_what_cannot_be_restored() -> None:
    with pytest.raises(UsageError, match="no complete backup of oduflow_1_main at or before"):
        restore.pick_backup(SETS, DB, at=restore.parse_time("2026-10-01"))
    with pytest.raises(UsageError, match="has no filestore archive"):
        restore.pick_backup(SETS, DB, key=f"daily/{DB}/20261103T030000Z.dump")
    with pytest.raises(UsageError, match="not of oduflow_1_main"):
        restore.pick_backup(SETS, DB, key="daily/oduflow_1_staging/20261102T030000Z.dump")
    with pytest.raises(UsageError, match="no such backup"):
        restore.pick_backup(SETS, DB, key=f"weekly/{DB}/20261102T030000Z.dump")
    assert (
        restore.pick_backup(SETS, DB, key=f"daily/{DB}/20261101T030000Z.filestore.tar.gz").stamp == "20261101T030000Z"
    )
    with pytest.raises(UsageError, match="not a time"):
        restore.parse_time("yesterday")


def test_status_objects_say_which_run_failed_and_for_what() -> None:
    keys = ["status/20261101T030000Z.ok", "status/20261102T030000Z.failed", "status/junk", "status/2026.ok"]
    assert [k[1:] for k in backup_ops.status_keys_newest_first(keys)] == [
        ("20261102T030000Z", False),
        ("20261101T030000Z", True),
    ]
    body = backup_ops.parse_status_body("ok oduflow_1_main\nfailed oduflow_1_staging\nok roles\nnonsense\n")
    assert body == {"oduflow_1_main": True, "oduflow_1_staging": False, "roles": True}
    runs = [
        backup_ops.RunStatus("20261102T030000Z", False, body),
        backup_ops.RunStatus("20261103T030000Z", True, {"oduflow_1_dev": True}),
    ]
    assert backup_ops.last_run_for(runs).stamp == "20261103T030000Z"  # type: ignore[union-attr]
    assert backup_ops.last_run_for(runs, "oduflow_1_main").stamp == "20261102T030000Z"  # type: ignore[union-attr]
    assert backup_ops.last_run_for(runs, "oduflow_1_nothing") is None


def test_keys_and_status_lines_with_escapes_or_markup_are_dropped() -> None:
    """The job's key may PUT any key and any status body: what `backup list` prints must not carry
    terminal escapes (retitle the terminal, hide lines) nor rich markup."""
    planted = [
        f"daily/\x1b]0;owned\x07{DB}/20261101T030000Z.dump",
        "daily/\x1b[2K\x1b[1A/20261101T030000Z.filestore.tar.gz",
        "daily/[bold red]x[/]/20261101T030000Z.dump",
        "daily/" + "a" * 64 + "/20261101T030000Z.dump",
        f"daily/{DB}/20261101T030000Z.dump",
    ]
    assert [backup_ops.parse_backup_key(k, TIERS) is not None for k in planted] == [False] * 4 + [True]
    assert [s.database for s in backup_ops.group_backups(objects(*planted), TIERS)] == [DB]
    body = backup_ops.parse_status_body("ok \x1b[2Koduflow_1_main\nfailed [red]x[/red]\nfailed oduflow_1_dev\n")
    assert body == {"oduflow_1_dev": False}


def test_written_keys_come_from_the_jobs_own_lines() -> None:
    output = "wrote s3://b/daily/db/20261101T030000Z.dump\nbacked up db\nwrote s3://b/status/20261101T030000Z.ok\n"
    assert backup_ops.written_keys(output) == ["daily/db/20261101T030000Z.dump", "status/20261101T030000Z.ok"]


def test_the_restore_scripts_are_posix_sh_and_one_transaction() -> None:
    script = restore.database_restore_script(DB, "/tmp/x.dump")
    assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0
    # BEGIN first, the emptying, then the dump, and COMMIT only after pg_restore read all of it.
    assert script.index("BEGIN;") < script.index("DROP SCHEMA") < script.index("pg_restore --no-owner")
    assert "if pg_restore --no-owner --no-privileges --restrict-key=" in script
    assert "--file=- /tmp/x.dump; then printf 'COMMIT;" in script
    # The success marker carries a nonce of the run: two scripts never share it.
    assert restore.database_restore_script(DB, "/tmp/x.dump", "n1") != restore.database_restore_script(
        DB, "/tmp/x.dump", "n2"
    )
    assert f"*{restore.COMMITTED}-n1*)" in restore.database_restore_script(DB, "/tmp/x.dump", "n1")
    assert "--dbname=oduflow_1_main" in script and "pg_terminate_backend" in script
    assert "CREATE SCHEMA public AUTHORIZATION pg_database_owner" in script
    assert "DROP DATABASE" not in script and "CREATE DATABASE" not in script
    files = restore.filestore_restore_script(DB, "oduflow_1_staging")
    assert subprocess.run(["sh", "-n"], input=files, text=True, check=False).returncode == 0
    assert "/restore/.oduflow-restore/filestore/oduflow_1_main" in files
    assert "mv /restore/filestore/oduflow_1_staging.oduflow-new /restore/filestore/oduflow_1_staging" in files


def test_the_filestore_swap_keeps_the_live_files_when_the_archive_is_bad(tmp_path: Path) -> None:
    import io
    import tarfile

    root = tmp_path / "volume"
    live = root / "filestore" / "oduflow_1_staging"
    live.mkdir(parents=True)
    (live / "old").write_text("live")
    (root / "sessions").mkdir()
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"garbage")
    script = restore.filestore_restore_script(DB, "oduflow_1_staging", str(archive), str(root))
    assert subprocess.run(["sh", "-c", script], capture_output=True, check=False).returncode != 0
    assert (live / "old").read_text() == "live"

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"attachment"
        info = tarfile.TarInfo(f"./filestore/{DB}/ab/abc")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(buffer.getvalue())
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in live.rglob("*")) == ["ab", "abc"]
    assert (live / "ab" / "abc").read_bytes() == b"attachment"
    assert (root / "sessions").is_dir()  # only the database's directory is swapped
    assert sorted(p.name for p in root.iterdir()) == ["filestore", "sessions"]


def _busybox_path(tmp_path: Path) -> str | None:
    """A PATH where sh, tar, find... are busybox's applets (the backup image's tools)."""
    import shutil

    busybox = shutil.which("busybox")
    if busybox is None:
        return None
    bin_dir = tmp_path / "busybox-bin"
    bin_dir.mkdir()
    for applet in ("sh", "tar", "gzip", "find", "mv", "rm", "mkdir", "echo", "["):
        (bin_dir / applet).symlink_to(busybox)
    return str(bin_dir)


def _archive(members: list[tuple[str, bytes, str, int]]) -> bytes:
    """A .tar.gz of (name, type, data or link target, mode) members."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, kind, target, mode in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, mode
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = target
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(target)
                tar.addfile(info, io.BytesIO(target.encode()))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _planted_archives() -> dict[str, bytes]:
    import tarfile

    base = f"./filestore/{DB}"
    plain = (f"{base}/ab/abc", tarfile.REGTYPE, "attachment", 0o644)
    return {
        "the database's directory is a symlink to /etc": _archive([(base, tarfile.SYMTYPE, "/etc", 0o777)]),
        "a symlink among the attachments": _archive([plain, (f"{base}/ab/x", tarfile.SYMTYPE, "/proc/self", 0o777)]),
        "a setuid file": _archive([plain, (f"{base}/ab/su", tarfile.REGTYPE, "#!/bin/sh\n", 0o4755)]),
        "a setgid file": _archive([plain, (f"{base}/ab/sg", tarfile.REGTYPE, "x", 0o2755)]),
        "a hard link": _archive([plain, (f"{base}/ab/h", tarfile.LNKTYPE, f"{base}/ab/abc", 0o644)]),
        "a fifo": _archive([plain, (f"{base}/ab/f", tarfile.FIFOTYPE, "", 0o644)]),
        "a device": _archive([plain, (f"{base}/ab/d", tarfile.CHRTYPE, "", 0o666)]),
    }


@pytest.mark.parametrize("tools", ["system", "busybox"])
@pytest.mark.parametrize("attack", sorted(_planted_archives()))
def test_an_archive_with_anything_but_files_and_directories_is_refused(tmp_path: Path, tools: str, attack: str) -> None:
    """The job's key can write the archive: as root, a symlinked `filestore/DB` would become the
    live filestore, a device or setuid file would land in it. All refused, the live files kept."""
    import os
    import tarfile

    env = dict(os.environ)
    if tools == "busybox":
        path = _busybox_path(tmp_path)
        if path is None:
            pytest.skip("no busybox here")
        env["PATH"] = path
    if attack == "a device" and os.geteuid() != 0:
        pytest.skip("only root extracts a device node")
    root = tmp_path / "volume"
    live = root / "filestore" / "oduflow_1_staging"
    live.mkdir(parents=True)
    (live / "old").write_text("live")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_planted_archives()[attack])
    script = restore.filestore_restore_script(DB, "oduflow_1_staging", str(archive), str(root))
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False, env=env)
    assert done.returncode != 0
    assert restore.REFUSED_ARCHIVE in done.stderr, done.stderr
    assert not live.is_symlink() and sorted(p.name for p in live.iterdir()) == ["old"]
    assert sorted(p.name for p in (root / "filestore").iterdir()) == ["oduflow_1_staging"]
    assert not (root / ".oduflow-restore").exists()
    # The same tools still restore a plain archive.
    archive.write_bytes(_archive([(f"./filestore/{DB}/ab/abc", tarfile.REGTYPE, "attachment", 0o644)]))
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert (live / "ab" / "abc").read_text() == "attachment" and not (live / "old").exists()


# --------------------------------------------------------------------------------------------
# Planning against the example config


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    text = (ROOT / "examples" / "oduflow.toml").read_text(encoding="utf-8")
    path = tmp_path / "oduflow.toml"
    path.write_text(text + '\n[backup]\nbucket_prefix = "oduflow-test"\nregion = "eu-west-1"\n', encoding="utf-8")
    return path


def test_plan_names_everything_from_naming(config_path: Path) -> None:
    config = load_config(config_path)
    plan = restore.plan_restore(config, "1", "main", SETS, into="staging")
    assert plan.container == naming.env_container_name("1", "staging")
    assert plan.filestore_volume == naming.env_filestore_volume_name("1", "staging")
    assert plan.source_db == DB and plan.target_db == "oduflow_1_staging" and plan.neutralise
    assert any("neutralise oduflow_1_staging" in s for s in plan.steps())
    same = restore.plan_restore(config, "1", "main", SETS)
    assert not same.neutralise and not any("neutralise" in s for s in same.steps())
    with pytest.raises(UsageError, match="production environment"):
        restore.plan_restore(
            config, "1", "staging", [_set("20261101T030000Z", database="oduflow_1_staging")], into="main"
        )
    with pytest.raises(UsageError, match="no environment for branch 'nope'"):
        restore.plan_restore(config, "1", "nope", SETS)


def test_restore_of_a_config_without_backups_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "oduflow.toml"
    path.write_text((ROOT / "examples" / "oduflow.toml").read_text(encoding="utf-8"), encoding="utf-8")
    for args in (["backup", "list"], ["backup", "now", "--branch", "main"], ["restore", "--branch", "main"]):
        assert main([*args, "--config", str(path), "--team", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no [backup] is configured" in err and str(path) in err
    with pytest.raises(SystemExit) as exc:
        main(["restore", "--config", str(path), "--branch", "main", "--at", "x", "--key", "y"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------------------------
# The order of the steps, and what a failure leaves (a recording Docker client)


@dataclass
class FakeDocker:
    fail: set[str] = field(default_factory=set)  # first words of commands that fail
    calls: list[list[str]] = field(default_factory=list)
    running: bool = True

    def __call__(self, args: list[str], env: Mapping[str, str]) -> DockerResult:
        assert set(env) >= {"DOCKER_HOST"}
        self.calls.append(list(args))
        if args[0] in self.fail:
            return DockerResult(1, f"{args[0]} failed")
        if args[:3] == ["inspect", "--format", "{{.State.Running}}"]:
            return DockerResult(0, "true" if self.running else "false")
        if args[:2] == ["inspect", "--format"]:
            return DockerResult(0, "sha256:" + "a" * 64 if "Image" in args[2] else "[]")
        if args[0] == "stop":
            self.running = False
        if args[0] == "start" and "--attach" not in args:
            self.running = True
        return DockerResult(0, "")


class FakeStore:
    bucket = "b"

    def list(self, prefix: str) -> list[StoredObject]:
        return []

    def read(self, key: str) -> bytes:
        return b""

    def download(self, key: str, path: Path) -> None:
        path.write_bytes(b"bytes of " + key.encode())


@dataclass
class FakeDatabase:
    code: int = 0
    calls: list[str] = field(default_factory=list)

    def restore(self, database: str, dump: Path) -> tuple[int, str]:
        self.calls.append(database)
        return self.code, ""

    def empty(self, database: str) -> tuple[int, str]:
        self.calls.append(f"empty {database}")
        return 0, ""


def _run(config_path: Path, docker: FakeDocker, database: FakeDatabase, now_ok: bool = True) -> restore.RestoreResult:
    config = load_config(config_path)
    plan = restore.plan_restore(config, "1", "main", SETS)
    now = backup_ops.NowResult(now_ok, [f"daily/{DB}/20261104T030000Z.dump"], "", "ok" if now_ok else "busy")
    restorer = restore.Restorer(FakeStore(), docker, "unix:///x", database, lambda: now)
    return restorer.run(plan)


def test_a_restore_stops_restores_both_halves_and_starts(config_path: Path) -> None:
    docker, database = FakeDocker(), FakeDatabase()
    result = _run(config_path, docker, database)
    assert result.ok, result.lines
    verbs = [c[0] for c in docker.calls if c[0] in ("stop", "start", "create", "cp")]
    assert verbs == ["stop", "create", "cp", "start", "start"]  # one-shot's start --attach, then Odoo's
    assert database.calls == [DB]
    create = next(c for c in docker.calls if c[0] == "create")
    assert "--network" in create and create[create.index("--network") + 1] == "none"
    assert f"{naming.env_filestore_volume_name('1', 'main')}:{restore.FILESTORE_MOUNT}" in create
    assert docker.calls[-1][:2] == ["start", naming.env_container_name("1", "main")]


def test_a_failed_database_step_starts_the_container_again(config_path: Path) -> None:
    docker, database = FakeDocker(), FakeDatabase(code=3)
    result = _run(config_path, docker, database)
    assert not result.ok and "nothing was changed" in result.state
    assert docker.running and docker.calls[-1][0] == "start"
    assert not any(c[0] == "create" for c in docker.calls)  # the filestore was not touched


def test_a_failed_filestore_step_says_what_state_things_are_in(config_path: Path) -> None:
    docker, database = FakeDocker(fail={"cp"}), FakeDatabase()
    result = _run(config_path, docker, database)
    assert not result.ok and result.state.startswith("PARTLY RESTORED")
    assert "--key daily/oduflow_1_main/20261104T030000Z.dump" in result.state
    assert docker.running and any(c[:2] == ["rm", "-f"] for c in docker.calls)


def test_no_backup_first_no_change(config_path: Path) -> None:
    docker, database = FakeDocker(), FakeDatabase()
    result = _run(config_path, docker, database, now_ok=False)
    assert not result.ok and result.state.startswith("nothing was changed")
    assert docker.calls == [] and database.calls == []


def test_backup_now_runs_the_jobs_script_for_one_database(config_path: Path) -> None:
    config = load_config(config_path)
    seen: list[list[str]] = []

    def docker(args: list[str], env: Mapping[str, str]) -> DockerResult:
        seen.append(args)
        return DockerResult(backup.EXIT_BUSY, "another backup run is in progress")

    result = backup_ops.backup_now(config, "1", "feature/login", docker, "unix:///x")
    assert seen == [
        ["exec", "oduflow-1-backup", "/bin/sh", backup.SCRIPT_PATH, naming.env_db_name("1", "feature/login")]
    ]
    assert not result.ok and "another run of the job is in progress" in result.message


def test_commands_go_to_the_docker_host_of_the_environments_server(config_path: Path) -> None:
    import tomlkit

    config = load_config(config_path)
    assert backup_ops.env_docker_host(config, "1", "main", "ssh://stack-host") == "ssh://stack-host"
    document = tomlkit.parse(config_path.read_text(encoding="utf-8"))
    document["server"] = {"s1": {"docker_host": "unix:///run/s1.sock"}, "s2": {"docker_host": "ssh://deploy@s2"}}
    document["team"]["1"]["server"] = "s1"  # type: ignore[index]
    document["team"]["2"]["server"] = "s1"  # type: ignore[index]
    staging = next(e for e in document["team"]["1"]["environments"] if e["branch"] == "staging")  # type: ignore[index,union-attr]
    staging["server"] = "s2"
    config_path.write_text(tomlkit.dumps(document), encoding="utf-8")
    config = load_config(config_path)
    assert backup_ops.env_docker_host(config, "1", "main", "ssh://stack-host") == "unix:///run/s1.sock"
    assert backup_ops.env_docker_host(config, "1", "staging", "ssh://stack-host") == "ssh://deploy@s2"


def test_a_copy_whose_neutralisation_fails_is_emptied_and_not_started(config_path: Path) -> None:
    config = load_config(config_path)
    plan = restore.plan_restore(config, "1", "main", SETS, into="staging")
    docker, database = FakeDocker(), FakeDatabase()

    class Failing:
        def neutralise(self, plan: restore.RestorePlan) -> tuple[int, str]:
            return 1, "odoo neutralize failed"

    now = backup_ops.NowResult(True, ["daily/oduflow_1_staging/20261104T030000Z.dump"], "", "ok")
    result = restore.Restorer(FakeStore(), docker, "unix:///x", database, lambda: now, neutraliser=Failing()).run(plan)
    assert not result.ok and result.state.startswith("NOT NEUTRALISED") and "EMPTY" in result.state
    assert database.calls == ["oduflow_1_staging", "empty oduflow_1_staging"]
    assert not docker.running
    assert not any(c[:2] == ["start", naming.env_container_name("1", "staging")] for c in docker.calls)
    # And a restore into another environment never runs without its neutralisation.
    with pytest.raises(UsageError, match="neutralised"):
        restore.Restorer(FakeStore(), docker, "unix:///x", database, lambda: now).run(plan)


def test_the_empty_script_is_one_transaction() -> None:
    script = restore.database_empty_script("oduflow_1_staging")
    assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0
    assert script.index("BEGIN;") < script.index("DROP SCHEMA") < script.index("COMMIT;")


def test_an_interrupted_copy_is_emptied_and_not_started(config_path: Path) -> None:
    config = load_config(config_path)
    plan = restore.plan_restore(config, "1", "main", SETS, into="staging")
    docker, database = FakeDocker(), FakeDatabase()

    class Interrupted:
        def neutralise(self, plan: restore.RestorePlan) -> tuple[int, str]:
            raise KeyboardInterrupt

    now = backup_ops.NowResult(True, [], "", "ok")
    restorer = restore.Restorer(FakeStore(), docker, "unix:///x", database, lambda: now, neutraliser=Interrupted())
    with pytest.raises(KeyboardInterrupt):
        restorer.run(plan)
    assert database.calls == ["oduflow_1_staging", "empty oduflow_1_staging"]
    assert not docker.running


def _into_staging(
    config_path: Path, docker: FakeDocker, neutraliser: object
) -> tuple[restore.Restorer, restore.RestorePlan]:
    plan = restore.plan_restore(load_config(config_path), "1", "main", SETS, into="staging")
    now = backup_ops.NowResult(True, [], "", "ok")
    database = FakeDatabase()
    restorer = restore.Restorer(
        FakeStore(),
        docker,
        "unix:///x",
        database,
        lambda: now,
        neutraliser=neutraliser,  # type: ignore[arg-type]
    )
    return restorer, plan


class _Neutralised:
    def __init__(self) -> None:
        self.calls = 0

    def neutralise(self, plan: restore.RestorePlan) -> tuple[int, str]:
        self.calls += 1
        return 0, ""


def test_a_copy_whose_filestore_fails_is_emptied_and_not_started(config_path: Path) -> None:
    """Production's rows (its ir.mail_server records) are in the copy once the dump is replayed:
    a failed filestore step must not start Odoo on them."""
    docker, neutraliser = FakeDocker(fail={"cp"}), _Neutralised()
    restorer, plan = _into_staging(config_path, docker, neutraliser)
    result = restorer.run(plan)
    staging = naming.env_container_name("1", "staging")
    assert not result.ok and result.state.startswith("NOT NEUTRALISED: the filestore of the copy")
    assert "EMPTY" in result.state and f"{staging} is left STOPPED" in result.state
    assert restorer.database.calls == ["oduflow_1_staging", "empty oduflow_1_staging"]  # type: ignore[attr-defined]
    assert neutraliser.calls == 0
    assert not docker.running and not any(c[:2] == ["start", staging] for c in docker.calls)


def test_a_copy_whose_neutraliser_raises_is_emptied_and_not_started(config_path: Path) -> None:
    class Raising:
        def neutralise(self, plan: restore.RestorePlan) -> tuple[int, str]:
            raise RuntimeError("could not inspect oduflow-1-staging")

    docker = FakeDocker()
    restorer, plan = _into_staging(config_path, docker, Raising())
    with pytest.raises(RuntimeError):
        restorer.run(plan)
    assert restorer.database.calls == ["oduflow_1_staging", "empty oduflow_1_staging"]  # type: ignore[attr-defined]
    assert not docker.running
    assert not any(c[:2] == ["start", naming.env_container_name("1", "staging")] for c in docker.calls)


def test_a_copy_without_a_neutraliser_changes_nothing(config_path: Path) -> None:
    docker = FakeDocker()
    restorer, plan = _into_staging(config_path, docker, None)
    with pytest.raises(UsageError, match="neutralised"):
        restorer.run(plan)
    assert docker.calls == [] and restorer.database.calls == []  # type: ignore[attr-defined]


def test_a_stamp_is_trusted_only_as_far_as_s3s_own_clock_agrees() -> None:
    now = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)

    def problem(stamp: str, stored: datetime | None, versions: int = 1) -> str | None:
        obj = StoredObject(f"daily/{DB}/{stamp}.dump", 1, stored, versions)
        return backup_ops.stamp_problem(stamp, obj, now)

    assert problem("20261129T030000Z", datetime(2026, 11, 29, 4, 30, tzinfo=timezone.utc)) is None  # a long run
    assert problem("20261129T030000Z", datetime(2026, 11, 29, 2, 55, tzinfo=timezone.utc)) is None  # clock skew
    assert "in the future" in (problem("20261129T110000Z", None) or "")
    assert "dated after it was stored" in (
        problem("20261129T090000Z", datetime(2026, 11, 29, 3, tzinfo=timezone.utc)) or ""
    )
    assert "more than" in (problem("20261101T030000Z", datetime(2026, 11, 29, 3, tzinfo=timezone.utc)) or "")
    assert "written 2 times" in (problem("20261129T030000Z", None, versions=2) or "")
    stored = datetime(2026, 11, 29, 3, 1, tzinfo=timezone.utc)
    planted = [
        StoredObject(f"daily/{DB}/20261129T030000Z.dump", 1, stored),
        StoredObject(f"daily/{DB}/20261129T030000Z.filestore.tar.gz", 1, stored),
        StoredObject(f"daily/{DB}/20261129T090000Z.dump", 1, stored),
        StoredObject(f"daily/{DB}/20261129T090000Z.filestore.tar.gz", 1, stored),
    ]
    sets = backup_ops.group_backups(planted, TIERS, now)
    assert [(s.stamp, bool(s.suspicious)) for s in sets] == [("20261129T090000Z", True), ("20261129T030000Z", False)]
    assert restore.pick_backup(sets, DB).stamp == "20261129T030000Z"
    # Status objects: ordered as S3 stored them, a suspicious one is a failure, never skipped.
    runs = [
        backup_ops.RunStatus("20261128T030000Z", False, {DB: False}, datetime(2026, 11, 28, 3, 5, tzinfo=timezone.utc)),
        backup_ops.RunStatus("99991231T235959Z", True, {}, datetime(2026, 11, 27, tzinfo=timezone.utc)),
    ]
    assert backup_ops.last_run_for(runs, DB).stamp == "20261128T030000Z"  # type: ignore[union-attr]
    odd = backup_ops.RunStatus("99991231T235959Z", False, {}, datetime(2026, 11, 29, tzinfo=timezone.utc), "planted")
    assert backup_ops.last_run_for([*runs, odd], DB) is odd


def test_the_roles_file_is_not_presented_as_something_to_apply() -> None:
    """The job's key writes `{tier}/roles/{stamp}.sql` and can write anything there (an `ALTER
    ROLE ... SUPERUSER`): nothing tells an operator to run it (the stack declares the roles)."""
    header = backup.ROLES_HEADER
    assert all(line.startswith("-- ") for line in header.splitlines())
    assert "Do not apply" in header and "psql" not in header and "-f " not in header
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "never apply" in operations and "single-transaction\n-f" not in operations
