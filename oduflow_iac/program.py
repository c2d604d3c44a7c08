"""The Pulumi program: SharedInfra, then one TeamStack per team, and the stack's outputs.

Three layouts, chosen by stack config:
- all-in-one (default): SharedInfra and every team in one stack;
- `oduflow:layout = shared`: SharedInfra alone, exporting what team stacks need;
- `oduflow:layout = team` with `oduflow:team = N`: one team, reading the shared stack's outputs
  through a StackReference (`oduflow:sharedStack`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pulumi_docker as docker
import pulumi_postgresql as postgresql
from pulumi.resource import create_urn

from oduflow_iac import naming, tunnel
from oduflow_iac.components import SharedInfra, SharedInfraArgs, SharedRefs, TeamStack, TeamStackArgs
from oduflow_iac.components.common import as_secret
from oduflow_iac.components.refs import TeamRole
from oduflow_iac.components.shared_infra import POSTGRES_INTERNAL_PORT
from oduflow_iac.components.team_roles import TeamDatabaseRoles, TeamDatabaseRolesArgs
from oduflow_iac.config import SECRETS_NAMESPACE, Config, SecretValue, load_config
from oduflow_iac.errors import UsageError
from oduflow_iac.wording import plural

LAYOUTS = ("all", "shared", "team")
# The shared stack's output with each team's database roles ({team: {role, password, admin,
# adminPassword}}), a secret.
TEAM_DATABASES_OUTPUT = "teamDatabases"


@dataclass(frozen=True)
class ProgramSettings:
    """What the stack's config says beyond oduflow.toml."""

    docker_host: str
    layout: str = "all"
    team: str | None = None
    shared_stack: str | None = None

    def problem(self, config: Config) -> str | None:
        """Why these settings cannot deploy `config`, or None."""
        if self.layout not in LAYOUTS:
            return f"oduflow:layout is {self.layout!r}; it must be one of {', '.join(LAYOUTS)}"
        if self.layout == "team":
            if not self.team or self.team not in config.team:
                return f"oduflow:team is {self.team!r}, not a team of {config.path}"
            if not self.shared_stack:
                return "oduflow:sharedStack is required by a team stack (e.g. organization/oduflow/shared)"
        return None

    @classmethod
    def from_pulumi_config(cls, config: Config) -> ProgramSettings:
        cfg = pulumi.Config("oduflow")
        return cls(
            docker_host=cfg.get("dockerHost") or config.platform.docker_host,
            layout=cfg.get("layout") or "all",
            team=cfg.get("team") or None,
            shared_stack=cfg.get("sharedStack") or None,
        )


def secret_input(value: SecretValue | None) -> pulumi.Output[str] | None:
    """An oduflow.toml secret as a Pulumi secret: inline, or the stack's config secret it names."""
    if value is None:
        return None
    if value.config_key is not None:
        return pulumi.Config(SECRETS_NAMESPACE).require_secret(value.config_key)
    return as_secret(value.reveal())


# The stack output with each environment's Odoo admin account (read by `env credentials`).
ODOO_ADMIN_OUTPUT = "odooAdmin"
ODOO_ADMIN_LOGIN = "admin"


