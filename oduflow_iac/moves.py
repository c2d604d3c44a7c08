"""Moves in progress: a team or an environment going from one server to another.

A move is not one Pulumi step: the team (or environment) is deployed on the new server, its data
copied, DNS switched, and only then removed from the old one (the orchestration is fleet.py's). In
between, the program must declare it on BOTH servers, and DNS must point at the old one until the
copy is done. That state lives in `<config stem>.moves.json` beside the config (like the port lock),
committed with it, so every run and every machine plans the same thing:

    {"version": 1, "moves": [{"team": "1", "branch": null, "from": "default", "to": "s2", "phase": "copying"}]}

- `branch: null` moves the team: its own stack and every environment without its own `server`;
  an environment that names its server stays there. A branch moves that environment alone.
- `phase`: `copying` (DNS at `from`), then `switched` (DNS at `to`); the entry is removed (and the
  config's placement changed to `to`) once the old placement is gone.
- The config still places the moved team or environment on `from` while the move is listed; only
  in phase `switched` may it already name `to` (the mover edits the config, then drops the entry).

`read_moves` checks the file's shape, `move_problems` the moves against the config (load_config
calls both): a damaged file or a move that does not fit the config is a ConfigError naming the
file and the key. `write_moves` writes it sorted, so diffs are minimal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from oduflow_iac.errors import ConfigError, Problem

if TYPE_CHECKING:
    from oduflow_iac.config import Config

MOVES_VERSION = 1
Phase = Literal["copying", "switched"]
PHASES: tuple[Phase, ...] = ("copying", "switched")
_KEYS = ("team", "branch", "from", "to", "phase")


@dataclass(frozen=True)
class Move:
    team: str
    branch: str | None  # None: the whole team
    from_server: str
    to: str
    phase: Phase = "copying"

    @property
    def is_team_move(self) -> bool:
        return self.branch is None

    @property
    def subject(self) -> str:
        """`team 1` or `team 1 environment main`, for messages."""
        return f"team {self.team}" if self.branch is None else f"team {self.team} environment {self.branch}"

    def to_json(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "branch": self.branch,
            "from": self.from_server,
            "to": self.to,
            "phase": self.phase,
        }


def moves_path_for(config_path: Path) -> Path:
    """`oduflow.toml` -> `oduflow.moves.json` in the same folder."""
    return config_path.with_name(f"{config_path.stem}.moves.json")


def read_moves(path: Path) -> list[Move]:
    """The moves listed in `path`; an absent file lists none. A damaged one is a ConfigError."""
    if not path.exists():
        return []
    shown = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError.single(shown, "", f"is not a readable moves file: {exc}") from None
    return parse_moves(data, shown)


def parse_moves(data: Any, shown: str) -> list[Move]:
    """The moves of an already-parsed moves file (see the module's docstring for its shape)."""
    if not isinstance(data, dict):
        raise ConfigError.single(shown, "", 'must be {"version": 1, "moves": [...]}')
    if data.get("version") != MOVES_VERSION:
        raise ConfigError.single(shown, "version", f"must be {MOVES_VERSION}")
    extra = sorted(str(k) for k in data if k not in ("version", "moves"))
    if extra:
        raise ConfigError.single(shown, extra[0], "unknown key (a moves file has `version` and `moves`)")
    entries = data.get("moves")
    if not isinstance(entries, list):
        raise ConfigError.single(shown, "moves", "must be a list of moves")
    problems: list[Problem] = []
    moves: list[Move] = []
    for i, entry in enumerate(entries):
        key = f"moves[{i}]"
        move = _parse_move(entry, shown, key, problems)
        if move is not None:
            moves.append(move)
    if problems:
        raise ConfigError(problems)
    return moves


def _parse_move(entry: Any, shown: str, key: str, problems: list[Problem]) -> Move | None:
    def bad(sub: str, message: str) -> None:
        problems.append(Problem(shown, f"{key}.{sub}" if sub else key, message))

    if not isinstance(entry, dict):
        bad("", "must be an object with team, branch, from, to and phase")
        return None
    extra = sorted(str(k) for k in entry if k not in _KEYS)
    if extra:
        bad(extra[0], "unknown key (a move has team, branch, from, to and phase)")
        return None
    before = len(problems)
    team = entry.get("team")
    if not isinstance(team, str) or not team:
        bad("team", "must be a team id (a string)")
    branch = entry.get("branch")
    if branch is not None and (not isinstance(branch, str) or not branch):
        bad("branch", "must be a branch name, or null to move the whole team")
    from oduflow_iac.config.servers import server_name_problem

    for end in ("from", "to"):
        value = entry.get(end)
        if not isinstance(value, str):
            bad(end, "must be a server name")
        elif server_name_problem(value):
            bad(end, f"{value!r}: {server_name_problem(value)}")
    phase: Phase = "copying"
    if entry.get("phase") not in PHASES:
        bad("phase", f"must be one of {', '.join(PHASES)}")
    else:
        phase = entry["phase"]
    if len(problems) > before:
        return None
    return Move(team=str(team), branch=branch, from_server=entry["from"], to=entry["to"], phase=phase)


def write_moves(path: Path, moves: list[Move]) -> bool:
    """Write the moves file (sorted by team and branch, so diffs are minimal); with no move left,
    remove it. Returns whether the file changed."""
    if not moves:
        if path.exists():
            path.unlink()
            return True
        return False
    ordered = sorted(moves, key=lambda m: (_team_key(m.team), m.branch or ""))
    text = json.dumps({"version": MOVES_VERSION, "moves": [m.to_json() for m in ordered]}, indent=2) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    # Written aside then renamed: an interrupted move must leave the old file or the new one,
    # never half of one (the next run would refuse a damaged file).
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return True


def _team_key(team_id: str) -> tuple[int, str]:
    return (int(team_id), "") if team_id.isdigit() else (1 << 30, team_id)


def move_problems(config: Config, moves: list[Move], shown: str) -> list[Problem]:
    """Moves that do not fit the config: an unknown team, branch or server, a move to where it
    already is or from where it is not, and two moves of one environment (or a team move and a
    move of one of its environments) at once."""
    problems: list[Problem] = []
    servers = config.servers
    moving_teams: dict[str, int] = {}
    moving_envs: dict[tuple[str, str], int] = {}
    for i, move in enumerate(moves):
        key = f"moves[{i}]"

        def bad(sub: str, message: str, key: str = key) -> None:
            problems.append(Problem(shown, f"{key}.{sub}", message))

        team = config.team.get(move.team)
        if team is None:
            bad("team", f"team {move.team!r} is not in {config.path}")
            continue
        for end, name in (("from", move.from_server), ("to", move.to)):
            if name not in servers:
                bad(end, f"server {name!r} is not declared in {config.path}")
        if any(p.key.startswith(f"{key}.") for p in problems):
            continue
        if move.branch is None:
            current = config.team_server(move.team)
        else:
            env = next((e for e in team.environments if e.branch == move.branch), None)
            if env is None:
                bad("branch", f"team {move.team} has no environment {move.branch!r} in {config.path}")
                continue
            current = config.env_server(move.team, env)
        if move.from_server == move.to:
            bad("to", f"a move from server {move.to!r} to itself")
            continue
        # Finishing a switched move, the mover names `to` in the config before it drops the entry:
        # that state (and only that one) may be loaded, e.g. after an interruption between the two.
        finishing = move.phase == "switched" and current == move.to
        if move.to == current and not finishing:
            bad("to", f"{move.subject} is already on server {current!r}")
            continue
        if move.from_server != current and not finishing:
            bad("from", f"{move.subject} is on server {current!r}, not {move.from_server!r}")
            continue
        if move.branch is None:
            other = moving_teams.get(move.team)
            other = (
                other if other is not None else next((j for (t, _), j in moving_envs.items() if t == move.team), None)
            )
            if other is not None:
                bad("team", f"team {move.team} is already being moved by moves[{other}]")
                continue
            moving_teams[move.team] = i
        else:
            other = moving_envs.get((move.team, move.branch), moving_teams.get(move.team))
            if other is not None:
                bad("branch", f"{move.subject} is already being moved by moves[{other}]")
                continue
            moving_envs[(move.team, move.branch)] = i
    return problems
