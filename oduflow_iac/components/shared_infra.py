"""SharedInfra: what every team on one Docker host shares.

One PostgreSQL server `oduflow-db` (published on loopback only) on the database network, which only
the teams' PostgreSQL proxies join; Traefik `oduflow-traefik` on the host's network in front of
every environment, reading the Docker API only through the filtering proxy `oduflow-docker-proxy`;
and the providers the teams' resources use. Nothing here changes when a team is added or removed:
Traefik finds environments through Docker labels and reaches them on their team networks from the
host's network namespace, and each team brings its own way to PostgreSQL.
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

from oduflow_iac import docker_form, labels, naming, postgres_server
from oduflow_iac.components.common import as_secret, hardening, label_args, secret_env, stable_basic_auth
from oduflow_iac.components.refs import SharedRefs
from oduflow_iac.config import Backup, Dns, Platform

POSTGRES_INTERNAL_PORT = 5432
POSTGRES_SUPERUSER = postgres_server.SUPERUSER
TRAEFIK_CERTS_PATH = "/certs"
DOCKER_SOCKET = "/var/run/docker.sock"
# The filtered Docker API, a unix socket in a volume only the proxy and Traefik mount.
DOCKER_PROXY_DIR = "/run/oduflow-docker"
DOCKER_PROXY_SOCKET = f"{DOCKER_PROXY_DIR}/docker.sock"
# Traefik's own entrypoint (ping, dashboard): the host's loopback only, out of every tenant's reach.
TRAEFIK_INTERNAL_ADDRESS = "127.0.0.1:8080"
DASHBOARD_ROUTER = "oduflow-dashboard"
DASHBOARD_AUTH = "oduflow-dashboard-auth"
# Seconds each container gets to stop cleanly before the engine kills it (destroy and replace).
POSTGRES_GRACE_SECONDS = 60
TRAEFIK_GRACE_SECONDS = 30
DOCKER_PROXY_GRACE_SECONDS = 10
# Only these Docker API calls, all reads: what Traefik's Docker provider (v3.6, pkg/provider/docker:
# pdocker.go, shared.go) makes: version negotiation (HEAD, then GET /_ping), the server version, the
# container list, each container, and the event stream. Each path is one anchored expression.
DOCKER_PROXY_ALLOWED = (
    ("HEAD", "/_ping"),
    ("GET", "/_ping"),
    ("GET", r"/v1\.[0-9]+/version"),
    ("GET", r"/v1\.[0-9]+/containers/json"),
    ("GET", r"/v1\.[0-9]+/containers/[a-zA-Z0-9][a-zA-Z0-9_.-]*/json"),
    ("GET", r"/v1\.[0-9]+/events"),
)
# Databases initdb creates that a role could connect to (template0 refuses every connection).
SERVER_DATABASES = ("postgres", "template1")


@dataclass
class SharedInfraArgs:
    platform: Platform
    docker_host: str
    dns: Dns | None = None
    dns_api_token: pulumi.Input[str] | None = None
    backup: Backup | None = None
    dashboard_password: pulumi.Input[str] | None = None


def docker_proxy_command() -> list[str]:
    """wollomatic/socket-proxy's flags: every method refused but the reads listed, served on a unix
    socket (no TCP listener at all), restarted by Docker when the engine's socket goes away."""
    allowed = [f"-allow{method}={path}" for method, path in DOCKER_PROXY_ALLOWED]
    return [
        f"-proxysocketendpoint={DOCKER_PROXY_SOCKET}",
        "-proxysocketendpointfilemode=0600",
        *allowed,
        "-watchdoginterval=60",
        "-stoponwatchdog",
        "-shutdowngracetime=5",
    ]


def traefik_labels(platform: Platform, dashboard_users: bool) -> dict[str, str]:
    """Traefik's own routers: the dashboard on the loopback entrypoint, behind basic auth."""
    values = labels.shared_labels("proxy")
    if platform.dashboard and dashboard_users:
        router = f"traefik.http.routers.{DASHBOARD_ROUTER}"
        values |= {
            "traefik.enable": "true",
            f"{router}.rule": "PathPrefix(`/api`) || PathPrefix(`/dashboard`)",
            f"{router}.entrypoints": "traefik",
            f"{router}.service": "api@internal",
            f"{router}.middlewares": f"{DASHBOARD_AUTH}@docker",
        }
    return values


def traefik_command(platform: Platform, dns: Dns | None) -> list[str]:
    """Traefik's static configuration as command-line flags."""
    args = [
        "--providers.docker=true",
        f"--providers.docker.endpoint=unix://{DOCKER_PROXY_SOCKET}",
        "--providers.docker.exposedbydefault=false",
        # Only containers this platform created, whatever labels anything else on the host carries.
        f"--providers.docker.constraints=Label(`{naming.LABEL_MANAGED}`,`true`)",
        "--entrypoints.web.address=:80",
        "--entrypoints.websecure.address=:443",
        f"--entrypoints.traefik.address={TRAEFIK_INTERNAL_ADDRESS}",
        "--ping=true",
        "--ping.entrypoint=traefik",
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
        # Served by the router of Traefik's own labels: loopback entrypoint, basic auth, never insecure.
        args.append("--api.dashboard=true")
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
        # Durations as the provider reads them back (Go's format), or every preview shows an update.
        interval=docker_form.duration(10),
        timeout=docker_form.duration(5),
        retries=6,
        start_period=docker_form.duration(20),
        start_interval=docker_form.duration(0),
    )


