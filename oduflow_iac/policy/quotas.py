"""Quotas: CPU, memory and environment counts per team and for the organisation.

The Odoo containers of the stack count with their own limits. With several servers a stack may hold
only part of the platform (a team's stack, a server's): the policy config then lists every
environment of oduflow.toml (`environments`: container name -> team, CPUs, memory), and those the
stack does not hold count with the config's figures, so the organisation quota counts every server
whichever stack is previewed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pulumi_policy import (
    ReportViolation,
    StackValidationArgs,
)

from oduflow_iac import naming
from oduflow_iac.policy.common import CONTAINER, ROLE_ODOO, _fmt, _labels, _name, _number

# --------------------------------------------------------------------------------------------
# quotas


@dataclass
class _Usage:
    environments: int = 0
    cpu: Decimal = Decimal(0)
    memory_mb: Decimal = Decimal(0)

    def add(self, cpu: Decimal | None, memory: Decimal | None) -> None:
        self.environments += 1
        self.cpu += cpu or 0
        self.memory_mb += memory or 0


def _over_quota(who: str, singular: bool, limit_of: str, usage: _Usage, quota: Mapping[str, Any]) -> list[str]:
    run, ask = ("runs", "asks for") if singular else ("run", "ask for")
    out = []
    environments, cpu, memory = (_number(quota.get(k)) for k in ("environments", "cpu", "memory_mb"))
    if environments is not None and usage.environments > environments:
        out.append(f"{who} {run} {usage.environments} environments, over {limit_of} of {_fmt(environments)}")
    if cpu is not None and usage.cpu > cpu:
        out.append(f"{who} {ask} {_fmt(usage.cpu)} CPUs, over {limit_of} of {_fmt(cpu)}")
    if memory is not None and usage.memory_mb > memory:
        out.append(f"{who} {ask} {_fmt(usage.memory_mb)} MB of memory, over {limit_of} of {_fmt(memory)} MB")
    return out


def validate_quotas(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every Odoo container has CPU and memory limits; each team's environments, CPUs and memory stay
    within its quota, and all teams' together within the organisation's."""
    config = args.get_config()
    per_team: dict[str, _Usage] = {}
    total = _Usage()
    for r in args.resources:
        if r.resource_type != CONTAINER:
            continue
        labels = _labels(r.props, naming.LABEL_ROLE, naming.LABEL_TEAM)
        if labels.get(naming.LABEL_ROLE) != ROLE_ODOO:
            continue
        name = _name(r.props, r.name)
        memory = _number(r.props.get("memory"))
        cpu = _number(r.props.get("cpus"))
        if memory is None or memory <= 0:
            report(f"Odoo container {name} has no memory limit", r.urn)
        if cpu is None or cpu <= 0:
            report(f"Odoo container {name} has no CPU limit", r.urn)
        team = labels.get(naming.LABEL_TEAM)
        if team is not None:
            per_team.setdefault(team, _Usage()).add(cpu, memory)
        total.add(cpu, memory)
    seen = {_name(r.props, r.name) for r in args.resources if r.resource_type == CONTAINER}
    for name, figures in (config.get("environments") or {}).items():
        if name in seen:
            continue
        cpu, memory = _number(figures.get("cpu")), _number(figures.get("memory_mb"))
        per_team.setdefault(str(figures.get("team")), _Usage()).add(cpu, memory)
        total.add(cpu, memory)
    team_quotas = config.get("teams") or {}
    for team, usage in per_team.items():
        if team in team_quotas:
            for message in _over_quota(f"team {team}", True, "its quota", usage, team_quotas[team]):
                report(message, None)
    if config.get("organisation"):
        organisation = config["organisation"]
        for message in _over_quota("all teams together", False, "the organisation quota", total, organisation):
            report(message, None)
