"""TeamDatabaseRoles: a team's PostgreSQL roles, created where the superuser password already is.

- The team role `oduflow_team_<id>` (LOGIN): owner of every database of the team, what its
  containers log in as. Its limits come from the config and are set by the superuser, so nothing
  the team controls can raise them: CONNECTION LIMIT from the team's quota, `statement_timeout`
  and `idle_in_transaction_session_timeout` as role defaults. Member of the `oduflow_tenants`
  group, which pg_hba.conf admits from the database network only.
- With `provisioner`, for the per-team layout: `oduflow_team_<id>_admin` (LOGIN, CREATEDB, member
  of the team role, of `oduflow_tenant_admins`), what the team's own stack logs in as to create and
  drop the team's databases. It holds no other privilege: no CREATEROLE (in PostgreSQL 16 a role
  with CREATEROLE could create more login roles and escape the connection limit), no ADMIN OPTION
  on the team role (so it cannot change the team role's password or limits), no membership in any
  other team's role.

The component lives beside SharedInfra (in the all-in-one and `shared` layouts), never in a team
stack: a team stack receives the two credentials through the stack reference, never the superuser's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_postgresql as postgresql
import pulumi_random as random

from oduflow_iac import naming
from oduflow_iac.components.refs import TeamRole
from oduflow_iac.config import TeamDatabase
from oduflow_iac.postgres_server import PROVISIONER_CONNECTION_LIMIT


@dataclass
class TeamDatabaseRolesArgs:
    team_id: str
    connection_limit: int
    settings: TeamDatabase
    tenant_group: pulumi.Input[str]
    admin_group: pulumi.Input[str] | None = None
    provisioner: bool = False
    # The server whose PostgreSQL holds them: a team has roles on every server it sits on.
    server: str = naming.DEFAULT_SERVER


class TeamDatabaseRoles(pulumi.ComponentResource):
    team: TeamRole
    admin: TeamRole | None

    def __init__(
        self,
        name: str,
        args: TeamDatabaseRolesArgs,
        provider: postgresql.Provider,
        opts: pulumi.ResourceOptions | None = None,
        moved_from: pulumi.Input[str] | None = None,
    ) -> None:
        """`moved_from`: the URN of the component that declared the team role before (the team's
        TeamStack of the all-in-one layout), so the role and its password are adopted, not replaced."""
        super().__init__("oduflow:index:TeamDatabaseRoles", name, None, opts)
        team_id = args.team_id
        on_pg = pulumi.ResourceOptions(parent=self, provider=provider)

        def moved(resource_name: str) -> pulumi.ResourceOptions:
            if moved_from is None:
                return pulumi.ResourceOptions()
            return pulumi.ResourceOptions(aliases=[pulumi.Alias(name=resource_name, parent=moved_from)])

        # The same logical names the team stack used, so `moved_from` finds them; on another server
        # than the default one, that server's TeamStack name (`team-1@s2`), unique in the stack.
        prefix = naming.team_component_name(team_id, args.server)
        password = random.RandomPassword(
            f"{prefix}-role-password",
            length=32,
            special=False,
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), moved(f"{prefix}-role-password")),
        )
        settings = args.settings
        role = postgresql.Role(
            f"{prefix}-role",
            name=naming.team_role_name(team_id),
            login=True,
            password=password.result,
            connection_limit=args.connection_limit,
            statement_timeout=settings.statement_timeout_ms or 0,
            idle_in_transaction_session_timeout=settings.idle_in_transaction_session_timeout_ms or 0,
            roles=[args.tenant_group],
            opts=pulumi.ResourceOptions.merge(on_pg, moved(f"{prefix}-role")),
        )
        self.team = TeamRole(name=role.name, password=password.result)

        self.admin = None
        if args.provisioner:
            admin_password = random.RandomPassword(
                f"{prefix}-db-admin-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
            )
            groups: list[pulumi.Input[str]] = [role.name]
            if args.admin_group is not None:
                groups.append(args.admin_group)
            admin = postgresql.Role(
                f"{prefix}-db-admin",
                name=naming.team_db_admin_role_name(team_id),
                login=True,
                password=admin_password.result,
                create_database=True,
                connection_limit=PROVISIONER_CONNECTION_LIMIT,
                roles=groups,
                opts=on_pg,
            )
            self.admin = TeamRole(name=admin.name, password=admin_password.result)

        self.register_outputs({"role": role.name})
