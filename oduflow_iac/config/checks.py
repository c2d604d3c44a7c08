"""Rules across keys and teams that pydantic cannot express: overlapping ranges, collisions, references."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from oduflow_iac import naming, odoo_conf
from oduflow_iac.config.model import _TEAM_ID, PORT_MAX, PORT_MIN, Config, SecretValue, Team
from oduflow_iac.config.values import control_character, template_name_problem
from oduflow_iac.errors import Problem
from oduflow_iac.postgres_server import PROVISIONER_CONNECTION_LIMIT


def cross_checks(config: Config, shown: str) -> list[Problem]:
    problems: list[Problem] = []

    def add(key: str, message: str) -> None:
        problems.append(Problem(shown, key, message))

    teams = config.teams
    problems.extend(_control_characters(config, shown))
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
    if not problems:  # two databases with one name already give their containers one name
        problems.extend(_resource_name_collisions(teams, shown))
    if not problems:
        problems.extend(_domain_ownership(teams, shown))
    if not problems:
        problems.extend(_hostname_collisions(config, teams, seen_hosts, shown))
    # One line per key: a newline in an option value is both a control character and a bad value.
    first: dict[str, Problem] = {}
    for problem in problems:
        first.setdefault(problem.key, problem)
    return list(first.values())


# --------------------------------------------------------------------------------------------
# Control characters


def _walk(value: Any, key: str) -> Iterator[tuple[str, str, bool]]:
    """(key path, text, is a key) of every string in the validated model, secrets excepted: they
    reach only environment variables and hashes, and a deploy key is several lines."""
    if isinstance(value, SecretValue):
        return
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{key}.{name}" if key else name)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield f"{key}.{k}", str(k), True
            yield from _walk(v, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _walk(v, f"{key}[{i}]")
    elif isinstance(value, str):
        yield key, value, False


def _control_characters(config: Config, shown: str) -> list[Problem]:
    """No control character (C0, DEL, C1) in any value or key of the file: every one of them may
    reach odoo.conf, a shell script, a Docker label or a git command, where a newline starts a new
    line, command or option."""
    problems = []
    for key, text, is_key in _walk(config, ""):
        bad = control_character(text)
        if bad:
            what = "this key contains" if is_key else "contains"
            problems.append(Problem(shown, key, f"{what} the control character {bad}"))
    return problems


# --------------------------------------------------------------------------------------------
# Hostnames: who owns which names


def _owned_names(team_id: str, team: Team) -> list[tuple[str, str]]:
    """(name, key) of the names a team owns: its hostname, its base and its custom domains; each
    name with everything under it."""
    names = [(team.hostname.lower(), f"team.{team_id}.hostname")]
    if team.base_domain:
        names.append((team.base_domain.lower(), f"team.{team_id}.base_domain"))
    names += [(d.lower(), f"team.{team_id}.custom_domains[{i}]") for i, d in enumerate(team.custom_domains)]
    return names


def _suffixes(host: str) -> Iterator[str]:
    """`a.b.c`, `b.c`, `c`: the host and every domain it is under."""
    labels = host.split(".")
    for i in range(len(labels)):
        yield ".".join(labels[i:])


def _domain_ownership(teams: list[tuple[str, Team]], shown: str) -> list[Problem]:
    """Names owned by two teams are collisions, equal or nested (team 2's base inside team 1's
    would let either route the other's hosts); an environment's own hostname is under its team's
    base or one of its custom domains. Linear: each name looks up its own suffixes."""
    problems: list[Problem] = []
    owner: dict[str, tuple[str, str]] = {}  # name -> (team, key)
    for team_id, team in teams:
        for name, key in _owned_names(team_id, team):
            owner.setdefault(name, (team_id, key))
    for team_id, team in teams:
        for name, key in _owned_names(team_id, team):
            for suffix in _suffixes(name):
                holder = owner.get(suffix)
                if holder is not None and holder[0] != team_id:
                    how = "is" if suffix == name else f"is under {suffix!r},"
                    problems.append(
                        Problem(shown, key, f"{name!r} {how} owned by team.{holder[0]} ({shown}: {holder[1]})")
                    )
                    break
        own = [n for n, _ in _owned_names(team_id, team) if n != team.hostname.lower() or not team.base_domain]
        for i, env in enumerate(team.environments):
            if env.hostname is None:
                continue
            host = env.hostname.lower()
            if any(s in own for s in _suffixes(host)):
                continue
            key = f"team.{team_id}.environments[{i}].hostname"
            other = next((owner[s] for s in _suffixes(host) if s in owner), None)
            where = f"; it is owned by team.{other[0]} ({shown}: {other[1]})" if other else ""
            problems.append(
                Problem(
                    shown,
                    key,
                    f"{host!r} is not under the team's base {team.base.lower()!r} nor one of its custom_domains{where}",
                )
            )
    return problems


def slot_hostname_collisions(config: Config, shown: str) -> list[Problem]:
    """Hostnames once ports (hence slot numbers) are known: a slot host (`env-3.{base}`) taken by
    another environment's own hostname. Called by the loader after assigning ports."""
    problems: list[Problem] = []
    for team_id, team in config.teams:
        if team.environment_hostname_mode != "slots":
            continue
        slot_hosts = {
            config.env_hostname(team_id, env).lower(): f"team.{team_id}.environments[{i}]"
            for i, env in enumerate(team.environments)
            if env.hostname is None
        }
        for i, env in enumerate(team.environments):
            if env.hostname is not None and env.hostname.lower() in slot_hosts:
                problems.append(
                    Problem(
                        shown,
                        f"team.{team_id}.environments[{i}].hostname",
                        f"{env.hostname.lower()!r} is the slot hostname of {slot_hosts[env.hostname.lower()]} "
                        f'({shown}: team.{team_id}.environment_hostname_mode = "slots")',
                    )
                )
    return problems


# --------------------------------------------------------------------------------------------
# Resource names


def _resource_name_collisions(teams: list[tuple[str, Team]], shown: str) -> list[Problem]:
    """Every container and volume name is one resource's: branch `template/default` would name its
    init `oduflow-1-template-default-init`, the init of template `default`."""
    problems: list[Problem] = []
    owners: dict[tuple[str, str], str] = {}

    def claim(kind: str, name: str, key: str, report_key: str) -> None:
        first = owners.setdefault((kind, name), key)
        if first != key:
            problems.append(
                Problem(shown, report_key, f"its {kind} would be named {name!r}, as that of {first} ({shown})")
            )

    for team_id, team in teams:
        claim("container", naming.team_backup_container_name(team_id), f"team.{team_id}", f"team.{team_id}")
        claim("container", naming.team_db_proxy_container_name(team_id), f"team.{team_id}", f"team.{team_id}")
        claim("container", naming.team_mail_catcher_container_name(team_id), f"team.{team_id}", f"team.{team_id}")
        for tname in team.templates:
            key = f"team.{team_id}.templates.{tname}"
            claim("container", naming.template_init_container_name(team_id, tname), key, key)
            claim("volume", naming.template_filestore_volume_name(team_id, tname), key, key)
        seen: set[str] = set()
        for i, env in enumerate(team.environments):
            if env.branch in seen:
                continue  # reported as a duplicate branch
            seen.add(env.branch)
            key = f"team.{team_id}.environments[{i}]"
            b = env.branch
            for kind, name in (
                ("container", naming.env_container_name(team_id, b)),
                ("container", naming.env_init_container_name(team_id, b)),
                ("container", naming.env_addons_fetch_container_name(team_id, b)),
                ("container", naming.env_refresh_container_name(team_id, b)),
                ("volume", naming.env_filestore_volume_name(team_id, b)),
                ("volume", naming.env_addons_volume_name(team_id, b)),
            ):
                # Two branches of one team with one slug are reported as one database (_team_checks).
                if not owners.get((kind, name), key).startswith(f"team.{team_id}.environments["):
                    claim(kind, name, key, f"{key}.branch")
                else:
                    owners.setdefault((kind, name), key)
    return problems


def _hostname_collisions(
    config: Config, teams: list[tuple[str, Team]], owners: dict[str, str], shown: str
) -> list[Problem]:
    """Every environment's hostname is its own (`feature_y` and `feature-y` would share one)."""
    problems: list[Problem] = []
    for team_id, team in teams:
        mail = config.mail_catcher_hostname(team_id)
        if mail is not None:
            first = owners.setdefault(mail, f"the mail catcher of team.{team_id}")
            if first != f"the mail catcher of team.{team_id}":
                key = f"team.{team_id}.{'base_domain' if team.base_domain else 'hostname'}"
                problems.append(Problem(shown, key, f"the mail catcher's hostname {mail!r} is already that of {first}"))
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
                where = "hostname" if env.hostname is not None else "branch"
                problems.append(Problem(shown, f"{key}.{where}", f"hostname {host!r} is already that of {first}"))
    return problems


def _major(image: str) -> int | None:
    """The major version in an image tag (`postgres:16.4` -> 16, also before a digest), or None."""
    match = re.search(r":(\d+)(?:[.\-]|$)", image.split("@", 1)[0].rsplit("/", 1)[-1])
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
        for option, value in env.odoo_options.items():
            problem = odoo_conf.option_problem(option, value)
            if problem:
                add(f"{key}.odoo_options.{option}", problem)
            elif env.type != "production" and odoo_conf.is_mail_server_option(option):
                add(
                    f"{key}.odoo_options.{option}",
                    f"the mail of a {env.type} environment goes to its team's mail catcher (policy mail-caught): "
                    "only production sends real mail",
                )
    problems.extend(Problem(shown, f"{prefix}.{k}", m) for k, m in clone_problems(team_id, team))
    for name in team.templates:
        problem = template_name_problem(name)
        if problem:
            add(f"templates.{name}", problem)
    # Non-production routers always carry basic auth: without a password there would be none.
    unauthenticated = next((i for i, e in enumerate(envs) if e.type != "production"), None)
    if unauthenticated is not None and team.ui_password is None:
        add(
            "ui_password",
            f"required: environments[{unauthenticated}] ({envs[unauthenticated].type}) and every other "
            "non-production environment are served behind basic auth with this password",
        )
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
    team at its limit could leave another team (or the provider) without a connection. Each server
    runs its own PostgreSQL: a team counts on every server it has a footprint on."""
    if not config.team:
        return []
    limits = {team_id: config.team_db_connections(team_id) for team_id, _ in config.teams}
    platform = config.platform
    available = platform.postgres_max_connections - platform.postgres_reserved_connections
    several = len(config.servers) > 1
    problems = []
    for server in config.servers:
        here = {t: n for t, n in limits.items() if not several or server in config.team_servers(t)}
        provisioning = PROVISIONER_CONNECTION_LIMIT * len(here)
        total = sum(here.values()) + provisioning
        if not here or total <= available:
            continue
        detail = ", ".join(f"team.{t}: {n}" for t, n in here.items())
        where, there = (f" on server {server!r}", " there") if several else ("", "")
        problems.append(
            Problem(
                shown,
                "platform.postgres_max_connections",
                f"{platform.postgres_max_connections} minus {platform.postgres_reserved_connections} reserved leaves "
                f"{available} connections{where}, but the team roles' limits{there} add up to {total} ({detail}, and "
                f"{provisioning} for the provisioning roles); raise it or set team.N.quota.db_connections",
            )
        )
        break  # one line per key
    cap = config.organisation.quota.db_connections
    total = sum(limits.values())
    if cap is not None and total > cap:
        detail = ", ".join(f"team.{t}: {n}" for t, n in limits.items())
        problems.append(
            Problem(
                shown,
                "organisation.quota.db_connections",
                f"the team roles' limits add up to {total} ({detail}), above this quota of {cap}",
            )
        )
    return problems


def clone_problems(team_id: str, team: Team) -> list[tuple[str, str]]:
    """(key under the team, message) of each unusable `clone_from`: not another environment of the
    same team, a production environment overwritten by a copy, or a chain of copies that loops."""
    out: list[tuple[str, str]] = []
    envs = team.environments
    index = {e.branch: i for i, e in reversed(list(enumerate(envs)))}
    for i, env in enumerate(envs):
        source = env.clone_from
        if source is None:
            continue
        key = f"environments[{i}].clone_from"
        if source == env.branch:
            out.append((key, f"{source!r} is this environment itself: copy it from another environment of the team"))
        elif source not in index:
            known = ", ".join(repr(e.branch) for e in envs if e.branch != env.branch) or "none"
            out.append((key, f"{source!r} is not an environment of team.{team_id} (its environments: {known})"))
        elif env.type == "production":
            out.append((key, "a production environment is never overwritten by a copy of another environment"))
        else:
            chain: list[str] = [env.branch]
            branch: str | None = source
            while branch is not None and branch not in chain and branch in index:
                chain.append(branch)
                branch = envs[index[branch]].clone_from
            if branch == env.branch:
                loop = " <- ".join(repr(b) for b in [*chain, branch])
                out.append((key, f"the copies loop ({loop}): one of them must be copied from elsewhere"))
    return out
