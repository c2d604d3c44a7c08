"""A second `pulumi up` changes nothing: every container, network and volume of the plan, created
on a real engine the way the Docker provider creates it, then read back the way the provider's
Read does (tests/docker/provider.py, kreuzwerker/terraform-provider-docker v4.5.0), must give back
exactly what the plan sends. A ForceNew input read back differently replaces the container on
every `up` (pulumi-docker deletes first: downtime); any other one is a perpetual update.

Also: the engine applies what the plan declares (memory, swap, CPUs, no-new-privileges, health
checks) and the one-shots end as the program expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import pytest

from oduflow_iac.offline import harness
from tests.docker import provider, standins, topology
from tests.docker.conftest import Images, clean_engine
from tests.docker.topology import Built, PlannedContainer

ONE_SHOT_ROLES = ("init", "template-init", "addons-fetch", "refresh", "upgrade")

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def deployed(
    docker_client: docker.DockerClient,
    images: Images,
    three_team_plan: harness.PlannedRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Built]:
    clean_engine(docker_client)
    built = topology.build(docker_client, three_team_plan, images, tmp_path_factory.mktemp("host"), standin=False)
    try:
        yield built
    finally:
        built.remove()
        clean_engine(docker_client)


def of_role(built: Built, role: str) -> list[PlannedContainer]:
    found = [c for c in built.plan if c.role == role]
    assert found, f"the plan has no container with label oduflow.role={role}"
    return found


def compared_inputs(built: Built, c: PlannedContainer, images: Images) -> tuple[dict[str, Any], list[str]]:
    """The inputs as the harness sent them (host paths, publish address made safe), the image being
    the stand-in's tag; and what differs from the plan because of the test engine."""
    applied = built.applied[c.name]
    inputs = dict(applied.inputs)
    notes = list(applied.deviations)
    if standins.is_digest_pinned(c.inputs["image"]):
        notes.append(f"image {c.inputs['image']} stood in for by the tag {images.local(c.inputs['image'])}")
    inputs["image"] = images.local(c.inputs["image"])
    return inputs, notes


@pytest.mark.parametrize("role", topology.ALL_ROLES)
def test_reading_back_a_container_gives_what_the_plan_sends(deployed: Built, images: Images, role: str) -> None:
    problems = []
    for c in of_role(deployed, role):
        if c.name in deployed.refused:
            problems.append(f"{c.name}: the engine refuses it (`pulumi up` fails): {deployed.refused[c.name]}")
            continue
        inputs, notes = compared_inputs(deployed, c, images)
        state = provider.read_container(deployed.container(c.name), inputs)
        for drift in provider.container_drift(inputs, state, ignore=frozenset(c.ignore_changes)):
            problems.append(f"{c.name}: {drift}" + (f" [test engine: {'; '.join(notes)}]" if notes else ""))
    assert not problems, "a refresh right after `up` would show:\n" + "\n".join(problems)


@pytest.mark.parametrize("role", ONE_SHOT_ROLES)
def test_one_shots_end_and_stay_ended(deployed: Built, role: str) -> None:
    """An attached one-shot: Create waits for its end and records the exit code (F:631-673); with
    must_run false a refresh leaves it stopped (F:815-824), and no install log goes to the state."""
    problems = []
    for c in of_role(deployed, role):
        if c.name in deployed.refused:
            problems.append(f"{c.name}: the engine refuses it (`pulumi up` fails): {deployed.refused[c.name]}")
            continue
        state = provider.read_container(deployed.container(c.name), deployed.applied[c.name].inputs)
        if not c.inputs.get("attach"):
            problems.append(f"{c.name}: not attached, `up` would not wait for it")
        if c.inputs.get("mustRun", True):
            problems.append(f"{c.name}: must_run is not false: every refresh flips it and `up` restarts (re-runs) it")
        if state.get("exitCode") != 0:
            problems.append(f"{c.name}: exit code {state.get('exitCode')} with every program succeeding")
        if "mustRun" in state:
            problems.append(f"{c.name}: a refresh sets must_run to {state['mustRun']}")
        if c.inputs.get("logs"):
            problems.append(f"{c.name}: logs=true stores its whole output in the state (container_logs)")
    assert not problems, "\n".join(problems)


def test_long_running_containers_keep_running(deployed: Built) -> None:
    problems = []
    for c in deployed.plan:
        if c.inputs.get("attach") or c.name in deployed.refused:  # refusals: reported per kind
            continue
        container = deployed.container(c.name)
        state = provider.read_container(container, deployed.applied[c.name].inputs)
        if container.status != "running":
            problems.append(f"{c.name} ({c.role}) is {container.status}: {container.logs()[-300:]!r}")
        if state.get("mustRun") is False:
            problems.append(f"{c.name}: a refresh would set must_run false and `up` restart it")
    assert not problems, "\n".join(problems)


