"""Moving a team or an environment to another server, under the fake `pulumi` and `docker`, with two
real PostgreSQL servers standing in for the two servers' databases (the one of
scripts/with-postgres.sh is the old server's, a second cluster started here the new one's).

The fakes write one ordered log (pulumi's engine calls and state edits, docker's calls), so the tests
read the order of the steps from it: backup (docker exec of the backup job) -> deploy (`up` of the new
server's stack and the team's) -> restore (the database copied between the real servers, the
filestore tar stream) -> check (docker inspect) -> DNS (`up` of phase switched) -> removal
(`state unprotect` of exactly the old placement's protected URNs, `up`)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import fleet, moves, naming
from oduflow_iac.config import load_config
from tests.postgres.conftest import PgServer
from tests.postgres.sql_apply import quote_ident
from tests.test_automation import (  # noqa: F401  (fixtures)
    BACKUP,
    FakeCli,
    config_file,
    fake_cli,
    project,
    run_cli,
    stack_of,
)

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
FAKE_DOCKER = ROOT / "tests" / "fakes" / "docker"
S2_HOST = "tcp://s2.example.com:2376"
OLD_HOST = "unix:///var/run/docker.sock"
PREFIX = "urn:pulumi:team-1::oduflow::"
TEAM = "oduflow:index:TeamStack"
ENV = f"{TEAM}$oduflow:index:OdooEnvironment"
ROLE = naming.team_role_name("1")

SERVERS = f"""
[server.default]
docker_host = "{OLD_HOST}"