def build(config: Config, settings: ProgramSettings) -> None:
    """Declare the platform for `config` (called by __main__.py and by the offline plan)."""
    problem = settings.problem(config)
    if problem:
        raise UsageError(problem)
    dns_token = secret_input(config.dns.api_token) if config.dns else None

    team_roles: dict[str, TeamRole] = {}
    admins: dict[str, dict[str, pulumi.Input[str]]] = {}
    if settings.layout == "team":
        assert settings.team is not None  # checked by settings.problem
        refs, team_roles[settings.team] = _refs_from_shared_stack(config, settings, dns_token)
        team_ids = [settings.team]
    else:
        shared = SharedInfra(
            "shared",
            SharedInfraArgs(
                platform=config.platform,
                docker_host=settings.docker_host,
                dns=config.dns,
                dns_api_token=dns_token,
                backup=config.backup,
                dashboard_password=secret_input(config.platform.dashboard_password),
            ),
        )
        refs = shared.refs
        provisioned = _team_database_roles(config, shared, provisioner=settings.layout == "shared")
        team_roles = {t: roles.team for t, roles in provisioned.items()}
        _export_shared(config, settings, shared, provisioned)
        team_ids = [] if settings.layout == "shared" else [t for t, _ in config.teams]

    environments: dict[str, dict[str, dict[str, object]]] = {}
    restore_keys: dict[str, pulumi.Output[dict[str, str]]] = {}
    for team_id in team_ids:
        team = config.team[team_id]
        stack = TeamStack(
            f"team-{team_id}",
            TeamStackArgs(
                config=config,
                team_id=team_id,
                shared=refs,
                db_role=team_roles[team_id],
                ui_password=secret_input(team.ui_password),
                git_token=secret_input(team.git_token),
                git_ssh_key=secret_input(team.git_ssh_key),
            ),
        )
        environments[team_id] = {
            branch: {"url": env.url, "database": env.database_name, "hostPort": env.host_port}
            for branch, env in stack.environments.items()
        }
        for branch, env in stack.environments.items():
            admins[f"{team_id}/{branch}"] = {"login": ODOO_ADMIN_LOGIN, "password": env.admin_user_password.result}
        if stack.backup_restore_credentials is not None:
            restore_keys[team_id] = stack.backup_restore_credentials
    if team_ids:
        pulumi.export("environments", environments)
        # Each environment's Odoo admin account (`oduflow-iac env credentials`): secret, and in the
        # per-team layout only in that team's stack.
        pulumi.export(ODOO_ADMIN_OUTPUT, pulumi.Output.secret(admins))
    if restore_keys:
        # Read-only keys for restores ([backup] restore_user): secret, held by no container.
        pulumi.export("backupRestore", restore_keys)


def _team_database_roles(config: Config, shared: SharedInfra, *, provisioner: bool) -> dict[str, TeamDatabaseRoles]:
    """Every team's PostgreSQL roles, created with the superuser's provider. In the all-in-one layout
    the team role used to be declared by the team's TeamStack: the alias adopts it from there."""
    out = {}
    for team_id, _ in config.teams:
        moved_from = None
        if not provisioner:
            moved_from = pulumi.Output.from_input(create_urn(f"team-{team_id}", "oduflow:index:TeamStack"))
        out[team_id] = TeamDatabaseRoles(
            f"team-{team_id}-database-roles",
            TeamDatabaseRolesArgs(
                team_id=team_id,
                connection_limit=config.team_db_connections(team_id),
                settings=config.team_db_settings(team_id),
                tenant_group=shared.tenant_group.name,
                admin_group=shared.tenant_admin_group.name,
                provisioner=provisioner,
            ),
            provider=shared.postgresql_provider,
            moved_from=moved_from,
        )
    return out


def _export_shared(
    config: Config, settings: ProgramSettings, shared: SharedInfra, roles: dict[str, TeamDatabaseRoles]
) -> None:
    """What a `team-N` stack reads from the `shared` stack: never the superuser password. Each team
    gets its team role and its provisioning role (CREATEDB, member of the team role only)."""
    pulumi.export("dockerHost", settings.docker_host)
    pulumi.export("networkName", shared.network.name)
    pulumi.export("postgresAdminHost", config.platform.postgres_admin_host)
    pulumi.export("postgresAdminPort", config.platform.postgres_port)
    pulumi.export("dbHost", naming.SHARED_DB_CONTAINER)
    pulumi.export("dbPort", POSTGRES_INTERNAL_PORT)
    if settings.layout == "shared":
        pulumi.export(
            TEAM_DATABASES_OUTPUT,
            pulumi.Output.secret(
                {
                    team_id: {
                        "role": r.team.name,
                        "password": r.team.password,
                        "admin": r.admin.name,
                        "adminPassword": r.admin.password,
                    }
                    for team_id, r in roles.items()
                    if r.admin is not None
                }
            ),
        )


