"""The policy-pack config of an oduflow.toml: what the rules check the resources against.

`render_policy_config(config)` gives the JSON for `pulumi preview --policy-pack policies
--policy-pack-config policy-config.json`, and the config the offline plan runs the pack with: per
policy name (`oduflow_iac.policy.POLICIES`) its part, shaped by that policy's config schema.
Policies without config (odoo-hardening, images-pinned, images-immutable, traefik-dashboard) have no entry.
"""

from __future__ import annotations

from typing import Any

from oduflow_iac import naming
from oduflow_iac.config import Config, Quota
from oduflow_iac.config.servers import server_demand


def _quota(quota: Quota) -> dict[str, Any]:
    """The limits a policy can check (disk has no resource to measure it on)."""
    values = {"cpu": quota.cpu, "memory_mb": quota.memory_mb, "environments": quota.environments}
    return {k: v for k, v in values.items() if v is not None}


def production_environments(config: Config) -> list[dict[str, str]]:
    """Every production environment with the names of its database and filestore volume."""
    return [
        {
            "team": team_id,
            "branch": env.branch,
            "database": naming.env_db_name(team_id, env.branch),
            "filestore": naming.env_filestore_volume_name(team_id, env.branch),
        }
        for team_id, team in config.teams
        for env in team.environments
        if env.type == "production"
    ]


def environment_limits(config: Config) -> dict[str, dict[str, Any]]:
    """Every Odoo container of the file, on whichever server, with its team and configured limits:
    a stack holding part of the platform still counts the rest against the quotas."""
    limits: dict[str, dict[str, Any]] = {}
    for team_id, team in config.teams:
        for env in team.environments:
            own = config.env_limits(env)
            limits[naming.env_container_name(team_id, env.branch)] = {
                "team": team_id,
                "cpu": own.cpu,
                "memory_mb": own.memory_mb,
            }
    return limits


def capacity_servers(config: Config) -> dict[str, Any]:
    """Per server with a capacity: the capacity, the Odoo containers placed there with their
    configured limits, the platform services' memory and the teams' disk reservations there
    (config/servers.py, `server_demand`: what counts). The policy reads the placement from here, as
    no resource property says where a container runs."""
    servers: dict[str, Any] = {}
    for name, server in config.servers.items():
        if server.capacity is None:
            continue
        demand = server_demand(config, name)
        environments = {}
        for team_id, env in config.server_environments(name):
            limits = config.env_limits(env)
            environments[naming.env_container_name(team_id, env.branch)] = {
                "cpu": limits.cpu,
                "memory_mb": limits.memory_mb,
            }
        servers[name] = {
            "capacity": server.capacity.model_dump(),
            "environments": environments,
            "services_memory_mb": demand.services_memory_mb,
            "disk_gb": demand.disk_gb,
        }
    return servers


def render_policy_config(config: Config) -> dict[str, Any]:
    """The policy-pack config JSON (a dict) for `config`."""
    production = production_environments(config)
    team_quotas = {team_id: _quota(team.quota) for team_id, team in config.teams}
    return {
        "ports": {
            "ranges": {
                team_id: {"start": team.port_range[0], "end": team.port_range[1]} for team_id, team in config.teams
            }
        },
        "quotas": {
            "teams": {team_id: quota for team_id, quota in team_quotas.items() if quota},
            "organisation": _quota(config.organisation.quota),
            "environments": environment_limits(config),
        },
        "isolation": {
            "teams": [team_id for team_id, _ in config.teams],
            "shared_network": config.platform.network,
        },
        "backups": {"configured": config.backup is not None, "production": production},
        "production-protected": {"production": production},
        "mail-caught": {"production": production},
        "inline-secrets": {"paths": config.inline_secrets()},
        "capacity": {"servers": capacity_servers(config)},
    }