def exec_output(built: Built, name: str, command: str) -> str:
    result = built.client.api.exec_create(built.ids[name], ["/bin/sh", "-c", command])
    return built.client.api.exec_start(result["Id"]).decode(errors="replace").strip()


def test_the_engine_applies_limits_and_hardening(deployed: Built) -> None:
    """Every container has a memory limit, no swap beyond it (memory_swap = memory) and
    no-new-privileges, and the engine enforces them (read from inside the running ones)."""
    problems = []
    for c in deployed.plan:
        if c.name not in deployed.ids:  # refused at ContainerCreate: reported per kind
            continue
        host = deployed.client.api.inspect_container(deployed.ids[c.name])["HostConfig"]
        memory = int(c.inputs.get("memory") or 0)
        swap = int(c.inputs.get("memorySwap") or 0)
        if memory <= 0:
            problems.append(f"{c.name} ({c.role}): no memory limit")
        elif host["Memory"] != memory * provider.MIB:
            problems.append(f"{c.name}: the engine's memory limit is {host['Memory']}, not {memory} MiB")
        if memory > 0 and swap != memory:
            problems.append(
                f"{c.name} ({c.role}): memory_swap {c.inputs.get('memorySwap')!r}, not the memory limit {memory} "
                f"(the engine then allows {host['MemorySwap'] // provider.MIB} MiB of memory+swap)"
            )
        if "no-new-privileges:true" not in (c.inputs.get("securityOpts") or []):
            problems.append(f"{c.name} ({c.role}): no security_opts no-new-privileges:true")
        if c.inputs.get("cpus"):
            nanos = provider.parse_cpus(str(c.inputs["cpus"]))
            if host["NanoCpus"] != nanos:
                problems.append(f"{c.name}: the engine's CPU limit is {host['NanoCpus']} ns/s, not {nanos}")
        if c.name not in deployed.refused and deployed.container(c.name).status == "running":
            nnp = exec_output(deployed, c.name, "grep NoNewPrivs /proc/self/status")
            if "no-new-privileges:true" in (c.inputs.get("securityOpts") or []) and not nnp.endswith("1"):
                problems.append(f"{c.name}: no-new-privileges requested but the process has {nnp!r}")
    assert not problems, "\n".join(problems)


def test_networks_and_volumes_read_back_as_sent(deployed: Built, three_team_plan: harness.PlannedRun) -> None:
    problems = []
    for r in three_team_plan.of_type(topology.NETWORK):
        inputs = harness.reveal(r.inputs)
        state = provider.read_network(deployed.client, deployed.networks[inputs["name"]])
        sent_labels = sorted(inputs.get("labels") or [], key=lambda item: item["label"])
        if state["labels"] != sent_labels:
            problems.append(f"network {inputs['name']}: labels read back {state['labels']} (ForceNew)")
        if inputs.get("driver") and state["driver"] != inputs["driver"]:
            problems.append(f"network {inputs['name']}: driver read back {state['driver']!r} (ForceNew)")
        if inputs.get("options") and state["options"] != inputs["options"]:
            problems.append(f"network {inputs['name']}: options read back {state['options']} (ForceNew)")
        if inputs.get("ipamConfigs"):
            sent = [{k: v for k, v in c.items() if v} for c in inputs["ipamConfigs"]]
            if state["ipamConfigs"] != sent:
                problems.append(f"network {inputs['name']}: ipam_config read back {state['ipamConfigs']} (ForceNew)")
        if (inputs.get("ipamDriver") or "default") != state["ipamDriver"]:
            problems.append(f"network {inputs['name']}: ipam_driver read back {state['ipamDriver']!r} (ForceNew)")
    for r in three_team_plan.of_type(topology.VOLUME):
        inputs = harness.reveal(r.inputs)
        state = provider.read_volume(deployed.client, inputs["name"])
        sent_labels = sorted(inputs.get("labels") or [], key=lambda item: item["label"])
        if state["labels"] != sent_labels:
            problems.append(f"volume {inputs['name']}: labels read back {state['labels']} (ForceNew)")
        if (inputs.get("driverOpts") or {}) != state["driverOpts"]:
            problems.append(f"volume {inputs['name']}: driver_opts read back {state['driverOpts']} (ForceNew)")
    assert not problems, "\n".join(problems)
