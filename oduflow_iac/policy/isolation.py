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
from oduflow_iac.policy.common import CONTAINER, DATABASE, GRANT, _labels, _name

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


def validate_isolation(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every team database is owned by its team's role and closed to PUBLIC; a team's containers
    join only the shared network and their own team's."""
    config = args.get_config()
    teams = {str(t) for t in config["teams"]} if "teams" in config else None
    shared = str(config.get("shared_network") or naming.SHARED_NETWORK)
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
            team = _labels(props, naming.LABEL_TEAM).get(naming.LABEL_TEAM)
            if team is None:
                continue
            own = naming.team_network_name(team)
            allowed = {shared, own}
            name = _name(props, r.name)
            for net in props.get("networksAdvanced") or []:
                net_name = str(net.get("name"))
                if net_name not in allowed:
                    report(
                        f"container {name} of team {team} joins network {net_name}; "
                        f"only {shared} and {own} are allowed",
                        r.urn,
                    )
            mode = props.get("networkMode")
            if mode and mode not in ("bridge", "default") and mode not in allowed:
                report(
                    f"container {name} of team {team} uses network mode {mode}; only {shared} and {own} are allowed",
                    r.urn,
                )
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
