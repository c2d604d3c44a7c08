"""Capacity: what the environments placed on a server and the platform's own services there ask
for fits the server's declared capacity (`[server.NAME].capacity`).

Where each environment runs is not a property of its container: a label saying so would have to be
added to every existing container, and a label change replaces a container (ForceNew). So, as the
quotas get their limits, the placement comes from oduflow.toml through the policy config
(`oduflow_iac.policy_config`): per server with a capacity, the Odoo containers placed on it with
the CPUs and memory the config gives them, the memory of the platform's own services there, and the
disk reserved by the teams at home there. An Odoo container present in the stack counts with the
limits it is actually given (`cpus`, `memory`); one the stack does not hold (another team's, in a
per-team stack) counts with the config's figures. So the rule judges a whole server from any
stack of the fleet.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pulumi_policy import ReportViolation, StackValidationArgs

from oduflow_iac import naming
from oduflow_iac.policy.common import CONTAINER, ROLE_ODOO, _fmt, _labels, _name, _number


def _limits_in_stack(args: StackValidationArgs) -> dict[str, tuple[Decimal, Decimal]]:
    """(CPUs, memory MB) of every Odoo container of the stack by container name. A name met twice
    (an environment declared on both servers of a move) keeps the larger figures."""
    found: dict[str, tuple[Decimal, Decimal]] = {}
    for r in args.resources:
        if r.resource_type != CONTAINER:
            continue
        if _labels(r.props, naming.LABEL_ROLE).get(naming.LABEL_ROLE) != ROLE_ODOO:
            continue
        name = _name(r.props, r.name)
        cpu = _number(r.props.get("cpus")) or Decimal(0)
        memory = _number(r.props.get("memory")) or Decimal(0)
        before = found.get(name)
        found[name] = (max(cpu, before[0]), max(memory, before[1])) if before else (cpu, memory)
    return found


def server_use(server: Mapping[str, Any], in_stack: Mapping[str, tuple[Decimal, Decimal]]) -> dict[str, Decimal]:
    """What a server of the policy config is asked for: environments, CPUs, memory MB, disk GB."""
    cpu = memory = Decimal(0)
    environments = server.get("environments") or {}
    for name, figures in environments.items():
        actual = in_stack.get(name)
        if actual is not None:
            cpu, memory = cpu + actual[0], memory + actual[1]
        else:
            cpu += _number(figures.get("cpu")) or 0
            memory += _number(figures.get("memory_mb")) or 0
    return {
        "environments": Decimal(len(environments)),
        "cpu": cpu,
        "memory_mb": memory + (_number(server.get("services_memory_mb")) or 0),
        "disk_gb": _number(server.get("disk_gb")) or Decimal(0),
    }


def capacity_problem(name: str, use: Mapping[str, Decimal], capacity: Mapping[str, Any]) -> str | None:
    """The violation of server `name`, naming its figures, or None when `use` fits."""
    limits = {k: _number(capacity.get(k)) for k in ("cpu", "memory_mb", "disk_gb")}
    over = [k for k, limit in limits.items() if limit is not None and use[k] > limit]
    if not over:
        return None
    words = {"cpu": "CPU", "memory_mb": "memory", "disk_gb": "disk"}

    def figures(values: Mapping[str, Any]) -> str:
        parts = []
        for key, unit in (("cpu", " CPUs"), ("memory_mb", " MB"), ("disk_gb", " GB of disk")):
            value = values.get(key)
            if value is not None:
                parts.append(f"{_fmt(value)}{unit}")
        return ", ".join(parts)

    return (
        f"server {name}: {_fmt(use['environments'])} environments and the platform's services need "
        f"{figures(use)}; capacity is {figures({k: v for k, v in limits.items() if v is not None})} "
        f"(over on {', '.join(words[k] for k in over)})"
    )


def validate_capacity(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every server with a capacity holds what is placed on it (see the module's docstring)."""
    servers = (args.get_config() or {}).get("servers") or {}
    if not servers:
        return
    in_stack = _limits_in_stack(args)
    for name in sorted(servers):
        server = servers[name]
        capacity = server.get("capacity")
        if not capacity:
            continue
        problem = capacity_problem(name, server_use(server, in_stack), capacity)
        if problem:
            report(problem, None)
