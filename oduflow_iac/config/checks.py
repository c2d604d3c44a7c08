"""Rules across keys and teams that pydantic cannot express: overlapping ranges, collisions, references."""

from __future__ import annotations

import re
import sys
from collections import defaultdict

from oduflow_iac import naming
from oduflow_iac.config.model import _TEAM_ID, PORT_MAX, PORT_MIN, Config, SecretValue, Team
from oduflow_iac.errors import Problem
from oduflow_iac.postgres_server import PROVISIONER_CONNECTION_LIMIT

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - exercised on Python 3.10 only
    pass


def cross_checks(config: Config, shown: str) -> list[Problem]:
    problems: list[Problem] = []

    def add(key: str, message: str) -> None:
        problems.append(Problem(shown, key, message))

    teams = config.teams
    # Port ranges: each sane on its own, then no two overlapping (sorted sweep, linear after sort).
    sane: list[tuple[int, int, str]] = []
    for team_id, team in teams:
        start, end = team.port_range
        key = f"team.{team_id}.port_range"
        if start > end:
            add(key, f"[{start}, {end}) is reversed: the start must be below the end")
        elif start == end:
            add(key, f"[{start}, {end}) is empty: the end is exclusive")
        elif start < PORT_MIN or end - 1 > PORT_MAX:
            add(key, f"[{start}, {end}) is outside {PORT_MIN}-{PORT_MAX}")
        else:
            sane.append((start, end, team_id))
    sane.sort()
    widest: tuple[int, int, str] | None = None
    for start, end, team_id in sane:
        if widest is not None and start < widest[1]:
            add(
                f"team.{team_id}.port_range",
                f"[{start}, {end}) overlaps team.{widest[2]} [{widest[0]}, {widest[1]})",
            )
        if widest is None or end > widest[1]:
            widest = (start, end, team_id)

    for team_id, _ in teams:
        if not _TEAM_ID.match(team_id) or team_id == "template":
            add(
                f"team.{team_id}",
                "a team id is lower-case letters and digits (it is part of database, container and bucket "
                "names, where `_` and `-` separate it from the branch) and not `template`",
            )
    problems.extend(_database_collisions(teams, shown))
    problems.extend(_connection_budget(config, shown))
    if config.backup is not None:
        server, dumper = _major(config.platform.postgres_image), _major(config.platform.backup_image)
        if server is not None and dumper is not None and dumper < server:
            add(
                "platform.backup_image",
                f"its pg_dump {dumper} cannot dump the PostgreSQL {server} server of platform.postgres_image; "
                f"use a backup image for PostgreSQL {server}",
            )

    if config.dns is not None and config.platform.tls and config.dns.api_token is None:
        add("dns.api_token", "required when platform.tls is on: certificates are issued through Cloudflare DNS")

    seen_hosts: dict[str, str] = {}
    seen_bases: dict[str, str] = {}
    seen_tokens: dict[str, str] = {}
    for team_id, team in teams:
        host = team.hostname.lower()
        duplicate_host = host in seen_hosts
        if duplicate_host:
            add(f"team.{team_id}.hostname", f"{team.hostname!r} is already the hostname of {seen_hosts[host]}")
        else:
            seen_hosts[host] = f"team.{team_id}"
        # Each team's environments live under its own base: a shared one would mix their routes.
        base = team.base.lower()
        key = "base_domain" if team.base_domain else "hostname"
        if base in seen_bases and (team.base_domain or not duplicate_host):
            add(f"team.{team_id}.{key}", f"environments would live under {base!r}, as those of {seen_bases[base]}")
        seen_bases.setdefault(base, f"team.{team_id}.{key}")
        for key in ("auth_token", "production_token"):
            token: SecretValue | None = getattr(team, key)
            if token is None:
                continue
            ident = token.identity()
            if ident in seen_tokens:
                add(f"team.{team_id}.{key}", f"the same token as {seen_tokens[ident]}")
            else:
                seen_tokens[ident] = f"team.{team_id}.{key}"
        problems.extend(_team_checks(config, team_id, team, shown))
    if not problems:
        problems.extend(_hostname_collisions(config, teams, seen_hosts, shown))
    return problems


def _hostname_collisions(
    config: Config, teams: list[tuple[str, Team]], owners: dict[str, str], shown: str
) -> list[Problem]:
    """Every environment's hostname is its own (`feature_y` and `feature-y` would share one)."""
    problems: list[Problem] = []
    for team_id, team in teams:
        for i, env in enumerate(team.environments):
            if env.hostname is None and team.environment_hostname_mode == "slots":
                continue  # slot numbers are distinct by construction
            host = (
                naming.env_hostname(team.base, env.branch, "branch", 0).lower()
                if env.hostname is None
                else (env.hostname.lower())
            )
            key = f"team.{team_id}.environments[{i}]"
            first = owners.setdefault(host, key)
            if first != key:
                problems.append(Problem(shown, f"{key}.branch", f"hostname {host!r} is already that of {first}"))
    return problems


