"""`oduflow-iac preview|up|refresh|destroy` against a remote Docker host, failed one-shots retried by
`up`, and `env credentials`, against the fake `pulumi` (tests/fakes/pulumi) and a fake `ssh`
(tests/fakes/ssh) on PATH.
"""

# The fixtures come from test_automation and test_tunnel: pytest finds them by name in this module.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import automation, ops_cli, tunnel
from oduflow_iac.automation import FailedOneShot
from tests.test_automation import (  # noqa: F401
    FakeCli,
    config_file,
    fake_cli,
    flag_values,
    project,
    run_cli,
    stack_of,
)
from tests.test_tunnel import FakeSsh, fake_ssh, listening_socket, pid_alive  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
REMOTE = "ssh://ops@odoo.example.com:2222"
TARGET = tunnel.SshTarget("odoo.example.com", "ops", 2222)
PASSWORD = "Zq8-admin-password-Xy"
CONTAINER = automation.CONTAINER_TYPE
ENV_KIND = "oduflow:index:TeamStack$oduflow:index:OdooEnvironment"


def container_urn(stack: str, name: str) -> str:
    return f"urn:pulumi:{stack}::oduflow::{ENV_KIND}${CONTAINER}::{name}"


def container(
    stack: str, name: str, role: str, team: str, exit_code: int | None, *, init_errors: bool = False
) -> dict[str, Any]:
    labels = [
        {"label": "oduflow.managed", "value": "true"},
        {"label": "oduflow.role", "value": role},
        {"label": "oduflow.team", "value": team},
    ]
    outputs: dict[str, Any] = {"name": name, "labels": labels}
    if exit_code is not None:
        outputs["exitCode"] = exit_code
    resource = {
        "urn": container_urn(stack, name), "custom": True, "id": f"id-{name}", "type": CONTAINER,
        "inputs": {"name": name, "labels": labels}, "outputs": outputs,
    }  # fmt: skip
    if init_errors:
        resource["initErrors"] = ["container exited"]
    return resource


