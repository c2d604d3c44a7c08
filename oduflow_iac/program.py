"""The Pulumi program: per server its SharedInfra and its teams' database roles, then one TeamStack
per (team, server it sits on), and the stack's outputs.

Layouts, chosen by stack config:
- all-in-one (default): every server and every team in one stack;
- `oduflow:layout = server` with `oduflow:server = NAME`: that server's SharedInfra and the roles of
  the teams on it, exporting what team stacks need (`shared` is the server layout of `default`);
- `oduflow:layout = team` with `oduflow:team = N`: one team, on every server it sits on, reading each
  server's stack through a StackReference (`oduflow:sharedStack` for the default server,
  `oduflow:serverStackPattern` with `{server}` for the others).

Names: the default server keeps every logical name of before servers (`shared`, `team-1`); on any
other server they are `naming.server_scoped` (`shared@s2`, `team-1@s2`), children `f"{name}-..."`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
from oduflow_iac.config import SECRETS_NAMESPACE, Config, Platform, SecretValue, load_config
from oduflow_iac.errors import UsageError
from oduflow_iac.wording import plural

LAYOUTS = ("all", "server", "shared", "team")
# The server stacks' names a team stack reads, for servers other than the default one (whose stack
# is `oduflow:sharedStack`): a stack of the same organisation and project.
DEFAULT_SERVER_STACK_PATTERN = "server-{server}"
# A server stack's output with each of its teams' database roles ({team: {role, password, admin,
# adminPassword}}), a secret.
TEAM_DATABASES_OUTPUT = "teamDatabases"
# The all-in-one stack's output describing every server (docker host, network, PostgreSQL endpoint).
SERVERS_OUTPUT = "servers"


@dataclass(frozen=True)
class ProgramSettings:
    """What the stack's config says beyond oduflow.toml."""

    # The default server's Docker host when the config declares no `[server]` (`oduflow:dockerHost`).
    docker_host: str
    layout: str = "all"
    team: str | None = None
    shared_stack: str | None = None
    server: str | None = None
    server_stack_pattern: str = DEFAULT_SERVER_STACK_PATTERN
    # This run's PostgreSQL endpoint of each server other than the default one (its SSH tunnel,
    # from ODUFLOW_POSTGRES_ADMIN_HOST/PORT_<SERVER>); the default server's is in config.platform.
    endpoints: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def server_layout(self) -> bool:
        return self.layout in ("server", "shared")

    @property
    def deployed_server(self) -> str | None:
        """The server of a server stack (`shared` is the default server's)."""
        if self.layout == "shared":
            return naming.DEFAULT_SERVER
        return self.server if self.layout == "server" else None

    def problem(self, config: Config) -> str | None:
        """Why these settings cannot deploy `config`, or None."""
        if self.layout not in LAYOUTS:
            return f"oduflow:layout is {self.layout!r}; it must be one of {', '.join(LAYOUTS)}"
        if self.layout == "server" and (not self.server or self.server not in config.servers):
            known = ", ".join(config.servers)
            return f"oduflow:server is {self.server!r}, not a server of {config.path} (servers: {known})"
        if self.layout == "team":
            if not self.team or self.team not in config.team:
                return f"oduflow:team is {self.team!r}, not a team of {config.path}"
            if naming.DEFAULT_SERVER in config.team_servers(self.team) and not self.shared_stack:
                return "oduflow:sharedStack is required by a team stack (e.g. organization/oduflow/shared)"
            if "{server}" not in self.server_stack_pattern:
                return f"oduflow:serverStackPattern is {self.server_stack_pattern!r}; it must contain {{server}}"
        return None

    def server_stack(self, server: str) -> str:
        """The stack a team stack reads for `server`."""
        if server == naming.DEFAULT_SERVER:
            return self.shared_stack or ""
        return self.server_stack_pattern.format(server=server)

    @classmethod
    def from_values(cls, config: Config, get: Callable[[str], str | None]) -> ProgramSettings:
        """From the stack's `oduflow:` keys (`get("layout")`), the config's values as defaults."""
        return cls(
            docker_host=get("dockerHost") or config.platform.docker_host,
            layout=get("layout") or "all",
            team=get("team") or None,
            shared_stack=get("sharedStack") or None,
            server=get("server") or None,
            server_stack_pattern=get("serverStackPattern") or DEFAULT_SERVER_STACK_PATTERN,
        )

    @classmethod
    def from_pulumi_config(cls, config: Config) -> ProgramSettings:
        return cls.from_values(config, pulumi.Config("oduflow").get)


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