def _refs_from_shared_stack(
    config: Config, settings: ProgramSettings, dns_token: pulumi.Output[str] | None
) -> tuple[SharedRefs, TeamRole]:
    """The shared stack's providers and this team's roles. The postgresql provider logs in as the
    team's provisioning role (`superuser: false`): the superuser password is not an output of the
    shared stack, so no team stack can read it."""
    ref = pulumi.StackReference(settings.shared_stack or "")
    team_id = settings.team or ""
    mine = ref.require_output(TEAM_DATABASES_OUTPUT).apply(lambda all_teams: _team_entry(all_teams, team_id))
    docker_provider = docker.Provider(
        "shared-docker", host=ref.get_output("dockerHost").apply(lambda h: str(h or settings.docker_host))
    )
    admin_host: pulumi.Input[str] = ref.get_output("postgresAdminHost").apply(
        lambda h: str(h or config.platform.postgres_admin_host)
    )
    admin_port: pulumi.Input[int] = ref.get_output("postgresAdminPort").apply(
        lambda p: int(p or config.platform.postgres_port)
    )
    if config.platform.postgres_admin_port is not None:  # this run's own endpoint (e.g. its SSH tunnel)
        admin_host, admin_port = config.platform.postgres_admin_host, config.platform.postgres_admin_port
    postgresql_provider = postgresql.Provider(
        "shared-postgresql",
        host=admin_host,
        port=admin_port,
        username=naming.team_db_admin_role_name(team_id),
        password=as_secret(mine.apply(lambda e: str(e["adminPassword"]))),
        sslmode="disable",
        superuser=False,
        connect_timeout=30,
    )
    cloudflare_provider = (
        cloudflare.Provider("shared-cloudflare", api_token=dns_token) if config.dns is not None else None
    )
    aws_provider = aws.Provider("shared-aws", region=config.backup.region) if config.backup is not None else None
    refs = SharedRefs(
        docker_provider=docker_provider,
        postgresql_provider=postgresql_provider,
        network_name=ref.get_output("networkName").apply(lambda n: str(n or config.platform.network)),
        db_host=naming.SHARED_DB_CONTAINER,
        db_port=POSTGRES_INTERNAL_PORT,
        cloudflare_provider=cloudflare_provider,
        aws_provider=aws_provider,
    )
    role = TeamRole(name=naming.team_role_name(team_id), password=as_secret(mine.apply(lambda e: str(e["password"]))))
    return refs, role


def _team_entry(all_teams: Any, team_id: str) -> dict[str, Any]:
    entry = (all_teams or {}).get(team_id) if isinstance(all_teams, dict) else None
    if not isinstance(entry, dict):
        raise UsageError(
            f"the shared stack exports no database roles for team {team_id}: "
            "add the team to the config and run `pulumi up` on the shared stack first"
        )
    return entry


def main() -> None:
    """Entry point of `pulumi up`: the stack's `oduflow:configFile`, relative to the project."""
    path = Path(pulumi.Config("oduflow").require("configFile"))
    config = load_config(path)
    if config.unlocked_environments:
        pulumi.log.warn(
            f"{plural(len(config.unlocked_environments), 'environment')} without a port in the port lock beside "
            f"{path}: "
            "run `oduflow-iac lock` and commit it, so their host ports never move"
        )
    settings = ProgramSettings.from_pulumi_config(config)
    build(reach_postgres(config, settings), settings)


# --------------------------------------------------------------------------------------------
# Reaching PostgreSQL from the machine that runs Pulumi (see tunnel.py)


def _under_mocks() -> bool:
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import get_monitor

    return isinstance(get_monitor(), MockMonitor)


def reach_postgres(
    config: Config,
    settings: ProgramSettings,
    environ: Mapping[str, str] | None = None,
    *,
    accepts: Callable[[str, int], bool] = tunnel.port_accepts,
    stack: str | None = None,
) -> Config:
    """`config` with the PostgreSQL endpoint this run dials (ODUFLOW_POSTGRES_ADMIN_HOST/PORT, set by
    `oduflow-iac` for its tunnel), after a fast TCP check when PostgreSQL sits behind an ssh://
    Docker host: a plain `pulumi up` without the tunnel stops before declaring anything, with one
    line giving the command to run, instead of failing on the first database resource after minutes.
    Never under the offline mocks (the offline plan needs no network)."""
    if _under_mocks():
        return config
    platform = config.platform
    try:
        host, port = tunnel.admin_endpoint(
            platform.postgres_admin_host,
            platform.postgres_admin_port or platform.postgres_port,
            os.environ if environ is None else environ,
        )
        target = tunnel.tunnel_target(settings.docker_host, host)
    except ValueError as exc:
        raise pulumi.RunError(str(exc)) from None
    if target is not None and not accepts(host, port):
        raise pulumi.RunError(
            tunnel.unreachable_message(
                stack=stack or pulumi.get_stack(),
                docker_host=settings.docker_host,
                target=target,
                host=host,
                port=port,
                remote_port=platform.postgres_port,
            )
        )
    if (host, port) == (platform.postgres_admin_host, platform.postgres_admin_port or platform.postgres_port):
        return config
    endpoint = platform.model_copy(update={"postgres_admin_host": host, "postgres_admin_port": port})
    return config.model_copy(update={"platform": endpoint})
