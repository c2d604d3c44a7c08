"""Reading oduflow.toml: TOML parsing, pydantic validation turned into one Problem per key, ports."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from oduflow_iac.config.model import IGNORED_SECTIONS, Config
from oduflow_iac.errors import ConfigError, Problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib
from oduflow_iac.config.checks import cross_checks

# --------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, *, lock_path: str | Path | None = None, move_ports: bool = False) -> Config:
    """Read, validate and return an oduflow.toml. Raises `ConfigError` on any problem.

    Host ports come from the port lock beside the file (`ports.lock_path_for`) when it exists, so
    an environment keeps its port whatever else changes in the file. A pin on a port the lock
    gives to another environment is a problem, unless `move_ports` (that environment moves).
    """
    from oduflow_iac import ports  # ports depends on this module's models

    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single(shown, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.single(shown, "", f"cannot be read: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_of(str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", getattr(exc, "msg", str(exc)))
        raise ConfigError.single(shown, "", f"TOML syntax error: {message}", line) from None

    config = parse_config(raw, shown)
    config._path = path
    lock_file = Path(lock_path) if lock_path is not None else ports.lock_path_for(path)
    lock = ports.read_lock(lock_file)
    config._ports = ports.assign_all(config, lock, shown, lock_name=lock_file.name, move=move_ports)
    config._unlocked = [
        f"{team_id}/{env.branch}"
        for team_id, team in config.teams
        for env in team.environments
        if env.port is None and lock.get(team_id, {}).get(env.branch) != config._ports[team_id][env.branch]
    ]
    return config


def parse_config(raw: dict[str, Any], shown: str = "oduflow.toml") -> Config:
    """Validate an already-parsed TOML document (no ports assigned)."""
    owned = {k: v for k, v in raw.items() if k not in IGNORED_SECTIONS}
    try:
        config = Config.model_validate(owned)
    except ValidationError as exc:
        # One line per key: a union type reports each of its members' errors.
        found: dict[str, Problem] = {}
        for err in exc.errors():
            problem = _problem_from_pydantic(shown, err)
            found.setdefault(problem.key, problem)
        raise ConfigError(list(found.values())) from None
    problems = cross_checks(config, shown)
    if problems:
        raise ConfigError(problems)
    return config


def _line_of(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _problem_from_pydantic(shown: str, err: Any) -> Problem:
    loc = [str(p) for p in err["loc"]]
    # Drop pydantic's internal branch names (union members, "function-after[...]").
    loc = [p for p in loc if not p.startswith(("function-", "literal[", "str", "bool", "int", "float"))]
    key = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        message = "unknown key (not a key of this section; check its spelling)"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "literal_error":
        message = f"{err['input']!r} is not one of {err['ctx']['expected']}"
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
    return Problem(shown, key, message)