[server.s2]
docker_host = "{S2_HOST}"
address = "203.0.113.20"
"""


# --------------------------------------------------------------------------------------------
# The new server's PostgreSQL: a second throw-away cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def new_server_pg(pg_dsn: str) -> Iterator[PgServer]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("initdb/pg_ctl not on PATH: run through scripts/with-postgres.sh")
    run_as = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    work = Path(tempfile.mkdtemp(prefix="oduflow-pg-s2-"))
    password = secrets.token_hex(16)
    (work / "pwfile").write_text(password + "\n")
    (work / "sock").mkdir()
    if run_as:
        for path in (work, work / "pwfile", work / "sock"):
            shutil.chown(path, "postgres", "postgres")
    subprocess.run(
        [*run_as, initdb, "-D", str(work / "data"), "-U", "postgres", f"--pwfile={work / 'pwfile'}",
         "--encoding=UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={work / 'sock'} -c fsync=off"
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(work / "data"), "-l", str(work / "log"), "-w", "-o", options, "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield PgServer(f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres")
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(work / "data"), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def endpoint_of(server: PgServer) -> fleet.PgEndpoint:
    return fleet.PgEndpoint(server.host, server.port, server.superuser, str(server.params["password"]))


# --------------------------------------------------------------------------------------------
# The platform: team 1 on `default`, a server s2, the team's data on the old server


def _database(server: PgServer, name: str) -> None:
    with server.admin() as conn:
        if not server.scalar("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)):
            conn.execute(f"CREATE ROLE {quote_ident(ROLE)} NOLOGIN".encode())
        conn.execute(f"CREATE DATABASE {quote_ident(name)} OWNER {quote_ident(ROLE)}".encode())


def _fill(server: PgServer, name: str, rows: int) -> None:
    with server.admin(name) as conn:
        conn.execute(f"SET ROLE {quote_ident(ROLE)}".encode())
        conn.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO res_partner (name) SELECT 'partner ' || g FROM generate_series(1, %s) g", (rows,))


def _state_resources(branches: list[str]) -> list[dict[str, Any]]:
    """Team 1's stack state: its TeamStack on `default`, each environment with its protected
    database and filestore, an unprotected container, and a protected bucket of the team."""
    team = PREFIX + f"{TEAM}::team-1"
    found: list[dict[str, Any]] = [{"urn": team, "type": TEAM, "protect": False}]
    for branch in branches:
        name = naming.resource_name("team-1", naming.slugify_branch(branch))
        env = PREFIX + f"{ENV}::{name}"
        found += [
            {"urn": env, "type": "oduflow:index:OdooEnvironment", "parent": team},
            {"urn": PREFIX + f"{ENV}$postgresql:index/database:Database::{name}-db", "parent": env,
             "type": "postgresql:index/database:Database", "protect": True},
            {"urn": PREFIX + f"{ENV}$docker:index/volume:Volume::{name}-filestore", "parent": env,
             "type": "docker:index/volume:Volume", "protect": True},
            {"urn": PREFIX + f"{ENV}$docker:index/container:Container::{name}", "parent": env,
             "type": "docker:index/container:Container"},
        ]  # fmt: skip
    found.append(
        {"urn": PREFIX + f"{TEAM}$aws:s3/bucketV2:BucketV2::team-1-backups", "parent": team,
         "type": "aws:s3/bucketV2:BucketV2", "protect": True}
    )  # fmt: skip
    return found


@pytest.fixture
def fleet_env(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    pg: PgServer,
    new_server_pg: PgServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    text = config_file.read_text().replace("[team.1]\n", '[team.1]\nserver = "default"\n', 1)
    config_file.write_text(text.replace("[team.2]\n", '[team.2]\nserver = "default"\n', 1) + BACKUP + SERVERS)
    wrapper = tmp_path / "bin" / "docker"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_DOCKER}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("FAKE_DOCKER_ROOT", str(tmp_path / "engines"))
    monkeypatch.delenv("FAKE_DOCKER_FAIL", raising=False)
    assert run_cli(project, "up", "--all", "--stack", "shared", "--no-policy") == 0
    config = load_config(config_file)
    branches = [e.branch for e in config.team["1"].environments]
    state = json.loads(fake_cli.state.read_text())
    state["stacks"]["team-1"]["deployment"] = {"manifest": {}, "resources": _state_resources(branches)}
    fake_cli.state.write_text(json.dumps(state))
    for number, branch in enumerate(branches, start=1):
        database = naming.env_db_name("1", branch)
        _database(pg, database)
        _fill(pg, database, 10 * number)
        _database(new_server_pg, database)  # what the deployment on the new server creates
        volume = tmp_path / "engines" / OLD_HOST.replace("/", "_").replace(":", "_")
        folder = volume / naming.env_filestore_volume_name("1", branch) / "filestore" / database
        folder.mkdir(parents=True)
        (folder / "ab").write_text(f"attachment of {branch}")
    endpoints = {"default": endpoint_of(pg), "s2": endpoint_of(new_server_pg)}

    def make_jobs(runner: Any, entry: Any, config: Any) -> fleet.MoveJobs:
        from contextlib import contextmanager

        @contextmanager
        def endpoint(server: str) -> Iterator[fleet.PgEndpoint]:
            yield endpoints[server]

        return fleet.ServerJobs(endpoint, health_timeout=0, poll=0)

    monkeypatch.setattr(fleet, "make_jobs", make_jobs)
    yield {"branches": branches, "start": len(fake_cli.calls()), "new": new_server_pg, "old": pg}
    with new_server_pg.admin() as conn:
        for branch in branches:
            conn.execute(
                f"DROP DATABASE IF EXISTS {quote_ident(naming.env_db_name('1', branch))} WITH (FORCE)".encode()
            )


def steps(fake: FakeCli, start: int) -> list[str]:
    """The move's calls since `start`, named by step."""
    named = []
    for call in fake.calls()[start:]:
        if "docker" in call:
            argv, host = call["docker"], call["host"]
            if argv[0] == "exec":
                named.append(f"backup@{'s2' if host == S2_HOST else 'default'}")
            elif argv[0] == "run":
                # The reading and the writing ends of a filestore copy run at once: one step.
                named.append("filestore")
            elif argv[0] == "inspect":
                named.append(f"check@{'s2' if host == S2_HOST else 'default'}")
            continue
        argv = [a for a in call["argv"] if a != "--non-interactive"]
        if call.get("end"):
            continue
        if argv[0] == "up":
            named.append(f"up:{stack_of(argv)}")
        elif argv[:2] == ["state", "unprotect"]:
            named.append(f"unprotect:{stack_of(argv)}")
    # Consecutive duplicates (one check per environment) are one step.
    return [s for i, s in enumerate(named) if i == 0 or named[i - 1] != s]


def rows(server: PgServer, database: str) -> int:
    return int(server.scalar("SELECT count(*) FROM res_partner", database=database))


