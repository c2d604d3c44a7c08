"""TeamStack: everything one `[team.N]` owns.

Its network, its PostgreSQL role (owner of all its databases), its template databases, the Traefik
basic-auth middleware protecting its non-production environments, its DNS records, its backup
bucket and job, and one OdooEnvironment per `[[team.N.environments]]`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pulumi_docker as docker
import pulumi_postgresql as postgresql
import pulumi_random as random

from oduflow_iac import backup, labels, naming, odoo_conf, odoo_init
from oduflow_iac.cascade import resolve_addons
from oduflow_iac.components.common import as_secret, label_args, one_shot, secret_env, succeeded
from oduflow_iac.components.odoo_environment import (
    DB_ENCODING,
    DB_LC_COLLATE,
    DB_LC_CTYPE,
    OdooEnvironment,
    OdooEnvironmentArgs,
    revoke_public_connect,
)
from oduflow_iac.components.refs import SharedRefs, TeamDatabaseAccess, TeamRole
from oduflow_iac.config import Config


@dataclass
class TeamStackArgs:
    config: Config
    team_id: str
    shared: SharedRefs
    db_role: TeamRole
    ui_password: pulumi.Input[str] | None = None


def dns_record_names(config: Config, team_id: str) -> list[str]:
    """Hostnames that need a record: the team hostname, one wildcard under the team's base (so a
    new branch is reachable at once, with no DNS change or propagation wait), and each
    environment's own hostname when it is outside that wildcard. Names outside the managed zone
    (a client's own domain) are left to whoever runs that domain's DNS."""
    assert config.dns is not None
    zone = config.dns.zone.lower().rstrip(".")
    team = config.team[team_id]
    names = [team.hostname.lower(), f"*.{team.base.lower()}"]
    suffix = f".{team.base.lower()}"
    for env in team.environments:
        host = config.env_hostname(team_id, env).lower()
        inside_wildcard = host.endswith(suffix) and "." not in host[: -len(suffix)]
        if not inside_wildcard and host not in names:
            names.append(host)
    return [n for n in names if n == zone or n.endswith(f".{zone}")]


def tls_resolver_for(config: Config, host: str) -> str:
    """DNS-01 through Cloudflare inside the managed zone; HTTP-01 for a host outside it (a client's
    own domain), which that zone's token cannot prove."""
    if config.dns is None:
        return naming.TLS_RESOLVER
    zone = config.dns.zone.lower().rstrip(".")
    inside = host.lower() == zone or host.lower().endswith(f".{zone}")
    return naming.TLS_RESOLVER if inside else naming.TLS_RESOLVER_HTTP


def lifecycle_rules(tiers: list[tuple[str, int]]) -> list[aws.s3.BucketLifecycleConfigurationRuleArgsDict]:
    """One expiry per retention tier's prefix; overwritten versions and failed uploads go quickly."""
    return [
        aws.s3.BucketLifecycleConfigurationRuleArgsDict(
            id=f"expire-{prefix}",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgsDict(prefix=f"{prefix}/"),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgsDict(days=days),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgsDict(
                noncurrent_days=7
            ),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgsDict(
                days_after_initiation=2
            ),
        )
        for prefix, days in tiers
    ]


def bucket_policy_document(bucket_arn: str) -> str:
    """The backup user reaches its own bucket and nothing else."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": bucket_arn},
                {
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                    "Resource": f"{bucket_arn}/*",
                },
            ],
        }
    )


class TeamStack(pulumi.ComponentResource):
    environments: dict[str, OdooEnvironment]

    def __init__(self, name: str, args: TeamStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("oduflow:index:TeamStack", name, None, opts)
        config, team_id, shared = args.config, args.team_id, args.shared
        team = config.team[team_id]
        child = pulumi.ResourceOptions(parent=self)
        on_docker = pulumi.ResourceOptions(parent=self, provider=shared.docker_provider)
        on_pg = pulumi.ResourceOptions(parent=self, provider=shared.postgresql_provider)

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

        self.db_access = TeamDatabaseAccess(
            role_name=self.role_name,
            odoo_envs=[
                f"HOST={shared.db_host}",
                f"PORT={shared.db_port}",
                self.role_name.apply(lambda r: f"USER={r}"),
                secret_env("PASSWORD", role_password),
            ],
            libpq_envs=[
                f"PGHOST={shared.db_host}",
                f"PGPORT={shared.db_port}",
                self.role_name.apply(lambda r: f"PGUSER={r}"),
                secret_env("PGPASSWORD", role_password),
            ],
        )

        self.templates: dict[str, postgresql.Database] = {}
        self.templates_ready: dict[str, docker.Container] = {}
        self.template_filestores: dict[str, docker.Volume] = {}
        checks: list[pulumi.Output[int]] = []
        for tname, template in team.templates.items():
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
            # the template when environments are cloned from it.
            init_name = naming.template_init_container_name(team_id, tname)
            init = one_shot(
                f"{tkey}-init",
                container_name=init_name,
                image=template.odoo_image,
                command=odoo_init.install_command(db_name, template.modules),
                envs=self.db_access.odoo_envs,
                volumes=[
                    docker.ContainerVolumeArgsDict(volume_name=filestore.name, container_path=odoo_conf.FILESTORE_PATH)
                ],
                networks=[shared.network_name],
                labels=label_args(labels.oduflow_labels(team_id, None, "template-init")),
                opts=pulumi.ResourceOptions.merge(on_docker, pulumi.ResourceOptions(depends_on=[db, revoke])),
            )
            checks.append(succeeded(init, init_name))
            self.templates[tname] = db
            self.templates_ready[tname] = init
            self.template_filestores[tname] = filestore

        basic_auth: pulumi.Output[str] | None = None
        if args.ui_password is not None:
            seed = random.RandomString(f"{name}-basic-auth-salt", length=21, special=False, opts=child)
            cost = config.platform.basic_auth_cost
            basic_auth = pulumi.Output.all(as_secret(args.ui_password), seed.result).apply(
                lambda v: labels.basic_auth_users(v[0], v[1], cost)
            )

        self.environments = {}
        levels = [
            ("platform", config.platform.addons),
            ("organisation", config.organisation.addons),
            ("project", team.addons),
        ]
        tls = config.platform.tls
        for env in team.environments:
            image = config.env_image(team_id, env)
            depends: list[pulumi.Resource] = []
            template_db: pulumi.Input[str] | None = None
            template_filestore: pulumi.Input[str] | None = None
            if env.template is not None:
                template_db = self.templates[env.template].name
                template_filestore = self.template_filestores[env.template].name
                depends.append(self.templates_ready[env.template])
            host = config.env_hostname(team_id, env)
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
                    network_name=config.platform.network,
                    tls_resolver=tls_resolver_for(config, host),
                    addons=resolve_addons(levels, env.type, image, env.addons),  # type: ignore[arg-type]
                    addons_fetch_image=config.platform.addons_fetch_image,
                    extra_networks=list(env.networks),
                    odoo_options=dict(env.odoo_options),
                    protect=env.is_protected,
                    disabled=env.disabled,
                    depends_on=depends,
                ),
                opts=child,
            )

        if config.dns is not None and shared.cloudflare_provider is not None:
            self._dns(name, config, team_id, shared.cloudflare_provider)
        self.bucket: aws.s3.Bucket | None = None
        if config.backup is not None and shared.aws_provider is not None:
            self._backups(name, config, team_id, shared)

        self.register_outputs(
            {
                "network": self.network.name,
                "role": self.role_name,
                "environments": {b: e.url for b, e in self.environments.items()},
                "templatesInitialised": pulumi.Output.all(*checks),
            }
        )

    def _dns(self, name: str, config: Config, team_id: str, provider: cloudflare.Provider) -> None:
        dns = config.dns
        assert dns is not None
        opts = pulumi.ResourceOptions(parent=self, provider=provider)
        for host in dns_record_names(config, team_id):
            cloudflare.DnsRecord(
                f"{name}-dns-{naming.host_label(host.replace('*', 'wildcard'))}",
                zone_id=dns.zone_id,
                name=host,
                type=dns.record_type,
                content=dns.target,
                ttl=dns.ttl,
                proxied=dns.proxied,
                comment=f"oduflow team {team_id}",
                opts=opts,
            )

    def _backups(self, name: str, config: Config, team_id: str, shared: SharedRefs) -> None:
        plan = config.backup
        assert plan is not None
        opts = pulumi.ResourceOptions(parent=self, provider=shared.aws_provider)
        bucket_name = naming.team_backup_bucket_name(plan.bucket_prefix, team_id)
        self.bucket = aws.s3.Bucket(
            f"{name}-backup-bucket",
            bucket=bucket_name,
            tags={"oduflow-team": team_id, "oduflow-managed": "true"},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True)),
        )
        aws.s3.BucketVersioning(
            f"{name}-backup-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgsDict(status="Enabled"),
            opts=opts,
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
            rules=lifecycle_rules(plan.retention.tiers()),
            opts=opts,
        )
        user = aws.iam.User(f"{name}-backup-user", name=naming.team_backup_user_name(team_id), opts=opts)
        aws.iam.UserPolicy(
            f"{name}-backup-policy",
            user=user.name,
            policy=self.bucket.arn.apply(bucket_policy_document),
            opts=opts,
        )
        key = aws.iam.AccessKey(f"{name}-backup-key", user=user.name, opts=opts)

        team = config.team[team_id]
        targets = [
            backup.BackupTarget(
                naming.env_db_name(team_id, e.branch), naming.env_filestore_volume_name(team_id, e.branch)
            )
            for e in team.environments
            if e.backup
        ]
        envs_by_db = {naming.env_db_name(team_id, e.branch): self.environments[e.branch] for e in team.environments}
        docker.Container(
            f"{name}-backup",
            name=naming.team_backup_container_name(team_id),
            image=config.platform.backup_image,
            # The image ships pg_dump, the AWS CLI and go-cron; the script is ours.
            entrypoints=["go-cron", plan.schedule, "/bin/sh", backup.SCRIPT_PATH],
            uploads=[
                docker.ContainerUploadArgsDict(
                    file=backup.SCRIPT_PATH,
                    content=backup.backup_script(bucket_name, targets, [t for t, _ in plan.retention.tiers()]),
                )
            ],
            envs=[
                *self.db_access.libpq_envs,
                key.id.apply(lambda k: f"AWS_ACCESS_KEY_ID={k}"),
                secret_env("AWS_SECRET_ACCESS_KEY", key.secret),
                f"AWS_DEFAULT_REGION={plan.region}",
            ],
            volumes=[
                docker.ContainerVolumeArgsDict(
                    volume_name=envs_by_db[t.database].filestore.name,
                    container_path=backup.filestore_mount(t.database),
                    read_only=True,
                )
                for t in targets
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgsDict(name=shared.network_name)],
            restart="unless-stopped",
            labels=label_args(labels.oduflow_labels(team_id, None, "backup")),
            opts=pulumi.ResourceOptions(parent=self, provider=shared.docker_provider),
        )
