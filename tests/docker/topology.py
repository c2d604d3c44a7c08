"""The plan's Docker resources, built on the test engine, and probes between them.

Everything about WHO is connected to WHAT comes from the plan: the networks each container joins
(`networksAdvanced`, `networkMode`, C:901-907 default "bridge"), the database host and port each
team container is configured with (its HOST/PORT or PGHOST/PGPORT variables), Traefik's entrypoint
addresses (its command). What stays here is knowledge of the real images: which ports their
program listens on (Odoo 8069/8072, PostgreSQL 5432, Mailpit 1025/8025) — the stand-ins listen on the same ones.

Safety: every network is created `internal` (no gateway route out), published ports go to
127.0.0.1, host paths of the plan are replaced by placeholder files in a temporary directory
(never created on the host), and the engine itself runs in a network namespace of its own
(scripts/with-docker.sh): no packet can leave it.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from oduflow_iac import naming
from oduflow_iac.offline import harness
from tests.docker import provider

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"

# Stands for Docker's default bridge, which the test engine does not have (--bridge=none): the
# provider leaves a container there when it has no networks_advanced and network_mode "bridge".
DEFAULT_BRIDGE = "oduflow-test-default-bridge"

# Roles whose containers run a team's own code (its addons, its git remotes, its database dumps):
# the sources of the reachability matrix, all treated as hostile.
TENANT_ROLES = ("odoo", "init", "template-init", "addons-fetch", "refresh", "upgrade", "backup")
ALL_ROLES = (
    "odoo",
    "init",
    "template-init",
    "addons-fetch",
    "refresh",
    "upgrade",
    "backup",
    "mail-catcher",
    "database",
    "proxy",
    "db-proxy",
    "docker-proxy",
)

# What the real images listen on (their programs' defaults, not the plan's topology).
IMAGE_PORTS = {
    "odoo": (naming.ODOO_HTTP_PORT, naming.ODOO_LONGPOLLING_PORT),
    "database": (5432,),
    "mail-catcher": (naming.MAIL_CATCHER_SMTP_PORT, naming.MAIL_CATCHER_UI_PORT),
}
DB_ENV_HOST = ("HOST", "PGHOST", "DB_HOST", "POSTGRES_HOST")
DB_ENV_PORT = ("PORT", "PGPORT", "DB_PORT", "POSTGRES_PORT")

# A fourth team, appended to the three-team config for the zero-churn test.
FOURTH_TEAM = """
[team.4]
hostname = "team-four.localhost"
auth_token = "secret:team4-token"
ui_password = "secret:team4-ui-password"
port_range = [50060, 50080]

