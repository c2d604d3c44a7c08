"""Each rule of the policy pack on small hand-made resources (a passing and a violating input with
the expected message), and the offline bridge: config checks, unknowns, secrets, levels."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pulumi_policy import (
    PolicyConfigSchema,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from oduflow_iac import backup, naming, odoo_conf, policy
from oduflow_iac.offline import bridge
from oduflow_iac.offline.harness import UNKNOWN, PlannedResource, PlannedRun, Secret

BY_NAME = {p.name: p for p in policy.POLICIES}
PREFIX = "urn:pulumi:local::oduflow::"


# --------------------------------------------------------------------------------------------
# Builders


def urn(type_: str, name: str) -> str:
    return f"{PREFIX}{type_}::{name}"


def opts(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def resource(
    type_: str, name: str, props: dict[str, Any], *, protect: bool = False, deps: Sequence[PolicyResource] = ()
) -> PolicyResource:
    return PolicyResource(
        type_, unknown_checking_proxy(props), urn(type_, name), name, opts(protect), None, None, list(deps), {}
    )


def labels(**values: str | None) -> list[dict[str, str]]:
    keys = {"team": naming.LABEL_TEAM, "role": naming.LABEL_ROLE, "env": naming.LABEL_ENV}
    return [{"label": keys[k], "value": v} for k, v in values.items() if v is not None]


def container_props(
    name: str,
    *,
    team: str | None = None,
    role: str | None = None,
    branch: str | None = None,
    ports: Sequence[dict[str, Any]] = (),
    networks: Sequence[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "name": name,
        "image": "odoo:17.0",
        "labels": labels(team=team, role=role, env=branch),
        "networksAdvanced": [{"name": n} for n in networks],
    }
    if ports:
        props["ports"] = list(ports)
    props.update(extra)
    return props


def container(name: str, **kwargs: Any) -> PolicyResource:
    return resource(policy.CONTAINER, name, container_props(name, **kwargs))


def odoo(team: str, branch: str, *, memory: float | None = 2048.0, cpus: str | None = "1", **kw: Any) -> PolicyResource:
    extra: dict[str, Any] = {}
    if memory is not None:
        extra["memory"] = memory
    if cpus is not None:
        extra["cpus"] = cpus
    return container(naming.env_container_name(team, branch), team=team, role="odoo", branch=branch, **extra, **kw)


def port(external: int | None, ip: str | None = "127.0.0.1", internal: int = 8069, **kw: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"internal": float(internal), **kw}
    if external is not None:
        p["external"] = float(external)
    if ip is not None:
        p["ip"] = ip
    return p


def collect(found: list[str]) -> Callable[[str, str | None], None]:
    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    return report


def run_stack(name: str, resources: Sequence[PolicyResource], config: Mapping[str, Any] | None = None) -> list[str]:
    found: list[str] = []
    p = BY_NAME[name]
    assert isinstance(p, StackValidationPolicy)
    p.validate(StackValidationArgs(list(resources), dict(config or {})), collect(found))
    return found


def run_resource(
    name: str, type_: str, props: dict[str, Any], *, secret_paths: Sequence[tuple[str | int, ...]] | None = None
) -> list[str]:
    found: list[str] = []
    p = BY_NAME[name]
    assert isinstance(p, ResourceValidationPolicy)
    args: ResourceValidationArgs
    proxied = unknown_checking_proxy(props)
    if secret_paths is None:  # what the engine passes
        args = ResourceValidationArgs(type_, proxied, urn(type_, "r"), "r", opts(), None, {})
    else:
        args = policy.SecretAwareArgs(type_, proxied, urn(type_, "r"), "r", opts(), None, {}, secret_paths=secret_paths)
    p.validate(args, collect(found))
    return found


# --------------------------------------------------------------------------------------------
# ports

RANGES = {"ranges": {"1": {"start": 50000.0, "end": 50050.0}, "2": {"start": 50050.0, "end": 50100.0}}}


def test_ports_inside_range_pass() -> None:
    resources = [odoo("1", "main", ports=[port(50000)]), odoo("1", "dev", ports=[port(50049)])]
    assert run_stack("ports", resources, RANGES) == []


@pytest.mark.parametrize("published", [50070, 50050, 49999])
def test_ports_outside_range(published: int) -> None:
    found = run_stack("ports", [odoo("1", "main", ports=[port(published)])], RANGES)
    assert found == [f"team 1 publishes port {published} outside its range [50000, 50050)"]


@given(st.integers(min_value=1, max_value=65535))
@settings(max_examples=60, deadline=None)
def test_ports_range_is_half_open(published: int) -> None:
    found = run_stack("ports", [odoo("1", "main", ports=[port(published)])], RANGES)
    assert (found == []) == (50000 <= published < 50050)


def test_ports_team_without_range_and_random_host_port() -> None:
    assert run_stack("ports", [odoo("3", "main", ports=[port(50000), port(50001, internal=8072)])], RANGES) == [
        "team 3 publishes ports but has no port range"
    ]
    assert run_stack("ports", [odoo("1", "main", ports=[port(None)])], RANGES) == [
        "team 1 publishes container port 8069 on a host port Docker picks, outside its range [50000, 50050)"
    ]


def test_ports_without_config_checks_no_range() -> None:
    assert run_stack("ports", [odoo("1", "main", ports=[port(1)])]) == []


def test_ports_published_twice() -> None:
    a = odoo("1", "main", ports=[port(50000)])
    b = odoo("1", "dev", ports=[port(50000)])
    assert run_stack("ports", [a, b], RANGES) == [
        "host port 127.0.0.1:50000/tcp is published by both oduflow-1-main-odoo and oduflow-1-dev-odoo"
    ]


def test_ports_same_port_on_other_ip_or_protocol_pass() -> None:
    a = odoo("1", "main", ports=[port(50000, "127.0.0.1")])
    b = odoo("1", "dev", ports=[port(50000, "10.0.0.5")])
    c = odoo("1", "udp", ports=[port(50000, "127.0.0.1", protocol="udp")])
    assert run_stack("ports", [a, b, c], RANGES) == []


@pytest.mark.parametrize("first,second", [(None, "127.0.0.1"), ("127.0.0.1", "0.0.0.0"), ("", None)])
def test_ports_every_address_clashes_with_any(first: str | None, second: str | None) -> None:
    a = container("traefik-a", ports=[port(80, first, internal=80)])
    b = container("traefik-b", ports=[port(80, second, internal=80)])
    found = run_stack("ports", [a, b])
    assert len(found) == 1 and "is published by both traefik-a and traefik-b" in found[0]


@pytest.mark.parametrize("ip", [None, "", "0.0.0.0"])
def test_ports_database_never_on_every_address(ip: str | None) -> None:
    db = container(naming.SHARED_DB_CONTAINER, role="database", ports=[port(5432, ip, internal=5432)])
    assert run_stack("ports", [db]) == [
        "the shared PostgreSQL container oduflow-db publishes port 5432 on every address; "
        "publish it on a loopback or private address only"
    ]


def test_ports_database_on_loopback_pass() -> None:
    db = container(naming.SHARED_DB_CONTAINER, role="database", ports=[port(5432, "127.0.0.1", internal=5432)])
    assert run_stack("ports", [db]) == []


# --------------------------------------------------------------------------------------------
# quotas

QUOTAS = {
    "teams": {"1": {"cpu": 2.0, "memory_mb": 4096.0, "environments": 2.0}},
    "organisation": {"cpu": 3.0, "memory_mb": 6144.0, "environments": 3.0},
}


def test_quotas_within_pass() -> None:
    resources = [odoo("1", "main"), odoo("1", "dev"), odoo("2", "main")]
    assert run_stack("quotas", resources, QUOTAS) == []


def test_quotas_team_over() -> None:
    resources = [odoo("1", "main"), odoo("1", "dev", memory=4096.0, cpus="1.5"), odoo("1", "x")]
    assert run_stack("quotas", resources, {"teams": QUOTAS["teams"]}) == [
        "team 1 runs 3 environments, over its quota of 2",
        "team 1 asks for 3.5 CPUs, over its quota of 2",
        "team 1 asks for 8192 MB of memory, over its quota of 4096 MB",
    ]


def test_quotas_organisation_over() -> None:
    resources = [odoo("1", "main"), odoo("2", "main"), odoo("3", "main"), odoo("4", "main")]
    assert run_stack("quotas", resources, {"organisation": QUOTAS["organisation"]}) == [
        "all teams together run 4 environments, over the organisation quota of 3",
        "all teams together ask for 4 CPUs, over the organisation quota of 3",
        "all teams together ask for 8192 MB of memory, over the organisation quota of 6144 MB",
    ]


def test_quotas_cpu_sums_exactly() -> None:
    # 0.1 + 0.1 + 0.1 is above 0.3 in floating point; a quota of 0.3 CPUs must still hold three.
    resources = [odoo("1", b, cpus="0.1") for b in ("a", "b", "c")]
    assert run_stack("quotas", resources, {"teams": {"1": {"cpu": 0.3}}}) == []


def test_quotas_only_odoo_containers_count() -> None:
    helper = container("oduflow-1-backup", team="1", role="backup", memory=99999.0, cpus="64")
    assert run_stack("quotas", [odoo("1", "main"), helper], QUOTAS) == []


def test_quotas_limits_required() -> None:
    assert run_stack("quotas", [odoo("1", "main", memory=None, cpus=None)]) == [
        "Odoo container oduflow-1-main-odoo has no memory limit",
        "Odoo container oduflow-1-main-odoo has no CPU limit",
    ]
    assert run_stack("quotas", [odoo("1", "main", memory=0.0, cpus="0")]) == [
        "Odoo container oduflow-1-main-odoo has no memory limit",
        "Odoo container oduflow-1-main-odoo has no CPU limit",
    ]


# --------------------------------------------------------------------------------------------
# isolation


def database(name: str, owner: str | None, *, template: bool = False) -> PolicyResource:
    props: dict[str, Any] = {"name": name}
    if owner is not None:
        props["owner"] = owner
    if template:
        props["isTemplate"] = True
    return resource(policy.DATABASE, name, props)


def revoke(db: PolicyResource | None, database_name: str, privileges: list[str] | None = None) -> PolicyResource:
    props = {"database": database_name, "role": "public", "objectType": "database", "privileges": privileges or []}
    return resource(policy.GRANT, f"{database_name}-revoke", props, deps=[db] if db is not None else [])


def test_isolation_owned_and_revoked_pass() -> None:
    db = database("oduflow_1_main", "oduflow_team_1")
    tpl = database("oduflow_template_1_default", "oduflow_team_1", template=True)
    net = container("oduflow-1-main-odoo", team="1", networks=["oduflow-1-net"])
    proxy = container("oduflow-1-pg", team="1", role="db-proxy", networks=["oduflow-1-net", "oduflow-net"])
    resources = [db, revoke(db, "oduflow_1_main"), tpl, net, proxy]
    assert run_stack("isolation", resources, {"teams": ["1", "2"]}) == []


def test_isolation_grant_related_by_name_pass() -> None:
    db = database("oduflow_1_main", "oduflow_team_1")
    assert run_stack("isolation", [db, revoke(None, "oduflow_1_main")]) == []


def test_isolation_wrong_owner() -> None:
    db = database("oduflow_1_main", "oduflow_team_2")
    assert run_stack("isolation", [db, revoke(db, "oduflow_1_main")]) == [
        "database oduflow_1_main of team 1 is owned by oduflow_team_2, not by oduflow_team_1"
    ]


@pytest.mark.parametrize("grant", ["none", "privileges", "other-db"])
def test_isolation_public_not_revoked(grant: str) -> None:
    db = database("oduflow_1_main", "oduflow_team_1")
    resources = [db]
    if grant == "privileges":
        resources.append(revoke(db, "oduflow_1_main", ["CONNECT"]))
    elif grant == "other-db":
        resources.append(revoke(None, "oduflow_1_dev"))
    assert run_stack("isolation", resources) == [
        "database oduflow_1_main of team 1 is open to PUBLIC: no grant to public on it with no privileges"
    ]


def test_isolation_team_ids_with_underscores() -> None:
    db = database("oduflow_a_b_main", "oduflow_team_a_b")
    assert run_stack("isolation", [db, revoke(db, "oduflow_a_b_main")], {"teams": ["a", "a_b"]}) == []


@pytest.mark.parametrize("config", [{}, {"teams": ["1", "2"]}])
def test_isolation_foreign_network(config: dict[str, Any]) -> None:
    net = container("oduflow-1-main-odoo", team="1", networks=["oduflow-1-net", "oduflow-2-net"])
    assert run_stack("isolation", [net], config) == [
        "container oduflow-1-main-odoo of team 1 joins network oduflow-2-net of another team"
    ]


def test_isolation_only_the_proxy_joins_the_database_network() -> None:
    odoo = container("oduflow-1-main-odoo", team="1", networks=["oduflow-1-net", "oduflow-net"])
    assert run_stack("isolation", [odoo]) == [
        "container oduflow-1-main-odoo of team 1 joins the database network oduflow-net; only the team's "
        "PostgreSQL proxy may (through it, oduflow-1-net reaches the server)"
    ]
    custom = container("oduflow-1-pg", team="1", role="db-proxy", networks=["oduflow-1-net", "platform-net"])
    assert run_stack("isolation", [custom], {"shared_network": "platform-net"}) == []
    odoo = container("oduflow-1-main-odoo", team="1", networks=["platform-net"])
    assert run_stack("isolation", [odoo], {"shared_network": "platform-net"}) != []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"networkMode": "host"}, "uses network mode host; only its team's networks are allowed"),
        ({"networkMode": "container:oduflow-2-main-odoo"}, "uses network mode container:oduflow-2-main-odoo;"),
        ({"privileged": True}, "is privileged"),
        (
            {"volumes": [{"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"}]},
            "mounts /var/run/docker.sock from the host",
        ),
    ],
)
def test_isolation_no_way_out_of_the_team(extra: dict[str, Any], message: str) -> None:
    odoo = container("oduflow-1-main-odoo", team="1", networks=["oduflow-1-net"], **extra)
    (found,) = run_stack("isolation", [odoo])
    assert found.startswith("container oduflow-1-main-odoo of team 1 ") and message in found


# --------------------------------------------------------------------------------------------
# odoo-hardening


def conf(database: str = "oduflow_1_main", **options: Any) -> str:
    return odoo_conf.render_odoo_conf(
        database=database, admin_passwd="s3cret-master", workers=2, memory_mb=2048, addons_paths=[], options=options
    )


def hardened(content: str, team: str = "1", branch: str = "main") -> dict[str, Any]:
    return container_props(
        naming.env_container_name(team, branch),
        team=team,
        role="odoo",
        branch=branch,
        uploads=[{"file": odoo_conf.ODOO_CONF_PATH, "content": content}],
        memory=2048.0,
        cpus="1",
    )


SECRET_CONF = [("uploads", 0, "content")]


def test_hardening_pass() -> None:
    assert run_resource("odoo-hardening", policy.CONTAINER, hardened(conf()), secret_paths=SECRET_CONF) == []


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-", min_size=1, max_size=120))
@settings(max_examples=80, deadline=None)
def test_hardening_accepts_every_generated_conf(branch: str) -> None:
    if naming.slugify_branch(branch) == "":
        return
    props = hardened(conf(naming.env_db_name("1", branch)), branch=branch)
    assert run_resource("odoo-hardening", policy.CONTAINER, props, secret_paths=SECRET_CONF) == []


def test_hardening_list_db_and_proxy_mode() -> None:
    found = run_resource("odoo-hardening", policy.CONTAINER, hardened(conf(list_db=True, proxy_mode=False)))
    assert found == [
        "Odoo container oduflow-1-main-odoo has list_db = True; the database manager must be off (False)",
        "Odoo container oduflow-1-main-odoo has proxy_mode = False; behind Traefik it must be True",
    ]


@pytest.mark.parametrize(
    "dbfilter,problem",
    [
        (".*", "has dbfilter '.*', which also matches 'oduflow_1_mainx', not only its database oduflow_1_main"),
        ("^oduflow_1_main", "which also matches 'oduflow_1_mainx'"),
        ("oduflow.1.main$", "which also matches 'oduflow-1-main'"),
        ("^(oduflow_1_main|postgres)$", "which also matches 'postgres'"),
        ("^oduflow_1_dev$", "has dbfilter '^oduflow_1_dev$', which does not match its database oduflow_1_main"),
        ("^%d$", "which depends on the request's host name"),
        ("(", "which is not a valid regular expression"),
    ],
)
def test_hardening_dbfilter(dbfilter: str, problem: str) -> None:
    content = conf().replace(f"dbfilter = {odoo_conf.dbfilter_for('oduflow_1_main')}", f"dbfilter = {dbfilter}")
    found = run_resource("odoo-hardening", policy.CONTAINER, hardened(content))
    assert len(found) == 1 and found[0].startswith("Odoo container oduflow-1-main-odoo has") and problem in found[0]


def test_hardening_dbfilter_missing_and_admin_passwd_missing() -> None:
    content = "\n".join(line for line in conf().splitlines() if not line.startswith(("dbfilter", "admin_passwd")))
    assert run_resource("odoo-hardening", policy.CONTAINER, hardened(content)) == [
        "Odoo container oduflow-1-main-odoo has no dbfilter, so it serves every database on the server",
        "Odoo container oduflow-1-main-odoo has no master password (admin_passwd unset or Odoo's default)",
    ]


def test_hardening_no_conf() -> None:
    props = container_props("oduflow-1-main-odoo", team="1", role="odoo", branch="main")
    assert run_resource("odoo-hardening", policy.CONTAINER, props) == [
        "Odoo container oduflow-1-main-odoo does not upload /etc/odoo/odoo.conf"
    ]


def test_hardening_master_password_secret_offline_only() -> None:
    props = hardened(conf())
    message = (
        "Odoo container oduflow-1-main-odoo uploads its master password (admin_passwd) in a value that is not secret"
    )
    assert run_resource("odoo-hardening", policy.CONTAINER, props, secret_paths=[]) == [message]
    # A secret anywhere above the content covers it.
    assert run_resource("odoo-hardening", policy.CONTAINER, props, secret_paths=[("uploads",)]) == []
    # Under the engine secretness is unknown: that check is skipped.
    assert run_resource("odoo-hardening", policy.CONTAINER, props) == []


def test_hardening_ignores_other_containers() -> None:
    props = container_props("oduflow-traefik", role="proxy")
    assert run_resource("odoo-hardening", policy.CONTAINER, props, secret_paths=[]) == []


# --------------------------------------------------------------------------------------------
# images-pinned


@pytest.mark.parametrize(
    "image",
    [
        "odoo:17.0",
        "registry:5000/odoo:17",
        "odoo@sha256:" + "a" * 64,
        "ghcr.io/org/odoo:18.0-20240101",
        "odoo:latest@sha256:ab",
    ],
)
def test_images_pinned_pass(image: str) -> None:
    assert run_resource("images-pinned", policy.CONTAINER, {"name": "c", "image": image}) == []


@pytest.mark.parametrize(
    "image,problem",
    [
        ("odoo", "has no tag, which means latest"),
        ("odoo:latest", "is tagged latest"),
        ("odoo:LATEST", "is tagged latest"),
        ("registry:5000/odoo", "has no tag, which means latest"),
        ("registry:5000/odoo:latest", "is tagged latest"),
        ("odoo:", "has no tag, which means latest"),
        ("odoo@", "has an empty digest"),
    ],
)
def test_images_pinned_violations(image: str, problem: str) -> None:
    assert run_resource("images-pinned", policy.CONTAINER, {"name": "c", "image": image}) == [
        f"container c uses image {image} which {problem}; pin a version tag or a digest"
    ]


def test_images_pinned_remote_image() -> None:
    assert run_resource("images-pinned", policy.REMOTE_IMAGE, {"name": "odoo"}) == [
        "image resource r uses image odoo which has no tag, which means latest; pin a version tag or a digest"
    ]


# --------------------------------------------------------------------------------------------
# backups

SCRIPT = backup.backup_script("acme-team-1", [backup.BackupTarget("oduflow_1_main", "oduflow-1-main-filestore")])
PRODUCTION = [
    {"team": "1", "branch": "main", "database": "oduflow_1_main", "filestore": "oduflow-1-main-filestore"},
]


def bucket_set(
    *,
    versioning: str = "Enabled",
    encryption: bool = True,
    block: bool = True,
    by_dependency: bool = True,
) -> list[PolicyResource]:
    b = resource("aws:s3/bucket:Bucket", "team-1-backup-bucket", {"bucket": "acme-team-1"})
    deps = [b] if by_dependency else []
    ref = "team-1-backup-bucket-id" if by_dependency else "acme-team-1"
    out = [
        b,
        resource(
            "aws:s3/bucketVersioning:BucketVersioning",
            "v",
            {"bucket": ref, "versioningConfiguration": {"status": versioning}},
            deps=deps,
        ),
        resource(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "p",
            {"bucket": ref, **{f: block if f != "restrictPublicBuckets" else True for f in policy.PUBLIC_ACCESS_FLAGS}},
            deps=deps,
        ),
    ]
    if encryption:
        out.append(
            resource(
                next(iter(sorted(policy.ENCRYPTION_TYPES))),
                "e",
                {"bucket": ref, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
                deps=deps,
            )
        )
    return out


def job(script: str = SCRIPT, volumes: Sequence[str] = ("oduflow-1-main-filestore",)) -> PolicyResource:
    return container(
        "oduflow-1-backup",
        team="1",
        role="backup",
        uploads=[{"file": backup.SCRIPT_PATH, "content": script}],
        volumes=[{"volumeName": v, "containerPath": f"/filestores/{v}"} for v in volumes],
    )


def env_db() -> PolicyResource:
    return database("oduflow_1_main", "oduflow_team_1")


BACKUPS = {"configured": True, "production": PRODUCTION}


def test_backups_pass() -> None:
    assert run_stack("backups", [*bucket_set(), job(), env_db()], BACKUPS) == []
    # Related by name (a real bucket's id is its name) instead of by dependency.
    assert run_stack("backups", [*bucket_set(by_dependency=False), job(), env_db()], BACKUPS) == []


def test_backups_bucket_settings() -> None:
    assert run_stack("backups", bucket_set(versioning="Suspended", encryption=False, block=False)) == [
        "backup bucket acme-team-1 has no BucketVersioning with status Enabled",
        "backup bucket acme-team-1 has no default server-side encryption",
        "backup bucket acme-team-1 has no BucketPublicAccessBlock with all four blocks on",
    ]


def test_backups_production_not_dumped_or_mounted() -> None:
    other = backup.backup_script("acme-team-1", [backup.BackupTarget("oduflow_1_dev", "oduflow-1-dev-filestore")])
    found = run_stack("backups", [*bucket_set(), job(other, ["oduflow-1-dev-filestore"]), env_db()], BACKUPS)
    assert found == [
        "the backup job of team 1 does not dump database oduflow_1_main of production environment main",
        "the backup job of team 1 does not mount filestore oduflow-1-main-filestore of production environment main",
    ]


def test_backups_production_without_job() -> None:
    assert run_stack("backups", [*bucket_set(), env_db()], BACKUPS) == [
        "production environment main of team 1 has no backup job"
    ]


def test_backups_not_configured_or_not_in_stack() -> None:
    assert run_stack("backups", [env_db()], {"configured": False, "production": PRODUCTION}) == []
    # The production database lives in another stack: nothing to check here.
    assert run_stack("backups", [*bucket_set()], BACKUPS) == []


@pytest.mark.parametrize(
    "line,databases",
    [
        ("pg_dump --format=custom --dbname=db1 --file=x", {"db1"}),
        ("if pg_dump -d db2 > x && tar -czf y -d notadb; then", {"db2"}),
        ("/usr/bin/pg_dump --dbname db3", {"db3"}),
        ("pg_dump -ddb4", {"db4"}),
        ("# pg_dump --dbname=commented", set()),
        ("echo pg_dump is not run here", set()),
        ("pg_dump --dbname=db5; pg_dump -d db6 && tar -d x; echo 'pg_dump -d quoted'", {"db5", "db6"}),
        ("pg_dump -d db7; tar -d notadb", {"db7"}),
        ("pg_dump -d db8 --file 'x", set()),
        ("pg_dump -d db9; echo 'unclosed", set()),
        ('pg_dump -d a; p"g_dump" -d b', {"a", "b"}),  # unbalanced quote: not a line the shell runs
    ],
)
def test_dumped_databases(line: str, databases: set[str]) -> None:
    assert policy.dumped_databases(line) == databases


def test_dumped_databases_of_the_generated_script() -> None:
    targets = [backup.BackupTarget(f"oduflow_1_{b}", f"fs-{b}") for b in ("main", "feature-x", "a.b")]
    assert policy.dumped_databases(backup.backup_script("bucket", targets)) == {t.database for t in targets}


# --------------------------------------------------------------------------------------------
# Advisories


def test_inline_secrets() -> None:
    assert run_stack("inline-secrets", [], {"paths": []}) == []
    assert run_stack("inline-secrets", [], {"paths": ["team.1.auth_token"]}) == [
        "team.1.auth_token is written inline in oduflow.toml; reference a stack secret with secret:KEY"
    ]


def traefik(command: list[str], ports: list[dict[str, Any]]) -> dict[str, Any]:
    return container_props(naming.SHARED_TRAEFIK_CONTAINER, role="proxy", command=command, ports=ports)


def test_traefik_dashboard_pass() -> None:
    props = traefik(["--api.dashboard=true"], [port(80, None, 80), port(8080, "127.0.0.1", 8080)])
    assert run_resource("traefik-dashboard", policy.CONTAINER, props) == []


def test_traefik_dashboard_insecure_and_published() -> None:
    props = traefik(["--api.insecure=true"], [port(8080, "0.0.0.0", 8080), port(9000, None, 8080)])
    assert run_resource("traefik-dashboard", policy.CONTAINER, props) == [
        "Traefik container oduflow-traefik serves its dashboard and API without authentication (--api.insecure)",
        "Traefik container oduflow-traefik publishes its dashboard port 8080 on 0.0.0.0, beyond loopback",
        "Traefik container oduflow-traefik publishes its dashboard port 8080 on every address, beyond loopback",
    ]


def test_production_protected() -> None:
    config = {"production": PRODUCTION}
    db = resource(policy.DATABASE, "db", {"name": "oduflow_1_main"}, protect=True)
    fs = resource(policy.VOLUME, "fs", {"name": "oduflow-1-main-filestore"}, protect=True)
    dev = resource(policy.DATABASE, "dev", {"name": "oduflow_1_dev"})
    assert run_stack("production-protected", [db, fs, dev], config) == []
    db = resource(policy.DATABASE, "db", {"name": "oduflow_1_main"})
    fs = resource(policy.VOLUME, "fs", {"name": "oduflow-1-main-filestore"})
    assert run_stack("production-protected", [db, fs], config) == [
        "the database of production environment main of team 1 is not protected",
        "the filestore of production environment main of team 1 is not protected",
    ]


def test_pack_shape() -> None:
    assert len(set(policy.POLICY_NAMES)) == len(policy.POLICIES)
    levels = {p.name: p.enforcement_level for p in policy.POLICIES}
    assert {n for n, lvl in levels.items() if lvl is policy.ADVISORY} == {
        "inline-secrets",
        "traefik-dashboard",
        "production-protected",
    }
    hardening = BY_NAME["odoo-hardening"].description
    assert "secret" in hardening and "offline" in hardening


# --------------------------------------------------------------------------------------------
# The offline bridge


def planned(type_: str, name: str, inputs: dict[str, Any], *, protect: bool = False) -> PlannedResource:
    return PlannedResource(
        urn=urn(type_, name),
        type=type_,
        name=name,
        parent=None,
        custom=True,
        inputs=inputs,
        dependencies=[],
        protect=protect,
    )


def plan_of(*resources: PlannedResource) -> PlannedRun:
    return PlannedRun("oduflow", "local", list(resources), {})


def test_bridge_unknown_is_an_advisory_preview_diagnostic() -> None:
    run = plan_of(planned(policy.CONTAINER, "c", {"name": "c", "image": UNKNOWN}))
    assert bridge.run_policies(run, {}) == [
        bridge.Violation(
            "images-pinned",
            "advisory",
            urn(policy.CONTAINER, "c"),
            "can't run policy 'images-pinned' from policy pack 'oduflow@v0.1.0' during preview: "
            "string value at .image can't be known during preview",
        )
    ]


def test_bridge_unknown_in_a_stack_policy() -> None:
    run = plan_of(planned(policy.CONTAINER, "c", {"name": "c", "image": "odoo:17.0", "ports": UNKNOWN}))
    found = bridge.run_policies(run, {})
    assert [(v.policy, v.level, v.urn) for v in found] == [("ports", "advisory", None)]
    assert found[0].message.endswith("during preview: string value at .ports can't be known during preview")


def test_bridge_reads_only_needed_labels() -> None:
    # An unknown basic-auth hash (another label) must not stop the hardening rule.
    props = hardened(conf())
    props["labels"].append({"label": "traefik.http.middlewares.x.basicauth.users", "value": UNKNOWN})
    props["uploads"][0]["content"] = Secret(props["uploads"][0]["content"])
    assert bridge.run_policies(plan_of(planned(policy.CONTAINER, "c", props)), {}) == []


def test_bridge_unwraps_secrets_and_enforces_secretness() -> None:
    secret = hardened(conf())
    secret["uploads"][0]["content"] = Secret(secret["uploads"][0]["content"])
    assert bridge.run_policies(plan_of(planned(policy.CONTAINER, "c", secret)), {}) == []
    plain = hardened(conf())
    found = bridge.run_policies(plan_of(planned(policy.CONTAINER, "c", plain)), {})
    assert [(v.policy, v.level, v.urn) for v in found] == [("odoo-hardening", "mandatory", urn(policy.CONTAINER, "c"))]
    assert "not secret" in found[0].message


def test_bridge_stack_policies_get_dependencies_and_protect() -> None:
    db = planned(policy.DATABASE, "db", {"name": "oduflow_1_main", "owner": "oduflow_team_1"})
    grant = planned(
        policy.GRANT,
        "g",
        {"database": UNKNOWN, "role": "public", "objectType": "database", "privileges": []},
    )
    grant.dependencies = [db.urn]
    # Related through the dependency, the grant's unknown database name is never read.
    assert bridge.run_policies(plan_of(db, grant), {}) == []
    config = {"production-protected": {"production": PRODUCTION}}
    found = bridge.run_policies(plan_of(db, grant), config)
    assert [(v.policy, v.level) for v in found] == [("production-protected", "advisory")]
    db.protect = True
    assert bridge.run_policies(plan_of(db, grant), config) == []


def test_bridge_config_numbers_arrive_as_floats() -> None:
    seen: list[Any] = []
    schema = PolicyConfigSchema({"n": {"type": "integer"}, "items": {"type": "array"}})
    probe = StackValidationPolicy("probe", "records its config", lambda a, r: seen.append(a.get_config()), None, schema)
    bridge.run_policies(plan_of(), {"probe": {"n": 3, "items": [1, True, "x"]}}, [probe])
    assert seen == [{"n": 3.0, "items": [1.0, True, "x"]}]
    assert type(seen[0]["n"]) is float and type(seen[0]["items"][0]) is float and seen[0]["items"][1] is True
    run = plan_of(planned(policy.CONTAINER, "c", container_props("c", team="1", role="odoo", ports=[port(50000)])))
    found = bridge.run_policies(run, {"ports": {"ranges": {"1": {"start": 40000, "end": 40010}}}})
    assert [v.message for v in found if v.policy == "ports"] == [
        "team 1 publishes port 50000 outside its range [40000, 40010)"
    ]


@pytest.mark.parametrize(
    "config,problem",
    [
        ({"nope": {}}, "nope: no such policy in pack oduflow"),
        ({"ports": {"ranges": {"1": {"start": "50000", "end": 50050}}}}, "ports: ranges.1.start: expected integer"),
        ({"ports": {"ranges": {"1": {"start": 50000}}}}, "ports: ranges.1: end is required"),
        ({"ports": {"ranges": {"1": {"start": 1.5, "end": 2}}}}, "ports: ranges.1.start: expected integer"),
        ({"quotas": {"teams": {"1": {"disk_gb": 3}}}}, "quotas: teams.1: additional property disk_gb is not allowed"),
        ({"backups": {"configured": "yes"}}, "backups: configured: expected boolean"),
        ({"images-pinned": {"allow": ["odoo"]}}, "images-pinned: takes no configuration"),
        ({"images-pinned": "sometimes"}, "images-pinned: 'sometimes' is not an enforcement level"),
    ],
)
def test_bridge_rejects_config_outside_the_schemas(config: dict[str, Any], problem: str) -> None:
    with pytest.raises(bridge.PolicyConfigError) as caught:
        bridge.run_policies(plan_of(), config)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_bridge_enforcement_levels() -> None:
    run = plan_of(planned(policy.CONTAINER, "c", {"name": "c", "image": "odoo:latest"}))
    assert [v.level for v in bridge.run_policies(run, {})] == ["mandatory"]
    assert [v.level for v in bridge.run_policies(run, {"images-pinned": "advisory"})] == ["advisory"]
    assert [v.level for v in bridge.run_policies(run, {"images-pinned": {"enforcementLevel": "remediate"}})] == [
        "mandatory"
    ]
    assert bridge.run_policies(run, {"images-pinned": "disabled"}) == []
    assert bridge.run_policies(run, {"all": "disabled"}) == []
    assert [v.level for v in bridge.run_policies(run, {"all": "disabled", "images-pinned": "mandatory"})] == [
        "mandatory"
    ]


def test_bridge_async_rules_are_awaited() -> None:
    async def rule(args: ResourceValidationArgs, report: Any) -> None:
        report("async rule ran", None)

    probe = ResourceValidationPolicy("probe", "an asynchronous rule", rule)
    found = bridge.run_policies(plan_of(planned(policy.CONTAINER, "c", {"name": "c"})), {}, [probe])
    assert [v.message for v in found] == ["async rule ran"]


# --------------------------------------------------------------------------------------------
# Cost: linear in the number of resources


@functools.cache
def synthetic_stack(teams: int) -> tuple[tuple[PolicyResource, ...], dict[str, dict[str, Any]]]:
    """Per team what the program declares for one production environment with backups, and the
    policy config of all those teams, as the engine hands them to stack policies."""
    out: list[PlannedResource] = []
    production = []
    for t in range(teams):
        team, db_name, fs_name = str(t), f"oduflow_{t}_main", f"oduflow-{t}-main-filestore"
        production.append({"team": team, "branch": "main", "database": db_name, "filestore": fs_name})
        db = planned(policy.DATABASE, f"db{t}", {"name": db_name, "owner": naming.team_role_name(team)}, protect=True)
        grant = planned(policy.GRANT, f"g{t}", {"database": db_name, "role": "public", "objectType": "database"})
        grant.dependencies = [db.urn]
        props = hardened(conf(db_name), team=team)
        props.update(ports=[port(20000 + t)], networksAdvanced=[{"name": naming.team_network_name(team)}])
        script = backup.backup_script(f"b{t}", [backup.BackupTarget(db_name, fs_name)])
        backup_job = container_props(
            naming.team_backup_container_name(team),
            team=team,
            role="backup",
            uploads=[{"file": backup.SCRIPT_PATH, "content": script}],
            volumes=[{"volumeName": fs_name}],
        )
        bucket = planned("aws:s3/bucket:Bucket", f"b{t}", {"bucket": f"b{t}"})
        settings_ = [
            planned(
                "aws:s3/bucketVersioning:BucketVersioning", f"v{t}", {"versioningConfiguration": {"status": "Enabled"}}
            ),
            planned(
                next(iter(sorted(policy.ENCRYPTION_TYPES))),
                f"e{t}",
                {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
            ),
            planned(policy.PUBLIC_ACCESS_BLOCK_TYPE, f"p{t}", dict.fromkeys(policy.PUBLIC_ACCESS_FLAGS, True)),
        ]
        for setting in settings_:
            setting.inputs["bucket"] = f"b{t}-id"
            setting.dependencies = [bucket.urn]
        out += [db, grant, planned(policy.CONTAINER, f"c{t}", props), planned(policy.CONTAINER, f"j{t}", backup_job)]
        out += [planned(policy.VOLUME, f"fs{t}", {"name": fs_name}, protect=True), bucket, *settings_]
    run = plan_of(*out)
    config = {
        "ports": {"ranges": {str(t): {"start": 20000 + t, "end": 20001 + t} for t in range(teams)}},
        "quotas": {"teams": {str(t): {"cpu": 1, "memory_mb": 2048, "environments": 1} for t in range(teams)}},
        "isolation": {"teams": [str(t) for t in range(teams)]},
        "backups": {"configured": True, "production": production},
        "production-protected": {"production": production},
        "inline-secrets": {"paths": []},
    }
    configs, _ = bridge.configure(policy.POLICIES, config)
    props = {r.urn: bridge.to_wire(r.inputs) for r in run.resources}
    resources = bridge._stack_resources(run, props, bridge._providers(run, run.by_urn(), props))
    return tuple(resources), configs


POLICY_PACKAGE = str(Path(policy.__file__).parent)


def rule_steps(p: StackValidationPolicy, teams: int, source: str = POLICY_PACKAGE) -> int:
    """How many lines of the files under `source` the rule executes: a cost measure that load on the machine does
    not disturb (a pairwise comparison executes its inner lines n * n times)."""
    resources, configs = synthetic_stack(teams)
    found: list[str] = []
    steps = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal steps
        if event == "line":
            steps += 1
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(source) else None

    args = StackValidationArgs(list(resources), configs[p.name])
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        p.validate(args, collect(found))
    finally:
        sys.settrace(previous)
    assert found == []
    return steps


STACK_POLICIES = [p for p in policy.POLICIES if isinstance(p, StackValidationPolicy)]


@pytest.mark.parametrize("p", STACK_POLICIES, ids=[p.name for p in STACK_POLICIES])
def test_stack_rule_cost_is_linear(p: StackValidationPolicy) -> None:
    # Four times the resources: about four times the steps (longer team ids add a few); pairwise
    # comparisons would take sixteen.
    small, large = rule_steps(p, 50), rule_steps(p, 200)
    assert large <= 5 * small, (small, large)


def test_cost_check_catches_pairwise_rules() -> None:
    def pairwise(args: StackValidationArgs, report: Any) -> None:
        names = [r.name for r in args.resources]
        for a in names:
            for b in names:
                if a == b and a is not b:
                    report("never", None)

    probe = StackValidationPolicy("inline-secrets", "pairwise on purpose", pairwise)
    assert rule_steps(probe, 200, __file__) >= 10 * rule_steps(probe, 50, __file__)
