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

from oduflow_iac import addons_fetch, docker_form, labels, naming, odoo_conf, odoo_init, revisions
from oduflow_iac.cascade import ResolvedAddon
from oduflow_iac.components.common import (
    as_secret,
    hardening,
    init_uploads,
    label_args,
    one_shot,
    secret_env,
    succeeded,
)
from oduflow_iac.components.refs import SharedRefs, TeamDatabaseAccess
from oduflow_iac.config import EnvType, TypeDefaults
from oduflow_iac.lifecycle import refresh, upgrade

# Odoo creates its databases from template0 in UTF-8 with the C collation (stable index order
# whatever the host's locale); the character classes stay Unicode-aware.
DB_ENCODING = "UTF8"
DB_LC_COLLATE = "C"
DB_LC_CTYPE = "C.UTF-8"
# Odoo finishes its requests and cron jobs on SIGTERM (graceful shutdown) given the time.
ODOO_GRACE_SECONDS = 30


@dataclass
class CloneSource:
    """Where an environment with `clone_from` is copied from, and at which refresh generation."""

    branch: str
    database: str
    filestore: pulumi.Input[str]
    generation: int
    # The source's own one-shots: a copy is taken of an initialised database only.
    ready: list[pulumi.Input[pulumi.Resource]] = field(default_factory=list)


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
    tls_resolver: str = "oduflow"
    addons: list[ResolvedAddon] = field(default_factory=list)
    addons_fetch_image: str = "alpine/git:v2.47.2"
    extra_networks: list[str] = field(default_factory=list)
    odoo_options: dict[str, str | int | float | bool] = field(default_factory=dict)
    # The team's git credentials: which exist, and their secret `NAME=value` variables.
    git_credentials: addons_fetch.GitCredentials = field(default_factory=addons_fetch.GitCredentials)
    git_envs: list[pulumi.Input[str]] = field(default_factory=list)
    # The revision lock's entry: repository -> pinned commit, and the modules of those commits.
    pins: dict[str, str] = field(default_factory=dict)
    modules: dict[str, revisions.ModuleRevision] = field(default_factory=dict)
    protect: bool = False
    disabled: bool = False
    depends_on: list[pulumi.Input[pulumi.Resource]] = field(default_factory=list)
    clone: CloneSource | None = None
    # The team's mail catcher (container name on the team network) for a non-production environment.
    mail_catcher: str | None = None


def revoke_public_connect(name: str, database: pulumi.Input[str], opts: pulumi.ResourceOptions) -> postgresql.Grant:
    """PUBLIC loses CONNECT and TEMPORARY: only the owner (the team role) and superusers connect."""
    return postgresql.Grant(name, database=database, role="public", object_type="database", privileges=[], opts=opts)