class SharedInfra(pulumi.ComponentResource):
    refs: SharedRefs

    def __init__(self, name: str, args: SharedInfraArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("oduflow:index:SharedInfra", name, None, opts)
        platform = args.platform
        child = pulumi.ResourceOptions(parent=self)

        self.docker_provider = docker.Provider(f"{name}-docker", host=args.docker_host, opts=child)
        on_docker = pulumi.ResourceOptions(parent=self, provider=self.docker_provider)
        managed = labels.shared_labels("shared")

        # The database network: PostgreSQL and the teams' PostgreSQL proxies, nothing else. Not
        # `internal`: the engine publishes no port of a container on internal networks only, and the
        # postgresql provider reaches the server through its loopback port.
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
            restart="unless-stopped",
            # A replacement or destroy stops PostgreSQL cleanly (a checkpoint, no recovery on start).
            **hardening(platform.postgres_memory_mb, POSTGRES_GRACE_SECONDS),
            wait=True,
            wait_timeout=120,
            labels=label_args(managed | {naming.LABEL_ROLE: "database"}),
            opts=on_docker,
        )

        proxy_volume = docker.Volume(f"{name}-docker-proxy", name=naming.DOCKER_PROXY_VOLUME, opts=on_docker)
        proxy_mount = docker.ContainerVolumeArgsDict(volume_name=proxy_volume.name, container_path=DOCKER_PROXY_DIR)
        self.docker_proxy = docker.Container(
            f"{name}-docker-proxy",
            name=naming.DOCKER_PROXY_CONTAINER,
            image=platform.docker_proxy_image,
            command=docker_proxy_command(),
            # No network at all: it serves a unix socket to the one container that mounts its volume.
            network_mode="none",
            # The engine's socket is root's: the proxy runs as root with no capability at all.
            user="0:0",
            capabilities=docker.ContainerCapabilitiesArgsDict(drops=["ALL"]),
            read_only=True,
            volumes=[
                docker.ContainerVolumeArgsDict(host_path=DOCKER_SOCKET, container_path=DOCKER_SOCKET, read_only=True),
                proxy_mount,
            ],
            restart="unless-stopped",
            labels=label_args(managed | {naming.LABEL_ROLE: "docker-proxy"}),
            opts=on_docker,
            **hardening(platform.proxy_memory_mb, DOCKER_PROXY_GRACE_SECONDS),
        )

        traefik_volumes = [proxy_mount]
        if platform.tls:
            certs = docker.Volume(f"{name}-traefik-certs", name=naming.TRAEFIK_CERTS_VOLUME, opts=on_docker)
            traefik_volumes.append(
                docker.ContainerVolumeArgsDict(volume_name=certs.name, container_path=TRAEFIK_CERTS_PATH)
            )
        traefik_envs: list[pulumi.Input[str]] = []
        if platform.tls and args.dns is not None and args.dns_api_token is not None:
            traefik_envs.append(secret_env("CF_DNS_API_TOKEN", args.dns_api_token))
        traefik_label_args = label_args(traefik_labels(platform, args.dashboard_password is not None))
        if platform.dashboard and args.dashboard_password is not None:
            users = stable_basic_auth(
                f"{name}-dashboard-auth-salt", args.dashboard_password, platform.basic_auth_cost, child
            )
            traefik_label_args.append(
                docker.ContainerLabelArgsDict(
                    label=f"traefik.http.middlewares.{DASHBOARD_AUTH}.basicauth.users", value=users
                )
            )
        self.traefik = docker.Container(
            f"{name}-traefik",
            name=naming.SHARED_TRAEFIK_CONTAINER,
            image=platform.traefik_image,
            command=traefik_command(platform, args.dns),
            envs=traefik_envs,
            # The host's network: Traefik reaches each environment on its team network without
            # joining any (adding a team changes nothing here) and binds :80/:443 itself. No
            # `ports`: the engine ignores them in host mode and the provider would replace it on
            # every run (it reads back none).
            network_mode="host",
            capabilities=docker.ContainerCapabilitiesArgsDict(drops=["ALL"], adds=["CAP_NET_BIND_SERVICE"]),
            volumes=traefik_volumes,
            healthcheck=docker.ContainerHealthcheckArgsDict(
                tests=["CMD", "traefik", "healthcheck", "--ping"],
                interval=docker_form.duration(15),
                timeout=docker_form.duration(5),
                retries=3,
                start_period=docker_form.duration(0),
                start_interval=docker_form.duration(0),
            ),
            restart="unless-stopped",
            labels=traefik_label_args,
            opts=pulumi.ResourceOptions(parent=self, provider=self.docker_provider, depends_on=[self.docker_proxy]),
            **hardening(platform.traefik_memory_mb, TRAEFIK_GRACE_SECONDS),
        )

        self.postgresql_provider = postgresql.Provider(
            f"{name}-postgresql",
            host=platform.postgres_admin_host,
            port=platform.postgres_admin_port or platform.postgres_port,
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
                "dockerProxyContainer": self.docker_proxy.name,
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
            opts=pulumi.ResourceOptions.merge(on_pg, pulumi.ResourceOptions(depends_on=self.server_database_grants)),
        )
