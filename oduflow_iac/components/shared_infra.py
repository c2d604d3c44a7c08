"""SharedInfra: what every team on one Docker host shares.

The Docker network `oduflow-net`, one PostgreSQL server `oduflow-db` (published on loopback only),
Traefik `oduflow-traefik` in front of every environment, and the providers the teams' resources use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pulumi_docker as docker
import pulumi_postgresql as postgresql
import pulumi_random as random

from oduflow_iac import labels, naming, postgres_server
from oduflow_iac.components.common import as_secret, label_args, secret_env
from oduflow_iac.components.refs import SharedRefs
from oduflow_iac.config import Backup, Dns, Platform

POSTGRES_INTERNAL_PORT = 5432
POSTGRES_SUPERUSER = postgres_server.SUPERUSER
TRAEFIK_CERTS_PATH = "/certs"
DOCKER_SOCKET = "/var/run/docker.sock"
# Databases initdb creates that a role could connect to (template0 refuses every connection).
SERVER_DATABASES = ("postgres", "template1")


@dataclass
class SharedInfraArgs:
    platform: Platform
    docker_host: str
    dns: Dns | None = None
    dns_api_token: pulumi.Input[str] | None = None
    backup: Backup | None = None


def traefik_command(platform: Platform, dns: Dns | None) -> list[str]:
    """Traefik's static configuration as command-line flags."""
    args = [
        "--providers.docker=true",
        "--providers.docker.exposedbydefault=false",
        f"--providers.docker.network={platform.network}",
        "--entrypoints.web.address=:80",
        "--entrypoints.websecure.address=:443",
        "--ping=true",
    ]
    if platform.tls:
        resolver = f"--certificatesresolvers.{naming.TLS_RESOLVER}.acme"
        args += [
            "--entrypoints.web.http.redirections.entrypoint.to=websecure",
            "--entrypoints.web.http.redirections.entrypoint.scheme=https",
            f"{resolver}.storage={TRAEFIK_CERTS_PATH}/acme.json",
        ]
        if platform.acme_email:
            args.append(f"{resolver}.email={platform.acme_email}")
        if dns is not None:
            # DNS-01 through Cloudflare for the zone: works before the host is reachable; HTTP-01
            # for hosts outside it. Both keep their accounts and certificates in one acme.json.
            http = f"--certificatesresolvers.{naming.TLS_RESOLVER_HTTP}.acme"
            args.append(f"{resolver}.dnschallenge.provider=cloudflare")
            args += [f"{http}.storage={TRAEFIK_CERTS_PATH}/acme.json", f"{http}.httpchallenge.entrypoint=web"]
            if platform.acme_email:
                args.append(f"{http}.email={platform.acme_email}")
        else:
            args.append(f"{resolver}.httpchallenge.entrypoint=web")
    if platform.dashboard:
        # The dashboard listens on :8080, published on loopback only (see the container's ports).
        args += ["--api.dashboard=true", "--api.insecure=true"]
    return args


def postgres_server_args(platform: Platform) -> dict[str, Any]:
    """The PostgreSQL container's entrypoint, command and uploaded files (postgres_server.py): the
    wrapper that re-applies the superuser password at every start, the server's settings, and its
    pg_hba.conf. Kept in one place so the container's other inputs can change independently."""
    return {
        "entrypoints": ["/bin/sh", postgres_server.ENTRYPOINT_PATH],
        "command": postgres_server.server_command(
            max_connections=platform.postgres_max_connections,
            reserved_connections=platform.postgres_reserved_connections,
            temp_file_limit_mb=platform.postgres_temp_file_limit_mb,
        ),
        "uploads": [
            docker.ContainerUploadArgsDict(
                file=postgres_server.ENTRYPOINT_PATH, content=postgres_server.render_entrypoint(), executable=True
            ),
            docker.ContainerUploadArgsDict(
                file=postgres_server.HBA_TEMPLATE_PATH, content=postgres_server.render_pg_hba()
            ),
        ],
    }


def postgres_healthcheck() -> docker.ContainerHealthcheckArgsDict:
    return docker.ContainerHealthcheckArgsDict(
        tests=["CMD-SHELL", f"pg_isready -U {POSTGRES_SUPERUSER} -h 127.0.0.1"],
        interval="10s",
        timeout="5s",
        retries=6,
        start_period="20s",
    )


