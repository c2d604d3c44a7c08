"""Moves in progress (`<stem>.moves.json`): reading, writing, checking against the config, and what
the placement API answers while a team or an environment is on two servers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import moves
from oduflow_iac.config import ConfigError, load_config
from oduflow_iac.moves import Move
from tests.test_servers import PLACED

WriteConfig = Callable[..., Path]


def with_moves(write_config: WriteConfig, entries: Any, text: str = PLACED) -> Path:
    path = write_config(text)
    body = entries if isinstance(entries, dict) else {"version": 1, "moves": entries}
    moves.moves_path_for(path).write_text(json.dumps(body), encoding="utf-8")
    return path


def move_errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    shown = str(moves.moves_path_for(path))
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{shown}: ") for line in lines), lines
    return [line.removeprefix(f"{shown}: ") for line in lines]


def test_the_moves_file_sits_beside_the_config() -> None:
    assert moves.moves_path_for(Path("/x/fleet.toml")) == Path("/x/fleet.moves.json")


def test_no_file_no_moves(tmp_path: Path) -> None:
    assert moves.read_moves(tmp_path / "none.moves.json") == []


def test_write_then_read_round_trips_sorted(tmp_path: Path) -> None:
    path = tmp_path / "oduflow.moves.json"
    listed = [
        Move("10", None, "default", "s2", "switched"),
        Move("2", "main", "s2", "default"),
        Move("2", None, "s2", "s3"),
    ]
    assert moves.write_moves(path, listed) is True
    assert moves.write_moves(path, list(reversed(listed))) is False  # same content: untouched
    read = moves.read_moves(path)
    assert read == [listed[2], listed[1], listed[0]]
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert data["moves"][0] == {"team": "2", "branch": None, "from": "s2", "to": "s3", "phase": "copying"}
    assert [p.name for p in tmp_path.iterdir()] == ["oduflow.moves.json"]  # nothing left aside
    # the last move done: the file goes
    assert moves.write_moves(path, []) is True and not path.exists()
    assert moves.write_moves(path, []) is False


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{", "is not a readable moves file"),
        ([], 'must be {"version": 1, "moves": [...]}'),
        ({"moves": []}, "version: must be 1"),
        ({"version": 2, "moves": []}, "version: must be 1"),
        ({"version": 1}, "moves: must be a list of moves"),
        ({"version": 1, "moves": {}, "x": 1}, "x: unknown key"),
        ({"version": 1, "moves": ["x"]}, "moves[0]: must be an object"),
        (
            {"version": 1, "moves": [{"team": "1", "from": "default", "to": "s2", "phase": "copying", "by": "me"}]},
            "moves[0].by: unknown key",
        ),
        (
            {"version": 1, "moves": [{"team": 1, "from": "default", "to": "s2", "phase": "copying"}]},
            "moves[0].team: must be a team id",
        ),
        (
            {"version": 1, "moves": [{"team": "1", "branch": 3, "from": "default", "to": "s2", "phase": "copying"}]},
            "moves[0].branch: must be a branch name",
        ),
        (
            {"version": 1, "moves": [{"team": "1", "from": "default", "to": "S 2\n", "phase": "copying"}]},
            "moves[0].to: 'S 2\\n': a server name",
        ),
        ({"version": 1, "moves": [{"team": "1", "to": "s2", "phase": "copying"}]}, "moves[0].from: must be a server"),
        (
            {"version": 1, "moves": [{"team": "1", "from": "default", "to": "s2", "phase": "done"}]},
            "moves[0].phase: must be one of copying, switched",
        ),
    ],
)
def test_a_damaged_moves_file_is_one_line(write_config: WriteConfig, body: Any, expected: str) -> None:
    path = write_config(PLACED)
    text = body if isinstance(body, str) else json.dumps(body)
    moves.moves_path_for(path).write_text(text, encoding="utf-8")
    found = move_errors(path)
    assert len(found) == 1 and found[0].startswith(expected), found
    assert "\n" not in str(found[0])


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"team": "9", "branch": None, "from": "default", "to": "s2"}, "moves[0].team: team '9' is not in"),
        (
            {"team": "1", "branch": "nope", "from": "default", "to": "s2"},
            "moves[0].branch: team 1 has no environment 'nope'",
        ),
        ({"team": "1", "branch": None, "from": "default", "to": "s9"}, "moves[0].to: server 's9' is not declared"),
        ({"team": "1", "branch": None, "from": "s9", "to": "s2"}, "moves[0].from: server 's9' is not declared"),
        (
            {"team": "1", "branch": None, "from": "s2", "to": "default"},
            "moves[0].to: team 1 is already on server 'default'",
        ),
        (
            {"team": "1", "branch": "main", "from": "default", "to": "s2"},
            "moves[0].to: team 1 environment main is already on server 's2'",
        ),
        ({"team": "2", "branch": None, "from": "default", "to": "s2"}, "moves[0].to: team 2 is already on server 's2'"),
        (
            {"team": "1", "branch": "dev", "from": "s2", "to": "default"},
            "moves[0].to: team 1 environment dev is already",
        ),
        (
            {"team": "2", "branch": "main", "from": "default", "to": "s2"},
            "moves[0].to: team 2 environment main is already",
        ),
    ],
)
def test_a_move_that_does_not_fit_the_config(write_config: WriteConfig, entry: dict[str, Any], expected: str) -> None:
    found = move_errors(with_moves(write_config, [{**entry, "phase": "copying"}]))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_move_from_where_it_is_not(write_config: WriteConfig) -> None:
    text = PLACED.replace(
        "[server.s2]", '[server.s3]\ndocker_host = "tcp://10.0.0.3:2376"\naddress = "203.0.113.30"\n\n[server.s2]', 1
    )
    path = with_moves(
        write_config, [{"team": "2", "branch": None, "from": "s3", "to": "default", "phase": "copying"}], text
    )
    assert move_errors(path) == ["moves[0].from: team 2 is on server 's2', not 's3'"]


def test_a_move_to_itself(write_config: WriteConfig) -> None:
    for phase in ("copying", "switched"):
        entry = {"team": "2", "branch": None, "from": "s2", "to": "s2", "phase": phase}
        assert move_errors(with_moves(write_config, [entry])) == ["moves[0].to: a move from server 's2' to itself"]


def test_a_switched_move_may_already_be_in_the_config(write_config: WriteConfig) -> None:
    # The mover names the new server in the config, then drops the entry: in between, the file loads
    # and still declares the environment on both servers, DNS at the new one.
    text = PLACED.replace(
        'branch = "dev"\nodoo_image = "odoo:17.0"\n', 'branch = "dev"\nodoo_image = "odoo:17.0"\nserver = "s2"\n'
    )
    entry = {"team": "1", "branch": "dev", "from": "default", "to": "s2", "phase": "switched"}
    config = load_config(with_moves(write_config, [entry], text))
    dev = config.team["1"].environments[1]
    assert config.env_servers("1", dev) == ["default", "s2"] and config.env_dns_server("1", dev) == "s2"
    # ... but not while copying: DNS would already point where the data is not
    found = move_errors(with_moves(write_config, [{**entry, "phase": "copying"}], text))
    assert found == ["moves[0].to: team 1 environment dev is already on server 's2'"]
    # a team move likewise
    team = {"team": "2", "branch": None, "from": "default", "to": "s2", "phase": "switched"}
    config = load_config(with_moves(write_config, [team]))
    assert config.team_servers("2") == ["s2", "default"]
    assert config.env_servers("2", config.team["2"].environments[0]) == ["default", "s2"]


def test_one_move_at_a_time_per_environment(write_config: WriteConfig) -> None:
    env = {"team": "1", "branch": "dev", "from": "default", "to": "s2", "phase": "copying"}
    team = {"team": "1", "branch": None, "from": "default", "to": "s2", "phase": "copying"}
    assert move_errors(with_moves(write_config, [env, env])) == [
        "moves[1].branch: team 1 environment dev is already being moved by moves[0]"
    ]
    assert move_errors(with_moves(write_config, [team, env])) == [
        "moves[1].branch: team 1 environment dev is already being moved by moves[0]"
    ]
    assert move_errors(with_moves(write_config, [env, team])) == [
        "moves[1].team: team 1 is already being moved by moves[0]"
    ]


def test_a_team_move_puts_the_team_on_both_servers(write_config: WriteConfig) -> None:
    text = PLACED.replace(
        "[server.s2]", '[server.s3]\ndocker_host = "tcp://10.0.0.3:2376"\naddress = "203.0.113.30"\n\n[server.s2]', 1
    )
    path = with_moves(
        write_config, [{"team": "1", "branch": None, "from": "default", "to": "s3", "phase": "copying"}], text
    )
    config = load_config(path)
    assert config.moves == [Move("1", None, "default", "s3", "copying")]
    main, dev = config.team["1"].environments
    # the team's own server is still the file's; the environment with its own server stays there
    assert config.team_server("1") == "default"
    assert config.team_servers("1") == ["default", "s2", "s3"]
    assert config.env_servers("1", dev) == ["default", "s3"] and config.env_dns_server("1", dev) == "default"
    assert config.env_servers("1", main) == ["s2"] and config.env_dns_server("1", main) == "s2"
    assert [(t, e.branch) for t, e in config.server_environments("s3")] == [("1", "dev")]
    assert [(t, e.branch) for t, e in config.server_environments("default")] == [("1", "dev")]
    # switched: DNS follows
    moves.write_moves(moves.moves_path_for(path), [Move("1", None, "default", "s3", "switched")])
    config = load_config(path)
    dev = config.team["1"].environments[1]
    assert config.env_dns_server("1", dev) == "s3" and config.env_servers("1", dev) == ["default", "s3"]


def test_a_team_move_of_a_team_without_own_environments_still_reaches_the_new_server(write_config: WriteConfig) -> None:
    path = with_moves(
        write_config,
        [{"team": "2", "branch": None, "from": "s2", "to": "default", "phase": "copying"}],
        PLACED.replace('[[team.2.environments]]\nbranch = "main"\nodoo_image = "odoo:17.0"\n', ""),
    )
    config = load_config(path)
    assert config.team_servers("2") == ["s2", "default"]


def test_an_environment_move(write_config: WriteConfig) -> None:
    path = with_moves(
        write_config, [{"team": "1", "branch": "main", "from": "s2", "to": "default", "phase": "switched"}]
    )
    config = load_config(path)
    main, dev = config.team["1"].environments
    assert config.env_servers("1", main) == ["s2", "default"] and config.env_dns_server("1", main) == "default"
    assert config.env_servers("1", dev) == ["default"]
    assert config.team_servers("1") == ["default", "s2"]
