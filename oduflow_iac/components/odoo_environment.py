"""OdooEnvironment: one running Odoo for one branch of one team.

Its database (owned by the team role, cloned from the team's template when it names one, closed to
every other role), its filestore volume, the addon repositories of its cascade, and the Odoo
container with a hardened odoo.conf behind Traefik.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_postgresql as postgresql
import pulumi_random as random

from oduflow_iac import addons_fetch, labels, naming, odoo_conf, odoo_init
from oduflow_iac.cascade import ResolvedAddon
from oduflow_iac.components.common import as_secret, label_args, one_shot, succeeded
from oduflow_iac.components.refs import SharedRefs, TeamDatabaseAccess
from oduflow_iac.config import EnvType, TypeDefaults

# Odoo creates its databases from template0 in UTF-8 with the C collation (stable index order
# whatever the host's locale); the character classes stay Unicode-aware.
DB_ENCODING = "UTF8"
DB_LC_COLLATE = "C"
DB_LC_CTYPE = "C.UTF-8"


@dataclass
class OdooEnvironmentArgs:
    team_id: str
    branch: str
    env_type: EnvType
    image: str
    host: str
    host_port: int
    limits: TypeDefaults
    db_access: TeamDatabaseAccess
    team_network: pulumi.Input[str]
    shared: SharedRefs
    publish_address: str = "127.0.0.1"
    tls: bool = False
    basic_auth_users: pulumi.Input[str] | None = None
    template_database: pulumi.Input[str] | None = None
    template_database_name: str | None = None
    template_filestore: pulumi.Input[str] | None = None
    network_name: str = "oduflow-net"
    tls_resolver: str = "oduflow"
    addons: list[ResolvedAddon] = field(default_factory=list)
    addons_fetch_image: str = "alpine/git:v2.47.2"
    extra_networks: list[str] = field(default_factory=list)
    odoo_options: dict[str, str | int | float | bool] = field(default_factory=dict)
    # The team's git credentials: which exist, and their secret `NAME=value` variables.
    git_credentials: addons_fetch.GitCredentials = field(default_factory=addons_fetch.GitCredentials)
    git_envs: list[pulumi.Input[str]] = field(default_factory=list)
    protect: bool = False
    disabled: bool = False
    depends_on: list[pulumi.Resource] = field(default_factory=list)


def revoke_public_connect(name: str, database: pulumi.Input[str], opts: pulumi.ResourceOptions) -> postgresql.Grant:
    """PUBLIC loses CONNECT and TEMPORARY: only the owner (the team role) and superusers connect."""
    return postgresql.Grant(name, database=database, role="public", object_type="database", privileges=[], opts=opts)


def odoo_healthcheck() -> docker.ContainerHealthcheckArgsDict:
    return docker.ContainerHealthcheckArgsDict(
        tests=["CMD-SHELL", f"curl -fsS http://127.0.0.1:{naming.ODOO_HTTP_PORT}/web/health || exit 1"],
        interval="30s",
        timeout="10s",
        retries=5,
        start_period="2m0s",  # as the provider reads it back (Go's format), so no diff after a refresh
    )


class OdooEnvironment(pulumi.ComponentResource):
    database_name: str
    url: str
    host_port: int

    def __init__(self, name: str, args: OdooEnvironmentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("oduflow:index:OdooEnvironment", name, None, opts)
        team, branch = args.team_id, args.branch
        self.database_name = naming.env_db_name(team, branch)
        self.url = f"{'https' if args.tls else 'http'}://{args.host}"
        self.host_port = args.host_port
        on_pg = pulumi.ResourceOptions(parent=self, provider=args.shared.postgresql_provider)
        on_docker = pulumi.ResourceOptions(parent=self, provider=args.shared.docker_provider)
        keep = args.protect  # production data survives a mistaken `pulumi destroy`

        self.database = postgresql.Database(
            f"{name}-db",
            name=self.database_name,
            owner=args.db_access.role_name,
            template=args.template_database if args.template_database is not None else "template0",
            encoding=DB_ENCODING,
            lc_collate=DB_LC_COLLATE,
            lc_ctype=DB_LC_CTYPE,
            # The template only matters when the database is created: renaming a template (or
            # pointing the environment at another) must not replace, i.e. drop, the database.
            opts=pulumi.ResourceOptions.merge(
                on_pg, pulumi.ResourceOptions(protect=keep, depends_on=args.depends_on, ignore_changes=["template"])
            ),
        )
        self.revoke = revoke_public_connect(f"{name}-db-revoke-public", self.database.name, on_pg)
        self.filestore = docker.Volume(
            f"{name}-filestore",
            name=naming.env_filestore_volume_name(team, branch),
            labels=[
                docker.VolumeLabelArgsDict(label=k, value=v)
                for k, v in labels.oduflow_labels(team, branch, "filestore").items()
            ],
            opts=pulumi.ResourceOptions.merge(on_docker, pulumi.ResourceOptions(protect=keep)),
        )

        volumes = [
            docker.ContainerVolumeArgsDict(volume_name=self.filestore.name, container_path=odoo_conf.FILESTORE_PATH)
        ]
        waits_for: list[pulumi.Resource] = [self.database, self.revoke]
        checks: list[pulumi.Output[int]] = []
        addons_paths: list[str] = []
        if args.addons:
            addons_volume = docker.Volume(
                f"{name}-addons", name=naming.env_addons_volume_name(team, branch), opts=on_docker
            )
            fetch_name = naming.env_addons_fetch_container_name(team, branch)
            fetch = one_shot(
                f"{name}-addons-fetch",
                container_name=fetch_name,
                image=args.addons_fetch_image,
                entrypoints=["/bin/sh", "-c"],
                command=[addons_fetch.fetch_script(args.addons, credentials=args.git_credentials)],
                envs=args.git_envs or None,
                volumes=[
                    docker.ContainerVolumeArgsDict(volume_name=addons_volume.name, container_path=odoo_conf.ADDONS_ROOT)
                ],
                labels=label_args(labels.oduflow_labels(team, branch, "addons-fetch")),
                opts=on_docker,
            )
            waits_for.append(fetch)
            checks.append(succeeded(fetch, fetch_name))
            volumes.append(
                docker.ContainerVolumeArgsDict(
                    volume_name=addons_volume.name, container_path=odoo_conf.ADDONS_ROOT, read_only=True
                )
            )
            addons_paths = [f"{odoo_conf.ADDONS_ROOT}/{a.name}" for a in args.addons]

        self.admin_password = random.RandomPassword(
            f"{name}-admin-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        limits = args.limits
        conf = as_secret(self.admin_password.result).apply(
            lambda admin: odoo_conf.render_odoo_conf(
                database=self.database_name,
                admin_passwd=admin,
                workers=limits.workers,
                memory_mb=limits.memory_mb,
                addons_paths=addons_paths,
                options=args.odoo_options,
            )
        )

        db_envs = args.db_access.odoo_envs
        networks = [args.shared.network_name, args.team_network, *args.extra_networks]
        conf_upload = docker.ContainerUploadArgsDict(file=odoo_conf.ODOO_CONF_PATH, content=conf)

        # Once, when the environment is created: install base into a fresh database, or finish a
        # clone of the template the way Odoo's own duplicate does.
        init_name = naming.env_init_container_name(team, branch)
        init_opts = pulumi.ResourceOptions.merge(on_docker, pulumi.ResourceOptions(depends_on=waits_for))
        init_labels = label_args(labels.oduflow_labels(team, branch, "init"))
        if args.template_database_name is None:
            init = one_shot(
                f"{name}-init",
                container_name=init_name,
                image=args.image,
                command=odoo_init.install_command(self.database_name, ["base"]),
                envs=db_envs,
                uploads=[conf_upload],
                volumes=volumes,
                networks=networks,
                labels=init_labels,
                opts=init_opts,
            )
        else:
            template_volumes = [*volumes]
            if args.template_filestore is not None:
                template_volumes.append(
                    docker.ContainerVolumeArgsDict(
                        volume_name=args.template_filestore,
                        container_path=odoo_init.TEMPLATE_FILESTORE_MOUNT,
                        read_only=True,
                    )
                )
            init = one_shot(
                f"{name}-init",
                container_name=init_name,
                image=args.image,
                entrypoints=["/bin/sh", "-c"],
                command=[odoo_init.clone_finish_script(args.template_database_name, self.database_name)],
                envs=[*args.db_access.libpq_envs, f"PGDATABASE={self.database_name}"],
                volumes=template_volumes,
                networks=networks,
                labels=init_labels,
                opts=init_opts,
            )
        checks.append(succeeded(init, init_name))

        label_values = labels.oduflow_labels(team, branch, "odoo") | labels.traefik_labels(
            labels.Route(
                team_id=team,
                branch=branch,
                host=args.host,
                tls=args.tls,
                websocket=limits.workers > 0,
                basic_auth=args.basic_auth_users is not None,
                resolver=args.tls_resolver,
            ),
            network=args.network_name,
        )
        container_labels: list[pulumi.Input[docker.ContainerLabelArgsDict]] = label_args(label_values)
        if args.basic_auth_users is not None:
            key, _ = labels.basic_auth_label(team, "")
            container_labels.append(docker.ContainerLabelArgsDict(label=key, value=args.basic_auth_users))

        self.container: docker.Container | None = None
        if not args.disabled:
            self.container = docker.Container(
                f"{name}-odoo",
                name=naming.env_container_name(team, branch),
                image=args.image,
                envs=db_envs,
                uploads=[conf_upload],
                ports=[
                    docker.ContainerPortArgsDict(
                        internal=naming.ODOO_HTTP_PORT, external=args.host_port, ip=args.publish_address
                    )
                ],
                volumes=volumes,
                networks_advanced=[docker.ContainerNetworksAdvancedArgsDict(name=n) for n in networks],
                labels=container_labels,
                healthcheck=odoo_healthcheck(),
                memory=limits.memory_mb,
                cpus=f"{limits.cpu:g}",
                restart="unless-stopped",
                # The init depends on everything else the container waits for.
                opts=pulumi.ResourceOptions.merge(on_docker, pulumi.ResourceOptions(depends_on=[init])),
            )

        self.register_outputs(
            {
                "url": self.url,
                "databaseName": self.database_name,
                "hostPort": self.host_port,
                "disabled": args.disabled,
                "oneShotsSucceeded": pulumi.Output.all(*checks),
            }
        )