[[team.4.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:17.0"
"""


def labels_of(inputs: dict[str, Any]) -> dict[str, str]:
    return {item["label"]: item["value"] for item in inputs.get("labels") or []}


@dataclass(frozen=True)
class PlannedContainer:
    urn: str
    name: str
    role: str
    team: str | None
    inputs: dict[str, Any]
    ignore_changes: tuple[str, ...] = ()

    @property
    def network_mode(self) -> str:
        return self.inputs.get("networkMode") or "bridge"

    @property
    def networks(self) -> tuple[str, ...]:
        """The plan networks the provider attaches (F:463-503); the default bridge when none."""
        names = tuple(n["name"] for n in self.inputs.get("networksAdvanced") or [])
        if self.network_mode != "bridge":
            return ()
        return names or ("bridge",)

    def env(self) -> dict[str, str]:
        out = {}
        for item in self.inputs.get("envs") or []:
            if isinstance(item, str) and "=" in item:
                key, value = item.split("=", 1)
                out[key] = value
        return out


def containers(run: harness.PlannedRun) -> list[PlannedContainer]:
    out = []
    for r in run.of_type(CONTAINER):
        inputs = harness.reveal(r.inputs)
        labels = labels_of(inputs)
        out.append(
            PlannedContainer(
                urn=r.urn,
                name=inputs["name"],
                role=labels.get(naming.LABEL_ROLE, "?"),
                team=labels.get(naming.LABEL_TEAM) or None,
                inputs=inputs,
                ignore_changes=tuple(r.ignore_changes),
            )
        )
    return out


def by_role(run: harness.PlannedRun) -> dict[str, list[PlannedContainer]]:
    out: dict[str, list[PlannedContainer]] = {}
    for c in containers(run):
        out.setdefault(c.role, []).append(c)
    return out


def traefik_listeners(command: Iterable[str]) -> list[str]:
    """The addresses Traefik listens on for this command line: every `--entrypoints.N.address`,
    plus the implicit `traefik` entrypoint (:8080) that --ping or --api create when none is
    declared (Traefik's static configuration defaults)."""
    addresses: dict[str, str] = {}
    implicit = False
    for arg in command:
        match = re.fullmatch(r"--entrypoints\.([^.=]+)\.address=(.*)", arg)
        if match:
            addresses[match.group(1)] = match.group(2)
        elif re.fullmatch(r"--(ping|api)(=true)?|--api\.(dashboard|insecure)(=true)?", arg):
            implicit = True
    if implicit and "traefik" not in addresses:
        addresses["traefik"] = ":8080"
    out = []
    for address in addresses.values():
        address = address.split("/", 1)[0]  # ":443/udp" style suffixes
        host, _, port = address.rpartition(":")
        out.append(f"{host or '0.0.0.0'}:{port}")
    return out


def public_traefik_ports(command: Iterable[str]) -> set[int]:
    """Ports of the entrypoints bound to every address (the public ones)."""
    return {int(a.rsplit(":", 1)[1]) for a in traefik_listeners(command) if a.startswith("0.0.0.0:")}


def db_endpoint(container: PlannedContainer) -> tuple[str, int] | None:
    """The PostgreSQL host and port a team container is configured with (its environment)."""
    env = container.env()
    host = next((env[k] for k in DB_ENV_HOST if env.get(k)), None)
    port = next((env[k] for k in DB_ENV_PORT if env.get(k)), None)
    if host is None:
        return None
    return host, int(port) if port and port.isdigit() else 5432


def listen_spec(c: PlannedContainer, plan: list[PlannedContainer]) -> list[str]:
    """What the stand-in for `c` listens on: the real image's ports; a TCP proxy forwards to the
    PostgreSQL endpoint named in its own inputs."""
    if c.role in IMAGE_PORTS:
        return [f"0.0.0.0:{p}" for p in IMAGE_PORTS[c.role]]
    if c.role == "proxy":
        return traefik_listeners(c.inputs.get("command") or [])
    if c.role == "db-proxy":
        database = next(d for d in plan if d.role == "database")
        text = " ".join(
            [*(c.inputs.get("command") or []), *(c.inputs.get("entrypoints") or []), *(c.inputs.get("envs") or [])]
        )
        match = re.search(re.escape(database.name) + r"\W(\d+)", text)
        target_port = int(match.group(1)) if match else 5432
        return [f"0.0.0.0:5432>{database.name}:{target_port}"]
    return []


@dataclass
class Built:
    """Containers, networks and volumes of one plan, created on the test engine."""

    client: docker.DockerClient
    plan: list[PlannedContainer]
    ids: dict[str, str] = field(default_factory=dict)  # container name -> id
    applied: dict[str, provider.Applied] = field(default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)  # plan network name -> id
    volumes: list[str] = field(default_factory=list)
    # container name -> the engine's refusal, for containers the provider could not create either
    refused: dict[str, str] = field(default_factory=dict)

    def container(self, name: str) -> Any:
        return self.client.containers.get(self.ids[name])

    def addresses(self, name: str) -> dict[str, str]:
        """network name -> IP address of the container on it."""
        attrs = self.client.api.inspect_container(self.ids[name])
        nets = attrs["NetworkSettings"]["Networks"] or {}
        return {net: info["IPAddress"] for net, info in nets.items() if info.get("IPAddress")}

    def gateways(self) -> dict[str, str]:
        """network name -> the engine's own address on it (where host-network services answer)."""
        out = {}
        for name, nid in self.networks.items():
            for cfg in self.client.api.inspect_network(nid)["IPAM"]["Config"] or []:
                if cfg.get("Gateway"):
                    out[name] = cfg["Gateway"].split("/")[0]
        return out

    def remove_container(self, name: str) -> None:
        cid = self.ids.pop(name)
        self.applied.pop(name, None)
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(cid, v=True, force=True)

    def remove(self) -> None:
        def remove_one(cid: str) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(cid, v=True, force=True)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(remove_one, self.ids.values()))
        for nid in self.networks.values():
            remove_network(self.client, nid)
        for name in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_volume(name, force=True)


def remove_network(client: docker.DockerClient, network_id: str) -> None:
    """Remove a network, waiting while the engine still releases a removed container's endpoint
    (as the provider does, NF:205-224)."""
    for _ in range(200):
        try:
            client.api.remove_network(network_id)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc):
                raise
            time.sleep(0.1)
    client.api.remove_network(network_id)


def safe_inputs(c: PlannedContainer, host_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The inputs with what the test engine must never do replaced: host paths become placeholder
    files under `host_dir`, published ports bind 127.0.0.1 only."""
    inputs = dict(c.inputs)
    notes = []
    volumes = []
    for v in inputs.get("volumes") or []:
        if v.get("hostPath"):
            placeholder = host_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", v["hostPath"].strip("/"))
            placeholder.touch()
            notes.append(f"host path {v['hostPath']} replaced by a placeholder file")
            v = {**v, "hostPath": str(placeholder)}
        volumes.append(v)
    if volumes:
        inputs["volumes"] = volumes
    ports = []
    for p in inputs.get("ports") or []:
        if (p.get("ip") or "0.0.0.0") not in ("127.0.0.1",):
            notes.append(f"port {p.get('internal')} published on 127.0.0.1 instead of {p.get('ip') or '0.0.0.0'}")
            p = {**p, "ip": "127.0.0.1"}
        ports.append(p)
    if ports:
        inputs["ports"] = ports
    return inputs, notes


def build(
    client: docker.DockerClient,
    run: harness.PlannedRun,
    images: Any,
    host_dir: Path,
    *,
    standin: bool,
    only: Iterable[str] | None = None,
    built: Built | None = None,
    env: list[str] | None = None,
    wait: bool = True,
) -> Built:
    """Create the plan's networks, volumes and containers (all, or the names in `only`).

    standin=True: every container runs the stand-in listener (its real ports, see listen_spec)
    instead of its command, so the topology can be probed; one-shots stay up as probe sources.
    standin=False: containers are created from the plan's inputs (the read-back test); a
    long-running one only gets its listeners in its environment. `env` is added to every container;
    wait=False skips Create's wait for a healthy state."""
    plan = containers(run)
    built = built or Built(client=client, plan=plan)
    built.plan = plan
    for r in run.of_type(NETWORK):
        inputs = harness.reveal(r.inputs)
        if inputs["name"] not in built.networks:
            built.networks[inputs["name"]] = provider.create_network(client, inputs, inputs["name"])
    wanted = [c for c in plan if only is None or c.name in set(only)]
    if any(c.networks == ("bridge",) for c in wanted) and DEFAULT_BRIDGE not in built.networks:
        built.networks[DEFAULT_BRIDGE] = provider.create_network(client, {}, DEFAULT_BRIDGE)
    for r in run.of_type(VOLUME):
        inputs = harness.reveal(r.inputs)
        if inputs["name"] not in built.volumes:
            provider.create_volume(client, inputs, inputs["name"])
            built.volumes.append(inputs["name"])

    def create(c: PlannedContainer) -> None:
        if c.name in built.ids:
            return
        inputs, notes = safe_inputs(c, host_dir)
        extra_env = [f"ODUFLOW_STANDIN_NAME={c.name}", *(env or [])]
        entrypoint = command = None
        listen = listen_spec(c, plan)
        if not c.inputs.get("attach") and not listen:
            extra_env.append("ODUFLOW_STANDIN_IDLE=1")  # never run the real image's arguments
        if listen or standin:
            # A long-running container's stand-in serves its real ports instead of running the
            # command the plan gives the real image (Traefik's flags...), which busybox cannot.
            extra_env.append("ODUFLOW_STANDIN_LISTEN=" + " ".join(listen))
        if not wait:
            inputs = {**inputs, "wait": False}
        if standin:
            # The stand-in serves the topology; the real image's files (uploads) are the read-back
            # test's business.
            entrypoint, command = ["/standin/run"], []
            inputs = {**inputs, "attach": False, "mustRun": True, "wait": False, "uploads": []}
        try:
            applied = provider.create_container(
                client,
                inputs,
                image=images.local(c.inputs["image"]),
                default_bridge=DEFAULT_BRIDGE if DEFAULT_BRIDGE in built.networks else None,
                extra_env=extra_env,
                entrypoint=entrypoint,
                command=command,
            )
        except provider.CreateFailed as exc:
            built.refused[c.name] = str(exc)
            if exc.container_id:
                built.ids[c.name] = exc.container_id
            return
        applied.deviations.extend(notes)
        built.ids[c.name] = applied.id
        built.applied[c.name] = applied

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, wanted))
    return built


