"""The command line: exit codes, one-line errors with no traceback, nothing written on failure."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac.cli import main
from tests.conftest import ROOT, SEED


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oduflow_iac.cli", *args], capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_validate_example_through_the_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--stack", "local", "--project-dir", str(ROOT)]) == 0
    out = capsys.readouterr().out
    assert "2 teams, 7 environments" in out
    assert "feature/login" in out and "50002" in out and "feature-login.team-a.localhost" in out


def test_config_error_is_one_line_exit_2_no_traceback(write_config: Callable[[str], Path]) -> None:
    path = write_config(SEED.replace("[50050, 50100]", "[50040, 50100]"))
    result = run_cli("validate", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr == f"error: {path}: team.2.port_range: [50040, 50100) overlaps team.1 [50000, 50050)\n"
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_usage_error_exit_2() -> None:
    result = run_cli("plan", "--format", "yaml")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_stack_exit_2() -> None:
    result = run_cli("validate", "--stack", "nope")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("stacks/Pulumi.nope.yaml: no such stack config (stack 'nope')")


def test_secrets_never_reach_an_error(write_config: Callable[[str], Path]) -> None:
    path = write_config(SEED.replace("token-team-b", "token-team-a"))
    result = run_cli("validate", "--config", str(path))
    assert result.returncode == 2 and "token-team-a" not in result.stderr


def test_lock_writes_the_port_lock_and_keeps_it(write_config: Callable[[str], Path]) -> None:
    path = write_config(SEED + '\n[[team.1.environments]]\nbranch = "main"\nodoo_image = "odoo:17.0"\n')
    assert main(["lock", "--config", str(path)]) == 0
    lock = path.with_name("oduflow.ports.json")
    assert '"main": 50000' in lock.read_text()
    before = lock.read_text()
    assert main(["lock", "--config", str(path)]) == 0
    assert lock.read_text() == before


@pytest.mark.parametrize(
    ("stack_yaml", "expected"),
    [
        (
            "config:\n  oduflow:configFile: examples/oduflow.toml\n  oduflow:layout: bogus\n",
            "oduflow:layout is 'bogus'; it must be one of all, server, shared, team",
        ),
        (
            "config:\n  oduflow:configFile: examples/oduflow.toml\n  oduflow:layout: team\n  oduflow:team: '9'\n",
            "oduflow:team is '9', not a team of",
        ),
        (
            "config:\n  oduflow:configFile: examples/oduflow.toml\n  oduflow:layout: team\n  oduflow:team: '1'\n",
            "oduflow:sharedStack is required by a team stack",
        ),
        ("config:\n  - a\n", "Pulumi.broken.yaml: config: must be a mapping of keys to values"),
    ],
)
def test_bad_stack_settings_are_one_line_errors(tmp_path: Path, stack_yaml: str, expected: str) -> None:
    import shutil

    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.broken.yaml").write_text(stack_yaml)
    result = run_cli("plan", "--stack", "broken", "--project-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
