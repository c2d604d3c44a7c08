"""Tenant isolation on a real Docker engine: the plan's networks and containers for three teams,
built with stand-ins listening on each container's real ports, probed from every container that
runs a team's code to every other container, address and port.

The matrix that must hold (every team is hostile to every other):
- a team's containers reach their own team's Odoo and PostgreSQL proxy (by name);
- PostgreSQL only through the team's own proxy: the database endpoint a container is configured
  with answers as PostgreSQL and is a proxy of its own team, and PostgreSQL itself answers nothing;
- nothing of another team (Odoo, one-shots, backup job, its proxy, its mail catcher) answers;
- a team's containers reach their own team's mail catcher (SMTP and web UI) by name; the catcher
  publishes no port, and its web UI is routed by Traefik only behind the team's basic auth;
- Traefik answers on its public entrypoints only (never the internal one, :8080), the Docker socket
  proxy answers nothing, and Traefik reaches every environment it routes to.
Then a fourth team is added: no shared container's inputs change, and the matrix still holds.

The topology comes from the plan (networks_advanced, network_mode, environment), so the test fails
as soon as the components connect anything they should not.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from oduflow_iac import naming
from oduflow_iac.offline import harness
from tests.docker import topology
from tests.docker.conftest import Images, clean_engine
from tests.docker.topology import Answer, Built, PlannedContainer, Probe

SHARED_ROLES = ("database", "proxy", "docker-proxy")

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def platform(
    docker_client: docker.DockerClient,
    images: Images,
    three_team_plan: harness.PlannedRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Built]:
    clean_engine(docker_client)
    built = topology.build(docker_client, three_team_plan, images, tmp_path_factory.mktemp("host"), standin=True)
    try:
        yield built
    finally:
        built.remove()
        clean_engine(docker_client)


def ports_of(c: PlannedContainer, plan: list[PlannedContainer]) -> list[int]:
    return [int(spec.split(">")[0].rsplit(":", 1)[1]) for spec in topology.listen_spec(c, plan)]


def probes_from(source: PlannedContainer, built: Built) -> list[tuple[PlannedContainer, Probe]]:
    """Every other container that listens, at each of its addresses, on each of its real ports (a
    host-network container, Traefik, at the engine's address on every network); the source's own
    team's containers by name too. (A name the source's networks do not know never resolves: the
    addresses already cover every other container, and the lookups would only wait.)"""
    out = []
    gateways = built.gateways()
    for target in built.plan:
        ports = ports_of(target, built.plan)
        if target.name == source.name or target.name not in built.ids or not ports:
            continue
        if target.network_mode == "host":
            hosts = [(f"{target.name} via the host's address on {net}", ip) for net, ip in gateways.items()]
        else:
            hosts = [(f"{target.name} ({ip} on {net})", ip) for net, ip in built.addresses(target.name).items()]
            if target.team is not None and target.team == source.team:
                hosts.append((f"{target.name} (by name)", target.name))
        for label, host in hosts:
            for port in ports:
                out.append((target, Probe(f"{label} :{port}", host, port)))
    return out


def matrix(built: Built) -> dict[str, list[tuple[PlannedContainer, Answer]]]:
    """source name -> every probe from it, with its answer (sources probed in parallel)."""
    sources = [c for c in built.plan if c.role in topology.TENANT_ROLES and c.name in built.ids]

    def run(source: PlannedContainer) -> tuple[str, list[tuple[PlannedContainer, Answer]]]:
        pairs = probes_from(source, built)
        answers = topology.probe(built.client, built.ids[source.name], [p for _, p in pairs])
        return source.name, [(t, a) for (t, _), a in zip(pairs, answers, strict=True)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(pool.map(run, sources))


def violations(built: Built) -> list[str]:
    """Every breach of the matrix, one line each."""
    found: list[str] = [f"{name}: the engine refuses to create it: {why}" for name, why in built.refused.items()]
    by_name = {c.name: c for c in built.plan}
    database = next((c for c in built.plan if c.role == "database"), None)
    for source_name, results in matrix(built).items():
        source = by_name[source_name]
        who = f"{source.name} ({source.role}, team {source.team})"
        reached_by_name = {t.name for t, a in results if a.reached and a.probe.host == t.name}
        for target, answer in results:
            if not answer.reached:
                continue
            if target.team is not None and target.team != source.team:
                found.append(f"{who} reaches another team's {target.role} {answer.probe.target}")
            elif target.role == "database":
                found.append(f"{who} reaches PostgreSQL directly at {answer.probe.target}")
            elif target.role == "proxy" and answer.probe.port not in topology.public_traefik_ports(
                target.inputs.get("command") or []
            ):
                found.append(f"{who} reaches Traefik's non-public entrypoint {answer.probe.target}")
            elif target.role == "docker-proxy":
                found.append(f"{who} reaches the Docker socket proxy at {answer.probe.target}")
            elif target.team is None and target.role not in ("proxy",):
                found.append(f"{who} reaches the shared {target.role} {answer.probe.target}")
        for target in built.plan:
            own = target.team == source.team and target.role in ("odoo", "db-proxy", "mail-catcher")
            own = own and target is not source
            if own and target.name not in reached_by_name:
                found.append(f"{who} cannot reach its own team's {target.role} {target.name}")
        endpoint = topology.db_endpoint(source)
        if endpoint is not None and database is not None:
            host, port = endpoint
            proxy = by_name.get(host)
            if proxy is None or proxy.role != "db-proxy" or proxy.team != source.team:
                found.append(
                    f"{who} is configured to reach PostgreSQL at {host}:{port}, which is not its own team's proxy"
                )
            answer = topology.probe(built.client, built.ids[source.name], [Probe(f"{host}:{port}", host, port)])[0]
            if answer.served_by != database.name:
                found.append(
                    f"{who}: its database endpoint {host}:{port} does not lead to PostgreSQL "
                    f"(answered by {answer.served_by or 'nothing'})"
                )
    return found


def routing_violations(built: Built) -> list[str]:
    """Traefik reaches every environment at the address of the network its labels name."""
    found = []
    for traefik in (c for c in built.plan if c.role == "proxy"):
        probes = []
        for odoo in (c for c in built.plan if c.role in ("odoo", "mail-catcher")):
            labels = topology.labels_of(odoo.inputs)
            network = labels.get("traefik.docker.network")
            addresses = built.addresses(odoo.name)
            if network not in addresses:
                found.append(f"{odoo.name}: Traefik's network {network!r} is not one of its {sorted(addresses)}")
                continue
            for port in {int(v) for k, v in labels.items() if k.endswith(".loadbalancer.server.port")}:
                probes.append(Probe(f"{odoo.name} on {network}", addresses[network], port))
        for answer in topology.probe(built.client, built.ids[traefik.name], probes):
            if not answer.reached:
                found.append(f"Traefik cannot reach {answer.probe.target}:{answer.probe.port}")
    return found


def mail_catcher_violations(plan: list[PlannedContainer]) -> list[str]:
    """A team's mail catcher: on its team's network only, no published port, and every router to it
    behind the team's basic auth (the Internet reaches it only through Traefik, authenticated)."""
    found = []
    catchers = [c for c in plan if c.role == "mail-catcher"]
    teams = {c.team for c in plan if c.role == "odoo" and c.team is not None}
    if not catchers:
        found.append("the plan has no mail catcher (container with label oduflow.role=mail-catcher)")
    for c in catchers:
        if c.networks != (naming.team_network_name(c.team or ""),):
            found.append(f"{c.name}: on networks {c.networks}, not its team's alone")
        if c.inputs.get("ports"):
            found.append(f"{c.name}: publishes {c.inputs['ports']}")
        labels = topology.labels_of(c.inputs)
        routers = {k.split(".")[3] for k in labels if k.startswith("traefik.http.routers.")}
        auth = f"{naming.team_auth_middleware_name(c.team or '')}@docker"
        for router in routers:
            if auth not in labels.get(f"traefik.http.routers.{router}.middlewares", "").split(","):
                found.append(f"{c.name}: router {router} is not behind {auth}")
        if not routers:
            found.append(f"{c.name}: its web UI is not routed")
    assert teams
    return found


