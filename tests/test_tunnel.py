"""The SSH tunnel to a remote Docker host's PostgreSQL and the program's fail-fast check.

Pure functions are checked directly; the tunnel process against tests/fakes/ssh (a stand-in that
records its argv and listens on the -L port, or fails, or never listens).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pulumi
import pytest

from oduflow_iac import program, tunnel
from oduflow_iac.config import load_config
from oduflow_iac.offline.plan import plan_run
from oduflow_iac.program import ProgramSettings
from tests.conftest import EXAMPLE

ROOT = Path(__file__).resolve().parent.parent
FAKE_SSH = ROOT / "tests" / "fakes" / "ssh"
REMOTE = "ssh://ops@odoo.example.com:2222"
TARGET = tunnel.SshTarget("odoo.example.com", "ops", 2222)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


class FakeSsh:
    def __init__(self, log: Path) -> None:
        self.log = log

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSsh:
    bin_dir = tmp_path / "ssh-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SSH}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "ssh-calls.jsonl"
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.delenv("FAKE_SSH_MODE", raising=False)
    return FakeSsh(log)


# --------------------------------------------------------------------------------------------
# Parsing the Docker host


@pytest.mark.parametrize(
    ("docker_host", "expected"),
    [
        ("ssh://ops@odoo.example.com", tunnel.SshTarget("odoo.example.com", "ops", None)),
        ("ssh://ops@odoo.example.com:2222", TARGET),
        ("ssh://odoo.example.com", tunnel.SshTarget("odoo.example.com", None, None)),
        ("ssh://ops@[2001:db8::1]:22", tunnel.SshTarget("2001:db8::1", "ops", 22)),
        ("unix:///var/run/docker.sock", None),
        ("tcp://10.0.0.5:2376", None),
    ],
)
def test_ssh_docker_hosts_are_parsed_like_the_docker_cli(docker_host: str, expected: tunnel.SshTarget | None) -> None:
    assert tunnel.parse_ssh_host(docker_host) == expected


@pytest.mark.parametrize(
    ("docker_host", "reason"),
    [
        ("ssh://", "no host"),
        ("ssh://ops@host/var/run/docker.sock", "nothing may follow the host"),
        ("ssh://ops@host?x=1", "nothing may follow the host"),
        ("ssh://ops@host:99999", "port"),
        ("ssh://-oProxyCommand=touch%20pwned@host", "user is not usable"),
        ("ssh://ops@-oProxyCommand=x", "host is not usable"),
    ],
)
def test_unusable_ssh_hosts_are_refused(docker_host: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        tunnel.parse_ssh_host(docker_host)


def test_a_password_in_the_docker_host_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValueError, match="plain-text password") as info:
        tunnel.parse_ssh_host("ssh://ops:hunter2-secret@host")
    assert "hunter2-secret" not in str(info.value)


def test_a_tunnel_only_for_ssh_hosts_with_postgresql_on_loopback() -> None:
    assert tunnel.tunnel_target(REMOTE, "127.0.0.1") == TARGET
    assert tunnel.tunnel_target(REMOTE, "localhost") == TARGET
    assert tunnel.tunnel_target(REMOTE, "10.8.0.1") is None  # reachable some other way (VPN)
    assert tunnel.tunnel_target("unix:///var/run/docker.sock", "127.0.0.1") is None


# --------------------------------------------------------------------------------------------
# The command line and the message


def test_tunnel_command_line() -> None:
    assert tunnel.tunnel_command(TARGET, 40123, 5432) == [
        "ssh", "-N",
        "-o", "ExitOnForwardFailure=yes",
        "-o", "BatchMode=yes",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3",
        "-o", "ConnectTimeout=15",
        "-L", "127.0.0.1:40123:127.0.0.1:5432",
        "-p", "2222",
        "--", "ops@odoo.example.com",
    ]  # fmt: skip
    no_port = tunnel.tunnel_command(tunnel.SshTarget("h"), 1, 2)
    assert "-p" not in no_port and no_port[-2:] == ["--", "h"]


def test_unreachable_message_is_one_line_with_the_commands_to_run() -> None:
    message = tunnel.unreachable_message(
        stack="cloud", docker_host=REMOTE, target=TARGET, host="127.0.0.1", port=15432, remote_port=5432
    )
    assert "\n" not in message
    assert "127.0.0.1:15432" in message and REMOTE in message
    assert "`oduflow-iac up --stack cloud`" in message
    ssh = shlex.join(tunnel.tunnel_command(TARGET, 15432, 5432))
    assert f"`{ssh}`" in message  # exactly the command, local port 15432 to the host's 5432


def test_admin_endpoint_from_the_environment() -> None:
    assert tunnel.admin_endpoint("127.0.0.1", 5432, {}) == ("127.0.0.1", 5432)
    env = {tunnel.ENV_ADMIN_PORT: "40123"}
    assert tunnel.admin_endpoint("127.0.0.1", 5432, env) == ("127.0.0.1", 40123)
    env = {tunnel.ENV_ADMIN_HOST: "localhost", tunnel.ENV_ADMIN_PORT: "40123"}
    assert tunnel.admin_endpoint("127.0.0.1", 5432, env) == ("localhost", 40123)
    for bad in ("0", "70000", "54a", "-1"):
        with pytest.raises(ValueError, match=tunnel.ENV_ADMIN_PORT):
            tunnel.admin_endpoint("127.0.0.1", 5432, {tunnel.ENV_ADMIN_PORT: bad})


# --------------------------------------------------------------------------------------------
# The program's check (pulumi up without oduflow-iac)


@pytest.fixture
def real_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """As under `pulumi up`: other tests leave the SDK's mocks installed in this process."""
    monkeypatch.setattr(program, "_under_mocks", lambda: False)