# ---------------------------------------------------------------------------------------------
# Probes


@dataclass(frozen=True)
class Probe:
    target: str  # what is probed, for messages: "oduflow-2-main (172.20.0.3) :8069"
    host: str
    port: int


@dataclass(frozen=True)
class Answer:
    probe: Probe
    reached: bool
    served_by: str  # the stand-in that answered (its container name), "" when nothing did


# Every probe of a source, in two rounds of parallel jobs. First each name is looked up (busybox
# nslookup through the engine's DNS, 5 s at most), then a TCP connection is opened to each address
# (busybox nc, connect timeout 2 s) with an HTTP request; the last line of the answer is the
# stand-in's container name. nc exits 1 when it cannot connect (refused, no route, timed out), 0
# when the peer answered and closed; `timeout` (10 s, far beyond nc's own) only ends a connection
# that stays open without an answer (124): connected all the same.
PROBE_SCRIPT = r"""
dns=$(mktemp)
for name in $NAMES; do
    (
        addr=$(timeout 5 nslookup -type=a "$name" 2>/dev/null | sed -n '/^Name:/,$ s/^Address: *//p' | head -n 1)
        echo "$name ${addr:-none}" >>"$dns"
    ) &
done
wait
probe() {
    host="$2"
    case "$host" in
        *[!0-9.]*) host=$(grep "^$host " "$dns" | cut -d ' ' -f 2 | head -n 1) ;;
    esac
    if [ -z "$host" ] || [ "$host" = none ]; then
        echo "$1 rc=1"
        return
    fi
    out=$( { printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 nc -w 2 "$host" "$3" 2>/dev/null; echo "rc=$?"; } \
        | tail -n 2 | tr '\n' ' ')
    echo "$1 $out"
}
i=0
while read -r host port; do
    probe "$i" "$host" "$port" &
    i=$((i+1))
done
wait
rm -f "$dns"
"""