def docker_api_violations(plan: list[PlannedContainer]) -> list[str]:
    """The Docker API only through the socket proxy: the real socket is mounted by the proxy
    alone, and the proxy's socket volume by Traefik and the proxy alone."""
    found = []
    proxies = [c for c in plan if c.role == "docker-proxy"]
    if not proxies:
        found.append("the plan has no Docker socket proxy (container with label oduflow.role=docker-proxy)")
    proxy_volumes = {v["volumeName"] for c in proxies for v in c.inputs.get("volumes") or [] if v.get("volumeName")}
    for c in plan:
        for v in c.inputs.get("volumes") or []:
            if (v.get("hostPath") or "").endswith("docker.sock") and c.role != "docker-proxy":
                found.append(f"{c.name} ({c.role}) mounts the Docker socket {v['hostPath']}")
            if v.get("volumeName") in proxy_volumes and c.role not in ("docker-proxy", "proxy"):
                found.append(f"{c.name} ({c.role}) mounts the socket proxy's volume {v['volumeName']}")
    for c in proxies:
        if c.network_mode != "none":
            found.append(f"{c.name}: the socket proxy is on the network {c.network_mode!r} (expected none)")
    return found


def test_three_teams_reach_only_what_they_may(platform: Built) -> None:
    found = violations(platform)
    assert not found, "isolation breaches on the engine:\n" + "\n".join(sorted(found))


