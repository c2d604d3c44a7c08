"""The operations CLI and the Automation API layer, against a fake `pulumi` executable.

tests/fakes/pulumi answers the calls `pulumi.automation` makes (version, stack select/init, up,
preview with its gRPC event log, stack output/history, config set-all/get) and records each call,
so these tests check the exact command lines: stack names, policy-pack flags and targets.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import automation, cli, ports
from oduflow_iac.automation import DockerResult, Lifecycle, RunResult
from oduflow_iac.config import load_config
from oduflow_iac.errors import PulumiCliMissing, UsageError
from oduflow_iac.policy_config import render_policy_config
from oduflow_iac.stack_settings import read_stack_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "tests" / "fakes" / "pulumi"
TEAM1_URN = "urn:pulumi:local::oduflow::oduflow:index:TeamStack::team-1"

BACKUP = """
[backup]
bucket_prefix = "acme-odoo"
region = "eu-west-1"
"""


@dataclass
class FakeCli:
    log: Path
    state: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def argvs(self) -> list[list[str]]:
        return [[a for a in c["argv"] if a != "--non-interactive"] for c in self.calls() if not c.get("end")]

    def engine(self, op: str | None = None) -> list[dict[str, Any]]:
        ops = (op,) if op else automation.OPERATIONS
        out = []
        for c in self.calls():
            argv = [a for a in c["argv"] if a != "--non-interactive"]
            if argv and argv[0] in ops and not c.get("end"):
                out.append({**c, "args": argv})
        return out


def disable_login(text: str) -> str:
    login = 'branch = "feature/login"\ntemplate = "default"\n'
    return text.replace(login, login + "disabled = true\n")


def flag_values(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def stack_of(args: list[str]) -> str:
    return flag_values(args, "--stack")[-1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project: Pulumi.yaml, the stack files, the example config, a policy pack dir."""
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    for name in ("local", "shared", "team-1"):
        shutil.copy(ROOT / "stacks" / f"Pulumi.{name}.yaml", root / "stacks")
    (root / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "oduflow.toml", root / "examples" / "oduflow.toml")
    (root / "policies").mkdir()
    (root / "policies" / "PulumiPolicy.yaml").write_text("runtime: python\n")
    return root


@pytest.fixture
def config_file(project: Path) -> Path:
    return project / "examples" / "oduflow.toml"


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "pulumi"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    fake = FakeCli(tmp_path / "pulumi-calls.jsonl", tmp_path / "pulumi-state.json")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(fake.log))
    monkeypatch.setenv("FAKE_PULUMI_STATE", str(fake.state))
    for name in ("FAKE_PULUMI_FAIL", "FAKE_PULUMI_SLEEP", "FAKE_PULUMI_SECRETS", "FAKE_PULUMI_STEPS"):
        monkeypatch.delenv(name, raising=False)
    return fake


@pytest.fixture
def no_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def run_cli(project: Path, *args: str) -> int:
    return cli.main([*args, "--project-dir", str(project)])


# --------------------------------------------------------------------------------------------
# No Pulumi CLI


