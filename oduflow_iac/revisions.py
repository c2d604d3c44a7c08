"""The revision lock: which commit of each addon repository every environment runs.

`<config stem>.revisions.json` beside the config (`oduflow.revisions.json` for oduflow.toml), like
the port lock, and committed with it, so a pull request shows which repositories move and which
modules will be upgraded before anything is deployed:

    {"version": 1,
     "teams": {"1": {"main": {
         "refresh": 0,
         "repos": {"team-a-addons": {"commit": "<40 hex>",
                                     "modules": {"sale_x": {"tree": "<40 hex>", "version": "17.0.1.0.0"}}}}}}}}

- `commit` is what the addon fetcher checks out; `modules` are the top-level directories of that
  commit holding a `__manifest__.py`, each with the git tree id of its directory (a module's code
  changed iff its tree id changed) and its manifest's `version` (what drives Odoo's migration
  scripts). With both in the lock, the offline plan lists the modules an update upgrades with no
  network (`oduflow-iac env update` writes them; see `resolve.py`).
- `refresh` is the refresh generation of an environment copied from another (`clone_from`):
  `oduflow-iac env refresh` increments it, and a new generation copies again.

Every value ends up in paths (`{repo}@{commit}` directories), scripts, labels and the plan, so the
reader refuses anything else than what `env update` writes: 40-hex object ids, module names as Odoo
names them, versions of a conservative alphabet, repositories of the environment's own cascade.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oduflow_iac.errors import ConfigError, Problem

if TYPE_CHECKING:
    from oduflow_iac.cascade import ResolvedAddon
    from oduflow_iac.config import Config, Environment

LOCK_VERSION = 1
_OBJECT_ID = re.compile(r"^[0-9a-f]{40}$")
# What manifests write (`17.0.1.0.0`, `1.2`, `16.0.1.0.0+local`): one word, nothing a shell,
# a label or markdown reads as syntax.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_BRANCH_KEY = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


@dataclass(frozen=True)
class ModuleRevision:
    tree: str
    version: str | None = None


@dataclass(frozen=True)
class RepoRevision:
    commit: str
    modules: dict[str, ModuleRevision] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvRevisions:
    repos: dict[str, RepoRevision] = field(default_factory=dict)
    refresh: int = 0

    def commit(self, repo: str) -> str | None:
        pinned = self.repos.get(repo)
        return pinned.commit if pinned is not None else None

    def modules(self) -> dict[str, ModuleRevision]:
        """Every module of the pinned repositories. A module name in two repositories is Odoo's
        problem as much as ours: the first one on `addons_path` wins, as the lock's order does."""
        out: dict[str, ModuleRevision] = {}
        for repo in self.repos.values():
            for name, module in repo.modules.items():
                out.setdefault(name, module)
        return out


# team id -> branch -> revisions
Lock = dict[str, dict[str, EnvRevisions]]


def lock_path_for(config_path: Path) -> Path:
    """`oduflow.toml` -> `oduflow.revisions.json` in the same folder."""
    return config_path.with_name(f"{config_path.stem}.revisions.json")


# --------------------------------------------------------------------------------------------
# Reading


def object_id_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not _OBJECT_ID.match(value):
        return "must be a 40-hex git object id (lower case)"
    return None