def test_traefik_reaches_every_environment(platform: Built) -> None:
    found = routing_violations(platform)
    assert not found, "\n".join(found)


def test_the_mail_catcher_is_reached_through_traefik_with_auth_only(platform: Built) -> None:
    found = mail_catcher_violations(platform.plan)
    # On the engine: no port of the catcher is published on the host.
    for c in platform.plan:
        if c.role == "mail-catcher":
            published = platform.client.api.inspect_container(platform.ids[c.name])["NetworkSettings"]["Ports"]
            found += [f"{c.name} publishes {port}: {bound}" for port, bound in (published or {}).items() if bound]
    assert not found, "\n".join(found)


def test_docker_api_only_through_the_socket_proxy(platform: Built) -> None:
    found = docker_api_violations(platform.plan)
    # And on the engine: the socket proxy has no address any container could connect to.
    for c in platform.plan:
        if c.role == "docker-proxy" and platform.addresses(c.name):
            found.append(f"{c.name} has addresses {platform.addresses(c.name)}")
    assert not found, "\n".join(found)


def shared_changes(before: harness.PlannedRun, after: harness.PlannedRun) -> list[str]:
    """Inputs of shared containers (no team label) that differ between the two plans."""
    old = {c.name: c for c in topology.containers(before) if c.team is None}
    new = {c.name: c for c in topology.containers(after) if c.team is None}
    changes = []
    for name, c in old.items():
        if name not in new:
            changes.append(f"{name} ({c.role}) is gone")
            continue
        keys = set(c.inputs) | set(new[name].inputs)
        for key in sorted(keys):
            if c.inputs.get(key) != new[name].inputs.get(key):
                changes.append(f"{name} ({c.role}): input {key!r} changes")
    return changes


def test_a_fourth_team_changes_no_shared_container_and_isolation_holds(
    platform: Built,
    images: Images,
    three_team_plan: harness.PlannedRun,
    four_team_plan: harness.PlannedRun,
    tmp_path: Path,
) -> None:
    roles = {c.role for c in topology.containers(three_team_plan) if c.team is None}
    missing = [f"the plan has no shared {role} container" for role in SHARED_ROLES if role not in roles]
    changes = shared_changes(three_team_plan, four_team_plan)
    assert not missing + changes, "adding a team changes shared containers (each change replaces it):\n" + "\n".join(
        missing + changes
    )
    new = [c.name for c in topology.containers(four_team_plan) if c.team == "4"]
    assert new, "the fourth team has no container in the plan"
    topology.build(platform.client, four_team_plan, images, tmp_path, standin=True, only=new, built=platform)
    found = violations(platform) + routing_violations(platform)
    assert not found, "with a fourth team:\n" + "\n".join(sorted(found))
