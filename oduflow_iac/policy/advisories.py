"""Advisory guardrails: inline secrets, Traefik dashboard, production protection."""

from __future__ import annotations

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from oduflow_iac import naming
from oduflow_iac.policy.common import (
    CONTAINER,
    DATABASE,
    ROLE_PROXY,
    TRAEFIK_DASHBOARD_PORT,
    VOLUME,
    _int,
    _is_loopback,
    _labels,
    _name,
    _production,
)

# --------------------------------------------------------------------------------------------
# Advisory guardrails


def validate_inline_secrets(args: StackValidationArgs, report: ReportViolation) -> None:
    """Secrets belong in the stack's encrypted config (`secret:KEY`), not inline in oduflow.toml."""
    for path in args.get_config().get("paths") or []:
        report(f"{path} is written inline in oduflow.toml; reference a stack secret with secret:KEY", None)


def validate_traefik_dashboard(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Traefik's dashboard and API are not served without authentication nor published beyond loopback."""
    if args.resource_type != CONTAINER:
        return
    props = args.props
    name = _name(props, args.name)
    role = _labels(props, naming.LABEL_ROLE).get(naming.LABEL_ROLE)
    if role != ROLE_PROXY and name != naming.SHARED_TRAEFIK_CONTAINER:
        return
    flags = [str(a) for key in ("entrypoints", "command") for a in props.get(key) or []]
    if any(f.lower() in ("--api.insecure", "--api.insecure=true") for f in flags):
        report(f"Traefik container {name} serves its dashboard and API without authentication (--api.insecure)", None)
    for port in props.get("ports") or []:
        if _int(port.get("internal")) != TRAEFIK_DASHBOARD_PORT:
            continue
        ip = str(port.get("ip") or "")
        if not _is_loopback(ip):
            report(
                f"Traefik container {name} publishes its dashboard port {TRAEFIK_DASHBOARD_PORT} "
                f"on {ip or 'every address'}, beyond loopback",
                None,
            )


def validate_production_protected(args: StackValidationArgs, report: ReportViolation) -> None:
    """A production environment's database and filestore are protected from `pulumi destroy`."""
    production = _production(args.get_config())
    if not production:
        return
    wanted_db = {p.database: p for p in production}
    wanted_fs = {p.filestore: p for p in production}
    for r in args.resources:
        if r.resource_type == DATABASE:
            env = wanted_db.get(str(r.props.get("name")))
            what = "database"
        elif r.resource_type == VOLUME:
            env = wanted_fs.get(str(r.props.get("name")))
            what = "filestore"
        else:
            continue
        if env is not None and not r.opts.protect:
            report(
                f"the {what} of production environment {env.branch} of team {env.team} is not protected",
                r.urn,
            )
