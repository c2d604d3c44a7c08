"""The fleet's stacks under the fake `pulumi`: a stack per server, `--all` running the servers
(in parallel) before the teams (in parallel), failures per stack, a team's `up` on its stack alone,
and which resources of a stack's state are a placement's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import fleet, naming
from oduflow_iac.editing import ConfigEdit
from oduflow_iac.stack_settings import read_stack_settings
from tests.test_automation import (  # noqa: F401  (fixtures)
    FakeCli,
    config_file,
    fake_cli,
    project,
    run_cli,
    stack_of,
)

SERVERS = """
[server.default]
docker_host = "unix:///var/run/docker.sock"

[server.s2]
docker_host = "tcp://s2.example.com:2376"
address = "203.0.113.20"
"""


def two_servers(config_file: Path) -> None:  # noqa: F811
    """Team 2 on the server s2, team 1 on `default`."""
    text = config_file.read_text().replace("[team.2]\n", '[team.2]\nserver = "s2"\n', 1)
    text = text.replace("[team.1]\n", '[team.1]\nserver = "default"\n', 1)
    config_file.write_text(text + SERVERS)


def engine_calls(fake: FakeCli, op: str) -> list[tuple[str, bool]]:
    """(stack, is the end record) of each `op` in the order they were logged."""
    found = []
    for call in fake.calls():
        argv = [a for a in call.get("argv", []) if a != "--non-interactive"]
        if argv and argv[0] == op:
            found.append((stack_of(argv), bool(call.get("end"))))
    return found


def barrier(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *groups: list[str], timeout: float = 5) -> None:
    spec = {"dir": str(tmp_path / "barrier"), "groups": [list(g) for g in groups], "timeout": timeout}
    monkeypatch.setenv("FAKE_PULUMI_BARRIER", json.dumps(spec))


# --------------------------------------------------------------------------------------------
# --all over servers and teams


def test_up_all_runs_the_servers_in_parallel_then_the_teams_in_parallel(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    two_servers(config_file)
    # Each stack of a group waits until the whole group has started: a serial run would time out.
    barrier(monkeypatch, tmp_path, ["shared", "server-s2"], ["team-1", "team-2"])
    assert run_cli(project, "up", "--all", "--stack", "shared") == 0
    calls = engine_calls(fake_cli, "up")
    servers, team_stacks = {"shared", "server-s2"}, {"team-1", "team-2"}
    last_server_end = max(i for i, (s, end) in enumerate(calls) if s in servers and end)
    first_team_start = min(i for i, (s, end) in enumerate(calls) if s in team_stacks and not end)
    assert last_server_end < first_team_start  # every server finished before any team started
    assert {s for s, _ in calls} == servers | team_stacks
    out = capsys.readouterr().out
    summary = out[out.index("summary:") :]
    assert [line.split(":")[0].strip() for line in summary.splitlines()[1:5]] == [
        "up shared",
        "up server-s2",
        "up team-1",
        "up team-2",
    ]


def test_the_barrier_tells_a_serial_run(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    two_servers(config_file)
    barrier(monkeypatch, tmp_path, ["shared", "server-s2"], timeout=1)
    assert run_cli(project, "preview", "--all", "--stack", "shared", "--parallel", "1", "--no-policy") == 1
    assert "barrier timeout" in capsys.readouterr().out


def test_new_server_and_team_stacks_get_the_settings_of_their_layout(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
) -> None:
    two_servers(config_file)
    assert run_cli(project, "preview", "--all", "--stack", "shared", "--no-policy") == 0
    server = read_stack_settings("server-s2", project)
    assert server.get("layout") == "server" and server.get("server") == "s2"
    assert server.get("dockerHost") == "tcp://s2.example.com:2376"
    assert server.get("configFile") == "examples/oduflow.toml"
    team2 = read_stack_settings("team-2", project)
    assert team2.get("layout") == "team" and team2.get("team") == "2"
    assert team2.get("sharedStack") == "organization/oduflow/shared"
    assert team2.get("serverStackPattern") == "organization/oduflow/server-{server}"
    assert team2.get("dockerHost") == "tcp://s2.example.com:2376"  # its own server's
    # The existing team-1 stack is left as it is.
    assert "serverStackPattern" not in (project / "stacks" / "Pulumi.team-1.yaml").read_text()


def test_a_failed_server_skips_the_teams_on_it_and_each_stack_reports_one_line(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    two_servers(config_file)
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "up:server-s2")
    assert run_cli(project, "up", "--all", "--stack", "shared") == 1
    ups = {stack_of(c["args"]) for c in fake_cli.engine("up")}
    assert ups == {"shared", "server-s2", "team-1"}  # team 2 sits on s2: not run
    out = capsys.readouterr().out
    summary = out[out.index("summary:") :].splitlines()
    assert "  up server-s2: FAILED: up failed; fake failure of up on server-s2" in summary
    assert "  up team-2: FAILED: skipped: the server-s2 stack failed" in summary
    assert any(line.startswith("  up team-1: ") and "FAILED" not in line for line in summary)
    assert "2 of 4 stacks failed: server-s2, team-2" in summary


def test_a_failed_team_leaves_the_other_stacks_deployed(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    two_servers(config_file)
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "up:team-1")
    assert run_cli(project, "up", "--all", "--stack", "shared") == 1
    assert "1 of 4 stacks failed: team-1" in capsys.readouterr().out
    state = json.loads(fake_cli.state.read_text())
    assert all(state["stacks"][s]["history"] for s in ("shared", "server-s2", "team-2"))


def test_destroy_all_destroys_the_teams_then_the_servers(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    two_servers(config_file)
    assert run_cli(project, "up", "--all", "--stack", "shared") == 0
    assert run_cli(project, "destroy", "--all", "--stack", "shared") == 0
    order = [s for s, end in engine_calls(fake_cli, "destroy") if not end]
    assert set(order[:2]) == {"team-1", "team-2"} and set(order[2:]) == {"shared", "server-s2"}


def test_destroy_all_keeps_a_server_whose_team_was_not_destroyed(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    two_servers(config_file)
    assert run_cli(project, "up", "--all", "--stack", "shared") == 0
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "destroy:team-2")
    assert run_cli(project, "destroy", "--all", "--stack", "shared") == 1
    destroyed = {s for s, end in engine_calls(fake_cli, "destroy") if not end}
    assert destroyed == {"team-1", "team-2", "shared"}
    assert "destroy server-s2: FAILED: skipped: team stack team-2 on it was not destroyed" in capsys.readouterr().out


def test_a_team_up_touches_only_that_teams_stack(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
) -> None:
    two_servers(config_file)
    assert run_cli(project, "up", "--all", "--stack", "shared") == 0
    before = len(fake_cli.calls())
    assert run_cli(project, "up", "--stack", "shared", "--team", "2") == 0
    after = fake_cli.calls()[before:]
    touched = {stack_of(c["argv"]) for c in after if "--stack" in c["argv"]}
    assert touched == {"team-2"}
    assert not [c for c in after if c["argv"][:2] == ["config", "set-all"]]


def test_a_team_up_from_a_server_stack_runs_the_team_stack(
    fake_cli: FakeCli,  # noqa: F811
    project: Path,  # noqa: F811
    config_file: Path,  # noqa: F811
) -> None:
    two_servers(config_file)
    assert run_cli(project, "up", "--all", "--stack", "shared") == 0
    before = len(fake_cli.engine())
    assert run_cli(project, "up", "--stack", "server-s2", "--team", "2") == 0
    # `up` previews first (lifecycle/pause.py), on the same stack.
    assert {stack_of(c["args"]) for c in fake_cli.engine()[before:]} == {"team-2"}


# --------------------------------------------------------------------------------------------
# Which resources are a placement's


def _resource(urn: str, parent: str | None = None, protect: bool = False) -> dict[str, Any]:
    kind = urn.rsplit("::", 2)[-2].rsplit("$", 1)[-1]
    return {"urn": urn, "type": kind, "parent": parent, "protect": protect}


def _state() -> dict[str, Any]:
    p = "urn:pulumi:team-1::oduflow::"
    team, team_s2 = p + "oduflow:index:TeamStack::team-1", p + "oduflow:index:TeamStack::team-1@s2"
    env = "oduflow:index:TeamStack$oduflow:index:OdooEnvironment"
    main, main2 = p + f"{env}::team-1-main", p + f"{env}::team-1-main-2"
    main_s2 = p + f"{env}::team-1@s2-main"
    db = "oduflow:index:TeamStack$oduflow:index:OdooEnvironment$postgresql:index/database:Database"
    vol = "oduflow:index:TeamStack$oduflow:index:OdooEnvironment$docker:index/volume:Volume"
    bucket = "oduflow:index:TeamStack$aws:s3/bucketV2:BucketV2"
    return {
        "resources": [
            _resource(team),
            _resource(team_s2),
            _resource(main, team),
            _resource(p + f"{db}::team-1-main-db", main, protect=True),
            _resource(p + f"{vol}::team-1-main-filestore", main, protect=True),
            _resource(main2, team),
            _resource(p + f"{db}::team-1-main-2-db", main2, protect=True),
            _resource(main_s2, team_s2),
            _resource(p + f"{db}::team-1@s2-main-db", main_s2, protect=True),
            _resource(p + f"{bucket}::team-1-backups", team, protect=True),
        ]
    }


def test_an_environments_placement_is_found_by_parent_not_by_name_prefix() -> None:
    urns = [str(r["urn"]).rsplit("::", 1)[-1] for r in fleet.placement_resources(_state(), "1", "main", "default")]
    assert urns == ["team-1-main", "team-1-main-db", "team-1-main-filestore"]
    on_s2 = fleet.placement_resources(_state(), "1", "main", "s2")
    assert [str(r["urn"]).rsplit("::", 1)[-1] for r in on_s2] == ["team-1@s2-main", "team-1@s2-main-db"]


def test_a_move_unprotects_only_the_old_placements_server_resources() -> None:
    mine, kept = fleet.protected_urns(fleet.placement_resources(_state(), "1", None, naming.DEFAULT_SERVER))
    assert sorted(u.rsplit("::", 1)[-1] for u in mine) == [
        "team-1-main-2-db",
        "team-1-main-db",
        "team-1-main-filestore",
    ]
    assert [u.rsplit("::", 1)[-1] for u in kept] == ["team-1-backups"]  # not a server's resource


def test_container_health() -> None:
    assert fleet.container_health('{"Running": true, "Health": {"Status": "healthy"}}') == "healthy"
    assert fleet.container_health('{"Running": true, "Health": {"Status": "starting"}}') == "starting"
    assert fleet.container_health('{"Running": false}') == "not running"
    assert fleet.container_health('{"Running": true}') == "running without a health check"
    assert fleet.container_health("nope") == "unreadable state"


def test_setting_a_placement_keeps_comments_and_removing_it_leaves_the_file_as_it_was(
    config_file: Path,  # noqa: F811
) -> None:
    original = config_file.read_text()
    edit = ConfigEdit.open(config_file)
    assert edit.set_placement("1", "staging", "s2")
    edit.verify()
    assert 'type = "staging"' in edit.text and 'server = "s2"' in edit.text
    assert [line for line in original.splitlines() if line.startswith("#")] == [
        line for line in edit.text.splitlines() if line.startswith("#")
    ]
    assert edit.set_placement("1", "staging", None)
    assert edit.text == original
    assert not edit.set_placement("1", "staging", None)


# --------------------------------------------------------------------------------------------
# The superuser password of a server, for a move's copy: from the server stack's state only


def _password_resource(name: str, value: object) -> dict[str, object]:
    return {
        "urn": f"urn:pulumi:shared::oduflow::oduflow:index:SharedInfra${fleet.RANDOM_PASSWORD_TYPE}::{name}",
        "type": fleet.RANDOM_PASSWORD_TYPE,
        "outputs": {"result": value},
    }


def test_the_superuser_password_is_read_from_the_servers_own_resource() -> None:
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "plaintext": '"pw-s2"'}
    deployment = {
        "resources": [
            _password_resource("shared-postgres-password", "pw-default"),
            _password_resource("shared@s2-postgres-password", secret),
            # A team's environment password must never be taken for a server's.
            _password_resource("team-1-main-admin-password", "not-this"),
        ]
    }
    assert fleet.superuser_password(deployment, "default") == "pw-default"
    assert fleet.superuser_password(deployment, "s2") == "pw-s2"
    assert fleet.superuser_password(deployment, "s3") is None
    # Still encrypted (exported without --show-secrets): no password, never the ciphertext.
    encrypted = {"resources": [_password_resource("shared-postgres-password", {"ciphertext": "v1:abc"})]}
    assert fleet.superuser_password(encrypted, "default") is None
