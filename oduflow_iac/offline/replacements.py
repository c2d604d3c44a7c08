"""What the real providers replace: per resource type the program registers, which inputs force a
replacement when they change, which are updated in place, and whether the old resource is deleted
before its replacement is created.

The Terraform bridge (pulumi/pulumi-terraform-bridge, pkg/tfbridge) turns a Terraform attribute's
`ForceNew` (SDKv2) or `RequiresReplace` plan modifier (plugin framework) into a Pulumi replacement,
and any other change of an attribute into an in-place update. A nested block marked ForceNew is
replaced as a whole, so one entry per top-level input (engine camelCase name) is enough for the
blocks the program sends. Inputs that are Optional+Computed upstream keep the value read back when
the program stops sending them: removing such an input is no change (`computed`).

Read from the provider sources the versions pyproject admits bridge (each pulumi-* repository's
`provider/go.mod` replaces the upstream module with its `upstream` submodule; the commit of that
submodule is the version):

- pulumi-docker 5.x (>=4.6,<6; 5.1.0 and 5.2.0 read) bridges kreuzwerker/terraform-provider-docker
  v4.5.0: internal/provider/resource_docker_container.go, resource_docker_network.go,
  resource_docker_volume.go, resource_docker_image.go. pulumi-docker's provider/resources.go sets
  `DeleteBeforeReplace: true` for docker_container (a container name cannot exist twice).
- pulumi-postgresql 3.18 bridges cyrilgdn/terraform-provider-postgresql v1.26.0 (+3 commits,
  ff936b9): postgresql/resource_postgresql_{role,database,grant,default_privileges,extension}.go.
- pulumi-random 4.21 bridges hashicorp/terraform-provider-random v3.9.0 (f8d869d):
  internal/provider/resource_password.go, resource_string.go: every input has RequiresReplace.
- pulumi-cloudflare 6.x bridges cloudflare/terraform-provider-cloudflare v5.19.1:
  internal/services/dns_record/schema.go: zone_id and type RequiresReplace.
- pulumi-aws 7.x bridges hashicorp/terraform-provider-aws: internal/service/s3/bucket*.go,
  internal/service/iam/{user,user_policy,access_key}.go (the bucket name, the bucket a
  configuration belongs to, a policy's user and name, a key's user are ForceNew).
- Providers (`pulumi:providers:*`): the bridge's DiffConfig (pkg/tfbridge/provider.go) replaces a
  provider only for config keys marked `ForcesProviderReplace`; none of the five providers' own
  resources.go marks one, so a provider's config change is an update of the provider alone.

An input this table does not know is treated as forcing a replacement (the safe assumption for a
reviewer) and named as unknown, so a new input of the program is classified here before it is
trusted; `tests/test_replacements.py` checks every input the program sends is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DOCKER = "kreuzwerker/terraform-provider-docker v4.5.0 (bridged by pulumi-docker 5.x)"
POSTGRESQL = "cyrilgdn/terraform-provider-postgresql v1.26.0+ff936b9 (bridged by pulumi-postgresql 3.18)"
RANDOM = "hashicorp/terraform-provider-random v3.9.0 (bridged by pulumi-random 4.21)"
CLOUDFLARE = "cloudflare/terraform-provider-cloudflare v5.19.1 (bridged by pulumi-cloudflare 6.x)"
AWS = "hashicorp/terraform-provider-aws (bridged by pulumi-aws 7.x)"
BRIDGE = "pulumi/pulumi-terraform-bridge pkg/tfbridge/provider.go DiffConfig"


@dataclass(frozen=True)
class Rules:
    """One resource type: the inputs whose change replaces it, those updated in place, and how."""

    source: str
    replace: frozenset[str] = frozenset()
    update: frozenset[str] = frozenset()
    computed: frozenset[str] = frozenset()  # Optional+Computed: no longer sending it is no change
    replace_all: bool = False  # every input forces a replacement (random)
    update_all: bool = False  # every input is updated in place (providers)
    delete_before_replace: bool = False  # the provider deletes the old one first: downtime

    def known(self, prop: str) -> bool:
        return self.replace_all or self.update_all or prop in self.replace or prop in self.update


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


CONTAINER = Rules(
    source=f"{DOCKER}: internal/provider/resource_docker_container.go",
    replace=_names(
        """name readOnly image hostname domainname command entrypoints user dns dnsOpts dnsSearches
        publishAllPorts workingDir capabilities securityOpts runtime platform stopSignal stopTimeout
        mounts volumes ports hosts ulimits envs privileged devices deviceRequests labels shmSize
        logDriver logOpts networkMode networksAdvanced pidMode usernsMode uploads sysctls ipcMode
        groupAdds tty stdinOpen storageOpts gpus cpus cgroupnsMode cgroupParent"""
    ),
    update=_names(
        """rm start wait waitTimeout attach logs mustRun restart maxRetryCount removeVolumes tmpfs
        deviceReadBps deviceReadIops deviceWriteBps deviceWriteIops destroyGraceSeconds memory
        memoryReservation memorySwap cpuShares cpuSet cpuPeriod cpuQuota healthcheck init
        containerReadRefreshTimeoutMilliseconds"""
    ),
    computed=_names(
        """hostname command entrypoints securityOpts runtime platform stopSignal stopTimeout envs labels
        shmSize logDriver ipcMode healthcheck init"""
    ),
    delete_before_replace=True,  # pulumi-docker provider/resources.go: docker_container
)

RULES: dict[str, Rules] = {
    "docker:index/container:Container": CONTAINER,
    # No Update function: every attribute is ForceNew.
    "docker:index/network:Network": Rules(
        source=f"{DOCKER}: internal/provider/resource_docker_network.go",
        replace=_names(
            "name labels driver options internal attachable ingress ipv6 ipamDriver ipamOptions ipamConfigs"
        ),
        computed=_names("driver options internal ipamConfigs"),
    ),
    "docker:index/volume:Volume": Rules(
        source=f"{DOCKER}: internal/provider/resource_docker_volume.go",
        # `cluster`: all its fields but `availability` are ForceNew.
        replace=_names("name labels driver driverOpts cluster"),
        computed=_names("name driver"),
    ),
    "docker:index/remoteImage:RemoteImage": Rules(
        source=f"{DOCKER}: internal/provider/resource_docker_image.go",
        # `build`: every field of the block but tag, label, remove and auth_config is ForceNew.
        replace=_names("name pullTriggers forceRemove triggers platform build"),
        update=_names("keepLocally"),
    ),
    # No attribute is ForceNew: a new name is `ALTER ROLE ... RENAME`, a password `ALTER ROLE`.
    "postgresql:index/role:Role": Rules(
        source=f"{POSTGRESQL}: postgresql/resource_postgresql_role.go",
        update=_names(
            """name password passwordWo passwordWoVersion encrypted encryptedPassword roles searchPaths
            validUntil connectionLimit superuser createDatabase createRole idleInTransactionSessionTimeout
            inherit login replication bypassRowLevelSecurity skipDropRole skipReassignOwned statementTimeout
            assumeRole"""
        ),
    ),
    # The name is not ForceNew (`ALTER DATABASE ... RENAME`); how it was created is.
    "postgresql:index/database:Database": Rules(
        source=f"{POSTGRESQL}: postgresql/resource_postgresql_database.go",
        replace=_names("template encoding lcCollate lcCtype"),
        update=_names("name owner tablespaceName connectionLimit allowConnections isTemplate alterObjectOwnership"),
        computed=_names("owner template encoding lcCollate lcCtype tablespaceName"),
    ),
    "postgresql:index/grant:Grant": Rules(
        source=f"{POSTGRESQL}: postgresql/resource_postgresql_grant.go",
        replace=_names("role database schema objectType objects columns withGrantOption"),
        update=_names("privileges"),
    ),
    "postgresql:index/defaultPrivileges:DefaultPrivileges": Rules(
        source=f"{POSTGRESQL}: postgresql/resource_postgresql_default_privileges.go",
        replace=_names("role database owner schema objectType withGrantOption"),
        update=_names("privileges"),
    ),
    "postgresql:index/extension:Extension": Rules(
        source=f"{POSTGRESQL}: postgresql/resource_postgresql_extension.go",
        replace=_names("name database"),
        update=_names("schema version dropCascade createCascade"),
    ),
    "random:index/randomPassword:RandomPassword": Rules(
        source=f"{RANDOM}: internal/provider/resource_password.go", replace_all=True
    ),
    "random:index/randomString:RandomString": Rules(
        source=f"{RANDOM}: internal/provider/resource_string.go", replace_all=True
    ),
    "cloudflare:index/dnsRecord:DnsRecord": Rules(
        source=f"{CLOUDFLARE}: internal/services/dns_record/schema.go",
        replace=_names("zoneId type"),
        update=_names("name content comment data priority proxied settings tags ttl"),
    ),
    "aws:s3/bucket:Bucket": Rules(
        source=f"{AWS}: internal/service/s3/bucket.go",
        replace=_names("bucket bucketPrefix objectLockEnabled"),
        update=_names("forceDestroy tags"),
    ),
    "aws:s3/bucketVersioning:BucketVersioning": Rules(
        source=f"{AWS}: internal/service/s3/bucket_versioning.go",
        replace=_names("bucket expectedBucketOwner"),
        update=_names("versioningConfiguration mfa"),
    ),
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": Rules(
        source=f"{AWS}: internal/service/s3/bucket_object_lock_configuration.go",
        replace=_names("bucket expectedBucketOwner objectLockEnabled"),
        update=_names("rule"),
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": Rules(
        source=f"{AWS}: internal/service/s3/bucket_server_side_encryption_configuration.go",
        replace=_names("bucket expectedBucketOwner"),
        update=_names("rules"),
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": Rules(
        source=f"{AWS}: internal/service/s3/bucket_public_access_block.go",
        replace=_names("bucket"),
        update=_names("blockPublicAcls blockPublicPolicy ignorePublicAcls restrictPublicBuckets skipDestroy"),
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": Rules(
        source=f"{AWS}: internal/service/s3/bucket_lifecycle_configuration.go",
        replace=_names("bucket expectedBucketOwner"),
        update=_names("rules transitionDefaultMinimumObjectSize"),
    ),
    "aws:iam/user:User": Rules(
        source=f"{AWS}: internal/service/iam/user.go",
        update=_names("name path permissionsBoundary forceDestroy tags"),
    ),
    "aws:iam/userPolicy:UserPolicy": Rules(
        source=f"{AWS}: internal/service/iam/user_policy.go",
        replace=_names("name namePrefix user"),
        update=_names("policy"),
        computed=_names("name namePrefix"),
    ),
    "aws:iam/accessKey:AccessKey": Rules(
        source=f"{AWS}: internal/service/iam/access_key.go",
        replace=_names("user pgpKey"),
        update=_names("status"),
    ),
}

PROVIDER_RULES = Rules(source=BRIDGE, update_all=True)
# A component has no provider: its inputs are the program's own business (none are registered).
COMPONENT_RULES = Rules(source="component resource: nothing on a provider", update_all=True)
UNKNOWN_RULES = Rules(source="not in oduflow_iac/offline/replacements.py: every change assumed to replace")


def rules_for(type_: str, custom: bool = True) -> Rules:
    if type_.startswith("pulumi:providers:"):
        return PROVIDER_RULES
    if not custom:
        return COMPONENT_RULES
    return RULES.get(type_, UNKNOWN_RULES)


_HEAD = re.compile(r"^([^.\[]+)")


def top_level(path: str) -> str:
    """The input a property path starts with: `labels[2].value` -> `labels`."""
    m = _HEAD.match(path)
    return m.group(1) if m else path


def _covers(pattern: str, path: str) -> bool:
    """Whether a `replaceOnChanges`/`ignoreChanges` entry names `path` or one of its ancestors or
    descendants (`*` names everything)."""
    if pattern in ("*", path):
        return True
    for shorter, longer in ((pattern, path), (path, pattern)):
        if longer.startswith(shorter) and longer[len(shorter)] in ".[":
            return True
    return False


def covered(patterns: list[str], path: str) -> bool:
    return any(_covers(p, path) for p in patterns)


@dataclass
class Verdict:
    """How one resource's differing inputs are applied."""

    action: str  # "update" or "replace"
    replacing: list[str] = field(default_factory=list)  # the paths that force the replacement
    unknown: list[str] = field(default_factory=list)  # inputs the table does not know