def version_problem(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _VERSION.match(value):
        return "must be a manifest version: letters, digits, `.`, `_`, `+` and `-`, at most 64 characters"
    return None


def _module(raw: Any, shown: str, key: str) -> ModuleRevision:
    from oduflow_iac.config.values import module_name_problem  # the config package imports this module's users

    name = key.rsplit(".", 1)[-1]
    problem = module_name_problem(name)
    if problem:
        raise ConfigError.single(shown, key, problem)
    if not isinstance(raw, dict) or set(raw) - {"tree", "version"}:
        raise ConfigError.single(shown, key, 'must be {"tree": "<40 hex>", "version": "..."}')
    problem = object_id_problem(raw.get("tree"))
    if problem:
        raise ConfigError.single(shown, f"{key}.tree", problem)
    problem = version_problem(raw.get("version"))
    if problem:
        raise ConfigError.single(shown, f"{key}.version", problem)
    return ModuleRevision(raw["tree"], raw.get("version"))


def _repo(raw: Any, shown: str, key: str) -> RepoRevision:
    from oduflow_iac.config.values import addon_repo_name_problem

    problem = addon_repo_name_problem(key.rsplit(".", 1)[-1])
    if problem:
        raise ConfigError.single(shown, key, problem)
    if not isinstance(raw, dict) or set(raw) - {"commit", "modules"}:
        raise ConfigError.single(shown, key, 'must be {"commit": "<40 hex>", "modules": {...}}')
    problem = object_id_problem(raw.get("commit"))
    if problem:
        raise ConfigError.single(shown, f"{key}.commit", problem)
    modules = raw.get("modules", {})
    if not isinstance(modules, dict):
        raise ConfigError.single(shown, f"{key}.modules", "must map module names to their tree and version")
    return RepoRevision(raw["commit"], {m: _module(v, shown, f"{key}.modules.{m}") for m, v in modules.items()})


def _env(raw: Any, shown: str, key: str) -> EnvRevisions:
    if not isinstance(raw, dict) or set(raw) - {"refresh", "repos"}:
        raise ConfigError.single(shown, key, 'must be {"refresh": N, "repos": {...}}')
    refresh = raw.get("refresh", 0)
    if isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 0:
        raise ConfigError.single(shown, f"{key}.refresh", "must be a whole number, 0 or more")
    repos = raw.get("repos", {})
    if not isinstance(repos, dict):
        raise ConfigError.single(shown, f"{key}.repos", "must map repository names to their commit")
    return EnvRevisions({r: _repo(v, shown, f"{key}.repos.{r}") for r, v in repos.items()}, refresh)


def read_revisions(path: Path) -> Lock:
    """The lock's revisions by team and branch; an absent lock is empty. A damaged one, or one
    holding a value `env update` would never write, is a ConfigError naming the file and key."""
    if not path.exists():
        return {}
    shown = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError.single(shown, "", f"is not a readable revision lock: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise ConfigError.single(shown, "version", f"must be {LOCK_VERSION} (a revision lock written by oduflow-iac)")
    teams = data.get("teams")
    if not isinstance(teams, dict) or set(data) - {"version", "teams"}:
        raise ConfigError.single(shown, "teams", 'missing: a revision lock is {"version": 1, "teams": {...}}')
    lock: Lock = {}
    for team_id, branches in teams.items():
        if not isinstance(branches, dict):
            raise ConfigError.single(shown, f"teams.{team_id}", "must map branch names to revisions")
        entries: dict[str, EnvRevisions] = {}
        for branch, raw in branches.items():
            if not _BRANCH_KEY.match(branch):
                raise ConfigError.single(shown, f"teams.{team_id}", "holds a branch name with control characters")
            entries[branch] = _env(raw, shown, f"teams.{team_id}.{branch}")
        lock[str(team_id)] = entries
    return lock


def env_addons(config: Config, team_id: str, env: Environment) -> list[ResolvedAddon]:
    """The addon repositories of one environment, in cascade order (as the program fetches them)."""
    from oduflow_iac.cascade import resolve_addons

    team = config.team[team_id]
    levels = [
        ("platform", config.platform.addons),
        ("organisation", config.organisation.addons),
        ("project", team.addons),
    ]
    return resolve_addons(levels, env.type, config.env_image(team_id, env), env.addons)  # type: ignore[arg-type]


def cascade_problems(config: Config, lock: Lock, shown: str) -> list[Problem]:
    """Repositories the lock pins for an environment whose cascade does not have them. Entries of
    environments no longer in the file are stale, not wrong: the next write drops them."""
    problems: list[Problem] = []
    for team_id, team in config.teams:
        for env in team.environments:
            entry = lock.get(team_id, {}).get(env.branch)
            if entry is None:
                continue
            names = {a.name for a in env_addons(config, team_id, env)}
            for repo in entry.repos:
                if repo not in names:
                    problems.append(
                        Problem(
                            shown,
                            f"teams.{team_id}.{env.branch}.repos.{repo}",
                            "is not an addon repository of this environment's cascade: run `oduflow-iac env "
                            f"update --team {team_id} --branch {env.branch}` to record its repositories",
                        )
                    )
    return problems


# --------------------------------------------------------------------------------------------
# Writing


def _env_doc(entry: EnvRevisions) -> dict[str, Any]:
    repos: dict[str, Any] = {}
    for name in sorted(entry.repos):
        repo = entry.repos[name]
        modules: dict[str, Any] = {}
        for m in sorted(repo.modules):
            module = repo.modules[m]
            modules[m] = {"tree": module.tree} | ({"version": module.version} if module.version is not None else {})
        repos[name] = {"commit": repo.commit, "modules": modules}
    return {"refresh": entry.refresh, "repos": repos}


def render(lock: Lock) -> str:
    """The lock's text: keys sorted (teams numerically), so a change diffs to the lines it moves."""
    from oduflow_iac.ports import _team_key

    body = {
        "version": LOCK_VERSION,
        "teams": {
            t: {b: _env_doc(lock[t][b]) for b in sorted(lock[t])} for t in sorted(lock, key=_team_key) if lock[t]
        },
    }
    return json.dumps(body, indent=2) + "\n"


def write_revisions(path: Path, lock: Lock) -> bool:
    """Write the lock. Returns whether the file changed."""
    text = render(lock)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def pruned(config: Config, lock: Lock) -> Lock:
    """The lock without the environments and repositories the config no longer has."""
    out: Lock = {}
    for team_id, team in config.teams:
        for env in team.environments:
            entry = lock.get(team_id, {}).get(env.branch)
            if entry is None:
                continue
            names = {a.name for a in env_addons(config, team_id, env)}
            repos = {n: r for n, r in entry.repos.items() if n in names}
            out.setdefault(team_id, {})[env.branch] = EnvRevisions(repos, entry.refresh)
    return out


# --------------------------------------------------------------------------------------------
# What changes between two revisions (the plan, the upgrade one-shot's label)


def upgrade_state(image: str, modules: Mapping[str, ModuleRevision]) -> dict[str, Any]:
    """What the upgrade one-shot compares with the state recorded in the database: the image and,
    per module, its tree and version (`tree/version`)."""
    return {
        "image": image,
        "modules": {m: f"{r.tree}/{r.version or ''}" for m, r in sorted(modules.items())},
    }


def upgrade_digest(image: str, modules: Mapping[str, ModuleRevision], refresh: int | None = None) -> str:
    """A short digest of `upgrade_state`: the upgrade one-shot's label, so the provider re-creates
    it exactly when the image or a pinned module's code or version changes (labels are ForceNew).
    A copy (`clone_from`) adds its refresh generation: a new copy brings its source's database,
    recorded state included, which its own code must be upgraded from again."""
    state = upgrade_state(image, modules) | ({"refresh": refresh} if refresh is not None else {})
    text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_modules(before: Mapping[str, ModuleRevision], after: Mapping[str, ModuleRevision]) -> list[str]:
    """Modules present after whose tree or manifest version differs from before (a new module is
    listed too: where it is already installed from elsewhere, its code changed)."""
    return sorted(m for m, r in after.items() if before.get(m) != r)


# --------------------------------------------------------------------------------------------
# The plan: what each environment runs, and what moves between two plans


def plan_section(config: Config) -> dict[str, Any]:
    """Per environment (`team/branch`): its image, refresh generation and, per repository of its
    cascade, the branch, the pinned commit (None: the branch head at fetch time) and the modules.
    The JSON plan carries it, so a diff of two plans needs no network and no lock of the base."""
    out: dict[str, Any] = {}
    for team_id, team in config.teams:
        for env in team.environments:
            pinned = config.env_revisions(team_id, env.branch)
            repos: dict[str, Any] = {}
            for addon in env_addons(config, team_id, env):
                repo = pinned.repos.get(addon.name)
                repos[addon.name] = {
                    "branch": addon.branch,
                    "commit": repo.commit if repo else None,
                    "modules": {m: {"tree": r.tree, "version": r.version} for m, r in sorted(repo.modules.items())}
                    if repo
                    else {},
                }
            out[f"{team_id}/{env.branch}"] = {
                "image": config.env_image(team_id, env),
                "refresh": pinned.refresh,
                "repos": repos,
            }
    return out


def unpinned(section: Mapping[str, Any]) -> list[str]:
    """`team/branch` of environments with a repository the lock does not pin."""
    return [
        where
        for where, env in section.items()
        if any(repo.get("commit") is None for repo in (env.get("repos") or {}).values())
    ]


def _modules_of(repo: Mapping[str, Any] | None) -> dict[str, ModuleRevision]:
    out = {}
    for name, m in ((repo or {}).get("modules") or {}).items():
        if isinstance(m, Mapping):
            out[name] = ModuleRevision(str(m.get("tree")), m.get("version"))
    return out


def plan_moves(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What an apply of `head` over `base` changes in the code each environment runs: per
    environment in both, the repositories whose commit moves and the modules the upgrade
    one-shot will upgrade where installed (tree or version changed), or every installed module
    when the image changed."""
    out: list[dict[str, Any]] = []
    for where in sorted(set(base) & set(head)):
        old, new = base[where], head[where]
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            continue
        repos = []
        old_modules: dict[str, ModuleRevision] = {}
        new_modules: dict[str, ModuleRevision] = {}
        for name in sorted(set(old.get("repos") or {}) | set(new.get("repos") or {})):
            a, b = (old.get("repos") or {}).get(name), (new.get("repos") or {}).get(name)
            old_modules |= _modules_of(a)
            new_modules |= _modules_of(b)
            if (a or {}).get("commit") != (b or {}).get("commit"):
                repos.append({"repo": name, "from": (a or {}).get("commit"), "to": (b or {}).get("commit")})
        image_changed = old.get("image") != new.get("image")
        if not repos and not image_changed:
            continue  # a new refresh generation alone is the refresh's own note (lifecycle/refresh.py)
        changed = changed_modules(old_modules, new_modules)
        entry: dict[str, Any] = {"environment": where, "repos": repos}
        if image_changed:
            entry["image"] = {"from": old.get("image"), "to": new.get("image")}
        entry["upgrade"] = "all" if image_changed else changed
        entry["versions"] = {
            m: {"from": old_modules[m].version if m in old_modules else None, "to": new_modules[m].version}
            for m in changed
            if m not in old_modules or old_modules[m].version != new_modules[m].version
        }
        out.append(entry)
    return out


def describe_move(move: Mapping[str, Any]) -> str:
    """One line for people: `1/main: team-a-addons 0123456789ab -> 89abcdef0123; upgrades sale_x
    (17.0.1.0.0 -> 17.0.1.1.0: migration scripts run), stock_y (code changed)`."""
    parts = []
    for r in move.get("repos") or []:
        frm = r["from"][:12] if r.get("from") else "branch head"
        to = r["to"][:12] if r.get("to") else "branch head"
        parts.append(f"{r['repo']} {frm} -> {to}")
    if "image" in move:
        parts.append(f"image {move['image']['from']} -> {move['image']['to']}")
    upgrade = move.get("upgrade")
    if upgrade == "all":
        what = "upgrades every installed module (-u all: the image changed)"
    elif upgrade:
        versions = move.get("versions") or {}
        shown = []
        for m in upgrade:
            v = versions.get(m)
            shown.append(
                f"{m} ({v['from'] or 'new'} -> {v['to']}: migration scripts run)" if v else f"{m} (code changed)"
            )
        what = "upgrades where installed: " + ", ".join(shown)
    else:
        what = "no module to upgrade"
    return f"{move['environment']}: {'; '.join(parts)}; {what}"
