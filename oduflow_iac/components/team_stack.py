"""TeamStack: everything one `[team.N]` owns.

Its network, its PostgreSQL role (owner of all its databases), its template databases, the Traefik
basic-auth middleware protecting its non-production environments, its DNS records, its backup
bucket and job, and one OdooEnvironment per `[[team.N.environments]]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pulumi_docker as docker
import pulumi_postgresql as postgresql
from pulumi.resource import create_urn

from oduflow_iac import (
    addons_fetch,
    backup,
    backup_storage,
    db_proxy,
    docker_form,
    labels,
    naming,
    odoo_conf,
    odoo_init,
    revisions,
)
from oduflow_iac.components.common import (
    hardening,
    init_uploads,
    label_args,
    one_shot,
    secret_env,
    stable_basic_auth,
    succeeded,
)
from oduflow_iac.components.odoo_environment import (
    DB_ENCODING,
    DB_LC_COLLATE,
    DB_LC_CTYPE,
    CloneSource,
    OdooEnvironment,
    OdooEnvironmentArgs,
    revoke_public_connect,
)
from oduflow_iac.components.refs import SharedRefs, TeamDatabaseAccess, TeamRole
from oduflow_iac.config import Config, Environment
from oduflow_iac.errors import UsageError
from oduflow_iac.lifecycle import upgrade

DB_PROXY_GRACE_SECONDS = 10
BACKUP_GRACE_SECONDS = 30
MAIL_CATCHER_GRACE_SECONDS = 10


@dataclass
class TeamStackArgs:
    config: Config
    team_id: str
    shared: SharedRefs
    db_role: TeamRole
    ui_password: pulumi.Input[str] | None = None
    git_token: pulumi.Input[str] | None = None
    git_ssh_key: pulumi.Input[str] | None = None
    # The server this TeamStack is on: it declares the team's environments placed there.
    server: str = naming.DEFAULT_SERVER
    # The team's TeamStack on its own server, when this one is on another: the team's backup bucket
    # and job key are that one's.
    home: TeamStack | None = None


def dns_record_names(config: Config, team_id: str, server: str | None = None) -> list[str]:
    """Hostnames that need a record on `server` (every server when None): on the team's own server
    the team hostname and one wildcard under the team's base (so a new branch is reachable at once,
    with no DNS change or propagation wait); on the server DNS sends an environment to, the
    environment's own hostname when the wildcard does not already point there (outside it, or
    the environment is on another server than its team). Names outside the managed zone (a
    client's own domain) are left to whoever runs that domain's DNS."""
    assert config.dns is not None
    zone = config.dns.zone.lower().rstrip(".")
    team = config.team[team_id]
    own = team_dns_server(config, team_id)
    names = [team.hostname.lower(), f"*.{team.base.lower()}"] if server in (None, own) else []
    suffix = f".{team.base.lower()}"
    for env in team.environments:
        at = config.env_dns_server(team_id, env)
        if server is not None and at != server:
            continue
        host = config.env_hostname(team_id, env).lower()
        inside_wildcard = host.endswith(suffix) and "." not in host[: -len(suffix)]
        if (not inside_wildcard or at != own) and host not in names:
            names.append(host)
    return [n for n in names if n == zone or n.endswith(f".{zone}")]


def team_dns_server(config: Config, team_id: str) -> str:
    """Where the team's own records (its hostname and wildcard) point: its server, and while the
    whole team moves, where its environments are served (`from` while copying, then `to`)."""
    for move in config.moves:
        if move.team == team_id and move.branch is None:
            return move.to if move.phase == "switched" else move.from_server
    return config.team_server(team_id)


def dns_address(config: Config, server: str) -> str:
    """What the DNS records of `server`'s environments point to: its `address`, else `[dns] target`."""
    assert config.dns is not None
    return config.servers[server].address or config.dns.target


def server_environments(config: Config, team_id: str, server: str) -> list[Environment]:
    """The team's environments declared on `server`: those placed there, and during a move those
    moving from or to it."""
    return [e for e in config.team[team_id].environments if server in config.env_servers(team_id, e)]


def server_templates(config: Config, team_id: str, server: str) -> list[str]:
    """The templates the team's TeamStack on `server` creates: every one on the team's own server
    (as before servers), elsewhere those its environments there are cloned from."""
    team = config.team[team_id]
    if server == config.team_server(team_id):
        return list(team.templates)
    used = {e.template for e in server_environments(config, team_id, server) if e.template is not None}
    return [name for name in team.templates if name in used]


def tls_resolver_for(config: Config, host: str) -> str:
    """DNS-01 through Cloudflare inside the managed zone; HTTP-01 for a host outside it (a client's
    own domain), which that zone's token cannot prove."""
    if config.dns is None:
        return naming.TLS_RESOLVER
    zone = config.dns.zone.lower().rstrip(".")
    inside = host.lower() == zone or host.lower().endswith(f".{zone}")
    return naming.TLS_RESOLVER if inside else naming.TLS_RESOLVER_HTTP


def clone_order(environments: list[Environment]) -> list[Environment]:
    """The environments with every `clone_from` source before the environments copied from it
    (the config refuses loops), otherwise in the file's order."""
    by_branch = {e.branch: e for e in environments}
    done: dict[str, Environment] = {}

    def visit(env: Environment, seen: tuple[str, ...] = ()) -> None:
        if env.branch in done or env.branch in seen:
            return
        source = by_branch.get(env.clone_from) if env.clone_from else None
        if source is not None:
            visit(source, (*seen, env.branch))
        done[env.branch] = env

    for env in environments:
        visit(env)
    return list(done.values())


def mail_catcher_labels(team_id: str, host: str, tls: bool, resolver: str) -> dict[str, str]:
    """The catcher's web UI behind the team's basic auth, on its team network; its SMTP port is
    routed nowhere (reached on the team network only)."""
    router = naming.team_mail_catcher_router_name(team_id)
    r = f"traefik.http.routers.{router}"
    values = labels.oduflow_labels(team_id, None, "mail-catcher") | {
        "traefik.enable": "true",
        "traefik.docker.network": naming.team_network_name(team_id),
        f"{r}.rule": f"Host(`{host}`)",
        f"{r}.entrypoints": "websecure" if tls else "web",
        f"{r}.service": router,
        f"{r}.middlewares": f"{naming.team_auth_middleware_name(team_id)}@docker",
        f"traefik.http.services.{router}.loadbalancer.server.port": str(naming.MAIL_CATCHER_UI_PORT),
    }
    if tls:
        values[f"{r}.tls"] = "true"
        values[f"{r}.tls.certresolver"] = resolver
    return values


class TeamStack(pulumi.ComponentResource):
    environments: dict[str, OdooEnvironment]

    def __init__(self, name: str, args: TeamStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("oduflow:index:TeamStack", name, None, opts)
        config, team_id, shared, server = args.config, args.team_id, args.shared, args.server
        team = config.team[team_id]
        environments = server_environments(config, team_id, server)
        child = pulumi.ResourceOptions(parent=self)
        on_docker = pulumi.ResourceOptions(parent=self, provider=shared.docker_provider)
        on_pg = pulumi.ResourceOptions(parent=self, provider=shared.postgresql_provider)

        # The team's own network: its Odoo containers, one-shots, backup job and PostgreSQL proxy,
        # nothing of any other team. Not `internal`: Odoo sends mail and fetchers clone from remotes.
        self.network = docker.Network(
            f"{name}-net",
            name=naming.team_network_name(team_id),
            driver="bridge",
            labels=[
                docker.NetworkLabelArgsDict(label=k, value=v)
                for k, v in labels.oduflow_labels(team_id, None, "network").items()
            ],
            opts=on_docker,
        )

        # The team role is created where the superuser password is (TeamDatabaseRoles, beside
        # SharedInfra), with limits the team cannot raise; this stack only receives its credential.
        self.role_name: pulumi.Output[str] = pulumi.Output.from_input(args.db_role.name)
        role_password = args.db_role.password

        # The team's only way to PostgreSQL (see db_proxy.py): on its network and the database network.
        proxy_name = naming.team_db_proxy_container_name(team_id)
        self.db_proxy = docker.Container(
            f"{name}-db-proxy",
            name=proxy_name,
            image=config.platform.db_proxy_image,
            uploads=[
                docker.ContainerUploadArgsDict(
                    file=db_proxy.CONFIG_PATH,
                    content=db_proxy.haproxy_config(
                        shared.db_host, shared.db_port, config.team_db_proxy_connections(team_id)
                    ),
                )
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgsDict(name=self.network.name),
                docker.ContainerNetworksAdvancedArgsDict(name=shared.network_name),
            ],
            # Not read-only: the provider copies the configuration into the container's root file
            # system after creating it, which the engine refuses on a read-only one.
            capabilities=docker.ContainerCapabilitiesArgsDict(drops=["ALL"]),
            restart="unless-stopped",
            labels=label_args(labels.oduflow_labels(team_id, None, "db-proxy")),
            opts=on_docker,
            **hardening(config.platform.proxy_memory_mb, DB_PROXY_GRACE_SECONDS),
        )

        self.db_access = TeamDatabaseAccess(
            role_name=self.role_name,
            libpq_envs=[
                f"PGHOST={proxy_name}",
                f"PGPORT={db_proxy.LISTEN_PORT}",
                self.role_name.apply(lambda r: f"PGUSER={r}"),
                secret_env("PGPASSWORD", role_password),
            ],
            proxy=self.db_proxy,
        )

        self.templates: dict[str, postgresql.Database] = {}
        self.templates_ready: dict[str, pulumi.Output[docker.Container]] = {}
        self.template_filestores: dict[str, docker.Volume] = {}
        for tname in server_templates(config, team_id, server):
            template = team.templates[tname]
            tkey = f"{name}-template-{naming.slugify_branch(tname)}"
            db_name = naming.template_db_name(team_id, tname)
            db = postgresql.Database(
                tkey,
                name=db_name,
                owner=self.role_name,
                template="template0",
                encoding=DB_ENCODING,
                lc_collate=DB_LC_COLLATE,
                lc_ctype=DB_LC_CTYPE,
                # Not IS_TEMPLATE: any role with CREATEDB may copy a database marked so (PostgreSQL,
                # CREATE DATABASE: "if false, only superusers or the owner can clone it"), and every
                # team's provisioning role has CREATEDB. The owner's members (the team's provisioning
                # role) and the superuser still clone it.
                is_template=False,
                opts=on_pg,
            )
            revoke = revoke_public_connect(f"{tkey}-revoke-public", db.name, on_pg)
            # The attachments the module install writes; environments cloned from the template get a copy.
            filestore = docker.Volume(
                f"{tkey}-filestore", name=naming.template_filestore_volume_name(team_id, tname), opts=on_docker
            )
            # Install the template's modules once; Pulumi waits until Odoo exits, so no session holds
            # the template when environments are cloned from it. An image bump of the template is an
            # upgrade, never a new install (the one-shot ignores its image; see common.ONE_SHOT_IGNORED).
            init_name = naming.template_init_container_name(team_id, tname)
            init = one_shot(
                f"{tkey}-init",
                container_name=init_name,
                image=template.odoo_image,
                entrypoints=["/bin/sh"],
                command=[odoo_init.INIT_SCRIPT_PATH],
                uploads=init_uploads(odoo_init.install_script(db_name, template.modules)),
                envs=[*self.db_access.libpq_envs, f"PGDATABASE={db_name}"],
                volumes=[
                    docker.ContainerVolumeArgsDict(volume_name=filestore.name, container_path=odoo_conf.FILESTORE_PATH)
                ],
                networks=[self.network.name],
                labels=label_args(labels.oduflow_labels(team_id, None, "template-init")),
                opts=pulumi.ResourceOptions.merge(
                    on_docker, pulumi.ResourceOptions(depends_on=[db, revoke, self.db_proxy])
                ),
            )
            # An image bump of the template upgrades its modules (lifecycle/upgrade.py); environments
            # cloned from it afterwards start from the upgraded database.
            upgrade_name = naming.template_upgrade_container_name(team_id, tname)
            template_upgrade = one_shot(
                f"{tkey}-upgrade",
                container_name=upgrade_name,
                image=template.odoo_image,
                entrypoints=["/bin/sh"],
                command=[upgrade.SCRIPT_PATH],
                uploads=[
                    docker.ContainerUploadArgsDict(file=f, content=c)
                    for f, c in upgrade.uploads(
                        upgrade.upgrade_script(db_name, upgrade_name, production=False, conf=False),
                        revisions.upgrade_state(template.odoo_image, {}),
                    )
                ],
                envs=[*self.db_access.libpq_envs, f"PGDATABASE={db_name}"],
                volumes=[
                    docker.ContainerVolumeArgsDict(volume_name=filestore.name, container_path=odoo_conf.FILESTORE_PATH)
                ],
                networks=[self.network.name],
                labels=label_args(
                    labels.oduflow_labels(team_id, None, "upgrade")
                    | {upgrade.LABEL_DIGEST: revisions.upgrade_digest(template.odoo_image, {})}
                ),
                opts=pulumi.ResourceOptions.merge(
                    on_docker, pulumi.ResourceOptions(depends_on=[succeeded(init, init_name)])
                ),
            )
            self.templates[tname] = db
            self.templates_ready[tname] = succeeded(template_upgrade, upgrade_name)
            self.template_filestores[tname] = filestore

        basic_auth: pulumi.Output[str] | None = None
        if args.ui_password is not None:
            basic_auth = stable_basic_auth(
                f"{name}-basic-auth-salt", args.ui_password, config.platform.basic_auth_cost, child
            )

        git_credentials = addons_fetch.GitCredentials(
            token=args.git_token is not None, ssh_key=args.git_ssh_key is not None, username=team.git_username
        )
        git_envs: list[pulumi.Input[str]] = []
        if args.git_token is not None:
            git_envs.append(secret_env(addons_fetch.TOKEN_ENV, args.git_token))
        if args.git_ssh_key is not None:
            git_envs.append(secret_env(addons_fetch.SSH_KEY_ENV, args.git_ssh_key))
        self.environments = {}
        tls = config.platform.tls
        mail_host = config.mail_catcher_hostname(team_id)
        self.mail_catcher: docker.Container | None = None
        # On the team's own server (its web UI's hostname points there), and on any other server
        # with non-production environments: their Odoo sends mail to the catcher on its network.
        catches = server == config.team_server(team_id) or any(e.type != "production" for e in environments)
        if mail_host is not None and basic_auth is not None and catches:
            self.mail_catcher = self._mail_catcher(name, config, team_id, mail_host, basic_auth, on_docker)
        for env in clone_order(environments):
            image = config.env_image(team_id, env)
            depends: list[pulumi.Input[pulumi.Resource]] = []
            template_db: pulumi.Input[str] | None = None
            template_filestore: pulumi.Input[str] | None = None
            if env.template is not None:
                template_db = self.templates[env.template].name
                template_filestore = self.template_filestores[env.template].name
                depends.append(self.templates_ready[env.template])
            host = config.env_hostname(team_id, env)
            pinned = config.env_revisions(team_id, env.branch)
            env_name = naming.resource_name(name, env.slug)
            self.environments[env.branch] = OdooEnvironment(
                env_name,
                OdooEnvironmentArgs(
                    team_id=team_id,
                    branch=env.branch,
                    env_type=env.type,
                    image=image,
                    host=host,
                    host_port=config.environment_port(team_id, env.branch),
                    limits=config.env_limits(env),
                    db_access=self.db_access,
                    team_network=self.network.name,
                    shared=shared,
                    publish_address=config.platform.publish_address,
                    tls=tls,
                    basic_auth_users=basic_auth if env.type != "production" else None,
                    template_database=template_db,
                    template_database_name=(
                        naming.template_db_name(team_id, env.template) if env.template is not None else None
                    ),
                    template_filestore=template_filestore,
                    tls_resolver=tls_resolver_for(config, host),
                    addons=revisions.env_addons(config, team_id, env),
                    addons_fetch_image=config.platform.addons_fetch_image,
                    extra_networks=list(env.networks),
                    odoo_options=dict(env.odoo_options),
                    git_credentials=git_credentials,
                    git_envs=git_envs,
                    pins={repo: r.commit for repo, r in pinned.repos.items()},
                    modules=pinned.modules(),
                    protect=env.is_protected,
                    disabled=env.disabled,
                    depends_on=depends,
                    clone=self._clone_source(config, team_id, env),
                    mail_catcher=(
                        naming.team_mail_catcher_container_name(team_id)
                        if env.type != "production" and self.mail_catcher is not None
                        else None
                    ),
                ),
                opts=child,
            )
        # In the file's order (sources were declared first).
        self.environments = {e.branch: self.environments[e.branch] for e in environments}

        if config.dns is not None and shared.cloudflare_provider is not None:
            self._dns(name, config, team_id, server, shared.cloudflare_provider)
        self.bucket: aws.s3.Bucket | None = None
        self.backup_key: aws.iam.AccessKey | None = None
        self.backup_restore_credentials: pulumi.Output[dict[str, str]] | None = None
        if config.backup is not None and shared.aws_provider is not None:
            self._backups(name, config, team_id, server, shared, args.home)

        self.register_outputs(
            {
                "network": self.network.name,
                "role": self.role_name,
                "environments": {b: e.url for b, e in self.environments.items()},
                "templatesInitialised": pulumi.Output.all(*self.templates_ready.values()).apply(lambda _: True),
            }
        )

    def _clone_source(self, config: Config, team_id: str, env: Environment) -> CloneSource | None:
        if env.clone_from is None:
            return None
        if env.clone_from not in self.environments:
            # A refresh copies within one server's PostgreSQL and Docker volumes.
            raise UsageError(
                f"{config.path}: team.{team_id} environment {env.branch!r} is refreshed from "
                f"{env.clone_from!r}, which is not on the same server: place both on one server"
            )
        source = self.environments[env.clone_from]
        return CloneSource(
            branch=env.clone_from,
            database=source.database_name,
            filestore=source.filestore.name,
            generation=config.env_revisions(team_id, env.branch).refresh,
            ready=list(source.ready),
        )

    def _mail_catcher(
        self,
        name: str,
        config: Config,
        team_id: str,
        host: str,
        basic_auth: pulumi.Output[str],
        on_docker: pulumi.ResourceOptions,
    ) -> docker.Container:
        """The team's Mailpit: the SMTP server of its non-production environments, on its network
        alone (no published port), its web UI through Traefik behind the team's basic auth. The
        middleware is declared here as well, so the UI stays protected when no environment is up."""
        values = mail_catcher_labels(team_id, host, config.platform.tls, tls_resolver_for(config, host))
        container_labels = label_args(values)
        key, _ = labels.basic_auth_label(team_id, "")
        container_labels.append(docker.ContainerLabelArgsDict(label=key, value=basic_auth))
        return docker.Container(
            f"{name}-mail-catcher",
            name=naming.team_mail_catcher_container_name(team_id),
            image=config.platform.mail_catcher_image,
            networks_advanced=[docker.ContainerNetworksAdvancedArgsDict(name=self.network.name)],
            # Mailpit listens on unprivileged ports and keeps mail in a temporary database: no
            # capability at all.
            capabilities=docker.ContainerCapabilitiesArgsDict(drops=["ALL"]),
            restart="unless-stopped",
            labels=container_labels,
            opts=on_docker,
            **hardening(config.platform.mail_catcher_memory_mb, MAIL_CATCHER_GRACE_SECONDS),
        )

    def _dns(self, name: str, config: Config, team_id: str, server: str, provider: cloudflare.Provider) -> None:
        dns = config.dns
        assert dns is not None
        opts = pulumi.ResourceOptions(parent=self, provider=provider)
        address = dns_address(config, server)
        for host in dns_record_names(config, team_id, server):
            cloudflare.DnsRecord(
                f"{name}-dns-{naming.host_label(host.replace('*', 'wildcard'))}",
                zone_id=dns.zone_id,
                name=host,
                type=dns.record_type,
                content=address,
                ttl=dns.ttl,
                proxied=dns.proxied,
                comment=f"oduflow team {team_id}",
                opts=opts,
            )

    # ----------------------------------------------------------------------------------------
    # Backups: the bucket (versioned, locked, encrypted, private), the job's write-only key, the
    # optional read-only restore key, and the job container. The bucket's rules and the IAM
    # documents are pure functions in oduflow_iac.backup_storage; the job's scripts in backup.

    def _backups(
        self, name: str, config: Config, team_id: str, server: str, shared: SharedRefs, home: TeamStack | None
    ) -> None:
        """The bucket and the job's key on the team's own server (`home` None); on each server, the
        job dumping the environments DNS sends users to there (during a move, the placement that
        serves: never the copy being restored), with the team's one key."""
        if home is None:
            self._backup_storage(name, config, team_id, shared)
        key = (home or self).backup_key
        assert key is not None
        served = [
            e
            for e in config.team[team_id].environments
            if e.branch in self.environments and config.env_dns_server(team_id, e) == server
        ]
        if home is not None and not any(e.backup for e in served):
            return  # nothing to dump here; the team's own server always has its job, as before servers
        self._backup_job(name, config, team_id, shared, key, served, home=home is None)

    def _backup_storage(self, name: str, config: Config, team_id: str, shared: SharedRefs) -> None:
        plan = config.backup
        assert plan is not None
        # The bucket and its users are the team's, not a server's: when the team's own server
        # changes, they are the same resources under its TeamStack there (aliases from every other
        # server's TeamStack name), never a new bucket beside a protected one.
        others = [
            naming.team_component_name(team_id, s)
            for s in config.servers
            if naming.team_component_name(team_id, s) != name
        ]

        def same_elsewhere(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult:
            suffix = args.name[len(name) :]
            aliases = [
                pulumi.Alias(name=f"{other}{suffix}", parent=create_urn(other, "oduflow:index:TeamStack"))
                for other in others
            ]
            return pulumi.ResourceTransformationResult(
                args.props, pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(aliases=aliases))
            )

        opts = pulumi.ResourceOptions(
            parent=self, provider=shared.aws_provider, transformations=[same_elsewhere] if others else None
        )
        bucket_name = naming.team_backup_bucket_name(plan.bucket_prefix, team_id)
        tiers = plan.retention.tiers()
        tier_names = [t for t, _ in tiers]
        locked_days = backup_storage.lock_days(tiers, plan.lock_days)
        self.bucket = aws.s3.Bucket(
            f"{name}-backup-bucket",
            bucket=bucket_name,
            # A new bucket is born with Object Lock on. `object_lock_enabled` forces a new bucket
            # (ForceNew upstream), and a protected bucket full of history must not be replaced:
            # on a bucket created before Object Lock was used, the change is ignored and the
            # BucketObjectLockConfiguration below turns Object Lock on in place (AWS allows it on
            # an existing versioned bucket). See docs/operations.md, "Object Lock on an existing
            # backup bucket".
            object_lock_enabled=True,
            tags={"oduflow-team": team_id, "oduflow-managed": "true"},
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(protect=True, ignore_changes=["objectLockEnabled"])
            ),
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-backup-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgsDict(status="Enabled"),
            opts=opts,
        )
        aws.s3.BucketObjectLockConfiguration(
            f"{name}-backup-object-lock",
            bucket=self.bucket.id,
            object_lock_enabled="Enabled",
            rule=cast(
                aws.s3.BucketObjectLockConfigurationRuleArgsDict,
                backup_storage.object_lock_rule(plan.lock_mode, locked_days),
            ),
            # Object Lock can be enabled on an existing bucket only once versioning is on.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[versioning])),
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-backup-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgsDict(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgsDict(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=opts,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-backup-public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=opts,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-backup-lifecycle",
            bucket=self.bucket.id,
            rules=cast(
                list[aws.s3.BucketLifecycleConfigurationRuleArgsDict],
                backup_storage.lifecycle_rules(tiers, locked_days),
            ),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[versioning])),
        )
        user = aws.iam.User(
            f"{name}-backup-user",
            name=naming.team_backup_user_name(team_id),
            tags={"oduflow-team": team_id, "oduflow-role": "backup"},
            opts=opts,
        )
        aws.iam.UserPolicy(
            f"{name}-backup-policy",
            user=user.name,
            policy=backup_storage.job_policy_document(backup_storage.bucket_arn(bucket_name, plan.region), tier_names),
            opts=opts,
        )
        self.backup_key = aws.iam.AccessKey(f"{name}-backup-key", user=user.name, opts=opts)
        if plan.restore_user:
            self.backup_restore_credentials = self._restore_user(name, team_id, bucket_name, plan.region, opts)

    def _backup_job(
        self,
        name: str,
        config: Config,
        team_id: str,
        shared: SharedRefs,
        key: aws.iam.AccessKey,
        served: list[Environment],
        home: bool = True,
    ) -> None:
        plan = config.backup
        assert plan is not None
        bucket_name = naming.team_backup_bucket_name(plan.bucket_prefix, team_id)
        tier_names = [t for t, _ in plan.retention.tiers()]
        targets = [
            backup.BackupTarget(
                naming.env_db_name(team_id, e.branch), naming.env_filestore_volume_name(team_id, e.branch)
            )
            for e in served
            if e.backup
        ]
        if home:
            # The templates too, on the team's own server (the one holding every template):
            # recreating one means re-installing its modules, and environments created later from
            # it must get the same data.
            targets += [
                backup.BackupTarget(
                    naming.template_db_name(team_id, t), naming.template_filestore_volume_name(team_id, t)
                )
                for t in sorted(config.team[team_id].templates)
            ]
        volumes_by_db: dict[str, pulumi.Input[str]] = {
            naming.env_db_name(team_id, e.branch): self.environments[e.branch].filestore.name for e in served
        }
        volumes_by_db.update({naming.template_db_name(team_id, t): v.name for t, v in self.template_filestores.items()})
        # The team's own roles, whose definitions every run saves (the provisioning role exists
        # in the per-team layout only: the job's query selects the roles that exist).
        roles = [naming.team_role_name(team_id), naming.team_db_admin_role_name(team_id)]
        docker.Container(
            f"{name}-backup",
            name=naming.team_backup_container_name(team_id),
            image=config.platform.backup_image,
            # The image ships pg_dump, the AWS CLI and go-cron; the scripts are ours.
            entrypoints=["/bin/sh", backup.ENTRYPOINT_PATH],
            uploads=[
                docker.ContainerUploadArgsDict(
                    file=backup.SCRIPT_PATH,
                    content=backup.backup_script(bucket_name, targets, tier_names, roles),
                ),
                docker.ContainerUploadArgsDict(
                    file=backup.ENTRYPOINT_PATH, content=backup.entrypoint_script(plan.schedule)
                ),
                docker.ContainerUploadArgsDict(
                    file=backup.HEALTHCHECK_PATH, content=backup.healthcheck_script(plan.max_age_hours * 3600)
                ),
            ],
            envs=[
                # The team's PostgreSQL proxy on the team network: the job reaches nothing else.
                *self.db_access.libpq_envs,
                key.id.apply(lambda k: f"AWS_ACCESS_KEY_ID={k}"),
                secret_env("AWS_SECRET_ACCESS_KEY", key.secret),
                f"AWS_DEFAULT_REGION={plan.region}",
            ],
            volumes=[
                docker.ContainerVolumeArgsDict(
                    volume_name=volumes_by_db[t.database],
                    container_path=backup.filestore_mount(t.database),
                    read_only=True,
                )
                for t in targets
            ],
            # Its team's network only: the database through the team's proxy, S3 over the Internet.
            networks_advanced=[docker.ContainerNetworksAdvancedArgsDict(name=self.network.name)],
            # Reading every filestore file whatever its owner and mode is all the job needs of root.
            capabilities=docker.ContainerCapabilitiesArgsDict(drops=["ALL"], adds=["CAP_DAC_READ_SEARCH"]),
            healthcheck=docker.ContainerHealthcheckArgsDict(
                tests=["CMD", "/bin/sh", backup.HEALTHCHECK_PATH],
                # In the provider's read-back format (Go durations), so no perpetual diff.
                interval=docker_form.duration(300),
                timeout=docker_form.duration(30),
                retries=2,
            ),
            restart="unless-stopped",
            labels=label_args(labels.oduflow_labels(team_id, None, "backup")),
            opts=pulumi.ResourceOptions(parent=self, provider=shared.docker_provider),
            # A stop lets a running dump finish its current file rather than leave half an upload.
            **hardening(plan.memory_mb, BACKUP_GRACE_SECONDS),
        )

    def _restore_user(
        self, name: str, team_id: str, bucket_name: str, region: str, opts: pulumi.ResourceOptions
    ) -> pulumi.Output[dict[str, str]]:
        """A read-only key for restores, given to no container: only a secret output of this
        stack, for the operators who restore this team's backups."""
        assert self.bucket is not None
        user = aws.iam.User(
            f"{name}-backup-restore-user",
            name=naming.team_backup_restore_user_name(team_id),
            tags={"oduflow-team": team_id, "oduflow-role": "backup-restore"},
            opts=opts,
        )
        aws.iam.UserPolicy(
            f"{name}-backup-restore-policy",
            user=user.name,
            policy=backup_storage.restore_policy_document(backup_storage.bucket_arn(bucket_name, region)),
            opts=opts,
        )
        key = aws.iam.AccessKey(f"{name}-backup-restore-key", user=user.name, opts=opts)
        return cast(
            "pulumi.Output[dict[str, str]]",
            pulumi.Output.secret(
                pulumi.Output.all(key.id, key.secret, self.bucket.bucket).apply(
                    lambda v: {
                        "accessKeyId": str(v[0]),
                        "secretAccessKey": str(v[1]),
                        "bucket": str(v[2]),
                        "region": region,
                    }
                )
            ),
        )