def classify(
    type_: str, custom: bool, paths: list[str], replace_on_changes: list[str], removed: set[str] | None = None
) -> Verdict:
    """`update` or `replace` for a resource whose inputs differ at `paths`. `removed` are top-level
    inputs the new registration no longer sends."""
    rules = rules_for(type_, custom)
    verdict = Verdict("update")
    for path in paths:
        prop = top_level(path)
        if covered(replace_on_changes, path):
            verdict.replacing.append(path)
            continue
        if rules.update_all:
            continue
        if not rules.known(prop):
            verdict.unknown.append(prop)
            verdict.replacing.append(path)
        elif rules.replace_all or prop in rules.replace:
            verdict.replacing.append(path)
    if verdict.replacing:
        verdict.action = "replace"
    verdict.unknown = sorted(set(verdict.unknown))
    return verdict


def ignored_on_removal(type_: str, custom: bool, prop: str) -> bool:
    """An Optional+Computed input the program stops sending keeps its value: no change."""
    return prop in rules_for(type_, custom).computed


def deletes_before_replace(type_: str, custom: bool, registered: bool) -> bool:
    """Whether a replacement deletes the old resource first: the program asked for it, or the
    provider always does (pulumi-docker's Container)."""
    return registered or rules_for(type_, custom).delete_before_replace
