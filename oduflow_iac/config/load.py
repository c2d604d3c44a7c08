"""Reading oduflow.toml: TOML parsing, pydantic validation turned into one Problem per key, ports."""

from __future__ import annotations

import difflib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from oduflow_iac.config import oduflow_compat
from oduflow_iac.config.model import Config
from oduflow_iac.errors import ConfigError, Problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib
from oduflow_iac.config.checks import cross_checks, slot_hostname_collisions
from oduflow_iac.config.consistency import consistency_problems
from oduflow_iac.config.servers import placement_problems

# --------------------------------------------------------------------------------------------
# Loading


def load_config(
    path: str | Path,
    *,
    lock_path: str | Path | None = None,
    move_ports: bool = False,
    check_revisions: bool = True,
) -> Config:
    """Read, validate and return an oduflow.toml. Raises `ConfigError` on any problem.

    Host ports come from the port lock beside the file (`ports.lock_path_for`) when it exists, so
    an environment keeps its port whatever else changes in the file. A pin on a port the lock
    gives to another environment is a problem, unless `move_ports` (that environment moves).
    Pinned revisions come from the revision lock beside it (`revisions.lock_path_for`); a lock
    pinning a repository outside an environment's cascade is a problem unless not
    `check_revisions` (`env update` re-records such an environment).
    """
    from oduflow_iac import ports, revisions  # both depend on this module's models

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
    if not raw:
        raise ConfigError.single(
            shown, "", "the file is empty: describe at least one [team.N] (examples/oduflow.toml shows one)"
        )

    config = parse_config(raw, shown)
    config._path = path
    lock_file = Path(lock_path) if lock_path is not None else ports.lock_path_for(path)
    lock = ports.read_lock(lock_file)
    config._ports = ports.assign_all(config, lock, shown, lock_name=lock_file.name, move=move_ports)
    problems = slot_hostname_collisions(config, shown)  # slot numbers come from the ports
    if problems:
        raise ConfigError(problems)
    revisions_file = revisions.lock_path_for(path)
    recorded = revisions.read_revisions(revisions_file)
    if check_revisions:
        problems = revisions.cascade_problems(config, recorded, str(revisions_file))
        if problems:
            raise ConfigError(problems)
    config._revisions = dict(recorded)
    _load_moves(config, path)
    config._unlocked = [
        f"{team_id}/{env.branch}"
        for team_id, team in config.teams
        for env in team.environments
        if env.port is None and lock.get(team_id, {}).get(env.branch) != config._ports[team_id][env.branch]
    ]
    return config


def _load_moves(config: Config, path: Path) -> None:
    """The moves in progress beside the file (oduflow_iac/moves.py), checked against the config."""
    from oduflow_iac import moves

    moves_file = moves.moves_path_for(path)
    listed = moves.read_moves(moves_file)
    problems = moves.move_problems(config, listed, str(moves_file))
    if problems:
        raise ConfigError(problems)
    config._moves = listed
    config._placement = None  # the placement index, if already asked for, was without the moves


def parse_config(raw: dict[str, Any], shown: str = "oduflow.toml") -> Config:
    """Validate an already-parsed TOML document (no ports assigned)."""
    owned, notices = oduflow_compat.adapt(raw, shown)
    try:
        config = Config.model_validate(owned)
    except ValidationError as exc:
        # One line per key: a union type reports each of its members' errors.
        found: dict[str, Problem] = {}
        for err in exc.errors():
            problem = _problem_from_pydantic(shown, err)
            found.setdefault(problem.key, problem)
        raise ConfigError(list(found.values())) from None
    # Placement first: the other rules may ask on which server a team is.
    problems = placement_problems(config, shown) or cross_checks(config, shown) or consistency_problems(config, shown)
    if problems:
        raise ConfigError(problems)
    if not config.team:
        notices.append(Problem(shown, "team", "no [team.N] table: only the shared infrastructure is planned"))
    config._notices = notices
    return config


def _line_of(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


# Pydantic's names for the members of a union or a validator wrapper, which appear in an error's
# location but are not keys of the file.
_INTERNAL_LOC = re.compile(
    r"^(?:function-(?:after|before|wrap|plain)\[.*\]|literal\[.*\]|is-instance\[.*\]|"
    r"str|bool|int|float|list\[.*\]|dict\[.*\]|tuple\[.*\]|json-or-python\[.*\])$"
)


def key_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """The one spelling of a key path in every message: `team.1.environments[2].branch`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _toml_type(value: Any) -> str:
    """What the file holds, in TOML's words (never the value: it may be a secret)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _is_container(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_container(a) for a in typing.get_args(annotation))
    return origin in (dict, list)


def known_keys(loc: list[Any]) -> list[str]:
    """The keys the table at `loc` (a location inside the file) takes, for "did you mean"."""
    model: type[BaseModel] = Config
    skip = False
    for part in loc:
        if skip:
            skip = False
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        models = _models_in(field.annotation)
        if not models:
            return []
        skip = _is_container(field.annotation)
        model = models[0]
    keys = list(model.model_fields)
    if model is Config:
        keys += sorted(oduflow_compat.SERVER_SECTIONS)
    return keys


def _message(err: Any, loc: list[Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    given = err.get("input")
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(name, known_keys(loc[:-1]), n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else "see docs/configuration.md for the keys of this table"
        return f"unknown key; {hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"{given!r} is not one of {ctx.get('expected')}"
    if kind in ("tuple_type", "too_long", "too_short") and loc and loc[-1] == "port_range":
        return f"must be [start, end], two port numbers (found {_toml_type(given)})"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} items"
    expected = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "list_type": "an array",
        "tuple_type": "an array",
        "dict_type": "a table",
        "model_type": "a table",
        "model_attributes_type": "a table",
        "finite_number": "a finite number",
    }.get(kind)
    if expected is not None:
        return f"must be {expected} (found {_toml_type(given)})"
    bounds = {"greater_than": "greater than", "greater_than_equal": "at least", "less_than": "less than"}
    bounds["less_than_equal"] = "at most"
    if kind in bounds:
        return f"must be {bounds[kind]} {next(iter(ctx.values()), '')}"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return "has characters this key does not allow"
    # Our own validators: their text, without pydantic's prefix.
    return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _problem_from_pydantic(shown: str, err: Any) -> Problem:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and _INTERNAL_LOC.match(p))]
    if err["type"] == "missing" and len(loc) >= 2 and isinstance(loc[-1], int):
        # A missing member of a pair (`port_range = [50000]`): the pair is what is wrong.
        loc = loc[:-1]
        what = "[start, end], two port numbers" if loc[-1] == "port_range" else "longer"
        return Problem(shown, key_path(loc), f"must be {what}")
    return Problem(shown, key_path(loc), _message(err, loc))
