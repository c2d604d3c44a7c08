"""Stable host ports.

An environment's host port never moves because other environments or teams were added, removed
or reordered. Pinned ports (`port =`) win, but never over the lock: a pin on a port the lock gives
to another environment is a config error naming both, unless the user asks for the move
(`oduflow-iac lock --move`), so a production environment is never moved by someone else's pin.
Every other environment keeps the port recorded for it in the port lock (`<config stem>.ports.json`
beside the config, `oduflow.ports.json` for oduflow.toml: the role Oduflow's ports.json plays),
and a new environment takes the lowest free port of its team's range. The lock is written by the
CLI (`oduflow-iac lock`, `env create`, `up`) and committed with the config, so a pull request shows
port changes and the Pulumi program, run anywhere, computes the same ports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from oduflow_iac.errors import ConfigError, Problem

if TYPE_CHECKING:
    from oduflow_iac.config import Config

Lock = dict[str, dict[str, int]]
LOCK_VERSION = 1


def lock_path_for(config_path: Path) -> Path:
    """`oduflow.toml` -> `oduflow.ports.json` in the same folder."""
    return config_path.with_name(f"{config_path.stem}.ports.json")


def read_lock(path: Path) -> Lock:
    """The lock's ports by team and branch; an absent lock is empty. A damaged one is a ConfigError."""
    if not path.exists():
        return {}
    shown = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError.single(shown, "", f"is not a readable port lock: {exc}") from None
    teams = data.get("teams") if isinstance(data, dict) else None
    if not isinstance(teams, dict):
        raise ConfigError.single(shown, "teams", 'missing: a port lock is {"version": 1, "teams": {...}}')
    lock: Lock = {}
    for team_id, entries in teams.items():
        if not isinstance(entries, dict) or not all(
            isinstance(b, str) and isinstance(p, int) and not isinstance(p, bool) for b, p in entries.items()
        ):
            raise ConfigError.single(shown, f"teams.{team_id}", "must map branch names to port numbers")
        lock[str(team_id)] = dict(entries)
    return lock


def write_lock(path: Path, lock: Lock) -> bool:
    """Write the lock (sorted, so diffs are minimal). Returns whether the file changed."""
    body = {
        "version": LOCK_VERSION,
        "teams": {t: dict(sorted(lock[t].items())) for t in sorted(lock, key=_team_key)},
    }
    text = json.dumps(body, indent=2) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def _team_key(team_id: str) -> tuple[int, str]:
    return (int(team_id), "") if team_id.isdigit() else (1 << 30, team_id)


def assign_team_ports(
    port_range: tuple[int, int],
    branches: list[str],
    pinned: dict[str, int],
    locked: dict[str, int],
) -> dict[str, int] | None:
    """Ports of one team's environments, or None when the range is exhausted.

    Pure and linear: pins first, then every locked port still free and in range, then the lowest
    free port for each remaining branch in file order.
    """
    start, end = port_range
    taken: set[int] = set(pinned.values())
    result: dict[str, int] = {}
    for branch in branches:
        if branch in pinned:
            result[branch] = pinned[branch]
    for branch in branches:
        port = locked.get(branch)
        if branch not in result and port is not None and start <= port < end and port not in taken:
            result[branch] = port
            taken.add(port)
    candidate = start
    for branch in branches:
        if branch in result:
            continue
        while candidate < end and candidate in taken:
            candidate += 1
        if candidate >= end:
            return None
        result[branch] = candidate
        taken.add(candidate)
    return result


def pin_collisions(branches: list[str], pinned: dict[str, int], locked: dict[str, int]) -> list[tuple[str, int, str]]:
    """(pinned branch, port, branch the lock gives that port) for every pin that would take the
    locked port of another environment still in the file and not pinned itself. Pure."""
    present = set(branches)
    holder = {port: b for b, port in locked.items() if b in present and b not in pinned}
    return [(b, port, holder[port]) for b, port in pinned.items() if port in holder and holder[port] != b]


def _pin_problems(config: Config, lock: Lock, shown: str, lock_name: str, move: bool) -> list[Problem]:
    """Pins that collide with another pin anywhere, or (without `move`) with a locked port."""
    problems: list[Problem] = []
    first_pin: dict[int, str] = {}
    for team_id, team in config.teams:
        index = {e.branch: i for i, e in enumerate(team.environments)}
        for i, env in enumerate(team.environments):
            if env.port is None:
                continue
            key = f"team.{team_id}.environments[{i}]"
            owner = first_pin.setdefault(env.port, key)
            if owner != key:
                problems.append(Problem(shown, f"{key}.port", f"{env.port} is already pinned by {owner}"))
        if move:
            continue
        branches = [e.branch for e in team.environments]
        pinned = {e.branch: e.port for e in team.environments if e.port is not None}
        for branch, port, holder in pin_collisions(branches, pinned, lock.get(team_id, {})):
            problems.append(
                Problem(
                    shown,
                    f"team.{team_id}.environments[{index[branch]}].port",
                    f"{port} is the port {lock_name} gives to {holder!r} (team.{team_id}.environments"
                    f"[{index[holder]}]); pin another port, or run `oduflow-iac lock --move` to give "
                    f"{holder!r} a new one",
                )
            )
    return problems


def assign_all(
    config: Config, lock: Lock, shown: str, *, lock_name: str = "the port lock", move: bool = False
) -> dict[str, dict[str, int]]:
    """Ports of every team. A pin on another environment's locked port is a ConfigError naming
    both (unless `move`: that environment then takes a new port), as are two equal pins and an
    exhausted range."""
    problems = _pin_problems(config, lock, shown, lock_name, move)
    if problems:
        raise ConfigError(problems)
    out: dict[str, dict[str, int]] = {}
    for team_id, team in config.teams:
        branches = [e.branch for e in team.environments]
        pinned = {e.branch: e.port for e in team.environments if e.port is not None}
        ports = assign_team_ports(team.port_range, branches, pinned, lock.get(team_id, {}))
        if ports is None:
            start, end = team.port_range
            raise ConfigError.single(
                shown,
                f"team.{team_id}.environments",
                f"no free port left in port_range [{start}, {end}) for {len(branches)} environments",
            )
        out[team_id] = ports
    return out


def lock_from(config: Config) -> Lock:
    """The lock that records `config`'s current ports: removed teams and branches are dropped, so
    their ports become free for later environments."""
    return {team_id: dict(ports) for team_id, ports in config.ports.items()}


def moves(before: Lock, after: Lock) -> list[tuple[str, str, int, int]]:
    """(team, branch, old port, new port) of every environment whose locked port changes."""
    return [
        (team_id, branch, old, after[team_id][branch])
        for team_id, entries in before.items()
        for branch, old in entries.items()
        if branch in after.get(team_id, {}) and after[team_id][branch] != old
    ]
