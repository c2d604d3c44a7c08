"""Config messages: one key-path style, no pydantic wording, "did you mean", the file always named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac.cli import main
from oduflow_iac.config import ConfigError, load_config
from oduflow_iac.config.load import key_path, known_keys
from tests.conftest import SEED

WriteConfig = Callable[..., Path]

ENV = '\n[[team.1.environments]]\nbranch = "main"\nodoo_image = "odoo:17.0"\n'

# Wording of pydantic that must never reach a user.
PYDANTIC_WORDS = ("Input should", "Tuple should", "validation error", "after validation", "type=", "pydantic")


def messages(write_config: WriteConfig, text: str) -> list[str]:
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    return [line.removeprefix(f"{path}: ") for line in lines]


def test_key_path_style() -> None:
    assert key_path(["team", "1", "environments", 2, "branch"]) == "team.1.environments[2].branch"
    assert key_path(["organisation", "addons", 0, "url"]) == "organisation.addons[0].url"


def test_known_keys_follow_tables_lists_and_maps() -> None:
    assert "type" in known_keys(["team", "1", "environments", 0])
    assert "odoo_image" in known_keys(["team", "1", "templates", "default"])
    assert "team" in known_keys([]) and "server" in known_keys([])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SEED + ENV + 'tpye = "staging"\n', "team.1.environments[0].tpye: unknown key; did you mean `type`?"),
        (SEED + "\n[teams.3]\n", "teams: unknown key; did you mean `team`?"),
        (SEED.replace("port_range", "port_rang", 1), "team.1.port_rang: unknown key; did you mean `port_range`?"),
        (SEED + "\n[platform]\npostgres_imag = 'postgres:16.4'\n", "platform.postgres_imag: unknown key; did you mean"),
        (SEED + "\n[platform]\nzzz = 1\n", "platform.zzz: unknown key; see docs/configuration.md"),
    ],
)
def test_misspelt_keys_get_a_suggestion(write_config: WriteConfig, text: str, expected: str) -> None:
    found = messages(write_config, text)
    assert any(line.startswith(expected) for line in found), found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SEED.replace("[50000, 50050]", "[50000, 50050, 50100]"), "team.1.port_range: must be [start, end]"),
        (SEED.replace("[50000, 50050]", '"50000-50050"'), "team.1.port_range: must be [start, end]"),
        (SEED.replace("[50000, 50050]", "[50000]"), "team.1.port_range: must be [start, end]"),
        (SEED.replace("[50000, 50050]", '[50000, "x"]'), "team.1.port_range[1]: must be an integer (found a string)"),
        (SEED + ENV + "cpu = 0\n", "team.1.environments[0].cpu: must be greater than 0"),
        (SEED + ENV + 'workers = "2"\n', "team.1.environments[0].workers: must be an integer (found a string)"),
        (SEED + ENV + 'backup = "off"\n', "team.1.environments[0].backup: must be true or false (found a string)"),
        (SEED + ENV + "networks = 'x'\n", "team.1.environments[0].networks: must be an array (found a string)"),
        (SEED + "\n[organisation]\nquota = 3\n", "organisation.quota: must be a table (found an integer)"),
    ],
)
def test_no_pydantic_wording(write_config: WriteConfig, text: str, expected: str) -> None:
    found = messages(write_config, text)
    assert any(line.startswith(expected) for line in found), found
    assert not [line for line in found if any(word in line for word in PYDANTIC_WORDS)]


def test_a_wrong_secret_type_does_not_echo_the_value(write_config: WriteConfig) -> None:
    (line,) = messages(write_config, SEED.replace('"token-team-a"', "123456789"))
    assert "123456789" not in line and line.startswith("team.1.auth_token: ")


def test_empty_file_is_an_error(write_config: WriteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("", "# nothing yet\n\n"):
        path = write_config(text)
        assert main(["validate", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert (
            err
            == f"error: {path}: the file is empty: describe at least one [team.N] (examples/oduflow.toml shows one)\n"
        )


def test_a_file_without_teams_says_so(write_config: WriteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config("[platform]\ntls = false\n")
    assert main(["validate", "--config", str(path)]) == 0
    assert f"warning: {path}: team: no [team.N] table" in capsys.readouterr().err
