"""Addon-repository cascade: platform -> organisation -> project -> environment override.

Platform and organisation repositories pick their branch by Odoo version (`versions`), project
repositories by environment type (`branches`); a repository with one `branch` is used as it is.
An environment may override any inherited repository with another branch, or exclude it with
`false`. No override means inherit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from oduflow_iac.config import AddonOverride, AddonRepo, EnvType

Level = Literal["platform", "organisation", "project"]
_VERSION = re.compile(r":(?:[^:/]*?)(\d+\.\d+)")


@dataclass(frozen=True)
class ResolvedAddon:
    name: str
    url: str
    branch: str
    level: Level
    overridden: bool = False


def odoo_version(image: str) -> str | None:
    """`odoo:17.0` or `registry/odoo:17.0-20240101` -> `17.0`; None when the tag names no version."""
    match = _VERSION.search(image.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def repo_branch(repo: AddonRepo, env_type: EnvType, version: str | None) -> str | None:
    """The branch a repository contributes to an environment before overrides, or None (skipped)."""
    if repo.branches:
        return repo.branches.get(env_type, repo.branch)
    if repo.versions:
        return repo.versions.get(version or "", repo.branch)
    return repo.branch


def resolve_addons(
    levels: list[tuple[Level, list[AddonRepo]]],
    env_type: EnvType,
    image: str,
    overrides: dict[str, AddonOverride],
) -> list[ResolvedAddon]:
    """The repositories of one environment, in cascade order. A lower level redefining a repository
    of the same name replaces it (an organisation may fork a platform repository)."""
    version = odoo_version(image)
    chosen: dict[str, tuple[Level, AddonRepo]] = {}
    for level, repos in levels:
        for repo in repos:
            chosen.pop(repo.name, None)  # re-insert to keep the lower level's position
            chosen[repo.name] = (level, repo)
    result = []
    for name, (level, repo) in chosen.items():
        override = overrides.get(name)
        if override is False:
            continue
        if isinstance(override, str):
            result.append(ResolvedAddon(name, repo.url, override, level, overridden=True))
            continue
        branch = repo_branch(repo, env_type, version)
        if branch is not None:
            result.append(ResolvedAddon(name, repo.url, branch, level))
    return result