def listening_socket() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    return server


def test_plain_pulumi_up_on_a_remote_host_without_postgresql_stops_at_once(real_run: None) -> None:
    config = load_config(EXAMPLE)
    closed = tunnel.free_port()
    env = {tunnel.ENV_ADMIN_PORT: str(closed)}
    started = time.monotonic()
    with pytest.raises(pulumi.RunError) as info:
        program.reach_postgres(config, ProgramSettings(docker_host=REMOTE), env, stack="cloud")
    assert time.monotonic() - started < 3  # a fast TCP check, not the provider's 30 s connect timeout
    message = str(info.value)
    assert "\n" not in message
    assert "`oduflow-iac up --stack cloud`" in message
    assert shlex.join(tunnel.tunnel_command(TARGET, closed, config.platform.postgres_port)) in message


def test_the_check_passes_when_the_port_accepts_and_the_provider_dials_it(real_run: None) -> None:
    config = load_config(EXAMPLE)
    with listening_socket() as server:
        port = server.getsockname()[1]
        checked = program.reach_postgres(
            config, ProgramSettings(docker_host=REMOTE), {tunnel.ENV_ADMIN_PORT: str(port)}, stack="cloud"
        )
    assert checked.platform.postgres_admin_port == port
    assert checked.platform.postgres_port == config.platform.postgres_port  # the published port is untouched
    assert checked.path == config.path and checked.team == config.team


def test_the_default_port_is_checked_without_the_environment(real_run: None) -> None:
    config = load_config(EXAMPLE)
    seen: list[tuple[str, int]] = []

    def accepts(host: str, port: int) -> bool:
        seen.append((host, port))
        return True

    assert program.reach_postgres(config, ProgramSettings(docker_host=REMOTE), {}, accepts=accepts) is config
    assert seen == [("127.0.0.1", config.platform.postgres_port)]


def test_no_check_for_a_local_docker_host(real_run: None) -> None:
    # The first `up` creates the PostgreSQL container: nothing listens yet, and that is fine.
    config = load_config(EXAMPLE)

    def accepts(host: str, port: int) -> bool:
        raise AssertionError("no network for a local Docker host")

    local = ProgramSettings(docker_host="unix:///var/run/docker.sock")
    assert program.reach_postgres(config, local, {}, accepts=accepts) is config


