"""Every rule of the oduflow policy pack: port ranges, quotas, server capacity, tenant isolation, Odoo hardening,
pinned images, backups, and advisory guardrails.

`POLICIES` is the one list of rules. `policies/__main__.py` hands it to the Pulumi engine
(`pulumi preview --policy-pack policies`); `oduflow_iac.offline.bridge` runs the very same objects
against a program planned under mocks. This module imports only the standard library, pulumi_policy
and the SDK's pure modules (`naming`, `odoo_conf`, `backup`: standard library only), so the policy
pack runs without the providers or the config model installed.

The rules read resources the way the engine hands them over: engine (camelCase) property names,
secrets unwrapped to plain values, and every unknown value (during a preview) raising
`UnknownValueError` when read, which the engine reports as an advisory "can't run policy ... during
preview". A rule reads only what it needs (a label's value only when its key matches, a bucket
reference only when the dependency graph does not already tell) so that unknown values elsewhere do
not stop it. Cross-resource rules make one pass over the resources and relate them through
dictionaries: the cost of every rule is linear in the number of resources.

Configuration comes per policy from the policy-pack config (`oduflow_iac.policy_config`), rendered
from oduflow.toml: the intent (ranges, quotas, production environments) that the resources are
checked against. Without config a rule checks what it can on its own.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, Policy, ResourceValidationPolicy, StackValidationPolicy

from oduflow_iac.policy.advisories import (
    validate_inline_secrets,
    validate_production_protected,
    validate_traefik_dashboard,
)

# What tests and the offline bridge read from the pack, re-exported so `policy.X` keeps one meaning.
from oduflow_iac.policy.backups import dumped_databases, validate_backups
from oduflow_iac.policy.capacity import validate_capacity
from oduflow_iac.policy.common import (
    CONTAINER,
    DATABASE,
    ENCRYPTION_TYPES,
    GRANT,
    PACK_NAME,
    PACK_VERSION,
    PUBLIC_ACCESS_BLOCK_TYPE,
    PUBLIC_ACCESS_FLAGS,
    REMOTE_IMAGE,
    VOLUME,
    SecretAwareArgs,
)
from oduflow_iac.policy.hardening import validate_mail_caught, validate_odoo_hardening
from oduflow_iac.policy.images import (
    floating_tag,
    image_problem,
    tag_is_immutable,
    validate_images_immutable,
    validate_images_pinned,
)
from oduflow_iac.policy.isolation import validate_isolation
from oduflow_iac.policy.ports import validate_ports
from oduflow_iac.policy.quotas import validate_quotas
from oduflow_iac.policy.schemas import (
    BACKUPS_SCHEMA,
    CAPACITY_SCHEMA,
    INLINE_SECRETS_SCHEMA,
    ISOLATION_SCHEMA,
    PORTS_SCHEMA,
    PRODUCTION_SCHEMA,
    QUOTAS_SCHEMA,
)

# --------------------------------------------------------------------------------------------
# The pack

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

POLICIES: list[Policy] = [
    StackValidationPolicy(
        name="ports",
        description="Team containers publish host ports only inside their team's range, no host port is "
        "published twice, and the shared PostgreSQL is never published on every address.",
        validate=validate_ports,
        enforcement_level=MANDATORY,
        config_schema=PORTS_SCHEMA,
    ),
    StackValidationPolicy(
        name="quotas",
        description="Every Odoo container has CPU and memory limits, and each team's environments, CPUs and "
        "memory stay within its quota and all teams' within the organisation quota.",
        validate=validate_quotas,
        enforcement_level=MANDATORY,
        config_schema=QUOTAS_SCHEMA,
    ),
    StackValidationPolicy(
        name="capacity",
        description="What is placed on each server with a declared capacity (its environments' CPU and memory "
        "limits, the platform's own services there, the teams' disk reservations) fits that capacity.",
        validate=validate_capacity,
        enforcement_level=MANDATORY,
        config_schema=CAPACITY_SCHEMA,
    ),
    StackValidationPolicy(
        name="isolation",
        description="Team databases are owned by the team's role and closed to PUBLIC; team containers join "
        "only their team's network (its PostgreSQL proxy also the database network), never another team's, "
        "the host's network or a host path.",
        validate=validate_isolation,
        enforcement_level=MANDATORY,
        config_schema=ISOLATION_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="odoo-hardening",
        description="Odoo runs with list_db = False, a dbfilter matching only its own database, proxy_mode = "
        "True and a master password; offline the password must also be secret (the engine does not tell "
        "policies which values are secret, so that check runs only in the offline plan).",
        validate=validate_odoo_hardening,
        enforcement_level=MANDATORY,
    ),
    StackValidationPolicy(
        name="mail-caught",
        description="No non-production environment has an outgoing mail server of its own: its odoo.conf (in "
        "any spelling Odoo reads) sends to its team's mail catcher, its command line names no --smtp option; "
        "production is left alone.",
        validate=validate_mail_caught,
        enforcement_level=MANDATORY,
        config_schema=PRODUCTION_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="images-pinned",
        description="Container images are pinned to a tag or a digest: never latest, never untagged.",
        validate=validate_images_pinned,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="images-immutable",
        description="Container images are pinned by digest or by a tag naming one release (full version or "
        "date); floating tags such as 17.0, 16 or v3 are reported with the image they name.",
        validate=validate_images_immutable,
        enforcement_level=ADVISORY,
    ),
    StackValidationPolicy(
        name="backups",
        description="Backup buckets are versioned, under an Object Lock default retention, encrypted and block "
        "public access; a backup job's key only writes new objects (no read, list or delete); with backups "
        "configured, every production environment is covered by its team's backup job.",
        validate=validate_backups,
        enforcement_level=MANDATORY,
        config_schema=BACKUPS_SCHEMA,
    ),
    StackValidationPolicy(
        name="inline-secrets",
        description="Secrets are referenced from the stack's encrypted config, not written inline in oduflow.toml.",
        validate=validate_inline_secrets,
        enforcement_level=ADVISORY,
        config_schema=INLINE_SECRETS_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="traefik-dashboard",
        description="Traefik's dashboard is not served without authentication nor published beyond loopback.",
        validate=validate_traefik_dashboard,
        enforcement_level=ADVISORY,
    ),
    StackValidationPolicy(
        name="production-protected",
        description="Production databases and filestores are protected against deletion.",
        validate=validate_production_protected,
        enforcement_level=ADVISORY,
        config_schema=PRODUCTION_SCHEMA,
    ),
]

POLICY_NAMES = tuple(p.name for p in POLICIES)

__all__ = [
    "ADVISORY",
    "CONTAINER",
    "DATABASE",
    "ENCRYPTION_TYPES",
    "GRANT",
    "MANDATORY",
    "PACK_NAME",
    "PACK_VERSION",
    "POLICIES",
    "POLICY_NAMES",
    "PUBLIC_ACCESS_BLOCK_TYPE",
    "PUBLIC_ACCESS_FLAGS",
    "REMOTE_IMAGE",
    "VOLUME",
    "SecretAwareArgs",
    "dumped_databases",
    "floating_tag",
    "image_problem",
    "tag_is_immutable",
]