def server_docker_host(config: Config, settings: ProgramSettings, server: str) -> str:
    """The Docker host of `server`: the stack's `oduflow:dockerHost` for the one implicit server of
    a config that declares none (as before servers), else the server's own `docker_host`."""
    if not config.server:
        return settings.docker_host
    return config.servers[server].docker_host


def server_platform(config: Config, settings: ProgramSettings, server: str) -> Platform:
    """The platform as `server`'s SharedInfra sees it: every server runs the same services; only the
    endpoint this run dials its PostgreSQL at differs (each remote server has its own tunnel)."""
    endpoint = settings.endpoints.get(server) if server != naming.DEFAULT_SERVER else None
    if endpoint is None:
        return config.platform
    host, port = endpoint
    return config.platform.model_copy(update={"postgres_admin_host": host, "postgres_admin_port": port})


def server_teams(config: Config, server: str) -> list[str]:
    """The teams with a TeamStack on `server` (their own server, or an environment placed there)."""
    return [t for t, _ in config.teams if server in config.team_servers(t)]


def build(config: Config, settings: ProgramSettings) -> None:
    """Declare the platform for `config` (called by __main__.py and by the offline plan)."""
    problem = settings.problem(config)
    if problem:
        raise UsageError(problem)
    dns_token = secret_input(config.dns.api_token) if config.dns else None

    # What each server gives its teams: providers, network and each team's role there.
    refs: dict[str, SharedRefs] = {}
    team_roles: dict[tuple[str, str], TeamRole] = {}
    if settings.layout == "team":
        assert settings.team is not None  # checked by settings.problem
        for server in config.team_servers(settings.team):
            refs[server], team_roles[(settings.team, server)] = _refs_from_server_stack(
                config, settings, server, dns_token
            )
        team_ids = [settings.team]
    else:
        deployed = settings.deployed_server
        servers = [deployed] if deployed is not None else list(config.servers)
        described: dict[str, dict[str, Any]] = {}
        for server in servers:
            shared = SharedInfra(
                naming.shared_component_name(server),
                SharedInfraArgs(
                    platform=server_platform(config, settings, server),
                    docker_host=server_docker_host(config, settings, server),
                    dns=config.dns,
                    dns_api_token=dns_token,
                    backup=config.backup,
                    dashboard_password=secret_input(config.platform.dashboard_password),
                ),
            )
            refs[server] = shared.refs
            provisioned = _team_database_roles(config, server, shared, provisioner=settings.server_layout)
            team_roles.update({(t, server): roles.team for t, roles in provisioned.items()})
            described[server] = _server_outputs(config, settings, server, shared)
            if settings.server_layout:
                _export_server(described[server], provisioned)
        if not settings.server_layout:
            _export_all(described)
        team_ids = [] if settings.server_layout else [t for t, _ in config.teams]

    environments: dict[str, dict[str, dict[str, object]]] = {}
    admins: dict[str, dict[str, pulumi.Input[str]]] = {}
    restore_keys: dict[str, pulumi.Output[dict[str, str]]] = {}
    for team_id in team_ids:
        team = config.team[team_id]
        home: TeamStack | None = None
        for server in config.team_servers(team_id):
            stack = TeamStack(
                naming.team_component_name(team_id, server),
                TeamStackArgs(
                    config=config,
                    team_id=team_id,
                    shared=refs[server],
                    db_role=team_roles[(team_id, server)],
                    ui_password=secret_input(team.ui_password),
                    git_token=secret_input(team.git_token),
                    git_ssh_key=secret_input(team.git_ssh_key),
                    server=server,
                    home=home,
                ),
            )
            home = home or stack
            serving = {e.branch for e in team.environments if config.env_dns_server(team_id, e) == server}
            for branch, env in stack.environments.items():
                if branch not in serving:
                    continue  # the other placement of an environment being moved: not what users reach
                environments.setdefault(team_id, {})[branch] = {
                    "url": env.url,
                    "database": env.database_name,
                    "hostPort": env.host_port,
                    "server": server,
                }
                admins[f"{team_id}/{branch}"] = {"login": ODOO_ADMIN_LOGIN, "password": env.admin_user_password.result}
            if stack.backup_restore_credentials is not None:
                restore_keys[team_id] = stack.backup_restore_credentials
        environments.setdefault(team_id, {})
    if team_ids:
        pulumi.export("environments", environments)
        # Each environment's Odoo admin account (`oduflow-iac env credentials`): secret, and in the
        # per-team layout only in that team's stack.
        pulumi.export(ODOO_ADMIN_OUTPUT, pulumi.Output.secret(admins))
    if restore_keys:
        # Read-only keys for restores ([backup] restore_user): secret, held by no container.
        pulumi.export("backupRestore", restore_keys)


