"""Input that used to be dropped without a word or that contradicts itself is refused."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac.cli import main
from oduflow_iac.config import ConfigError, load_config
from oduflow_iac.odoo_conf import PLATFORM_OPTIONS
from oduflow_iac.stack_settings import undeclared_project_keys
from tests.conftest import ROOT, SEED

WriteConfig = Callable[..., Path]

TEMPLATE = '\n[team.1.templates.default]\nodoo_image = "odoo:17.0"\n'


def env(extra: str) -> str:
    return f'\n[[team.1.environments]]\nbranch = "main"\ntemplate = "default"\n{extra}\n'


@pytest.mark.parametrize("option", ["db_name", "dbfilter", "admin_passwd", "db_host", "db_user", "db_password"])
def test_protected_odoo_options_are_refused_not_dropped(write_config: WriteConfig, option: str) -> None:
    path = write_config(SEED + TEMPLATE + env(f'odoo_options = {{ {option} = ".*" }}'))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    (problem,) = exc.value.problems
    assert problem.key == f"team.1.environments[0].odoo_options.{option}"
    assert "is set by the platform" in problem.message and option in PLATFORM_OPTIONS


def test_other_odoo_options_are_kept(write_config: WriteConfig) -> None:
    config = load_config(write_config(SEED + TEMPLATE + env("odoo_options = { limit_time_real = 600 }")))
    assert config.team["1"].environments[0].odoo_options == {"limit_time_real": 600}


def test_template_of_another_odoo_version_than_the_image_is_refused(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(SEED + TEMPLATE + env('odoo_image = "odoo:18.0"')))
    (problem,) = exc.value.problems
    assert problem.key == "team.1.environments[0].odoo_image"
    assert "Odoo 18.0" in problem.message and "Odoo 17.0" in problem.message


def test_template_and_image_of_one_version_are_fine(write_config: WriteConfig) -> None:
    config = load_config(write_config(SEED + TEMPLATE + env('odoo_image = "odoo:17.0-20240601"')))
    assert config.env_image("1", config.team["1"].environments[0]) == "odoo:17.0-20240601"


def test_env_create_takes_a_template_or_an_image_not_both(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(SEED + TEMPLATE)
    before = path.read_text(encoding="utf-8")
    args = ["env", "create", "--config", str(path), "--no-deploy", "--branch", "x", "--template", "default"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--image", "odoo:18.0"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == before


def test_undeclared_project_keys_pure() -> None:
    declared = ["oduflow:configFile", "oduflow:dockerHost"]
    found = undeclared_project_keys(
        ["oduflow:dockerhost", "oduflow:configFile", "docker:host", "oduflow-secrets:x", "oduflow:zzz"],
        declared,
        "oduflow",
    )
    assert [k for k, _ in found] == ["oduflow:dockerhost", "oduflow:zzz"]
    assert "did you mean `oduflow:dockerHost`?" in found[0][1]


def test_a_stack_file_key_typo_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(ROOT / "examples" / "oduflow.toml", tmp_path / "oduflow.toml")
    (tmp_path / "stacks").mkdir()
    stack_file = tmp_path / "stacks" / "Pulumi.local.yaml"
    stack_file.write_text("config:\n  oduflow:configFile: oduflow.toml\n  oduflow:dockerhost: unix:///x\n")
    assert main(["plan", "--project-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {stack_file}: config.oduflow:dockerhost: not a key Pulumi.yaml declares; "
        "did you mean `oduflow:dockerHost`?\n"
    )


def test_a_named_stack_must_exist_even_with_a_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    example = str(ROOT / "examples" / "oduflow.toml")
    assert main(["validate", "--stack", "nope", "--config", example, "--project-dir", str(ROOT)]) == 2
    assert "Pulumi.nope.yaml" in capsys.readouterr().err
    assert main(["validate", "--config", example]) == 0