def test_a_bad_port_variable_is_one_line(real_run: None) -> None:
    with pytest.raises(pulumi.RunError, match=f"^{tunnel.ENV_ADMIN_PORT}='x' is not a port number"):
        program.reach_postgres(load_config(EXAMPLE), ProgramSettings(docker_host=REMOTE), {tunnel.ENV_ADMIN_PORT: "x"})


def test_no_network_under_the_offline_mocks() -> None:
    def accepts(host: str, port: int) -> bool:
        raise AssertionError("the offline plan must not touch the network")

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            return args.name, dict(args.inputs)

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            return {}, None

    pulumi.runtime.set_mocks(Mocks(), preview=True)
    config = load_config(EXAMPLE)
    assert program.reach_postgres(config, ProgramSettings(docker_host=REMOTE), {}, accepts=accepts) is config


def test_the_provider_dials_the_admin_port_and_the_container_still_publishes_postgres_port() -> None:
    config = load_config(EXAMPLE)
    platform = config.platform.model_copy(update={"postgres_admin_port": 40123})
    run, _ = plan_run(config.model_copy(update={"platform": platform}), None)
    [provider] = [r for r in run.resources if r.type == "pulumi:providers:postgresql"]
    assert json.loads(provider.inputs["port"]) == 40123
    containers = [r for r in run.resources if r.type == "docker:index/container:Container"]
    [db] = [r for r in containers if r.inputs["name"] == "oduflow-db"]
    assert [p["external"] for p in db.inputs["ports"]] == [config.platform.postgres_port]


# --------------------------------------------------------------------------------------------
# The tunnel process (fake ssh)


def test_open_tunnel_runs_ssh_waits_for_the_port_and_closes_it(fake_ssh: FakeSsh) -> None:
    with tunnel.open_tunnel(TARGET, 5432) as opened:
        port = opened.local_port
        assert port != 5432  # a free local port, not the remote one
        assert tunnel.port_accepts("127.0.0.1", port)
        [call] = fake_ssh.calls()
        assert call["argv"] == tunnel.tunnel_command(TARGET, port, 5432)[1:]
        pid = call["pid"]
    assert not tunnel.port_accepts("127.0.0.1", port)
    assert tunnel.port_free(port)
    assert not pid_alive(pid)


def test_the_preferred_port_is_used_when_free(fake_ssh: FakeSsh) -> None:
    preferred = tunnel.free_port()
    with tunnel.open_tunnel(TARGET, 5432, preferred=preferred) as opened:
        assert opened.local_port == preferred


def test_a_busy_preferred_port_is_replaced_unless_strict(fake_ssh: FakeSsh) -> None:
    with listening_socket() as busy:
        taken = busy.getsockname()[1]
        with tunnel.open_tunnel(TARGET, 5432, preferred=taken) as opened:
            assert opened.local_port != taken
        with pytest.raises(tunnel.TunnelError, match=f"127.0.0.1:{taken}, and something already listens there"):
            tunnel.open_tunnel(TARGET, 5432, preferred=taken, strict=True)
    assert len(fake_ssh.calls()) == 1  # strict refused before running ssh


def test_ssh_failure_is_one_line_with_its_reason(fake_ssh: FakeSsh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "fail")
    with pytest.raises(tunnel.TunnelError) as info:
        tunnel.open_tunnel(TARGET, 5432)
    message = str(info.value)
    assert "\n" not in message
    assert "Connection refused" in message and "ssh -N" in message
    assert len(fake_ssh.calls()) == 1  # ssh itself failed: not retried


def test_a_tunnel_that_never_opens_times_out_and_is_stopped(fake_ssh: FakeSsh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "silent")
    with pytest.raises(tunnel.TunnelError, match=r"did not open within 0\.5 s"):
        tunnel.open_tunnel(TARGET, 5432, strict=True, timeout=0.5)
    [call] = fake_ssh.calls()
    assert not pid_alive(call["pid"])


def test_no_ssh_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tunnel.TunnelError, match="`ssh` client is not on PATH"):
        tunnel.open_tunnel(TARGET, 5432)