def _team_database_roles(
    config: Config, server: str, shared: SharedInfra, *, provisioner: bool
) -> dict[str, TeamDatabaseRoles]:
    """The PostgreSQL roles of every team on `server`, created with that server's superuser
    provider. In the all-in-one layout the team role used to be declared by the team's TeamStack
    (before roles moved beside SharedInfra): on the default server the alias adopts it from there."""
    out = {}
    for team_id in server_teams(config, server):
        moved_from = None
        if not provisioner and server == naming.DEFAULT_SERVER:
            moved_from = pulumi.Output.from_input(
                create_urn(naming.team_component_name(team_id), "oduflow:index:TeamStack")
            )
        out[team_id] = TeamDatabaseRoles(
            naming.server_scoped(f"team-{team_id}-database-roles", server),
            TeamDatabaseRolesArgs(
                team_id=team_id,
                connection_limit=config.team_db_connections(team_id),
                settings=config.team_db_settings(team_id),
                tenant_group=shared.tenant_group.name,
                admin_group=shared.tenant_admin_group.name,
                provisioner=provisioner,
                server=server,
            ),
            provider=shared.postgresql_provider,
            moved_from=moved_from,
        )
    return out


def _server_outputs(config: Config, settings: ProgramSettings, server: str, shared: SharedInfra) -> dict[str, Any]:
    """What a team stack reads from a server's stack: never the superuser password."""
    return {
        "dockerHost": server_docker_host(config, settings, server),
        "networkName": shared.network.name,
        "postgresAdminHost": config.platform.postgres_admin_host,
        "postgresAdminPort": config.platform.postgres_port,
        "dbHost": naming.SHARED_DB_CONTAINER,
        "dbPort": POSTGRES_INTERNAL_PORT,
    }


def _export_server(outputs: dict[str, Any], roles: dict[str, TeamDatabaseRoles]) -> None:
    """A server stack's outputs (`shared` and `server-NAME`): the keys of `_server_outputs` and each
    of its teams' team role and provisioning role (CREATEDB, member of the team role only)."""
    for key, value in outputs.items():
        pulumi.export(key, value)
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


def _export_all(described: dict[str, dict[str, Any]]) -> None:
    """The all-in-one stack: the default server's outputs under the keys of before servers (when it
    has one), and every server's under `servers`."""
    if naming.DEFAULT_SERVER in described:
        for key, value in described[naming.DEFAULT_SERVER].items():
            pulumi.export(key, value)
    pulumi.export(SERVERS_OUTPUT, described)


def _refs_from_server_stack(
    config: Config, settings: ProgramSettings, server: str, dns_token: pulumi.Output[str] | None
) -> tuple[SharedRefs, TeamRole]:
    """A server stack's providers and this team's roles on that server. The postgresql provider
    logs in as the team's provisioning role (`superuser: false`): the superuser password is not an
    output of any server stack, so no team stack can read it. Every provider is this server's own
    (`shared-docker` on the default server, `shared@s2-docker` on s2): nothing of the team on one
    server goes through another server's providers."""
    ref = pulumi.StackReference(settings.server_stack(server))
    team_id = settings.team or ""
    prefix = naming.shared_component_name(server)
    mine = ref.require_output(TEAM_DATABASES_OUTPUT).apply(lambda all_teams: _team_entry(all_teams, team_id, server))
    fallback_host = server_docker_host(config, settings, server)
    docker_provider = docker.Provider(
        f"{prefix}-docker", host=ref.get_output("dockerHost").apply(lambda h: str(h or fallback_host))
    )
    admin_host: pulumi.Input[str] = ref.get_output("postgresAdminHost").apply(
        lambda h: str(h or config.platform.postgres_admin_host)
    )
    admin_port: pulumi.Input[int] = ref.get_output("postgresAdminPort").apply(
        lambda p: int(p or config.platform.postgres_port)
    )
    # This run's own endpoint of the server (e.g. its SSH tunnel), when it has one.
    if server == naming.DEFAULT_SERVER and config.platform.postgres_admin_port is not None:
        admin_host, admin_port = config.platform.postgres_admin_host, config.platform.postgres_admin_port
    elif server in settings.endpoints:
        admin_host, admin_port = settings.endpoints[server]
    postgresql_provider = postgresql.Provider(
        f"{prefix}-postgresql",
        host=admin_host,
        port=admin_port,
        username=naming.team_db_admin_role_name(team_id),
        password=as_secret(mine.apply(lambda e: str(e["adminPassword"]))),
        sslmode="disable",
        superuser=False,
        connect_timeout=30,
    )
    cloudflare_provider = (
        cloudflare.Provider(f"{prefix}-cloudflare", api_token=dns_token) if config.dns is not None else None
    )
    aws_provider = (
        aws.Provider(f"{prefix}-aws", region=config.backup.region) if config.backup is not None else None
    )
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