@pytest.mark.parametrize(
    "args",
    [
        ["up"],
        ["preview", "--team", "1"],
        ["destroy"],
        ["refresh"],
        ["up", "--all"],
        ["env", "create", "--team", "1", "--branch", "feature/new"],
        ["env", "disable", "--team", "1", "--branch", "feature/login"],
        ["env", "delete", "--team", "1", "--branch", "feature/login"],
        ["template", "init", "--team", "1", "--name", "t2", "--image", "odoo:17.0"],
        ["cleanup", "--team", "1", "--gone-branches", "feature/login"],
    ],
)
def test_without_the_cli_every_deploying_command_exits_2_with_the_install_hint(
    no_cli: None, project: Path, config_file: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    before = config_file.read_bytes()
    assert run_cli(project, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert err.startswith("error: the Pulumi CLI (`pulumi`) is not on PATH")
    assert "curl -fsSL https://get.pulumi.com | sh" in err
    assert "Traceback" not in err
    assert config_file.read_bytes() == before  # nothing edited before the check


def test_require_pulumi_cli_raises_the_typed_error(no_cli: None) -> None:
    with pytest.raises(PulumiCliMissing, match=r"get\.pulumi\.com"):
        automation.require_pulumi_cli()


def test_no_deploy_edits_work_without_the_cli(no_cli: None, project: Path, config_file: Path) -> None:
    assert run_cli(project, "env", "create", "--team", "1", "--branch", "feature/new", "--no-deploy") == 0
    config = load_config(config_file)
    assert "feature/new" in [e.branch for e in config.team["1"].environments]


# --------------------------------------------------------------------------------------------
# preview / up / destroy / refresh


def test_preview_selects_the_stack_in_the_project_and_passes_the_policy_pack(
    fake_cli: FakeCli, project: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(project, "preview", "--stack", "local") == 0
    argvs = fake_cli.argvs()
    assert argvs[0] == ["version"]
    assert ["stack", "select", "--stack", "local"] in argvs
    [call] = fake_cli.engine("preview")
    args = call["args"]
    assert call["cwd"] == str(project)  # the real Pulumi.yaml program runs
    assert stack_of(args) == "local"
    assert flag_values(args, "--policy-pack") == [str(project / "policies")]
    [config_path] = flag_values(args, "--policy-pack-config")
    rendered = json.loads(call["policy_pack_configs"][config_path])
    assert rendered == json.loads(json.dumps(render_policy_config(load_config(config_file))))
    assert flag_values(args, "--exec-kind") == ["auto.local"]
    assert flag_values(args, "--event-log")[0].startswith("tcp://127.0.0.1:")
    assert "--target" not in args
    out = capsys.readouterr().out
    assert "Previewing update (local)" in out  # the engine's output is streamed
    assert "preview local: 3 create, 12 same, 1 update" in out


def test_up_refreshes_the_port_lock_and_deploys_with_policies(
    fake_cli: FakeCli, project: Path, config_file: Path
) -> None:
    lock = ports.lock_path_for(config_file)
    assert not lock.exists()
    assert run_cli(project, "up") == 0
    assert ports.read_lock(lock) == ports.lock_from(load_config(config_file))
    [call] = fake_cli.engine("up")
    assert call["args"][:3] == ["up", "--yes", "--skip-preview"]
    assert stack_of(call["args"]) == "local"
    assert flag_values(call["args"], "--policy-pack") == [str(project / "policies")]
    # The Automation API reads the result back.
    assert ["stack", "history", "--json", "--show-secrets", "--page-size", "1", "--page", "1", "--stack", "local"] in (
        fake_cli.argvs()
    )


def test_a_new_stack_is_created(fake_cli: FakeCli, project: Path) -> None:
    assert run_cli(project, "up") == 0
    argvs = fake_cli.argvs()
    assert argvs.index(["stack", "select", "--stack", "local"]) < argvs.index(["stack", "init", "local"])


def test_team_in_the_one_stack_layout_targets_the_team_component(fake_cli: FakeCli, project: Path) -> None:
    assert run_cli(project, "up", "--team", "1") == 0
    [call] = fake_cli.engine("up")
    assert stack_of(call["args"]) == "local"
    assert flag_values(call["args"], "--target") == [TEAM1_URN]
    assert "--target-dependents" in call["args"]


def test_team_in_the_split_layout_runs_the_team_stack(fake_cli: FakeCli, project: Path) -> None:
    assert run_cli(project, "preview", "--stack", "shared", "--team", "1") == 0
    [call] = fake_cli.engine("preview")
    assert stack_of(call["args"]) == "team-1"
    assert "--target" not in call["args"]


def test_team_stack_missing_is_refused(fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(project, "up", "--stack", "shared", "--team", "2") == 2
    err = capsys.readouterr().err
    assert "stack team-2 has no config file" in err and "up --all" in err
    assert fake_cli.engine() == []


def test_unknown_team_is_refused(fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(project, "up", "--team", "9") == 2
    err = capsys.readouterr().err
    assert err == "error: " + f"{project / 'examples' / 'oduflow.toml'}: team '9' is not defined (teams: 1, 2)\n"
    assert fake_cli.engine() == []


@pytest.mark.parametrize("op", ["destroy", "refresh"])
def test_destroy_and_refresh_take_no_policy_pack(fake_cli: FakeCli, project: Path, op: str) -> None:
    assert run_cli(project, "up") == 0
    assert run_cli(project, op) == 0
    [call] = fake_cli.engine(op)
    assert "--policy-pack" not in call["args"] and "--policy-pack-config" not in call["args"]
    assert ["stack", "init", "local"] in fake_cli.argvs()
    # destroy/refresh select an existing stack; they never create one
    assert fake_cli.argvs().count(["stack", "init", "local"]) == 1


def test_destroy_of_a_missing_stack_fails_with_exit_1(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(project, "destroy") == 1
    out = capsys.readouterr().out
    assert "destroy local: FAILED: stack local does not exist" in out
    assert ["stack", "init", "local"] not in fake_cli.argvs()


def test_no_policy_drops_the_policy_flags(fake_cli: FakeCli, project: Path) -> None:
    assert run_cli(project, "preview", "--no-policy") == 0
    [call] = fake_cli.engine("preview")
    assert "--policy-pack" not in call["args"]


def test_an_engine_failure_is_exit_1_with_the_engine_message(
    fake_cli: FakeCli, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "up:local")
    assert run_cli(project, "up") == 1
    captured = capsys.readouterr()
    assert "up local: FAILED: up failed; fake failure of up on local" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_config_other_than_the_stacks_is_refused_for_deployments(
    fake_cli: FakeCli, project: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.toml"
    shutil.copy(config_file, other)
    assert run_cli(project, "up", "--config", str(other)) == 2
    assert "is not the config file of stack local" in capsys.readouterr().err
    assert run_cli(project, "env", "create", "--config", str(other), "--team", "1", "--branch", "x") == 2
    assert other.read_bytes() == config_file.read_bytes()
    assert fake_cli.engine() == []


def test_command_error_message_keeps_the_engine_error_lines() -> None:
    text = "\n code: 255\n stdout: Updating\n    error: boom\n stderr: error: update failed\n"
    assert automation.command_error_message(Exception(text)) == "update failed; boom"
    assert automation.command_error_message(Exception("\n code: 1\n stdout: \n stderr: panic")) == "panic"


# --------------------------------------------------------------------------------------------
# up --all: shared first, then the team stacks in parallel


def test_up_all_deploys_shared_first_then_every_team_and_creates_missing_team_stacks(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(project, "up", "--all") == 0
    ups = [stack_of(c["args"]) for c in fake_cli.engine("up")]
    assert ups[0] == "shared"
    assert sorted(ups[1:]) == ["team-1", "team-2"]
    # team-2 had no stack: it was created with the per-team settings, through the CLI
    set_all = [a for a in fake_cli.argvs() if a[:2] == ["config", "set-all"]]
    assert len(set_all) == 1 and stack_of(set_all[0]) == "team-2"
    created = read_stack_settings("team-2", project)
    assert created.get("layout") == "team" and created.get("team") == "2"
    assert created.get("sharedStack") == "organization/oduflow/shared"
    assert created.get("configFile") == "examples/oduflow.toml"
    out = capsys.readouterr().out
    assert "[team-1] Updating (team-1)" in out  # each team's output is prefixed
    assert "summary:" in out and "up team-2:" in out


def test_up_all_reports_a_failed_team_and_leaves_the_others_deployed(
    fake_cli: FakeCli, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "up:team-1")
    assert run_cli(project, "up", "--all") == 1
    out = capsys.readouterr().out
    summary = out[out.index("summary:") :]
    assert "up shared: " in summary and "up team-2: " in summary
    assert "up team-1: FAILED: up failed; fake failure of up on team-1" in summary
    assert "1 of 3 stacks failed: team-1" in summary
    state = json.loads(fake_cli.state.read_text())
    assert state["stacks"]["team-2"]["history"]  # deployed despite team-1


def test_up_all_stops_when_the_shared_stack_fails(
    fake_cli: FakeCli, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "up:shared")
    assert run_cli(project, "up", "--all") == 1
    assert [stack_of(c["args"]) for c in fake_cli.engine("up")] == ["shared"]
    assert "skipped: the shared stack failed" in capsys.readouterr().out


def test_destroy_all_destroys_the_teams_before_shared(fake_cli: FakeCli, project: Path) -> None:
    assert run_cli(project, "up", "--all") == 0
    assert run_cli(project, "destroy", "--all") == 0
    destroys = [stack_of(c["args"]) for c in fake_cli.engine("destroy")]
    assert destroys[-1] == "shared" and sorted(destroys[:-1]) == ["team-1", "team-2"]


def test_team_stacks_run_at_most_parallel_at_once(
    fake_cli: FakeCli, project: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = config_file.read_text()
    for n in range(3, 8):
        start = 50000 + n * 100
        text += f'\n[team.{n}]\nhostname = "team-{n}.localhost"\nauth_token = "tok-{n}"\n'
        text += f"port_range = [{start}, {start + 50}]\n"
    config_file.write_text(text)
    monkeypatch.setenv("FAKE_PULUMI_SLEEP", "0.5")
    assert run_cli(project, "preview", "--all", "--parallel", "3", "--no-policy") == 0
    running = peak = 0
    for call in fake_cli.calls():
        argv = [a for a in call["argv"] if a != "--non-interactive"]
        if argv[0] != "preview" or stack_of(argv) == "shared":
            continue
        running += -1 if call.get("end") else 1
        peak = max(peak, running)
    assert 1 < peak <= 3


def test_all_needs_the_shared_layout(fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(project, "up", "--all", "--stack", "local") == 2
    assert "not shared (pass --stack shared)" in capsys.readouterr().err


def test_team_and_all_are_exclusive(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(project, "up", "--all", "--team", "1")
    assert exit_info.value.code == 2


# --------------------------------------------------------------------------------------------
# Environment lifecycle through the CLI


def test_env_create_edits_locks_deploys_the_team_and_prints_the_url(
    fake_cli: FakeCli, project: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = config_file.read_text()
    assert run_cli(project, "env", "create", "--team", "1", "--branch", "feature/new") == 0
    after = config_file.read_text()
    block = '\n[[team.1.environments]]\nbranch = "feature/new"\ntype = "development"\ntemplate = "default"\n'
    assert after.replace(block, "", 1) == before
    config = load_config(config_file)
    port = config.environment_port("1", "feature/new")
    assert ports.read_lock(ports.lock_path_for(config_file))["1"]["feature/new"] == port
    [call] = fake_cli.engine("up")
    assert flag_values(call["args"], "--target") == [TEAM1_URN]
    out = capsys.readouterr().out
    assert "url:       http://feature-new.team-a.localhost" in out
    assert f"host port: {port} (http://127.0.0.1:{port})" in out


def test_env_create_refusals_leave_the_file_untouched(
    fake_cli: FakeCli, project: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = config_file.read_bytes()
    assert run_cli(project, "env", "create", "--team", "1", "--branch", "main") == 2
    assert "already has an environment for branch 'main'" in capsys.readouterr().err
    assert run_cli(project, "env", "create", "--team", "1", "--branch", "x", "--template", "nope") == 2
    err = capsys.readouterr().err
    assert "edit refused" in err and "template 'nope' is not defined" in err
    assert run_cli(project, "env", "create", "--team", "7", "--branch", "x") == 2
    assert "team '7' is not defined" in capsys.readouterr().err
    assert config_file.read_bytes() == before
    assert fake_cli.engine() == []


def test_env_disable_and_enable(fake_cli: FakeCli, project: Path, config_file: Path) -> None:
    before = config_file.read_text()
    assert run_cli(project, "env", "disable", "--team", "1", "--branch", "feature/login") == 0
    assert load_config(config_file).team["1"].environments[2].disabled
    assert config_file.read_text() == disable_login(before)
    assert run_cli(project, "env", "enable", "--team", "1", "--branch", "feature/login") == 0
    assert config_file.read_text() == before
    assert len(fake_cli.engine("up")) == 2


def test_env_delete_of_an_unknown_branch_is_refused(
    fake_cli: FakeCli, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(project, "env", "delete", "--team", "1", "--branch", "nope") == 2
    err = capsys.readouterr().err
    assert "team 1 has no environment for branch 'nope'" in err
    assert "(branches: main, staging, feature/login, feature/invoicing)" in err


def test_env_delete_removes_and_targets_the_environment(fake_cli: FakeCli, project: Path, config_file: Path) -> None:
    assert run_cli(project, "env", "delete", "--team", "1", "--branch", "feature/login") == 0
    assert "feature/login" not in [e.branch for e in load_config(config_file).team["1"].environments]
    assert "feature/login" not in ports.read_lock(ports.lock_path_for(config_file))["1"]
    [call] = fake_cli.engine("up")
    env_urn = "urn:pulumi:local::oduflow::oduflow:index:TeamStack$oduflow:index:OdooEnvironment::team-1-feature-login"
    assert flag_values(call["args"], "--target") == [TEAM1_URN, env_urn]


def test_production_delete_without_backups_is_refused(
    fake_cli: FakeCli, project: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = config_file.read_bytes()
    assert run_cli(project, "env", "delete", "--team", "1", "--branch", "main") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {config_file}: team.1: ")
    assert "is production and no [backup] is configured" in err and "--force" in err
    assert config_file.read_bytes() == before
    assert fake_cli.engine() == []


def test_production_delete_backs_up_then_lifts_protect_then_removes(
    fake_cli: FakeCli, project: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text(config_file.read_text() + BACKUP)
    docker_calls: list[tuple[list[str], dict[str, str]]] = []

    def fake_docker(args: list[str], env: Mapping[str, str]) -> DockerResult:
        docker_calls.append((args, dict(env)))
        return DockerResult(0, "backed up oduflow_1_main")

    monkeypatch.setattr(automation, "run_docker", fake_docker)
    assert run_cli(project, "env", "delete", "--team", "1", "--branch", "main") == 0
    assert docker_calls == [
        (["exec", "oduflow-1-backup", "/bin/sh", "/oduflow/backup.sh"], {"DOCKER_HOST": "unix:///var/run/docker.sock"})
    ]
    ups = fake_cli.engine("up")
    assert len(ups) == 2  # lift protect, then remove
    assert "main" not in [e.branch for e in load_config(config_file).team["1"].environments]


def test_production_delete_with_a_failed_backup_changes_nothing(
    fake_cli: FakeCli,
    project: Path,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config_file.write_text(config_file.read_text() + BACKUP)
    before = config_file.read_bytes()
    monkeypatch.setattr(automation, "run_docker", lambda args, env: DockerResult(1, "backup of oduflow_1_main FAILED"))
    assert run_cli(project, "env", "delete", "--team", "1", "--branch", "main") == 1
    out = capsys.readouterr().out
    assert "the backup job failed (exit 1); nothing was changed" in out
    assert config_file.read_bytes() == before
    assert fake_cli.engine() == []


def test_template_commands(
    fake_cli: FakeCli, project: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init = ["template", "init", "--team", "2", "--name", "v17", "--image", "odoo:17.0", "--modules", "base,web,sale"]
    assert run_cli(project, *init) == 0
    template = load_config(config_file).team["2"].templates["v17"]
    assert template.odoo_image == "odoo:17.0" and template.modules == ["base", "web", "sale"]
    capsys.readouterr()
    assert run_cli(project, "template", "list", "--team", "2") == 0
    out = capsys.readouterr().out
    assert "v17" in out and "not used" in out and "v18" in out and "used by: main, staging" in out
    assert run_cli(project, "template", "delete", "--team", "2", "--name", "v18") == 2
    assert f"error: {config_file}: team.2.templates.v18: used by main, staging" in capsys.readouterr().err
    assert run_cli(project, "template", "delete", "--team", "2", "--name", "v17") == 0
    assert "v17" not in load_config(config_file).team["2"].templates
    assert len(fake_cli.engine("up")) == 2


def test_cleanup_removes_gone_branches_but_never_a_protected_one(
    fake_cli: FakeCli, project: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(project, "cleanup", "--team", "1", "--gone-branches", "feature/login,main,ghost", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would remove 'feature/login' (branch is gone)" in out
    assert "kept 'main' (branch is gone): protected, use `env delete`" in out
    assert "no environment for gone branch 'ghost'" in out
    assert fake_cli.engine() == []
    assert run_cli(project, "cleanup", "--team", "1", "--gone-branches", "feature/login,main") == 0
    branches = [e.branch for e in load_config(config_file).team["1"].environments]
    assert "feature/login" not in branches and "main" in branches
    assert len(fake_cli.engine("up")) == 1


# --------------------------------------------------------------------------------------------
# The Lifecycle API with injected deploy and docker


class Recorder:
    def __init__(self, path: Path, ok: bool = True) -> None:
        self.path = path
        self.ok = ok
        self.calls: list[tuple[str, tuple[str, ...], str]] = []

    def __call__(self, config: Any, team_id: str, extra: Any) -> RunResult:
        self.calls.append((team_id, tuple(extra), self.path.read_text()))
        return RunResult("local", "up", self.ok, "" if self.ok else "boom")


def test_protected_delete_deploys_protect_false_before_the_removal(config_file: Path) -> None:
    config_file.write_text(config_file.read_text() + BACKUP)
    deploy = Recorder(config_file)
    docker_calls: list[list[str]] = []

    def docker(args: list[str], env: Mapping[str, str]) -> DockerResult:
        docker_calls.append(args)
        return DockerResult(0, "")

    settings = read_stack_settings("local", config_file.parent.parent)
    lifecycle = Lifecycle(config_file, deploy=deploy, settings=settings, docker=docker, docker_host="ssh://ops@db")
    outcome = lifecycle.delete_environment("2", "main")
    assert outcome.exit_code == 0
    assert docker_calls == [["exec", "oduflow-2-backup", "/bin/sh", "/oduflow/backup.sh"]]
    (team1, extra1, text1), (team2, extra2, text2) = deploy.calls
    assert team1 == team2 == "2"
    assert "protect = false" in text1 and 'branch = "main"\ntype = "production"' in text1
    assert extra1 == ()
    assert 'template = "v18"\nmemory_mb = 3072\nprotect = false' in text1
    assert '[[team.2.environments]]\nbranch = "main"' not in text2
    assert extra2 == ("urn:pulumi:local::oduflow::oduflow:index:TeamStack$oduflow:index:OdooEnvironment::team-2-main",)
    assert any("step 1/2" in line for line in outcome.lines)


def test_protected_delete_stops_when_lifting_protect_fails(config_file: Path) -> None:
    deploy = Recorder(config_file, ok=False)
    lifecycle = Lifecycle(config_file, deploy=deploy)
    outcome = lifecycle.delete_environment("1", "main", force=True)
    assert outcome.exit_code == 1
    assert len(deploy.calls) == 1
    config = load_config(config_file)
    main = config.team["1"].environments[0]
    assert main.branch == "main" and main.protect is False  # still there, to be deleted on a rerun
    # The rerun deploys `protect = false` again (it may never have reached the state), then removes.
    deploy.ok = True
    outcome = lifecycle.delete_environment("1", "main", force=True)
    assert outcome.exit_code == 0
    assert len(deploy.calls) == 3
    team1 = [[e["branch"] for e in tomllib.loads(text)["team"]["1"]["environments"]] for _, _, text in deploy.calls]
    assert "main" in team1[1] and "main" not in team1[2]


def test_protected_delete_without_deploy_is_two_steps(config_file: Path) -> None:
    lifecycle = Lifecycle(config_file)
    outcome = lifecycle.delete_environment("1", "main", force=True)
    assert any("then `env delete` again" in line for line in outcome.lines)
    assert load_config(config_file).team["1"].environments[0].protect is False
    outcome = lifecycle.delete_environment("1", "main", force=True)
    assert "main" not in [e.branch for e in load_config(config_file).team["1"].environments]


def test_production_with_backup_false_is_refused_without_force(config_file: Path) -> None:
    text = config_file.read_text().replace(
        'branch = "main"\ntype = "production"\ntemplate = "default"\n',
        'branch = "main"\ntype = "production"\ntemplate = "default"\nbackup = false\n',
    )
    config_file.write_text(text + BACKUP)
    with pytest.raises(UsageError, match="backup = false"):
        Lifecycle(config_file).delete_environment("1", "main")


def test_cleanup_reports_and_removes_leftover_containers(config_file: Path) -> None:
    config_file.write_text(disable_login(config_file.read_text()))
    calls: list[list[str]] = []

    def docker(args: list[str], env: Mapping[str, str]) -> DockerResult:
        calls.append(args)
        if args[0] == "ps":
            return DockerResult(0, "oduflow-1-main-odoo\noduflow-1-feature-login-odoo\noduflow-1-old-branch-odoo\n")
        return DockerResult(0, "")

    lifecycle = Lifecycle(config_file, docker=docker)
    outcome = lifecycle.cleanup("1", orphans=True)
    assert "leftover container: oduflow-1-feature-login-odoo" in outcome.lines
    assert "leftover container: oduflow-1-old-branch-odoo" in outcome.lines
    assert calls[0][:2] == ["ps", "-a"] and "label=oduflow.team=1" in calls[0]
    outcome = lifecycle.cleanup("1", remove_orphans=True)
    assert calls[-1] == ["rm", "-f", "oduflow-1-feature-login-odoo", "oduflow-1-old-branch-odoo"]
    assert outcome.exit_code == 0


def test_cleanup_remove_disabled(config_file: Path) -> None:
    config_file.write_text(disable_login(config_file.read_text()))
    deploy = Recorder(config_file)
    settings = read_stack_settings("local", config_file.parent.parent)
    outcome = Lifecycle(config_file, deploy=deploy, settings=settings).cleanup("1", remove_disabled=True)
    assert outcome.exit_code == 0
    assert "feature/login" not in [e.branch for e in load_config(config_file).team["1"].environments]
    [(team, extra, _)] = deploy.calls
    assert team == "1" and extra[0].endswith("::team-1-feature-login")


def test_stack_secrets_reads_the_stack_config(
    fake_cli: FakeCli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_SECRETS", json.dumps({"oduflow-secrets:team1-token": "s3cret"}))
    assert run_cli(project, "up") == 0  # creates the stack
    resolve = automation.stack_secrets(project, "local")
    assert resolve("team1-token") == "s3cret"
    assert resolve("team2-token") is None


# --------------------------------------------------------------------------------------------
# Selections


def test_select_per_layout(project: Path) -> None:
    local = read_stack_settings("local", project)
    assert automation.select(local).targets == ()
    assert automation.select(local, "2").targets == ("urn:pulumi:local::oduflow::oduflow:index:TeamStack::team-2",)
    shared = read_stack_settings("shared", project)
    selection = automation.select(shared, "1")
    assert selection.stack == "team-1" and selection.targets == ()
    team1 = read_stack_settings("team-1", project)
    assert automation.select(team1).team == "1"
    with pytest.raises(UsageError, match="deploys team 1, not team 2"):
        automation.select(team1, "2")


# --------------------------------------------------------------------------------------------
# The webhook example


def load_webhook() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("webhook_create_env", ROOT / "examples" / "webhook_create_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_webhook_resolves_the_team_by_token_creates_deploys_and_prints_the_url(
    fake_cli: FakeCli,
    project: Path,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ODUFLOW_SECRET_TEAM2_TOKEN", "team-b-token")
    webhook = load_webhook()
    args = ["--branch", "feature/hook", "--project-dir", str(project), "--json"]
    assert webhook.main([*args, "--token", "team-b-token", "--host", "team-a.localhost"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["team"] == "2"  # the token wins over the Host header
    assert result["url"] == "http://feature-hook.team-b.localhost" and result["created"] and result["deployed"]
    assert "feature/hook" in [e.branch for e in load_config(config_file).team["2"].environments]
    [call] = fake_cli.engine("up")
    assert flag_values(call["args"], "--target") == ["urn:pulumi:local::oduflow::oduflow:index:TeamStack::team-2"]
    # a second delivery (a push) pins the repositories' new heads and deploys; a third, with
    # nothing moved, changes nothing
    class Heads:
        def head(self, addon: Any) -> str:
            return "c" * 40

        def modules(self, addon: Any, commit: str) -> dict[str, Any]:
            return {}

    monkeypatch.setattr(webhook, "make_remote", lambda secrets: Heads())
    before = config_file.read_bytes()
    assert webhook.main([*args, "--token", "team-b-token"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["created"] is False and second["updated"] is True and second["deployed"] is True
    lock = json.loads((config_file.parent / "oduflow.revisions.json").read_text())
    assert {r["commit"] for r in lock["teams"]["2"]["feature/hook"]["repos"].values()} == {"c" * 40}
    assert len(fake_cli.engine("up")) == 2
    assert webhook.main([*args, "--token", "team-b-token"]) == 0
    assert json.loads(capsys.readouterr().out)["updated"] is False
    assert config_file.read_bytes() == before and len(fake_cli.engine("up")) == 2


def test_webhook_refuses_an_unknown_token(
    fake_cli: FakeCli,
    project: Path,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ODUFLOW_SECRET_TEAM1_TOKEN", raising=False)
    monkeypatch.delenv("ODUFLOW_SECRET_TEAM2_TOKEN", raising=False)
    before = config_file.read_bytes()
    args = ["--branch", "x", "--project-dir", str(project), "--token", "nope", "--host", "team-a.localhost"]
    assert load_webhook().main(args) == 2
    err = capsys.readouterr().err
    assert "the token matches no team's auth_token" in err
    assert config_file.read_bytes() == before and fake_cli.engine() == []


def test_a_created_team_stack_names_the_shared_stack_like_the_existing_ones(fake_cli: FakeCli, project: Path) -> None:
    team1 = project / "stacks" / "Pulumi.team-1.yaml"
    team1.write_text(team1.read_text().replace("organization/oduflow/shared", "acme/oduflow/shared"))
    assert run_cli(project, "up", "--all") == 0
    assert read_stack_settings("team-2", project).get("sharedStack") == "acme/oduflow/shared"