def odoo_healthcheck() -> docker.ContainerHealthcheckArgsDict:
    return docker.ContainerHealthcheckArgsDict(
        tests=["CMD-SHELL", f"curl -fsS http://127.0.0.1:{naming.ODOO_HTTP_PORT}/web/health || exit 1"],
        # As the provider reads them back (Go's format): another spelling is an update on every run.
        interval=docker_form.duration(30),
        timeout=docker_form.duration(10),
        retries=5,
        start_period=docker_form.duration(120),
        start_interval=docker_form.duration(0),
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
        proxy = [args.db_access.proxy] if args.db_access.proxy is not None else []
        waits_for: list[pulumi.Input[pulumi.Resource]] = [self.database, self.revoke, *proxy]
        gates: list[pulumi.Output[docker.Container]] = []
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
                command=[addons_fetch.fetch_script(args.addons, credentials=args.git_credentials, pins=args.pins)],
                envs=args.git_envs or None,
                volumes=[
                    docker.ContainerVolumeArgsDict(volume_name=addons_volume.name, container_path=odoo_conf.ADDONS_ROOT)
                ],
                # Its team's network: git remotes over the Internet, nothing of the platform.
                networks=[args.team_network],
                labels=label_args(labels.oduflow_labels(team, branch, "addons-fetch")),
                # Fetching code touches no data: a changed repository list fetches again.
                rerun_on=["command"],
                opts=on_docker,
            )
            gates.append(succeeded(fetch, fetch_name))
            volumes.append(
                docker.ContainerVolumeArgsDict(
                    volume_name=addons_volume.name, container_path=odoo_conf.ADDONS_ROOT, read_only=True
                )
            )
            # The pinned revision's own directories: a new revision is a new odoo.conf, so the Odoo
            # container is replaced (uploads are ForceNew, docs/docker-provider.md), and only once
            # the upgrade below succeeded.
            addons_paths = [addons_fetch.checkout_dir(a, args.pins) for a in args.addons]

        self.admin_password = random.RandomPassword(
            f"{name}-admin-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        # The password of Odoo's admin user, set once when the database is initialised and never
        # again (Odoo's own `admin`/`admin` never reaches the network); `env credentials` prints it.
        self.admin_user_password = random.RandomPassword(
            f"{name}-admin-user-password", length=24, special=False, opts=pulumi.ResourceOptions(parent=self)
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
                mail_catcher=args.mail_catcher,
            )
        )

        db_envs = args.db_access.libpq_envs
        conf_upload = docker.ContainerUploadArgsDict(file=odoo_conf.ODOO_CONF_PATH, content=conf)

        # Once per database: install base into a fresh database, or finish a clone of the template
        # the way Odoo's own duplicate does; then the admin user's own password. Idempotent, and
        # re-created only on request (common.ONE_SHOT_IGNORED): an image bump, a new odoo.conf, a
        # rotated password or a re-created network never re-run it against a database in service.
        init_envs: list[pulumi.Input[str]] = [
            *db_envs,
            f"PGDATABASE={self.database_name}",
            secret_env(odoo_init.ADMIN_PASSWORD_ENV, self.admin_user_password.result),
        ]
        if args.template_database_name is None:
            script = odoo_init.install_script(self.database_name, ["base"])
            init_volumes = volumes
        else:
            script = odoo_init.clone_finish_script(args.template_database_name, self.database_name)
            init_volumes = [*volumes]
            if args.template_filestore is not None:
                init_volumes.append(
                    docker.ContainerVolumeArgsDict(
                        volume_name=args.template_filestore,
                        container_path=odoo_init.TEMPLATE_FILESTORE_MOUNT,
                        read_only=True,
                    )
                )
        if args.clone is not None:
            gates.append(
                self._refresh(name, args, args.clone, [*db_envs, init_envs[-1]], conf_upload, volumes, waits_for, gates)
            )
        else:
            gates.append(self._init(name, args, init_envs, conf_upload, script, init_volumes, waits_for, gates))
        # After the init (or the refresh): the modules whose code moved, before the Odoo container.
        gates.append(
            self._upgrade(
                name,
                args,
                conf_upload,
                [*db_envs, f"PGDATABASE={self.database_name}"],
                volumes,
                depends_on=[*waits_for, *gates],
                opts=on_docker,
            )
        )

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
            network=naming.team_network_name(team),
        )
        if args.clone is not None:
            # A new refresh generation replaces the container: it starts on the fresh copy.
            label_values[naming.LABEL_REFRESH] = str(args.clone.generation)
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
                # Odoo itself, connecting through libpq's variables (see odoo_init.ODOO_COMMAND).
                entrypoints=[odoo_init.ODOO_COMMAND],
                command=["--config", odoo_conf.ODOO_CONF_PATH],
                envs=db_envs,
                uploads=[conf_upload],
                ports=[
                    docker.ContainerPortArgsDict(
                        internal=naming.ODOO_HTTP_PORT, external=args.host_port, ip=args.publish_address
                    )
                ],
                volumes=volumes,
                # Its team's network only (Traefik reaches it there from the host's network).
                networks_advanced=[
                    docker.ContainerNetworksAdvancedArgsDict(name=n) for n in [args.team_network, *args.extra_networks]
                ],
                labels=container_labels,
                healthcheck=odoo_healthcheck(),
                # As the provider reads it back ("2.0", not "2"): `cpus` is ForceNew.
                cpus=docker_form.cpus_value(limits.cpu),
                restart="unless-stopped",
                # Created only once the one-shots succeeded (the init waits for everything else).
                opts=pulumi.ResourceOptions.merge(on_docker, pulumi.ResourceOptions(depends_on=gates)),
                **hardening(limits.memory_mb, ODOO_GRACE_SECONDS),
            )

        # What a copy of this environment waits for (its one-shots, succeeded).
        self.ready: list[pulumi.Output[docker.Container]] = list(gates)
        self.register_outputs(
            {
                "url": self.url,
                "databaseName": self.database_name,
                "hostPort": self.host_port,
                "disabled": args.disabled,
                "oneShotsSucceeded": pulumi.Output.all(*gates).apply(lambda _: True),
                "adminPassword": self.admin_user_password.result,
            }
        )

    def _init(
        self,
        name: str,
        args: OdooEnvironmentArgs,
        init_envs: list[pulumi.Input[str]],
        conf_upload: docker.ContainerUploadArgsDict,
        script: str,
        init_volumes: list[docker.ContainerVolumeArgsDict],
        waits_for: list[pulumi.Input[pulumi.Resource]],
        gates: list[pulumi.Output[docker.Container]],
    ) -> pulumi.Output[docker.Container]:
        team, branch = args.team_id, args.branch
        on_docker = pulumi.ResourceOptions(parent=self, provider=args.shared.docker_provider)
        init_name = naming.env_init_container_name(team, branch)
        init = one_shot(
            f"{name}-init",
            container_name=init_name,
            image=args.image,
            entrypoints=["/bin/sh"],
            command=[odoo_init.INIT_SCRIPT_PATH],
            envs=init_envs,
            uploads=[conf_upload, *init_uploads(script)],
            volumes=init_volumes,
            networks=[args.team_network],
            labels=label_args(labels.oduflow_labels(team, branch, "init")),
            opts=pulumi.ResourceOptions.merge(on_docker, pulumi.ResourceOptions(depends_on=[*waits_for, *gates])),
        )
        return succeeded(init, init_name)

    def _refresh(
        self,
        name: str,
        args: OdooEnvironmentArgs,
        clone: CloneSource,
        envs: list[pulumi.Input[str]],
        conf_upload: docker.ContainerUploadArgsDict,
        volumes: list[docker.ContainerVolumeArgsDict],
        waits_for: list[pulumi.Input[pulumi.Resource]],
        gates: list[pulumi.Output[docker.Container]],
    ) -> pulumi.Output[docker.Container]:
        """The refresh one-shot, in place of the init one-shot: a neutralised copy of the source
        (lifecycle/refresh.py), re-created exactly when the refresh generation changes (it is a
        label; every other input is ignored, as for every one-shot: common.ONE_SHOT_IGNORED).
        Generation 0 is the first copy, when the environment is created."""
        team, branch = args.team_id, args.branch
        on_docker = pulumi.ResourceOptions(parent=self, provider=args.shared.docker_provider)
        refresh_name = naming.env_refresh_container_name(team, branch)
        script = refresh.refresh_script(clone.database, self.database_name, clone.generation, base_url=self.url)
        job = one_shot(
            f"{name}-refresh",
            container_name=refresh_name,
            image=args.image,
            entrypoints=["/bin/sh"],
            command=[refresh.SCRIPT_PATH],
            envs=[*envs, f"{refresh.SOURCE_ENV}={clone.branch}"],
            uploads=[conf_upload, docker.ContainerUploadArgsDict(file=refresh.SCRIPT_PATH, content=script)],
            volumes=[
                *volumes,
                # The source's attachments, read-only: the copy never writes to production.
                docker.ContainerVolumeArgsDict(
                    volume_name=clone.filestore, container_path=refresh.SOURCE_FILESTORE_MOUNT, read_only=True
                ),
            ],
            networks=[args.team_network],
            labels=label_args(
                labels.oduflow_labels(team, branch, "refresh") | {naming.LABEL_REFRESH: str(clone.generation)}
            ),
            opts=pulumi.ResourceOptions.merge(
                on_docker, pulumi.ResourceOptions(depends_on=[*waits_for, *gates, *clone.ready])
            ),
        )
        return succeeded(job, refresh_name)

    def _upgrade(
        self,
        name: str,
        args: OdooEnvironmentArgs,
        conf_upload: docker.ContainerUploadArgsDict,
        envs: list[pulumi.Input[str]],
        volumes: list[docker.ContainerVolumeArgsDict],
        *,
        depends_on: list[pulumi.Input[pulumi.Resource]],
        opts: pulumi.ResourceOptions,
    ) -> pulumi.Output[docker.Container]:
        """The module-upgrade one-shot (lifecycle/upgrade.py), gating the Odoo container. Its label
        carries a digest of the image and the pinned modules' trees and versions: labels are
        ForceNew, so it is re-created (and runs) exactly when one of them changes; every other
        input is ignored like any one-shot's (common.ONE_SHOT_IGNORED)."""
        team, branch = args.team_id, args.branch
        container_name = naming.env_upgrade_container_name(team, branch)
        state = revisions.upgrade_state(args.image, args.modules)
        script = upgrade.upgrade_script(self.database_name, container_name, production=args.env_type == "production")
        label_values = labels.oduflow_labels(team, branch, "upgrade") | {
            upgrade.LABEL_DIGEST: revisions.upgrade_digest(
                args.image, args.modules, args.clone.generation if args.clone is not None else None
            )
        }
        container = one_shot(
            f"{name}-upgrade",
            container_name=container_name,
            image=args.image,
            entrypoints=["/bin/sh"],
            command=[upgrade.SCRIPT_PATH],
            envs=envs,
            uploads=[
                conf_upload,
                *(docker.ContainerUploadArgsDict(file=f, content=c) for f, c in upgrade.uploads(script, state)),
            ],
            volumes=volumes,
            networks=[args.team_network],
            labels=label_args(label_values),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=depends_on)),
        )
        return succeeded(container, container_name)
