"""Edits of oduflow.toml that leave every byte outside the edit as it was.

An edit touches only the lines it is about: a new `[[team.N.environments]]` table is inserted after
the team's last environment (before the comments and blank lines that introduce whatever follows),
`disabled = true` is added after the environment's last key, a removed environment takes its own
lines and the comment lines directly above its header with it. Comments, blank lines, key order,
quoting and line endings elsewhere stay as they were. Values are rendered by tomlkit; tables written
in a shape the line editor does not handle (inline tables, dotted keys) are edited by tomlkit
instead, which also keeps comments and formatting.

Every edit is checked twice before anything is written: the edited text must parse to exactly the
data expected from the original plus the edit (nothing else may change), and it must load as a
valid oduflow.toml (`config.load_config` on a temporary copy, with the real port lock). A refused
edit leaves the file untouched.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Array, InlineTable, Table

from oduflow_iac import ports
from oduflow_iac.config import Config, load_config
from oduflow_iac.errors import ConfigError, Problem, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_BOOL_VALUE = re.compile(r"^(?P<head>[^=]*=[ \t]*)(?P<value>true|false)(?P<tail>[ \t]*(#.*)?)$")

TomlValue = str | int | float | bool | list[str]


class _LayoutUnsupported(Exception):
    """The line editor does not handle this shape of table; tomlkit edits the document instead."""


# --------------------------------------------------------------------------------------------
# A line-level map of a TOML document: sections (table headers) and their key/value statements.


@dataclass
class _Statement:
    key: tuple[str, ...]
    start: int  # first line
    end: int  # one past the last line (a multi-line array or string spans several)


@dataclass
class _Section:
    path: tuple[str, ...]
    is_array: bool
    header: int  # line of `[...]`; -1 for the root (keys before any header)
    end: int  # the next section's header line, or the number of lines
    statements: list[_Statement] = field(default_factory=list)

    @property
    def content_end(self) -> int:
        """One past its last key/value line: trailing comments and blank lines come after."""
        if self.statements:
            return self.statements[-1].end
        return self.header + 1


def _split_lines(text: str) -> list[str]:
    """Lines with their endings; TOML's newlines are LF and CRLF only."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _key_path(key_text: str) -> tuple[str, ...]:
    """The parts of a (dotted, possibly quoted) TOML key, as TOML itself reads them."""
    data: Any = tomllib.loads(f"{key_text.strip()} = 0")
    path: list[str] = []
    while isinstance(data, dict) and len(data) == 1:
        key = next(iter(data))
        path.append(key)
        data = data[key]
    return tuple(path)


def _skip_string(s: str, i: int) -> int:
    """Index after the single-line string that starts at `s[i]`."""
    quote = s[i]
    i += 1
    while i < len(s):
        c = s[i]
        if quote == '"' and c == "\\":
            i += 2
            continue
        if c == quote:
            return i + 1
        i += 1
    return i


def _find_unquoted(s: str, targets: str) -> int:
    i = 0
    while i < len(s):
        c = s[i]
        if c in "\"'":
            i = _skip_string(s, i)
            continue
        if c in targets:
            return i
        i += 1
    return -1


def _scan_value(s: str, ml: str | None, depth: int) -> tuple[str | None, int]:
    """Follow a value across one line: returns the open multi-line string delimiter (if any) and
    the bracket depth at the end of the line."""
    i = 0
    n = len(s)
    while i < n:
        if ml is not None:
            if ml == '"""' and s[i] == "\\":
                i += 2
                continue
            if s.startswith(ml, i):
                run = i
                while run < n and s[run] == ml[0]:
                    run += 1
                ml = None
                i = run
                continue
            i += 1
            continue
        c = s[i]
        if c == "#":
            break
        if s.startswith('"""', i) or s.startswith("'''", i):
            ml = s[i : i + 3]
            i += 3
            continue
        if c in "\"'":
            i = _skip_string(s, i)
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return ml, depth


