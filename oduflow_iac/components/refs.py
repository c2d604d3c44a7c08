"""What a team needs from the shared infrastructure, whether built in the same stack or read from
the `shared` stack through a StackReference."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pulumi_docker as docker
import pulumi_postgresql as postgresql


@dataclass
class SharedRefs:
    docker_provider: docker.Provider
    postgresql_provider: postgresql.Provider
    network_name: pulumi.Input[str]
    db_host: str
    db_port: int
    cloudflare_provider: cloudflare.Provider | None = None
    aws_provider: aws.Provider | None = None


@dataclass
class TeamRole:
    """A login role and its password (a secret), as the components hand them on."""

    name: pulumi.Input[str]
    password: pulumi.Input[str]


@dataclass
class TeamDatabaseAccess:
    """How a team's containers reach the shared server as the team role, built once per team:
    libpq's variables, which Odoo (odoo.conf has no db_* options), psql and pg_dump all read."""

    role_name: pulumi.Input[str]
    libpq_envs: list[pulumi.Input[str]]
    # The team's PostgreSQL proxy: whatever connects through it waits for it.
    proxy: pulumi.Resource | None = None
