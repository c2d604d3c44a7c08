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
        },
        "isolation": {
            "teams": [team_id for team_id, _ in config.teams],
            "shared_network": config.platform.network,
        },
        "backups": {"configured": config.backup is not None, "production": production},
        "production-protected": {"production": production},
        "mail-caught": {"production": production},
        "inline-secrets": {"paths": config.inline_secrets()},
    }