def _scan(lines: list[str]) -> list[_Section]:
    sections = [_Section((), False, -1, len(lines))]
    ml: str | None = None
    depth = 0
    pending: tuple[tuple[str, ...], int] | None = None
    for i, line in enumerate(lines):
        if ml is None and depth == 0:
            stripped = line.lstrip(" \t")
            if stripped.startswith("["):
                is_array = stripped.startswith("[[")
                body = stripped[2:] if is_array else stripped[1:]
                close = _find_unquoted(body, "]")
                sections[-1].end = i
                sections.append(_Section(_key_path(body[:close]), is_array, i, len(lines)))
                continue
            if stripped.strip() == "" or stripped.startswith("#"):
                continue
            eq = _find_unquoted(stripped, "=")
            pending = (_key_path(stripped[:eq]), i)
            ml, depth = _scan_value(stripped[eq + 1 :], None, 0)
        else:
            ml, depth = _scan_value(line, ml, depth)
        if ml is None and depth == 0 and pending is not None:
            sections[-1].statements.append(_Statement(pending[0], pending[1], i + 1))
            pending = None
    return sections


# --------------------------------------------------------------------------------------------
# Rendering


def render_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def render_value(value: TomlValue) -> str:
    return tomlkit.item(value).as_string()


def render_table(path: tuple[str, ...], values: dict[str, TomlValue], *, array: bool, nl: str) -> list[str]:
    name = ".".join(render_key(p) for p in path)
    header = f"[[{name}]]" if array else f"[{name}]"
    return [header + nl] + [f"{render_key(k)} = {render_value(v)}{nl}" for k, v in values.items()]


# --------------------------------------------------------------------------------------------
# The editor