def probe(client: docker.DockerClient, source_id: str, probes: list[Probe]) -> list[Answer]:
    """Open a TCP connection from inside `source_id` to each probe's host and port, all at once
    (PROBE_SCRIPT); `served_by` is the name of the stand-in that answered, if any."""
    if not probes:
        return []
    lines = "\n".join(f"{p.host} {p.port}" for p in probes) + "\n"
    names = sorted({p.host for p in probes if not re.fullmatch(r"[0-9.]+", p.host)})
    script = f"NAMES={shlex.quote(' '.join(names))}\nprintf '%s' {shlex.quote(lines)} | {{ {PROBE_SCRIPT} }}"
    result = client.api.exec_create(source_id, ["/bin/sh", "-c", script], stdout=True, stderr=True)
    output = client.api.exec_start(result["Id"]).decode(errors="replace")
    results: dict[int, tuple[bool, str]] = {}
    for line in output.splitlines():
        index, _, rest = line.partition(" ")
        match = re.search(r"(?:^|\s)rc=(\d+)\s*$", rest)
        if not index.isdigit() or not match:
            continue
        body = rest[: match.start()].strip()
        results[int(index)] = (int(match.group(1)) != 1, body)
    answers = []
    for i, p in enumerate(probes):
        reached, body = results.get(i, (False, ""))
        answers.append(Answer(p, reached=reached, served_by=body if reached else ""))
    return answers