def _major(image: str) -> int | None:
    """The major version in an image tag (`postgres:16.4` -> 16), or None."""
    match = re.search(r":(\d+)(?:[.\-]|$)", image.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def _database_collisions(teams: list[tuple[str, Team]], shown: str) -> list[Problem]:
    """Every database on the shared server, environments and templates of all teams, is distinct."""
    problems: list[Problem] = []
    owners: dict[str, str] = {}
    for team_id, team in teams:
        keys = [(f"team.{team_id}.templates.{n}", naming.template_db_name(team_id, n)) for n in team.templates]
        keys += [
            (f"team.{team_id}.environments[{i}].branch", naming.env_db_name(team_id, e.branch))
            for i, e in enumerate(team.environments)
        ]
        for key, db in keys:
            first = owners.setdefault(db, key)
            # Two branches of one team are reported where branches are checked (_team_checks).
            both_branches_here = first.startswith(f"team.{team_id}.environments") and "environments" in key
            if first != key and not both_branches_here:
                problems.append(Problem(shown, key, f"database {db!r} is already the database of {first}"))
    return problems


def _team_checks(config: Config, team_id: str, team: Team, shown: str) -> list[Problem]:
    problems: list[Problem] = []
    prefix = f"team.{team_id}"

    def add(key: str, message: str) -> None:
        problems.append(Problem(shown, f"{prefix}.{key}", message))

    envs = team.environments
    size = team.port_range[1] - team.port_range[0]
    if len(envs) > team.environment_slots:
        add("environments", f"{len(envs)} environments but environment_slots is {team.environment_slots}")
    if size > 0 and len(envs) > size:
        add("environments", f"{len(envs)} environments but port_range has only {size} ports")

    repos = _known_repos(config, team)
    by_branch: dict[str, int] = {}
    by_db: dict[str, str] = {}
    for i, env in enumerate(envs):
        key = f"environments[{i}]"
        if env.branch in by_branch:
            add(f"{key}.branch", f"{env.branch!r} is already environments[{by_branch[env.branch]}]")
            continue
        by_branch[env.branch] = i
        db = naming.env_db_name(team_id, env.branch)
        if db in by_db:
            add(f"{key}.branch", f"{env.branch!r} and {by_db[db]!r} both map to database {db!r}")
        else:
            by_db[db] = env.branch
        if env.template is not None and env.template not in team.templates:
            add(f"{key}.template", f"template {env.template!r} is not defined in [{prefix}.templates]")
        if env.template is None and env.odoo_image is None:
            add(f"{key}.odoo_image", "an environment needs `odoo_image` or a `template`")
        for repo in env.addons:
            if repo not in repos:
                add(f"{key}.addons.{repo}", f"addon repository {repo!r} is not defined at any level")
    for name in team.templates:
        if "\x00" in name or naming.slugify_branch(name) == "":
            add(f"templates.{name}", "template name has nothing usable for a database name")
    return problems


def _known_repos(config: Config, team: Team) -> set[str]:
    return {r.name for r in (*config.platform.addons, *config.organisation.addons, *team.addons)}


def count_by_type(team: Team) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for env in team.environments:
        counts[env.type] += 1
    return dict(counts)


def _connection_budget(config: Config, shown: str) -> list[Problem]:
    """Every team role's connection limit (and its provisioning role's) must fit in what the server
    offers to non-superusers, and within the organisation's quota when it sets one: otherwise one
    team at its limit could leave another team (or the provider) without a connection."""
    if not config.team:
        return []
    limits = {team_id: config.team_db_connections(team_id) for team_id, _ in config.teams}
    provisioning = PROVISIONER_CONNECTION_LIMIT * len(limits)
    total = sum(limits.values()) + provisioning
    platform = config.platform
    available = platform.postgres_max_connections - platform.postgres_reserved_connections
    detail = ", ".join(f"team.{t}: {n}" for t, n in limits.items())
    problems = []
    if total > available:
        problems.append(
            Problem(
                shown,
                "platform.postgres_max_connections",
                f"{platform.postgres_max_connections} minus {platform.postgres_reserved_connections} reserved leaves "
                f"{available} connections, but the team roles' limits add up to {total} ({detail}, and "
                f"{provisioning} for the provisioning roles); raise it or set team.N.quota.db_connections",
            )
        )
    cap = config.organisation.quota.db_connections
    if cap is not None and total - provisioning > cap:
        problems.append(
            Problem(
                shown,
                "organisation.quota.db_connections",
                f"the team roles' limits add up to {total - provisioning} ({detail}), above this quota of {cap}",
            )
        )
    return problems