def _loads(text: str, shown: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError.single(shown, "", f"TOML syntax error: {exc}") from None


class ConfigEdit:
    """A sequence of edits of one oduflow.toml text. Nothing is written until `save`."""

    def __init__(self, text: str, shown: str = "oduflow.toml") -> None:
        self.original = text
        self.text = text
        self.shown = shown
        self.nl = "\r\n" if "\r\n" in text else "\n"
        self.data = _loads(text, shown)
        self.expected = copy.deepcopy(self.data)
        self.summary: list[str] = []

    @classmethod
    def open(cls, path: Path) -> ConfigEdit:
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ConfigError.single(str(path), "", "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError.single(str(path), "", f"cannot be read: {exc}") from None
        return cls(text, str(path))

    @property
    def changed(self) -> bool:
        return self.text != self.original

    # -- lookups ------------------------------------------------------------------------------

    def _team(self, team_id: str) -> dict[str, Any]:
        teams = self.expected.get("team")
        if not isinstance(teams, dict) or not isinstance(teams.get(team_id), dict):
            known = ", ".join(sorted(teams or {})) if isinstance(teams, dict) else ""
            raise UsageError(f"{self.shown}: team {team_id!r} is not defined (teams: {known or 'none'})")
        team: dict[str, Any] = teams[team_id]
        return team

    def environments(self, team_id: str) -> list[dict[str, Any]]:
        envs = self._team(team_id).get("environments", [])
        return envs if isinstance(envs, list) else []

    def environment_index(self, team_id: str, branch: str) -> int:
        envs = self.environments(team_id)
        for i, env in enumerate(envs):
            if isinstance(env, dict) and env.get("branch") == branch:
                return i
        known = ", ".join(str(e.get("branch")) for e in envs if isinstance(e, dict)) or "none"
        raise UsageError(f"{self.shown}: team {team_id} has no environment for branch {branch!r} (branches: {known})")

    def environment(self, team_id: str, branch: str) -> dict[str, Any]:
        return self.environments(team_id)[self.environment_index(team_id, branch)]

    def templates(self, team_id: str) -> dict[str, Any]:
        templates = self._team(team_id).get("templates", {})
        return templates if isinstance(templates, dict) else {}

    # -- edits --------------------------------------------------------------------------------

    def add_environment(self, team_id: str, values: dict[str, TomlValue]) -> None:
        """Append a `[[team.N.environments]]` table with `values` (in that key order)."""
        self._team(team_id)
        self._apply(
            lambda lines: self._lines_add_environment(lines, team_id, values),
            lambda doc: _doc_add_environment(doc, team_id, values),
        )
        self._team(team_id).setdefault("environments", []).append(dict(values))
        self.summary.append(f"added environment {values.get('branch')!r} to team {team_id}")

    def set_environment_key(self, team_id: str, branch: str, key: str, value: bool | None) -> bool:
        """Set a boolean key of an environment (None removes it). Returns whether anything changed."""
        env = self.environment(team_id, branch)
        index = self.environment_index(team_id, branch)
        if (value is None and key not in env) or (value is not None and env.get(key) is value):
            return False
        self._apply(
            lambda lines: self._lines_set_key(lines, team_id, index, key, value),
            lambda doc: _doc_set_key(doc, team_id, index, key, value),
        )
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
        shown = "removed" if value is None else f"set to {str(value).lower()}"
        self.summary.append(f"team {team_id} environment {branch!r}: {key} {shown}")
        return True

    def set_placement(self, team_id: str, branch: str | None, server: str | None) -> bool:
        """Place a team (`branch` None) or one of its environments on a server: `server = "NAME"`
        (None removes the key). Through tomlkit, which keeps comments and the other keys as they are."""
        index = None if branch is None else self.environment_index(team_id, branch)
        data = self._team(team_id) if branch is None else self.environment(team_id, branch)
        if data.get("server") == server:
            return False

        def by_lines(lines: list[str]) -> None:
            raise _LayoutUnsupported

        def by_doc(doc: Any) -> None:
            table = _doc_team(doc, team_id)
            if index is not None:
                table = table["environments"][index]
            if server is None:
                del table["server"]
            else:
                table["server"] = server

        self._apply(by_lines, by_doc)
        if server is None:
            data.pop("server", None)
        else:
            data["server"] = server
        what = f"team {team_id}" if branch is None else f"team {team_id} environment {branch!r}"
        self.summary.append(f"{what}: server {'removed' if server is None else f'set to {server}'}")
        return True

    def remove_environment(self, team_id: str, branch: str) -> None:
        index = self.environment_index(team_id, branch)
        self._apply(
            lambda lines: self._lines_remove_environment(lines, team_id, index),
            lambda doc: _doc_remove(doc, team_id, "environments", index),
        )
        self.environments(team_id).pop(index)
        self.summary.append(f"removed environment {branch!r} of team {team_id}")

    def add_template(self, team_id: str, name: str, values: dict[str, TomlValue]) -> None:
        if name in self.templates(team_id):
            raise UsageError(f"{self.shown}: team {team_id} already has a template {name!r}")
        self._apply(
            lambda lines: self._lines_add_template(lines, team_id, name, values),
            lambda doc: _doc_add_template(doc, team_id, name, values),
        )
        self._team(team_id).setdefault("templates", {})[name] = dict(values)
        self.summary.append(f"added template {name!r} to team {team_id}")

    def remove_template(self, team_id: str, name: str) -> None:
        if name not in self.templates(team_id):
            known = ", ".join(self.templates(team_id)) or "none"
            raise UsageError(f"{self.shown}: team {team_id} has no template {name!r} (templates: {known})")
        self._apply(
            lambda lines: self._lines_remove_template(lines, team_id, name),
            lambda doc: _doc_remove(doc, team_id, "templates", name),
        )
        del self.templates(team_id)[name]
        self.summary.append(f"removed template {name!r} of team {team_id}")

    # -- checking and writing -----------------------------------------------------------------

    def verify(self) -> None:
        """The edited text must mean exactly the original data plus the edits."""
        if _loads(self.text, self.shown) != self.expected:
            raise ConfigError.single(
                self.shown, "", "cannot be edited without changing other entries; edit it by hand (left unchanged)"
            )

    def validate(self, path: Path) -> Config:
        """Load the edited text as an oduflow.toml (on a temporary copy, with the real port lock):
        the config it will be, or a ConfigError naming `path` (which is left unchanged)."""
        self.verify()
        with tempfile.TemporaryDirectory(prefix="oduflow-edit-") as tmp:
            copy_path = Path(tmp) / path.name
            copy_path.write_bytes(self.text.encode("utf-8"))
            try:
                config = load_config(copy_path, lock_path=ports.lock_path_for(path))
            except ConfigError as exc:
                problems = [
                    Problem(str(path) if p.file == str(copy_path) else p.file, p.key, p.message, p.line)
                    for p in exc.problems
                ]
                intro = Problem(str(path), "", "edit refused: the result would not be valid; the file is unchanged")
                raise ConfigError([intro, *problems]) from None
        config._path = path
        return config

    def save(self, path: Path) -> Config:
        """Validate, write atomically, refresh the port lock, and return the new config."""
        self.validate(path)
        if self.changed:
            _atomic_write(path, self.text)
        config = load_config(path)
        ports.write_lock(ports.lock_path_for(path), ports.lock_from(config))
        return config

    # -- internals ----------------------------------------------------------------------------

    def _apply(self, by_lines: Callable[[list[str]], None], by_doc: Callable[[Any], None]) -> None:
        lines = _split_lines(self.text)
        try:
            by_lines(lines)
            self.text = "".join(lines)
        except _LayoutUnsupported:
            doc = tomlkit.parse(self.text)
            try:
                by_doc(doc)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                message = f"cannot be edited automatically ({exc}); edit it by hand"
                raise ConfigError.single(self.shown, "", message) from None
            self.text = tomlkit.dumps(doc)

    def _env_elements(self, sections: list[_Section], team_id: str) -> list[list[_Section]]:
        """Each `[[team.N.environments]]` element with the sub-tables that follow it."""
        path = ("team", team_id, "environments")
        elements: list[list[_Section]] = []
        current: list[_Section] | None = None
        for s in sections:
            if s.path == path and s.is_array:
                current = [s]
                elements.append(current)
            elif current is not None and s.path[: len(path)] == path and len(s.path) > len(path):
                current.append(s)
            else:
                current = None
        if len(elements) != len(self.environments(team_id)):
            raise _LayoutUnsupported
        return elements

    def _team_run(self, sections: list[_Section], team_id: str) -> list[_Section]:
        """The contiguous run of sections of team N, from its first one."""
        run: list[_Section] = []
        for s in sections:
            if s.path[:2] == ("team", team_id):
                run.append(s)
            elif run:
                break
        if not run:
            raise _LayoutUnsupported
        return run

    def _insert(self, lines: list[str], at: int, new: list[str]) -> None:
        if at > 0 and not lines[at - 1].endswith("\n"):
            lines[at - 1] += self.nl
        lines[at:at] = new

    def _remove(self, lines: list[str], sections: list[_Section], extent: list[_Section]) -> None:
        first, last = extent[0], extent[-1]
        start = first.header
        # Comment lines directly above the header describe it and go with it.
        while start > 0 and lines[start - 1].strip().startswith("#"):
            start -= 1
        end = last.content_end
        while end < last.end and lines[end].strip() == "":
            end += 1
        if end >= len(lines):
            while start > 0 and lines[start - 1].strip() == "":
                start -= 1
        del lines[start:end]

    def _lines_add_environment(self, lines: list[str], team_id: str, values: dict[str, TomlValue]) -> None:
        sections = _scan(lines)
        elements = self._env_elements(sections, team_id)
        if elements:
            at = elements[-1][-1].content_end
        elif "environments" in self._team(team_id):
            raise _LayoutUnsupported  # an inline `environments = [...]`
        else:
            at = self._team_run(sections, team_id)[-1].content_end
        table = render_table(("team", team_id, "environments"), values, array=True, nl=self.nl)
        self._insert(lines, at, [self.nl, *table])

    def _lines_set_key(self, lines: list[str], team_id: str, index: int, key: str, value: bool | None) -> None:
        own = self._env_elements(_scan(lines), team_id)[index][0]
        found = next((st for st in own.statements if st.key == (key,)), None)
        if value is None:
            if found is not None:
                del lines[found.start : found.end]
            return
        text = "true" if value else "false"
        if found is not None:
            ending = self.nl if lines[found.start].endswith("\n") else ""
            body = lines[found.start].rstrip("\r\n")
            match = _BOOL_VALUE.match(body)
            if found.end - found.start != 1 or match is None:
                raise _LayoutUnsupported
            lines[found.start] = match["head"] + text + match["tail"] + ending
            return
        indent = ""
        if own.statements:
            last = lines[own.statements[-1].start]
            indent = last[: len(last) - len(last.lstrip(" \t"))]
        self._insert(lines, own.content_end, [f"{indent}{render_key(key)} = {text}{self.nl}"])

    def _lines_remove_environment(self, lines: list[str], team_id: str, index: int) -> None:
        sections = _scan(lines)
        self._remove(lines, sections, self._env_elements(sections, team_id)[index])

    def _lines_add_template(self, lines: list[str], team_id: str, name: str, values: dict[str, TomlValue]) -> None:
        sections = _scan(lines)
        prefix = ("team", team_id, "templates")
        existing = [s for s in sections if s.path[:3] == prefix]
        if existing:
            at = existing[-1].content_end
        elif "templates" in self._team(team_id):
            raise _LayoutUnsupported
        else:
            # After the team's own tables, before its environments.
            run = self._team_run(sections, team_id)
            envs = [i for i, s in enumerate(run) if s.path[:3] == ("team", team_id, "environments")]
            at = run[envs[0] - 1].content_end if envs and envs[0] > 0 else run[-1].content_end
        table = render_table((*prefix, name), values, array=False, nl=self.nl)
        self._insert(lines, at, [self.nl, *table])

    def _lines_remove_template(self, lines: list[str], team_id: str, name: str) -> None:
        sections = _scan(lines)
        path = ("team", team_id, "templates", name)
        extent = [s for s in sections if s.path[: len(path)] == path]
        if not extent or extent[0].path != path or extent[0].is_array:
            raise _LayoutUnsupported
        first = sections.index(extent[0])
        if sections[first : first + len(extent)] != extent:
            raise _LayoutUnsupported
        self._remove(lines, sections, extent)


# --------------------------------------------------------------------------------------------
# The same edits through tomlkit, for tables written inline or with dotted keys.


def _doc_team(doc: Any, team_id: str) -> Any:
    return doc["team"][team_id]


def _doc_add_environment(doc: Any, team_id: str, values: dict[str, TomlValue]) -> None:
    team = _doc_team(doc, team_id)
    envs = team.get("environments")
    if envs is None:
        aot = tomlkit.aot()
        aot.append(_table(values))
        team["environments"] = aot
    elif isinstance(envs, AoT):
        envs.append(_table(values))
    elif isinstance(envs, Array):
        inline = tomlkit.inline_table()
        inline.update(values)
        envs.append(inline)
    else:
        raise TypeError("environments is neither a list of tables nor an array")


def _doc_set_key(doc: Any, team_id: str, index: int, key: str, value: bool | None) -> None:
    env = _doc_team(doc, team_id)["environments"][index]
    if not isinstance(env, (Table, InlineTable, dict)):
        raise TypeError("an environment is not a table")
    if value is None:
        del env[key]
    else:
        env[key] = value


def _doc_remove(doc: Any, team_id: str, section: str, key: int | str) -> None:
    del _doc_team(doc, team_id)[section][key]


def _doc_add_template(doc: Any, team_id: str, name: str, values: dict[str, TomlValue]) -> None:
    team = _doc_team(doc, team_id)
    templates = team.get("templates")
    if templates is None:
        templates = tomlkit.table(is_super_table=True)
        team["templates"] = templates
    if isinstance(templates, InlineTable):
        inline = tomlkit.inline_table()
        inline.update(values)
        templates[name] = inline
    else:
        templates[name] = _table(values)


def _table(values: dict[str, TomlValue]) -> Table:
    table = tomlkit.table()
    for k, v in values.items():
        table[k] = v
    return table


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(text.encode("utf-8"))
        with contextlib.suppress(OSError):
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
