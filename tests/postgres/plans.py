"""Plans of the whole program for the PostgreSQL tests, and what they declare about databases.

`plan_of(path)` runs the real program under mocks (oduflow_iac.offline.plan.plan_config); the
views below read back, from the plan only, the roles, databases and backup container it declares,
so the tests compare the server against the plan and never against a second copy of the naming
rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import tomlkit

from oduflow_iac.offline import harness
from oduflow_iac.offline.plan import plan_config
from tests.postgres.sql_apply import DATABASE_TYPE, GRANT_TYPE, ROLE_TYPE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "oduflow.toml"
CONTAINER_TYPE = "docker:index/container:Container"


@cache
def _plan_cached(path: str, digest: str) -> harness.PlannedRun:
    del digest  # part of the cache key only: a changed file is planned again
    return plan_config(path)


def plan_of(path: Path) -> harness.PlannedRun:
    """The planned run of the config at `path` (cached by content: planning takes seconds)."""
    return _plan_cached(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


@dataclass(frozen=True)
class PlannedRole:
    name: str
    password: str


@dataclass(frozen=True)
class PlannedDatabase:
    urn: str
    name: str
    owner: str
    template: str
    is_template: bool


@dataclass(frozen=True)
class PlannedBackup:
    name: str
    script: str
    envs: dict[str, str]


def _inputs(r: harness.PlannedResource) -> dict[str, Any]:
    value = harness.reveal(r.inputs)
    assert isinstance(value, dict)
    return value


def roles(run: harness.PlannedRun) -> dict[str, PlannedRole]:
    out = {}
    for r in run.of_type(ROLE_TYPE):
        i = _inputs(r)
        if i.get("login"):  # the group roles pg_hba.conf admits by have no password and no login
            out[i["name"]] = PlannedRole(i["name"], i["password"])
    return out


def databases(run: harness.PlannedRun) -> list[PlannedDatabase]:
    return [
        PlannedDatabase(r.urn, i["name"], i["owner"], i.get("template") or "template0", _is_team_template(i["name"]))
        for r in run.of_type(DATABASE_TYPE)
        for i in [_inputs(r)]
    ]


def _is_team_template(name: str) -> bool:
    """Team templates are not marked IS_TEMPLATE (any CREATEDB role could copy them): known by name."""
    return name.startswith("oduflow_template_")


def environment_databases(run: harness.PlannedRun) -> list[PlannedDatabase]:
    return [d for d in databases(run) if not d.is_template]


def template_databases(run: harness.PlannedRun) -> list[PlannedDatabase]:
    return [d for d in databases(run) if d.is_template]


def grants_on(run: harness.PlannedRun, database: str) -> list[harness.PlannedResource]:
    return [r for r in run.of_type(GRANT_TYPE) if _inputs(r)["database"] == database]


def backup_containers(run: harness.PlannedRun) -> list[PlannedBackup]:
    out = []
    for r in run.of_type(CONTAINER_TYPE):
        i = _inputs(r)
        if not str(i.get("name", "")).endswith("-backup"):
            continue
        scripts = [u["content"] for u in i.get("uploads", []) if u.get("file") == "/oduflow/backup.sh"]
        envs = dict(e.split("=", 1) for e in i.get("envs", []))
        out.append(PlannedBackup(i["name"], scripts[0] if scripts else "", envs))
    return out


def depends_on(run: harness.PlannedRun, urn: str) -> set[str]:
    """Every URN `urn` waits for, directly or through others."""
    by_urn = run.by_urn()
    seen: set[str] = set()
    todo = [urn]
    while todo:
        r = by_urn[todo.pop()]
        direct = set(r.dependencies)
        for urns in r.property_dependencies.values():
            direct.update(urns)
        for d in direct - seen:
            if d in by_urn:
                seen.add(d)
                todo.append(d)
    return seen


# ---------------------------------------------------------------------------------------------
# Configs


def write_config(directory: Path, document: tomlkit.TOMLDocument | str, name: str = "oduflow.toml") -> Path:
    path = directory / name
    path.write_text(document if isinstance(document, str) else tomlkit.dumps(document), encoding="utf-8")
    return path


def load_document(path: Path) -> tomlkit.TOMLDocument:
    return tomlkit.parse(path.read_text(encoding="utf-8"))


def without_environment(document: tomlkit.TOMLDocument, team: str, branch: str) -> tomlkit.TOMLDocument:
    """A copy of the config with one environment removed."""
    copy = tomlkit.parse(tomlkit.dumps(document))
    envs = copy["team"][team]["environments"]
    kept = [e for e in envs if e["branch"] != branch]
    assert len(kept) == len(envs) - 1, f"no environment {branch!r} in team {team}"
    array = tomlkit.aot()
    for e in kept:
        array.append(e)
    copy["team"][team]["environments"] = array
    return copy


def with_backup(document: tomlkit.TOMLDocument) -> tomlkit.TOMLDocument:
    """A copy of the config with nightly backups to S3 enabled."""
    copy = tomlkit.parse(tomlkit.dumps(document))
    backup = tomlkit.table()
    backup["bucket_prefix"] = "oduflow-test"
    backup["region"] = "eu-west-1"
    copy["backup"] = backup
    return copy


# Long branch names (up to the 100 characters the config accepts), several sharing their first 80
# characters, so that database names must be cut to 63 bytes and still stay distinct.
LONG_PREFIX = "feature/" + "very-long-descriptive-branch-name-for-the-invoicing-rework-" + "x" * 14


def long_branches() -> list[str]:
    base = LONG_PREFIX[:80]
    branches = [base + suffix for suffix in ("-alpha", "-beta", "-gamma-" + "g" * 12, "/sub/" + "z" * 15)]
    branches.append("hotfix/" + "y" * 93)
    branches.append("hotfix/" + "y" * 92 + "z")
    assert all(len(b) <= 100 for b in branches)
    return branches


def long_branch_config() -> str:
    """Two teams (ids 7 and 42) with long branches, each team with a template."""
    lines = []
    for team, start in (("7", 51000), ("42", 51100)):
        lines += [
            f"[team.{team}]",
            f'hostname = "team-{team}.localhost"',
            f'auth_token = "secret:team{team}-token"',
            f'ui_password = "secret:team{team}-ui-password"',
            f"port_range = [{start}, {start + 50}]",
            "",
            f"[team.{team}.templates.base-{team}]",
            'odoo_image = "odoo:17.0"',
            "",
        ]
        for i, branch in enumerate(long_branches()):
            lines += [f"[[team.{team}.environments]]", f'branch = "{branch}"']
            lines += [f'template = "base-{team}"'] if i % 2 == 0 else ['odoo_image = "odoo:17.0"']
            lines.append("")
    return "\n".join(lines)
