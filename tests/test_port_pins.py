"""A pinned port never silently takes the locked port of another environment."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from oduflow_iac import ports
from oduflow_iac.cli import main
from oduflow_iac.config import ConfigError, load_config
from tests.conftest import EXAMPLE


def test_pin_collisions_pure() -> None:
    branches = ["main", "feature/login", "dev"]
    locked = {"main": 50000, "feature/login": 50002, "dev": 50001}
    assert ports.pin_collisions(branches, {"feature/login": 50000}, locked) == [("feature/login", 50000, "main")]
    # Its own locked port, a free port, a holder that is pinned elsewhere, a holder gone from the file.
    assert ports.pin_collisions(branches, {"feature/login": 50002}, locked) == []
    assert ports.pin_collisions(branches, {"feature/login": 50010}, locked) == []
    assert ports.pin_collisions(branches, {"feature/login": 50000, "main": 50005}, locked) == []
    assert ports.pin_collisions(["feature/login"], {"feature/login": 50000}, locked) == []


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLE, tmp_path / "oduflow.toml")
    shutil.copy(ports.lock_path_for(EXAMPLE), tmp_path / "oduflow.ports.json")
    path = tmp_path / "oduflow.toml"
    text = path.read_text(encoding="utf-8")
    pinned = text.replace('branch = "feature/login"\n', 'branch = "feature/login"\nport = 50000\n')
    path.write_text(pinned, encoding="utf-8")
    return path


def test_pin_on_a_locked_port_is_an_error_naming_both(example_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = ports.lock_path_for(example_copy)
    before = lock.read_text(encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(example_copy)
    (problem,) = exc.value.problems
    assert problem.file == str(example_copy)
    assert problem.key.endswith(".port") and "'main'" in problem.message and "--move" in problem.message
    for command in (["validate"], ["lock"]):
        assert main([*command, "--config", str(example_copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and all("50000" in line and "'main'" in line for line in err.splitlines())
    assert lock.read_text(encoding="utf-8") == before  # production kept its port


def test_lock_move_moves_the_holder_and_says_so(example_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", "--move", "--config", str(example_copy)]) == 0
    out = capsys.readouterr().out
    assert "team 1 main: port 50000 -> " in out and "team 1 feature/login: port 50002 -> 50000" in out
    config = load_config(example_copy)
    assert config.environment_port("1", "feature/login") == 50000
    assert config.environment_port("1", "main") != 50000


def test_two_equal_pins_are_an_error(example_copy: Path) -> None:
    text = example_copy.read_text(encoding="utf-8")
    example_copy.write_text(text.replace('branch = "main"\n', 'branch = "main"\nport = 50000\n', 1), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(example_copy)
    assert any("already pinned by team.1.environments[" in p.message for p in exc.value.problems)
