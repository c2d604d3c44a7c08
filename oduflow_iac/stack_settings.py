"""Reading a stack's settings the way `pulumi` does, without the CLI.

`Pulumi.yaml` names the project and `stackConfigDir`; `stacks/Pulumi.<stack>.yaml` holds the stack's
config. Keys without a namespace belong to the project (`configFile` is `oduflow:configFile`);
project-level `config:` entries with a `default` apply when the stack does not set the key. Values
marked `secure:` are encrypted for the stack's secrets provider: they are known to exist, not read.
"""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from oduflow_iac.config import Config, load_config
from oduflow_iac.errors import ConfigError, Problem, UsageError

PROJECT_FILE = "Pulumi.yaml"
DEFAULT_STACK = "local"


@dataclass(frozen=True)
class StackSettings:
    project_dir: Path
    project: str
    stack: str
    stack_file: Path
    values: dict[str, str] = field(default_factory=dict)  # full keys (`oduflow:configFile`), plain text
    secure_keys: frozenset[str] = frozenset()  # keys whose values are encrypted in the stack file

    def get(self, key: str) -> str | None:
        return self.values.get(key if ":" in key else f"{self.project}:{key}")


def find_project_dir(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise UsageError(f"{PROJECT_FILE}: not found in {here} or any parent; pass --project-dir or --config")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError.single(str(path), "", f"YAML syntax error: {getattr(exc, 'problem', exc)}", line) from None
    if not isinstance(data, dict):
        raise ConfigError.single(str(path), "", "must be a YAML mapping")
    return data


def _config_section(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    section = doc.get("config") or {}
    if not isinstance(section, dict):
        raise ConfigError.single(str(path), "config", "must be a mapping of keys to values")
    return section


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def undeclared_project_keys(keys: list[str], declared: list[str], project: str) -> list[tuple[str, str]]:
    """Stack keys of the project's namespace that Pulumi.yaml does not declare, with why. The
    `pulumi` CLI refuses such a stack when the project declares its config, so a typo
    (`oduflow:dockerhost`) must fail here too rather than be ignored. Other namespaces (providers,
    `oduflow-secrets`) are free. Pure."""
    found = []
    for key in keys:
        if not key.startswith(f"{project}:") or key in declared:
            continue
        lowered = {d.lower(): d for d in declared}
        close = [lowered[key.lower()]] if key.lower() in lowered else difflib.get_close_matches(key, declared, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"the project's keys are {', '.join(declared)}"
        found.append((key, f"not a key Pulumi.yaml declares; {hint}"))
    return found


def read_stack_settings(stack: str, project_dir: Path | None = None) -> StackSettings:
    root = project_dir.resolve() if project_dir else find_project_dir()
    project_file = root / PROJECT_FILE
    if not project_file.is_file():
        raise UsageError(f"{project_file}: not found")
    project_doc = _read_yaml(project_file)
    project = str(project_doc.get("name") or "")
    if not project:
        raise ConfigError.single(str(project_file), "name", "required key is missing")
    stack_dir = root / str(project_doc.get("stackConfigDir") or ".")
    stack_file = stack_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        raise UsageError(f"{stack_file}: no such stack config (stack {stack!r})")

    def full(key: str) -> str:
        return key if ":" in key else f"{project}:{key}"

    values: dict[str, str] = {}
    for key, spec in _config_section(project_doc, project_file).items():
        if isinstance(spec, dict) and "default" in spec:
            values[full(key)] = _text(spec["default"])
        elif not isinstance(spec, dict):
            values[full(key)] = _text(spec)
    declared = [full(str(k)) for k in _config_section(project_doc, project_file)]
    stack_config = _config_section(_read_yaml(stack_file), stack_file)
    undeclared = undeclared_project_keys([full(str(k)) for k in stack_config], declared, project)
    if undeclared:
        raise ConfigError([Problem(str(stack_file), f"config.{key}", why) for key, why in undeclared])
    secure: set[str] = set()
    for key, value in stack_config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure.add(full(key))
            values.pop(full(key), None)
        else:
            values[full(key)] = _text(value)
    return StackSettings(root, project, stack, stack_file, values, frozenset(secure))


def resolve_config(
    config_path: Path | None,
    stack: str | None,
    project_dir: Path | None = None,
    *,
    move_ports: bool = False,
    check_revisions: bool = True,
) -> tuple[Config, StackSettings | None]:
    """The oduflow.toml to use: `--config` when given, else the stack's `oduflow:configFile`.
    `stack` None is the default stack `local`, which an explicit config file does without; a
    stack named on the command line must exist. `move_ports`, `check_revisions`: see `load_config`."""
    if config_path is not None:
        settings = None
        try:
            settings = read_stack_settings(stack or DEFAULT_STACK, project_dir)
        except UsageError:
            if stack is not None:
                raise
            settings = None  # an explicit config file works without a project around it
        return load_config(config_path, move_ports=move_ports, check_revisions=check_revisions), settings
    settings = read_stack_settings(stack or DEFAULT_STACK, project_dir)
    relative = settings.get("configFile")
    if not relative:
        raise ConfigError.single(str(settings.stack_file), "config.oduflow:configFile", "required key is missing")
    return (
        load_config(settings.project_dir / relative, move_ports=move_ports, check_revisions=check_revisions),
        settings,
    )


def print_notices(config: Config) -> None:
    """What the file says that is accepted but not honoured, one `warning:` line each on stderr
    (the CLI's commands call this after loading; the library never prints)."""
    for notice in config.notices:
        print(f"warning: {notice}", file=sys.stderr)
