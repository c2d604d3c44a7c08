"""`oduflow-iac env update` and `env refresh`: edit the revision lock (revisions.py), then deploy.

`env update` records, for each addon repository of the environment's cascade, the commit to run
(the branch head now, or `--rev REPO=SHA`) and the modules of that commit (tree ids and manifest
versions, read by git_revisions.py); `env refresh` records a new refresh generation of an
environment copied from another (`clone_from`). Neither touches oduflow.toml; both deploy the team
like `env create` (unless `--no-deploy`), so the plan of a pull request shows the same change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from oduflow_iac import revisions
from oduflow_iac.config import Config, Environment, SecretValue
from oduflow_iac.errors import UsageError
from oduflow_iac.git_revisions import Remote, Secrets, known
from oduflow_iac.teams import SecretResolver


def find_environment(config: Config, team_id: str, branch: str) -> Environment:
    for env in config.team[team_id].environments:
        if env.branch == branch:
            return env
    known_branches = ", ".join(e.branch for e in config.team[team_id].environments) or "none"
    raise UsageError(
        f"{config.path}: team {team_id} has no environment for branch {branch!r} (branches: {known_branches})"
    )


def team_secrets(config: Config, team_id: str, resolve: SecretResolver | None) -> Secrets:
    """The team's git credentials in clear: inline values, or `secret:KEY` through `resolve`."""
    team = config.team[team_id]

    def value(secret: SecretValue | None, key: str) -> str | None:
        if secret is None:
            return None
        if secret.is_inline:
            return secret.reveal()
        found = resolve(secret.stack_key or "") if resolve is not None else None
        if found is None:
            raise UsageError(
                f"{config.path}: team.{team_id}.{key}: the secret {secret.identity} cannot be read here: set "
                "it in the stack (`pulumi config set --secret`) or in the environment (ODUFLOW_SECRET_<KEY>)"
            )
        return found

    return Secrets(value(team.git_token, "git_token"), value(team.git_ssh_key, "git_ssh_key"), team.git_username)


@dataclass
class Update:
    before: revisions.EnvRevisions
    after: revisions.EnvRevisions

    def lines(self, team_id: str, branch: str) -> list[str]:
        return describe(self.before, self.after, f"{team_id}/{branch}")


def resolve_revisions(
    config: Config,
    team_id: str,
    branch: str,
    remote: Remote,
    revs: Mapping[str, str] | None = None,
    *,
    out: Callable[[str], None] | None = None,
) -> Update:
    """The environment's revisions now: each repository at `revs[repo]` or its branch head, with
    the modules of that commit (not read again for a commit already in the lock)."""
    env = find_environment(config, team_id, branch)
    addons = revisions.env_addons(config, team_id, env)
    revs = dict(revs or {})
    known(addons, revs)
    before = config.env_revisions(team_id, branch)
    repos: dict[str, revisions.RepoRevision] = {}
    for addon in addons:
        commit = revs.get(addon.name) or remote.head(addon)
        locked = before.repos.get(addon.name)
        if locked is not None and locked.commit == commit:
            repos[addon.name] = locked
            continue
        if out is not None:
            out(f"reading {addon.name} at {commit[:12]} ({addon.branch})")
        repos[addon.name] = revisions.RepoRevision(commit, remote.modules(addon, commit))
    return Update(before, revisions.EnvRevisions(repos, before.refresh))


def describe(before: revisions.EnvRevisions, after: revisions.EnvRevisions, where: str) -> list[str]:
    """Per repository: where it moves, and the modules whose code or version changed."""
    lines: list[str] = []
    for name in sorted(set(before.repos) | set(after.repos)):
        old, new = before.repos.get(name), after.repos.get(name)
        if new is None:
            lines.append(f"{where}: {name}: no longer pinned")
            continue
        if old is not None and old.commit == new.commit:
            continue
        frm = old.commit[:12] if old is not None else "unpinned"
        changed = revisions.changed_modules(old.modules if old else {}, new.modules)
        what = f" (modules changed: {', '.join(changed)})" if changed else " (no module changed)"
        lines.append(f"{where}: {name}: {frm} -> {new.commit[:12]}{what}")
    if before.refresh != after.refresh:
        lines.append(f"{where}: refresh {before.refresh} -> {after.refresh}")
    return lines or [f"{where}: revisions unchanged"]


def write_entry(config: Config, team_id: str, branch: str, entry: revisions.EnvRevisions) -> tuple[Path, bool]:
    """Record one environment's entry (every other entry as it is, stale ones dropped)."""
    path = revisions.lock_path_for(config.path)
    lock = revisions.read_revisions(path)
    lock.setdefault(team_id, {})[branch] = entry
    return path, revisions.write_revisions(path, revisions.pruned(config, lock))


def next_refresh(config: Config, team_id: str, branch: str) -> Update:
    """A new refresh generation for an environment copied from another (`clone_from`)."""
    env = find_environment(config, team_id, branch)
    if not env.clone_from:
        raise UsageError(
            f"{config.path}: team.{team_id}: environment {branch!r} has no `clone_from`: only an environment "
            "copied from another one can be refreshed"
        )
    before = config.env_revisions(team_id, branch)
    return Update(before, revisions.EnvRevisions(dict(before.repos), before.refresh + 1))