def _team_entry(all_teams: Any, team_id: str, server: str = naming.DEFAULT_SERVER) -> dict[str, Any]:
    entry = (all_teams or {}).get(team_id) if isinstance(all_teams, dict) else None
    if not isinstance(entry, dict):
        stack = "the shared stack" if server == naming.DEFAULT_SERVER else f"the stack of server {server}"
        raise UsageError(
            f"{stack} exports no database roles for team {team_id}: "
            f"add the team to the config and run `pulumi up` on {stack} first"
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
    settings = reach_servers(config, settings)
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
    if _under_mocks() or naming.DEFAULT_SERVER not in stack_servers(config, settings):
        return config
    platform = config.platform
    docker_host = server_docker_host(config, settings, naming.DEFAULT_SERVER)
    try:
        host, port = tunnel.admin_endpoint(
            platform.postgres_admin_host,
            platform.postgres_admin_port or platform.postgres_port,
            os.environ if environ is None else environ,
        )
        target = tunnel.tunnel_target(docker_host, host)
    except ValueError as exc:
        raise pulumi.RunError(str(exc)) from None
    if target is not None and not accepts(host, port):
        raise pulumi.RunError(
            tunnel.unreachable_message(
                stack=stack or pulumi.get_stack(),
                docker_host=docker_host,
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


def stack_servers(config: Config, settings: ProgramSettings) -> list[str]:
    """The servers whose PostgreSQL this stack's program dials."""
    if settings.layout == "team" and settings.team in config.team:
        return config.team_servers(settings.team)
    deployed = settings.deployed_server
    return [deployed] if deployed is not None else list(config.servers)


def reach_servers(
    config: Config,
    settings: ProgramSettings,
    environ: Mapping[str, str] | None = None,
    *,
    accepts: Callable[[str, int], bool] = tunnel.port_accepts,
    stack: str | None = None,
) -> ProgramSettings:
    """`settings` with this run's PostgreSQL endpoint of every server but the default one that the
    stack dials (ODUFLOW_POSTGRES_ADMIN_HOST/PORT_<SERVER>, one tunnel each), checked like
    `reach_postgres`. A server behind ssh:// without its own variable stops the run: every remote
    PostgreSQL listens on the same loopback port of its own host, so the configured port would
    reach whichever server's tunnel holds it locally, possibly another server's."""
    if _under_mocks():
        return settings
    env = os.environ if environ is None else environ
    platform = config.platform
    endpoints = dict(settings.endpoints)
    for server in stack_servers(config, settings):
        if server == naming.DEFAULT_SERVER:
            continue
        docker_host = server_docker_host(config, settings, server)
        try:
            host, port = tunnel.admin_endpoint(platform.postgres_admin_host, platform.postgres_port, env, server)
            target = tunnel.tunnel_target(docker_host, host)
        except ValueError as exc:
            raise pulumi.RunError(str(exc)) from None
        if target is not None and (not tunnel.has_endpoint(env, server) or not accepts(host, port)):
            raise pulumi.RunError(
                tunnel.unreachable_message(
                    stack=stack or pulumi.get_stack(),
                    docker_host=docker_host,
                    target=target,
                    host=host,
                    port=port,
                    remote_port=platform.postgres_port,
                )
                + f" and set {tunnel.server_env_names(server)[1]} to its local port"
            )
        if tunnel.has_endpoint(env, server):
            endpoints[server] = (host, port)
    return replace(settings, endpoints=endpoints)
