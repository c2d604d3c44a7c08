"""Isolation: team databases and networks closed to other teams."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
)

from oduflow_iac import naming
from oduflow_iac.policy.common import CONTAINER, DATABASE, GRANT, ROLE_DB_PROXY, _labels, _name

# --------------------------------------------------------------------------------------------
# isolation


def _team_of_database(name: str, teams: set[str] | None) -> str | None:
    """The team of `oduflow_{team}_{slug}` (or a template `oduflow_template_{team}_{name}`); with the
    known team ids the longest one that fits wins, so ids containing `_` work."""
    for prefix in ("oduflow_template_", "oduflow_"):
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if teams is None:
            match = re.match(r"([^_]+)_", rest)
            if match:
                return match.group(1)
            continue
        best = None
        for i, char in enumerate(rest):
            if char == "_" and rest[:i] in teams:
                best = rest[:i]
        if best is not None:
            return best
    return None


def _revokes_public(props: Mapping[str, Any]) -> bool:
    return (
        str(props.get("role") or "").lower() == "public"
        and props.get("objectType") == "database"
        and not list(props.get("privileges") or [])
    )


_TEAM_NETWORK = re.compile(r"oduflow-.+-net")


def _check_team_container(
    r: PolicyResource,
    props: Mapping[str, Any],
    team: str,
    role: str | None,
    shared: str,
    team_networks: set[str] | None,
    report: ReportViolation,
) -> None:
    """A team's container is on its team's network (its PostgreSQL proxy also on the database
    network), in no other team's, never on the host's network or another container's, never
    privileged, and mounts nothing from the host (the Docker socket would be root on the host)."""
    name = _name(props, r.name)
    own = naming.team_network_name(team)
    for net in props.get("networksAdvanced") or []:
        net_name = str(net.get("name"))
        # Without the team list, any team network but its own.
        foreign = net_name != own and (
            net_name in team_networks if team_networks is not None else bool(_TEAM_NETWORK.fullmatch(net_name))
        )
        if net_name == shared and role != ROLE_DB_PROXY:
            report(
                f"container {name} of team {team} joins the database network {shared}; only the team's "
                f"PostgreSQL proxy may (through it, {own} reaches the server)",
                r.urn,
            )
        elif foreign:
            report(f"container {name} of team {team} joins network {net_name} of another team", r.urn)
    mode = str(props.get("networkMode") or "bridge")
    if mode not in ("bridge", "default"):
        report(f"container {name} of team {team} uses network mode {mode}; only its team's networks are allowed", r.urn)
    if props.get("privileged"):
        report(f"container {name} of team {team} is privileged", r.urn)
    for volume in props.get("volumes") or []:
        if volume.get("hostPath"):
            report(f"container {name} of team {team} mounts {volume.get('hostPath')} from the host", r.urn)


def validate_isolation(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every team database is owned by its team's role and closed to PUBLIC; a team's containers
    join only their team's network (its PostgreSQL proxy also the database network), nothing of
    the host."""
    config = args.get_config()
    teams = {str(t) for t in config["teams"]} if "teams" in config else None
    shared = str(config.get("shared_network") or naming.SHARED_NETWORK)
    team_networks = {naming.team_network_name(t) for t in teams} if teams is not None else None
    databases: list[tuple[PolicyResource, str, str]] = []
    revoking: list[PolicyResource] = []
    revoked_urns: set[str] = set()
    for r in args.resources:
        props = r.props
        if r.resource_type == DATABASE:
            if props.get("isTemplate"):
                continue
            name = str(props.get("name") or "")
            team = _team_of_database(name, teams)
            if team is None:
                continue
            databases.append((r, name, team))
            owner = props.get("owner")
            role = naming.team_role_name(team)
            if owner != role:
                owner_shown = owner or "the provider's user"
                report(f"database {name} of team {team} is owned by {owner_shown}, not by {role}", r.urn)
        elif r.resource_type == GRANT and _revokes_public(props):
            revoking.append(r)
            revoked_urns.update(d.urn for d in r.dependencies)
        elif r.resource_type == CONTAINER:
            found = _labels(props, naming.LABEL_TEAM, naming.LABEL_ROLE)
            team = found.get(naming.LABEL_TEAM)
            if team is not None:
                _check_team_container(r, props, team, found.get(naming.LABEL_ROLE), shared, team_networks, report)
    # The engine relates a grant to its database through dependencies; a grant's `database`
    # name is read only for databases that relation does not cover.
    revoked_names: set[str] | None = None
    for r, name, team in databases:
        if r.urn in revoked_urns:
            continue
        if revoked_names is None:
            revoked_names = {str(g.props.get("database")) for g in revoking}
        if name not in revoked_names:
            report(
                f"database {name} of team {team} is open to PUBLIC: no grant to public on it with no privileges",
                r.urn,
            )