def postgres_provider(stack: str, port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    inputs = {"host": host, "port": json.dumps(port), "username": "postgres", "sslmode": "disable"}
    return {
        "urn": f"urn:pulumi:{stack}::oduflow::oduflow:index:SharedInfra$pulumi:providers:postgresql::shared-postgresql",
        "custom": True, "id": "3b7f", "type": automation.POSTGRESQL_PROVIDER_TYPE,
        "inputs": inputs, "outputs": inputs,
    }  # fmt: skip


def seed(
    fake: FakeCli, stack: str, *, resources: list[dict[str, Any]] | None = None, outputs: dict[str, Any] | None = None
) -> None:
    state = json.loads(fake.state.read_text()) if fake.state.exists() else {"stacks": {}, "current": None}
    state["stacks"][stack] = {
        "history": [],
        "outputs": outputs or {},
        "deployment": {"manifest": {}, "resources": list(resources or [])},
    }
    fake.state.write_text(json.dumps(state))


def add_remote_stack(project: Path, name: str = "remote", docker_host: str = REMOTE) -> None:
    (project / "stacks" / f"Pulumi.{name}.yaml").write_text(
        f"config:\n  oduflow:configFile: examples/oduflow.toml\n  oduflow:dockerHost: {docker_host}\n"
    )


# --------------------------------------------------------------------------------------------
# The tunnel around each operation


@pytest.mark.parametrize("op", ["preview", "up", "refresh", "destroy"])
def test_every_operation_on_a_remote_stack_runs_inside_its_own_tunnel(
    fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path, capsys: pytest.CaptureFixture[str], op: str
) -> None:
    add_remote_stack(project)
    seed(fake_cli, "remote")
    assert run_cli(project, op, "--stack", "remote") == 0
    [call] = fake_cli.engine(op)
    env = call["env"]
    port = int(env[tunnel.ENV_ADMIN_PORT])
    assert env[tunnel.ENV_ADMIN_HOST] == "127.0.0.1"
    assert port != 5432  # a free local port; the remote end is the configured postgres_port
    assert call["admin_port_open"] is True  # the engine ran while the tunnel accepted
    [ssh] = fake_ssh.calls()
    assert ["ssh", *ssh["argv"]] == tunnel.tunnel_command(TARGET, port, 5432)
    # closed afterwards: the process is gone and the port is free
    assert not pid_alive(ssh["pid"])
    assert not tunnel.port_accepts("127.0.0.1", port) and tunnel.port_free(port)
    out = capsys.readouterr().out
    assert f"tunnel: 127.0.0.1:{port} -> ops@odoo.example.com 127.0.0.1:5432" in out
    assert f"tunnel: closed 127.0.0.1:{port}" in out


def test_the_tunnel_reuses_the_port_the_state_records(fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path) -> None:
    # The provider's host/port are its configuration: a new port every run would be an update of
    # the provider on every `up`. The port already in the state keeps it unchanged.
    add_remote_stack(project)
    recorded = tunnel.free_port()
    seed(fake_cli, "remote", resources=[postgres_provider("remote", recorded)])
    assert run_cli(project, "up", "--stack", "remote") == 0
    assert run_cli(project, "refresh", "--stack", "remote") == 0
    ports = [int(c["env"][tunnel.ENV_ADMIN_PORT]) for c in fake_cli.engine()]
    # `up` previews first (which Odoo to stop around upgrades: lifecycle/pause.py), in the same tunnel.
    assert [c["args"][0] for c in fake_cli.engine()] == ["preview", "up", "refresh"]
    assert ports == [recorded, recorded, recorded]


FLEET_TWO_SSH = """
[server.default]
docker_host = "ssh://ops@odoo.example.com:2222"
[server.s2]
docker_host = "ssh://ops@odoo2.example.com"

[team.1]
hostname = "team-a.example.com"
ui_password = "pass-a"
port_range = [50000, 50050]
server = "default"

[[team.1.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:17.0-20260908@sha256:8779f8157ddcc37b84014c94646073f46fd4ad776b7a5d95fc3b0dc73a24a8fa"

[team.2]
hostname = "team-b.example.com"
ui_password = "pass-b"
port_range = [50050, 50100]
server = "s2"

[[team.2.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:17.0-20260908@sha256:8779f8157ddcc37b84014c94646073f46fd4ad776b7a5d95fc3b0dc73a24a8fa"
"""


def test_a_stack_on_two_ssh_servers_runs_inside_a_tunnel_to_each(
    fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path
) -> None:
    # Each server has its own PostgreSQL: the program dials s2's through ODUFLOW_POSTGRES_ADMIN_PORT_S2
    # (tunnel.server_env_names), and the port recorded for s2's provider is s2's, not default's.
    (project / "fleet.toml").write_text(FLEET_TWO_SSH)
    (project / "stacks" / "Pulumi.fleet.yaml").write_text("config:\n  oduflow:configFile: fleet.toml\n")
    recorded = tunnel.free_port()
    s2_provider = postgres_provider("fleet", recorded)
    s2_provider["urn"] = s2_provider["urn"].replace("::shared-postgresql", "::shared@s2-postgresql")
    seed(fake_cli, "fleet", resources=[s2_provider])
    assert run_cli(project, "refresh", "--stack", "fleet") == 0
    [call] = fake_cli.engine("refresh")
    env = call["env"]
    host_s2, port_s2 = tunnel.server_env_names("s2")
    assert int(env[port_s2]) == recorded and env[host_s2] == "127.0.0.1"
    assert int(env[tunnel.ENV_ADMIN_PORT]) != recorded
    destinations = sorted(c["argv"][-1] if "@" in c["argv"][-1] else " ".join(c["argv"]) for c in fake_ssh.calls())
    assert len(fake_ssh.calls()) == 2
    assert any("odoo2.example.com" in d for d in destinations) and any("odoo.example.com" in d for d in destinations)


def test_a_busy_recorded_port_moves_up_but_stops_refresh(
    fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_remote_stack(project)
    with listening_socket() as busy:
        taken = busy.getsockname()[1]
        seed(fake_cli, "remote", resources=[postgres_provider("remote", taken)])
        assert run_cli(project, "up", "--stack", "remote") == 0
        [call] = fake_cli.engine("up")
        assert int(call["env"][tunnel.ENV_ADMIN_PORT]) != taken
        capsys.readouterr()
        # refresh and destroy do not run the program: the provider dials what the state says.
        assert run_cli(project, "refresh", "--stack", "remote") == 1
    out = capsys.readouterr().out
    assert f"refresh remote: FAILED: the stack's state dials PostgreSQL at 127.0.0.1:{taken}" in out
    assert fake_cli.engine("refresh") == []


def test_ssh_failure_fails_the_run_before_the_engine(
    fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("FAKE_SSH_MODE", "fail")
    add_remote_stack(project)
    seed(fake_cli, "remote")
    assert run_cli(project, "up", "--stack", "remote") == 1
    out = capsys.readouterr().out
    [line] = [ln for ln in out.splitlines() if ln.startswith("up remote:")]
    assert "FAILED: the SSH tunnel to PostgreSQL failed (ssh: connect to host odoo.example.com port 2222" in line
    assert fake_cli.engine() == []


def test_the_tunnel_is_closed_when_the_engine_fails(
    fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "up:remote")
    add_remote_stack(project)
    seed(fake_cli, "remote")
    assert run_cli(project, "up", "--stack", "remote") == 1
    [ssh] = fake_ssh.calls()
    [call] = fake_cli.engine("up")
    assert not pid_alive(ssh["pid"])
    assert tunnel.port_free(int(call["env"][tunnel.ENV_ADMIN_PORT]))


def test_the_tunnel_is_closed_on_ctrl_c(
    fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    add_remote_stack(project)
    seed(fake_cli, "remote")
    seen: list[int] = []

    def interrupted(operation: str, stack: Any, name: str, kwargs: dict[str, Any]) -> Any:
        seen.append(int(stack.workspace.env_vars[tunnel.ENV_ADMIN_PORT]))
        assert tunnel.port_accepts("127.0.0.1", seen[0])
        raise KeyboardInterrupt

    monkeypatch.setattr(automation.Runner, "_engine", staticmethod(interrupted))
    assert run_cli(project, "up", "--stack", "remote") == 130
    [ssh] = fake_ssh.calls()
    assert not pid_alive(ssh["pid"])
    assert not tunnel.port_accepts("127.0.0.1", seen[0])
    assert "interrupted" in capsys.readouterr().err


def test_a_local_stack_opens_no_tunnel(fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path) -> None:
    assert run_cli(project, "up") == 0
    assert fake_ssh.calls() == []
    [call] = fake_cli.engine("up")
    assert tunnel.ENV_ADMIN_PORT not in call["env"]


def test_no_tunnel_when_postgresql_is_reached_another_way(
    fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path, config_file: Path
) -> None:
    text = config_file.read_text().replace("[platform]\n", '[platform]\npostgres_admin_host = "10.8.0.1"\n', 1)
    config_file.write_text(text)
    add_remote_stack(project)
    assert run_cli(project, "preview", "--stack", "remote") == 0
    assert fake_ssh.calls() == []


def test_a_team_stack_tunnels_through_the_shared_stacks_docker_host(
    fake_cli: FakeCli, fake_ssh: FakeSsh, project: Path
) -> None:
    shared = project / "stacks" / "Pulumi.shared.yaml"
    shared.write_text(shared.read_text().replace("unix:///var/run/docker.sock", REMOTE))
    seed(fake_cli, "team-1")
    assert run_cli(project, "preview", "--stack", "shared", "--team", "1") == 0
    [call] = fake_cli.engine("preview")
    assert stack_of(call["args"]) == "team-1"
    [ssh] = fake_ssh.calls()
    assert ssh["argv"][-1] == "ops@odoo.example.com"
    assert call["admin_port_open"] is True


def test_a_malformed_ssh_docker_host_is_one_line(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_remote_stack(project, docker_host="ssh://ops@host/var/run/docker.sock")
    assert run_cli(project, "preview", "--stack", "remote") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Docker host of stack remote" in err and "nothing may follow the host" in err


# --------------------------------------------------------------------------------------------
# Failed one-shots are retried by the next `up`


def one_shot_state(stack: str) -> list[dict[str, Any]]:
    return [
        container(stack, "oduflow-1-feature-login-init", "init", "1", 1),
        container(stack, "oduflow-1-main-init", "init", "1", 0),
        container(stack, "oduflow-1-template-default-init", "template-init", "1", 3),
        container(stack, "oduflow-2-fix-rounding-addons", "addons-fetch", "2", 128),
        container(stack, "oduflow-2-main-init", "init", "2", None, init_errors=True),
        container(stack, "oduflow-2-staging-init", "init", "2", None),  # no exit recorded yet
        container(stack, "oduflow-1-feature-login", "odoo", "1", 137),  # not a one-shot
        {**container(stack, "oduflow-1-old-init", "init", "1", 1), "delete": True},  # pending deletion
    ]


def test_failed_one_shots_from_the_state() -> None:
    found = automation.failed_one_shots({"resources": one_shot_state("local")})
    assert [(f.name, f.role, f.exit_code) for f in found] == [
        ("oduflow-1-feature-login-init", "init", 1),
        ("oduflow-1-template-default-init", "template-init", 3),
        ("oduflow-2-fix-rounding-addons", "addons-fetch", 128),
        ("oduflow-2-main-init", "init", None),
    ]
    team_1 = automation.failed_one_shots({"resources": one_shot_state("local")}, team="1")
    assert [f.name for f in team_1] == ["oduflow-1-feature-login-init", "oduflow-1-template-default-init"]
    assert automation.failed_one_shots(None) == []
    assert automation.failed_one_shots({"resources": []}) == []


def test_up_replaces_failed_one_shots_and_says_so(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(fake_cli, "local", resources=one_shot_state("local"))
    assert run_cli(project, "up") == 0
    [call] = fake_cli.engine("up")
    expected = [
        container_urn("local", n)
        for n in (
            "oduflow-1-feature-login-init", "oduflow-1-template-default-init",
            "oduflow-2-fix-rounding-addons", "oduflow-2-main-init",
        )
    ]  # fmt: skip
    assert flag_values(call["args"], "--replace") == expected
    out = capsys.readouterr().out
    assert "retrying init one-shot oduflow-1-feature-login-init (exit code 1 in the last run): replacing it" in out
    assert "retrying init one-shot oduflow-2-main-init (its creation failed in the last run)" in out
    assert "retried 4 failed one-shot(s): oduflow-1-feature-login-init, " in out
    # The re-run succeeded: the next `up` replaces nothing.
    assert run_cli(project, "up") == 0
    assert "--replace" not in fake_cli.engine("up")[-1]["args"]


def test_up_for_one_team_retries_only_that_teams_one_shots(fake_cli: FakeCli, project: Path) -> None:
    seed(fake_cli, "local", resources=one_shot_state("local"))
    assert run_cli(project, "up", "--team", "2") == 0
    [call] = fake_cli.engine("up")
    assert flag_values(call["args"], "--replace") == [
        container_urn("local", "oduflow-2-fix-rounding-addons"),
        container_urn("local", "oduflow-2-main-init"),
    ]


def test_preview_replaces_nothing(fake_cli: FakeCli, project: Path) -> None:
    seed(fake_cli, "local", resources=one_shot_state("local"))
    assert run_cli(project, "preview") == 0
    [call] = fake_cli.engine("preview")
    assert "--replace" not in call["args"]


def test_failed_one_shot_line() -> None:
    line = FailedOneShot("u", "n", "init", 2).line()
    assert line == "retrying init one-shot n (exit code 2 in the last run): replacing it"


# --------------------------------------------------------------------------------------------
# env credentials


def admin_outputs() -> dict[str, Any]:
    return {"odooAdmin": {"1/feature/login": {"login": "admin", "password": PASSWORD}}}


def test_credentials_are_not_printed_to_a_pipe_without_the_flag(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(fake_cli, "local", outputs=admin_outputs())
    assert run_cli(project, "env", "credentials", "--team", "1", "--branch", "feature/login") == 2
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "--show-secret" in captured.err
    # The secret was never even read.
    assert not [a for a in fake_cli.argvs() if a[:2] == ["stack", "output"]]


@pytest.mark.parametrize("flag", ["--show-secret", "--show"])
def test_credentials_with_the_flag(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    seed(fake_cli, "local", outputs=admin_outputs())
    assert run_cli(project, "env", "credentials", "--team", "1", "--branch", "feature/login", flag) == 0
    out = capsys.readouterr().out
    assert "login:    admin\n" in out
    assert f"password: {PASSWORD}\n" in out


def test_credentials_to_a_terminal(
    fake_cli: FakeCli, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(fake_cli, "local", outputs=admin_outputs())
    monkeypatch.setattr(ops_cli, "stdout_is_terminal", lambda: True)
    assert run_cli(project, "env", "credentials", "--team", "1", "--branch", "feature/login") == 0
    assert f"password: {PASSWORD}" in capsys.readouterr().out


def cli_process(project: Path, stdout: Any) -> subprocess.Popen[bytes]:
    args = ["env", "credentials", "--team", "1", "--branch", "feature/login", "--project-dir", str(project)]
    code = "import sys; from oduflow_iac import cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT, env=dict(os.environ)
    )


def test_credentials_real_terminal_and_real_pipe(fake_cli: FakeCli, project: Path) -> None:
    seed(fake_cli, "local", outputs=admin_outputs())
    piped = cli_process(project, subprocess.PIPE)
    out, err = piped.communicate(timeout=60)
    assert piped.returncode == 2 and PASSWORD.encode() not in out + err
    master, slave = pty.openpty()
    try:
        shown = cli_process(project, slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's other end closed: the process is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert shown.wait(timeout=60) == 0, shown.stderr.read() if shown.stderr else ""
    finally:
        os.close(master)
    assert f"password: {PASSWORD}".encode() in b"".join(chunks)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--team", "9", "--branch", "main"], "team '9' is not defined (teams: 1, 2)"),
        (["--team", "1", "--branch", "nope"], "team 1 has no environment for branch 'nope' (environments: main, "),
        (["--team", "1", "--branch", "main", "--show-secret"], "holds no admin credentials for environment 'main'"),
    ],
)
def test_credentials_of_an_unknown_environment_are_one_line(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    seed(fake_cli, "local", outputs=admin_outputs())
    assert run_cli(project, "env", "credentials", *args) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err
    assert PASSWORD not in captured.out + captured.err


def test_credentials_of_a_stack_never_deployed(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(project, "env", "credentials", "--branch", "main", "--team", "1", "--show-secret") == 2
    assert "stack local does not exist: deploy it first" in capsys.readouterr().err


def test_credentials_in_the_per_team_layout_come_from_the_team_stack(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(fake_cli, "shared", outputs={"postgresPassword": "x"})
    seed(fake_cli, "team-1", outputs=admin_outputs())
    args = ["env", "credentials", "--stack", "shared", "--team", "1", "--branch", "feature/login", "--show-secret"]
    assert run_cli(project, *args) == 0
    out = capsys.readouterr().out
    assert "(stack team-1)" in out and f"password: {PASSWORD}" in out
    outputs = [a for a in fake_cli.argvs() if a[:2] == ["stack", "output"]]
    assert outputs and all(stack_of(a) == "team-1" for a in outputs)


def test_credentials_repr_hides_the_password() -> None:
    assert PASSWORD not in repr(automation.Credentials("admin", PASSWORD))