def moves_file(config_file: Path) -> list[dict[str, Any]]:  # noqa: F811
    path = moves.moves_path_for(config_file)
    return json.loads(path.read_text())["moves"] if path.exists() else []


def unprotected(fake: FakeCli, start: int) -> list[str]:
    found = []
    for call in fake.calls()[start:]:
        argv = call.get("argv", [])
        if argv[:2] == ["state", "unprotect"]:
            found += [a for a in argv if a.startswith("urn:")]
    return found


# --------------------------------------------------------------------------------------------
# The whole move


def test_a_team_move_backs_up_deploys_restores_checks_switches_and_then_removes(
    fleet_env: dict[str, Any],
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    comments = [line for line in config_file.read_text().splitlines() if line.startswith("#")]
    assert run_cli(project, "team", "move", "--stack", "shared", "--team", "1", "--to", "s2", "--no-policy") == 0
    assert steps(fake_cli, fleet_env["start"]) == [
        "backup@default",  # 1. the backup job on the old server
        "up:server-s2",  # 2. the new server's stack (the team's roles there), then the team's
        "up:team-1",
        "filestore",  # 3. restore: databases (checked below) and filestores
        "check@s2",  # 4. the new placement answers
        "up:team-1",  # 5. DNS switched
        "unprotect:team-1",  # 6. the old placement unprotected and removed
        "up:team-1",
        "up:shared",  # the team's roles leave the old server
    ]
    copies = [c["docker"] for c in fake_cli.calls()[fleet_env["start"] :] if c.get("docker", [""])[0] == "run"]
    hosts = sorted(
        ("read" if "-cf" in c["docker"] else "write", c["host"])
        for c in fake_cli.calls()[fleet_env["start"] :]
        if c.get("docker", [""])[0] == "run"
    )
    assert len(copies) == 8 and hosts == [("read", OLD_HOST)] * 4 + [("write", S2_HOST)] * 4
    for number, branch in enumerate(fleet_env["branches"], start=1):
        assert rows(fleet_env["new"], naming.env_db_name("1", branch)) == 10 * number
        owner = fleet_env["new"].scalar(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'res_partner'", database=naming.env_db_name("1", branch)
        )
        assert owner == ROLE
        volume = naming.env_filestore_volume_name("1", branch)
        copied = tmp_path / "engines" / S2_HOST.replace("/", "_").replace(":", "_") / volume
        assert (copied / "filestore" / naming.env_db_name("1", branch) / "ab").read_text() == f"attachment of {branch}"
    # Exactly the old placement's protected server resources: databases and filestores, not the bucket.
    expected = sorted(
        str(r["urn"])
        for r in _state_resources(fleet_env["branches"])
        if r.get("protect") and str(r["type"]).startswith(("docker:", "postgresql:"))
    )
    assert sorted(unprotected(fake_cli, fleet_env["start"])) == expected
    config = load_config(config_file)
    assert config.team_server("1") == "s2" and config.moves == []
    assert not moves.moves_path_for(config_file).exists()
    assert [line for line in config_file.read_text().splitlines() if line.startswith("#")] == comments


@pytest.mark.parametrize(
    ("failure", "last_step", "phase"),
    [
        ({"FAKE_DOCKER_FAIL": "backup"}, "backup@default", None),
        ({"FAKE_PULUMI_FAIL": "up:server-s2@2"}, "up:server-s2", "copying"),
        ({"FAKE_PULUMI_FAIL": "up:team-1@2"}, "up:team-1", "copying"),
        ({"FAKE_DOCKER_FAIL": "volume-write"}, "filestore", "copying"),
        ({"FAKE_DOCKER_FAIL": "inspect"}, "check@s2", "copying"),
        ({"FAKE_PULUMI_FAIL": "up:team-1@3"}, "up:team-1", "switched"),
        ({"FAKE_PULUMI_FAIL": "unprotect:team-1"}, "unprotect:team-1", "switched"),
    ],
)
def test_an_environment_move_stops_at_the_failing_step_and_keeps_the_old_placement(
    fleet_env: dict[str, Any],
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: dict[str, str],
    last_step: str,
    phase: str | None,
) -> None:
    before = config_file.read_bytes()
    for key, value in failure.items():
        monkeypatch.setenv(key, value)
    args = ["env", "move", "--stack", "shared", "--team", "1", "--branch", "staging", "--to", "s2", "--no-policy"]
    assert run_cli(project, *args) == 1
    done = steps(fake_cli, fleet_env["start"])
    assert done[-1] == last_step
    assert "unprotect:team-1" not in done[:-1] and done.count("up:team-1") <= 2
    assert config_file.read_bytes() == before  # the placement in the config is the old one
    listed = moves_file(config_file)
    if phase is None:
        assert listed == []
    else:
        assert listed == [{"team": "1", "branch": "staging", "from": "default", "to": "s2", "phase": phase}]
    out = capsys.readouterr().out
    assert "move stopped" in out
    # Resume: the same command with --resume finishes from where it stopped.
    for key in failure:
        monkeypatch.delenv(key)
    resumed_from = len(fake_cli.calls())
    if phase is None:
        assert run_cli(project, *args) == 0  # nothing was recorded: the move simply runs again
    else:
        assert run_cli(project, *args[:-3], "--resume", "--no-policy") == 0
    again = steps(fake_cli, resumed_from)
    if phase == "switched":
        assert again[0] == "unprotect:team-1" and "filestore" not in again  # live data is never restored over
    else:
        assert again[0] == "backup@default" and "filestore" in again
    assert again[-1] == "up:team-1"  # the team still sits on `default`: its server stack is not touched
    config = load_config(config_file)
    assert config.env_server("1", next(e for e in config.team["1"].environments if e.branch == "staging")) == "s2"
    assert moves_file(config_file) == []
    assert rows(fleet_env["new"], naming.env_db_name("1", "staging")) == rows(
        fleet_env["old"], naming.env_db_name("1", "staging")
    )


def test_a_restore_into_a_missing_database_stops_the_move_before_dns(
    fleet_env: dict[str, Any],
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet_env["new"].drop_database(naming.env_db_name("1", "staging"))  # the deployment did not create it
    args = ["env", "move", "--stack", "shared", "--team", "1", "--branch", "staging", "--to", "s2", "--no-policy"]
    assert run_cli(project, *args) == 1
    done = steps(fake_cli, fleet_env["start"])
    assert done == ["backup@default", "up:server-s2", "up:team-1"]  # no filestore copy, no check, no DNS
    out = capsys.readouterr().out
    assert "step 3/6 restore: FAILED" in out and "does not exist" in out
    assert moves_file(config_file)[0]["phase"] == "copying"


def test_a_second_move_of_the_same_team_is_refused_while_one_is_listed(
    fleet_env: dict[str, Any],
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "inspect")
    args = ["env", "move", "--stack", "shared", "--team", "1", "--branch", "staging", "--to", "s2", "--no-policy"]
    assert run_cli(project, *args) == 1
    capsys.readouterr()
    assert run_cli(project, *args) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert run_cli(project, "team", "move", "--stack", "shared", "--team", "1", "--to", "s2") == 2
    assert "finish that move first" in capsys.readouterr().err


def test_a_failed_last_deployment_leaves_the_move_done_in_the_config_and_resume_removes_the_old_placement(
    fleet_env: dict[str, Any],
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "up:team-1@4")  # step 2, step 5, then the removal
    args = ["env", "move", "--stack", "shared", "--team", "1", "--branch", "staging", "--to", "s2", "--no-policy"]
    assert run_cli(project, *args) == 1
    assert steps(fake_cli, fleet_env["start"])[-2:] == ["unprotect:team-1", "up:team-1"]
    assert moves_file(config_file) == []
    config = load_config(config_file)
    assert config.env_server("1", next(e for e in config.team["1"].environments if e.branch == "staging")) == "s2"
    assert "--resume removes the old placement" in capsys.readouterr().out
    monkeypatch.delenv("FAKE_PULUMI_FAIL")
    resumed_from = len(fake_cli.calls())
    assert run_cli(project, *args, "--resume") == 0
    assert steps(fake_cli, resumed_from) == ["up:team-1"]  # already unprotected: only the removal
    assert run_cli(project, "env", "move", "--stack", "shared", "--team", "1", "--branch", "main", "--resume") == 2
    assert "no move of environment 'main' of team 1 in progress" in capsys.readouterr().err
