"""Port ranges: team containers publish host ports only inside their team's range."""

from __future__ import annotations

from pulumi_policy import (
    ReportViolation,
    StackValidationArgs,
)

from oduflow_iac import naming
from oduflow_iac.policy.common import CONTAINER, ROLE_DATABASE, WILDCARD_IPS, _int, _is_loopback, _labels, _name

# --------------------------------------------------------------------------------------------
# ports


def validate_ports(args: StackValidationArgs, report: ReportViolation) -> None:
    """Team containers publish only inside their team's range and only on a loopback address (the
    public way in is Traefik, with its authentication; `platform.publish_address`); no host port is
    published twice; the shared PostgreSQL is never published on every address."""
    config = args.get_config()
    ranges: dict[str, tuple[int, int]] = {
        str(team): (int(r["start"]), int(r["end"])) for team, r in (config.get("ranges") or {}).items()
    }
    # (engine, protocol, host port) -> holder per ip and a holder on every address: O(1) per
    # published port. The engine is the Docker provider the container goes through: each server is
    # a host of its own, where the same port is free again.
    by_ip: dict[tuple[str, str, int], dict[str, str]] = {}
    wildcard: dict[tuple[str, str, int], str] = {}
    for r in args.resources:
        if r.resource_type != CONTAINER:
            continue
        props = r.props
        ports = props.get("ports") or []
        if not ports:
            continue
        name = _name(props, r.name)
        labels = _labels(props, naming.LABEL_TEAM, naming.LABEL_ROLE)
        team = labels.get(naming.LABEL_TEAM)
        is_db = name == naming.SHARED_DB_CONTAINER or labels.get(naming.LABEL_ROLE) == ROLE_DATABASE
        team_range = ranges.get(team) if team else None
        if team and ranges and team_range is None:
            report(f"team {team} publishes ports but has no port range", r.urn)
        for port in ports:
            external = _int(port.get("external"))
            internal = _int(port.get("internal"))
            ip = str(port.get("ip") or "")
            protocol = str(port.get("protocol") or "tcp")
            if team_range is not None:
                start, end = team_range
                if external is None:
                    report(
                        f"team {team} publishes container port {internal} on a host port Docker picks, "
                        f"outside its range [{start}, {end})",
                        r.urn,
                    )
                elif not start <= external < end:
                    report(f"team {team} publishes port {external} outside its range [{start}, {end})", r.urn)
            if team and not _is_loopback(ip):
                report(
                    f"team {team} container {name} publishes port {external if external is not None else internal} "
                    f"on {ip or '0.0.0.0'}, beyond loopback: every network the host is on would reach it "
                    f"without Traefik and its authentication; publish on 127.0.0.1 (platform.publish_address)",
                    r.urn,
                )
            if is_db and ip in WILDCARD_IPS:
                report(
                    f"the shared PostgreSQL container {name} publishes port {external} on every address; "
                    f"publish it on a loopback or private address only",
                    r.urn,
                )
            if external is None:
                continue
            key = (r.provider.urn if r.provider is not None else "", protocol, external)
            shown = f"{ip or '0.0.0.0'}:{external}/{protocol}"
            holders = by_ip.setdefault(key, {})
            if ip in WILDCARD_IPS:
                other = wildcard.get(key) or next(iter(holders.values()), None)
            else:
                other = holders.get(ip) or wildcard.get(key)
            if other is not None:
                report(f"host port {shown} is published by both {other} and {name}", r.urn)
            if ip in WILDCARD_IPS:
                wildcard.setdefault(key, name)
            holders.setdefault(ip, name)
