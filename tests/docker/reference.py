"""A reference topology that meets the isolation matrix, made from any plan (docs/architecture.md,
"Networks"): each team's containers on the team's network only, one PostgreSQL proxy per team
(team network + internal database network) as their database endpoint, Traefik on the host
network with its internal entrypoint on loopback, the Docker socket behind a proxy with no network.

It exists to check the checker: tests/docker/test_harness.py builds it on the engine and expects
no breach, then opens one hole and expects exactly that breach. The components are tested by
test_isolation.py on their own plan, never on this one.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from oduflow_iac import naming
from oduflow_iac.offline import harness
from tests.docker import topology

PROXY_IMAGE = "oduflow-test/tcp-proxy:1"
SOCKET_PROXY_IMAGE = "oduflow-test/socket-proxy:1"
SOCKET_VOLUME = "oduflow-test-docker-proxy"


def _labels(**values: str) -> list[dict[str, str]]:
    return [{"label": k, "value": v} for k, v in values.items()]


def reference(run: harness.PlannedRun, teams: set[str] | None = None) -> harness.PlannedRun:
    """`run` rearranged into the reference topology (only `teams`, when given)."""
    out: list[harness.PlannedResource] = []
    template = next(r for r in run.resources if r.type == topology.CONTAINER)
    kept_teams: set[str] = set()
    database = naming.SHARED_DB_CONTAINER
    for r in run.resources:
        if r.type == topology.NETWORK:
            inputs = harness.reveal(r.inputs)
            team = topology.labels_of(inputs).get(naming.LABEL_TEAM)
            if teams is not None and team and team not in teams:
                continue
            if inputs["name"] == naming.SHARED_NETWORK:
                inputs = {**inputs, "internal": True}
            out.append(dataclasses.replace(r, inputs=inputs))
            continue
        if r.type != topology.CONTAINER:
            out.append(r)
            continue
        inputs = copy.deepcopy(harness.reveal(r.inputs))
        labels = topology.labels_of(inputs)
        role, team = labels.get(naming.LABEL_ROLE), labels.get(naming.LABEL_TEAM)
        if role in ("db-proxy", "docker-proxy") or (teams is not None and team and team not in teams):
            continue
        if role in topology.TENANT_ROLES and team:
            kept_teams.add(team)
            network = naming.team_network_name(team)
            inputs["networksAdvanced"] = [{"name": network}]
            inputs.pop("networkMode", None)
            inputs["envs"] = [_endpoint(e, team) for e in inputs.get("envs") or []]
            inputs["labels"] = [
                {**item, "value": network} if item["label"] == "traefik.docker.network" else item
                for item in inputs["labels"]
            ]
        elif role == "database":
            database = inputs["name"]
            inputs["networksAdvanced"] = [{"name": naming.SHARED_NETWORK}]
        elif role == "proxy":
            inputs.pop("networksAdvanced", None)
            inputs.pop("ports", None)
            inputs["networkMode"] = "host"
            inputs["command"] = [
                arg
                for arg in inputs.get("command") or []
                if not arg.startswith(("--providers.docker.network", "--entrypoints.traefik."))
            ] + ["--entrypoints.traefik.address=127.0.0.1:8080"]
            inputs["volumes"] = [{"volumeName": SOCKET_VOLUME, "containerPath": "/run/oduflow-docker"}]
        out.append(dataclasses.replace(r, inputs=inputs))

    def add(name: str, inputs: dict[str, Any]) -> None:
        urn = template.urn.rsplit("::", 1)[0] + "::" + name
        out.append(dataclasses.replace(template, urn=urn, name=name, inputs=inputs, ignore_changes=[]))

    for team in sorted(kept_teams):
        add(
            f"reference-{team}-pg",
            {
                "name": _proxy_name(team),
                "image": PROXY_IMAGE,
                "command": ["tcp-listen:5432,fork,reuseaddr", f"tcp-connect:{database}:5432"],
                "networksAdvanced": [{"name": naming.team_network_name(team)}, {"name": naming.SHARED_NETWORK}],
                "labels": _labels(**{naming.LABEL_TEAM: team, naming.LABEL_ROLE: "db-proxy"}),
            },
        )
    add(
        "reference-docker-proxy",
        {
            "name": "oduflow-test-docker-proxy",
            "image": SOCKET_PROXY_IMAGE,
            "networkMode": "none",
            "volumes": [
                {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock", "readOnly": True},
                {"volumeName": SOCKET_VOLUME, "containerPath": "/run/oduflow-docker"},
            ],
            "labels": _labels(**{naming.LABEL_ROLE: "docker-proxy"}),
        },
    )
    return dataclasses.replace(run, resources=out)


def _proxy_name(team: str) -> str:
    return f"oduflow-{team}-pg"


def _endpoint(env: Any, team: str) -> Any:
    """HOST/PGHOST pointing at the team's proxy instead of PostgreSQL."""
    if isinstance(env, str):
        key = env.partition("=")[0]
        if key in topology.DB_ENV_HOST:
            return f"{key}={_proxy_name(team)}"
    return env