class SharedInfra(pulumi.ComponentResource):
    refs: SharedRefs

    def __init__(self, name: str, args: SharedInfraArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("oduflow:index:SharedInfra", name, None, opts)
        platform = args.platform
        child = pulumi.ResourceOptions(parent=self)

        self.docker_provider = docker.Provider(f"{name}-docker", host=args.docker_host, opts=child)
        on_docker = pulumi.ResourceOptions(parent=self, provider=self.docker_provider)
        managed = labels.oduflow_labels("", None, "shared")
        del managed[naming.LABEL_TEAM]

        self.network = docker.Network(
            f"{name}-net",
            name=platform.network,
            driver="bridge",
            labels=[docker.NetworkLabelArgsDict(label=k, value=v) for k, v in managed.items()],
            opts=on_docker,
        )

        self.postgres_password = random.RandomPassword(
            f"{name}-postgres-password", length=32, special=False, opts=child
        )
        db_volume = docker.Volume(
            f"{name}-postgres-data",
            name=naming.SHARED_DB_VOLUME,
            # Every team's databases live here: never deleted by a `pulumi destroy` by accident.
            opts=pulumi.ResourceOptions(parent=self, provider=self.docker_provider, protect=True),
        )
        self.postgres = docker.Container(
            f"{name}-postgres",
            name=naming.SHARED_DB_CONTAINER,
            image=platform.postgres_image,
            **postgres_server_args(platform),
            envs=[
                f"POSTGRES_USER={POSTGRES_SUPERUSER}",
                secret_env("POSTGRES_PASSWORD", self.postgres_password.result),
            ],
            ports=[
                docker.ContainerPortArgsDict(
                    internal=POSTGRES_INTERNAL_PORT, external=platform.postgres_port, ip="127.0.0.1"
                )
            ],
            volumes=[
                docker.ContainerVolumeArgsDict(volume_name=db_volume.name, container_path="/var/lib/postgresql/data")
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgsDict(name=self.network.name)],
            healthcheck=postgres_healthcheck(),
            memory=platform.postgres_memory_mb,
            restart="unless-stopped",
            wait=True,
            wait_timeout=120,
            labels=label_args(managed | {naming.LABEL_ROLE: "database"}),
            opts=on_docker,
        )

        traefik_volumes = [
            docker.ContainerVolumeArgsDict(host_path=DOCKER_SOCKET, container_path=DOCKER_SOCKET, read_only=True)
        ]
        if platform.tls:
            certs = docker.Volume(f"{name}-traefik-certs", name=naming.TRAEFIK_CERTS_VOLUME, opts=on_docker)
            traefik_volumes.append(
                docker.ContainerVolumeArgsDict(volume_name=certs.name, container_path=TRAEFIK_CERTS_PATH)
            )
        traefik_envs: list[pulumi.Input[str]] = []
        if platform.tls and args.dns is not None and args.dns_api_token is not None:
            traefik_envs.append(secret_env("CF_DNS_API_TOKEN", args.dns_api_token))
        traefik_ports = [
            docker.ContainerPortArgsDict(internal=80, external=80),
            docker.ContainerPortArgsDict(internal=443, external=443),
        ]
        if platform.dashboard:
            traefik_ports.append(docker.ContainerPortArgsDict(internal=8080, external=8080, ip="127.0.0.1"))
        self.traefik = docker.Container(
            f"{name}-traefik",
            name=naming.SHARED_TRAEFIK_CONTAINER,
            image=platform.traefik_image,
            command=traefik_command(platform, args.dns),
            envs=traefik_envs,
            ports=traefik_ports,
            volumes=traefik_volumes,
            networks_advanced=[docker.ContainerNetworksAdvancedArgsDict(name=self.network.name)],
            healthcheck=docker.ContainerHealthcheckArgsDict(
                tests=["CMD", "traefik", "healthcheck", "--ping"], interval="15s", timeout="5s", retries=3
            ),
            restart="unless-stopped",
            labels=label_args(managed | {naming.LABEL_ROLE: "proxy"}),
            opts=on_docker,
        )

        self.postgresql_provider = postgresql.Provider(
            f"{name}-postgresql",
            host=platform.postgres_admin_host,
            port=platform.postgres_port,
            username=POSTGRES_SUPERUSER,
            password=self.postgres_password.result,
            sslmode="disable",
            superuser=True,
            connect_timeout=30,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.postgres]),
        )

        self._postgres_access(name)

        cloudflare_provider = None
        if args.dns is not None:
            cloudflare_provider = cloudflare.Provider(
                f"{name}-cloudflare",
                api_token=as_secret(args.dns_api_token) if args.dns_api_token is not None else None,
                opts=child,
            )
        aws_provider = None
        if args.backup is not None:
            aws_provider = aws.Provider(f"{name}-aws", region=args.backup.region, opts=child)

        self.refs = SharedRefs(
            docker_provider=self.docker_provider,
            postgresql_provider=self.postgresql_provider,
            network_name=self.network.name,
            db_host=naming.SHARED_DB_CONTAINER,
            db_port=POSTGRES_INTERNAL_PORT,
            cloudflare_provider=cloudflare_provider,
            aws_provider=aws_provider,
        )
        self.register_outputs(
            {
                "networkName": self.network.name,
                "postgresContainer": self.postgres.name,
                "traefikContainer": self.traefik.name,
            }
        )

    # -- PostgreSQL roles and grants of the whole server ---------------------------------------

    def _postgres_access(self, name: str) -> None:
        """The group roles pg_hba.conf admits team roles and provisioning roles by, and PUBLIC's
        CONNECT (and TEMPORARY) revoked on the databases every server has: a team role connects to
        its own databases and nowhere else. Superusers ignore privileges, so the provider's own
        connection (to `postgres` by default) is unaffected."""
        on_pg = pulumi.ResourceOptions(parent=self, provider=self.postgresql_provider)
        self.tenant_group = postgresql.Role(
            f"{name}-tenant-group", name=naming.TENANT_GROUP_ROLE, login=False, opts=on_pg
        )
        self.tenant_admin_group = postgresql.Role(
            f"{name}-tenant-admin-group", name=naming.TENANT_ADMIN_GROUP_ROLE, login=False, opts=on_pg
        )
        self.server_database_grants = [
            postgresql.Grant(
                f"{name}-revoke-public-{database}",
                database=database,
                role="public",
                object_type="database",
                privileges=[],
                opts=on_pg,
            )
            for database in SERVER_DATABASES
        ]
        # A provisioning role's provider connects to `postgres` (the provider's default database)
        # before the team has any database of its own.
        self.tenant_admin_connect = postgresql.Grant(
            f"{name}-tenant-admins-connect-postgres",
            database="postgres",
            role=self.tenant_admin_group.name,
            object_type="database",
            privileges=["CONNECT"],
            opts=pulumi.ResourceOptions.merge(
                on_pg, pulumi.ResourceOptions(depends_on=self.server_database_grants)
            ),
        )
