"""Containers are stopped, not killed: when the provider deletes (or replaces) a long-running
container it stops it with destroy_grace_seconds as the timeout, 0 when unset, i.e. killed at once
(kreuzwerker/terraform-provider-docker v4.5.0 F:1085-1098); the engine's own stops (daemon
shutdown, `docker stop`) use stop_timeout (Config.StopTimeout).

Each kind is created from the plan on the engine with a stand-in that, on its stop signal, takes
STOP_SECONDS to shut down cleanly; the provider's Delete must let it finish (exit 0, "clean exit")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from oduflow_iac.offline import harness
from tests.docker import topology
from tests.docker.conftest import Images, clean_engine
from tests.docker.topology import Built

STOP_SECONDS = 2
# The shortest grace each kind must get (the design: PostgreSQL 60 s, Odoo and Traefik 30 s);
# any other long-running container at least enough for the stand-in's clean stop.
MIN_GRACE = {"database": 60, "odoo": 30, "proxy": 30}
LONG_RUNNING_ROLES = ("database", "odoo", "proxy", "db-proxy", "docker-proxy", "backup")

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def base(
    docker_client: docker.DockerClient,
    images: Images,
    three_team_plan: harness.PlannedRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Built]:
    """The plan's networks and volumes, once for the module; each test adds one container."""
    clean_engine(docker_client)
    built = topology.build(
        docker_client, three_team_plan, images, tmp_path_factory.mktemp("host"), standin=False, only=[]
    )
    yield built
    built.remove()
    clean_engine(docker_client)


@pytest.mark.parametrize("role", LONG_RUNNING_ROLES)
def test_deleting_a_container_lets_it_stop_cleanly(
    base: Built, images: Images, three_team_plan: harness.PlannedRun, role: str, tmp_path: Path
) -> None:
    engine = base.client
    candidates = [c for c in topology.containers(three_team_plan) if c.role == role]
    assert candidates, f"the plan has no container with label oduflow.role={role}"
    c = candidates[0]
    minimum = MIN_GRACE.get(role, STOP_SECONDS + 1)
    grace = int(c.inputs.get("destroyGraceSeconds") or 0)
    stop_timeout = int(c.inputs.get("stopTimeout") or 0)
    topology.build(
        engine,
        three_team_plan,
        images,
        tmp_path,
        standin=False,
        only=[c.name],
        built=base,
        env=[f"ODUFLOW_STANDIN_STOP_SECONDS={STOP_SECONDS}"],
        wait=False,
    )
    try:
        assert c.name not in base.refused, f"{c.name}: the engine refuses to create it: {base.refused[c.name]}"
        cid = base.ids[c.name]
        time.sleep(0.5)  # the stand-in has set its traps
        started = time.monotonic()
        # The provider's Delete up to the removal (F:1085-1098): ContainerStop, timeout
        # destroy_grace_seconds (0 when unset).
        engine.api.stop(cid, timeout=grace)
        elapsed = time.monotonic() - started
        info = engine.api.inspect_container(cid)
        logs = engine.api.logs(cid).decode(errors="replace")
        signal = (c.inputs.get("stopSignal") or "SIGTERM").removeprefix("SIG")
        assert "clean exit" in logs and info["State"]["ExitCode"] == 0, (
            f"{c.name}: killed {elapsed:.1f} s after the stop signal (exit code {info['State']['ExitCode']}, "
            f"destroy_grace_seconds {c.inputs.get('destroyGraceSeconds')!r}) while it needed {STOP_SECONDS} s"
        )
        assert f"got SIG{signal}" in logs, f"{c.name} never got SIG{signal}: {logs[-300:]!r}"
        assert elapsed >= STOP_SECONDS
        assert grace >= minimum, f"{c.name}: destroy_grace_seconds {grace}, at least {minimum} s needed"
        assert info["Config"].get("StopTimeout") == stop_timeout >= minimum, (
            f"{c.name}: stop_timeout {c.inputs.get('stopTimeout')!r}: the engine's own stops (daemon "
            f"shutdown, `docker stop`) give it less than {minimum} s"
        )
    finally:
        if c.name in base.ids:
            base.remove_container(c.name)
        base.refused.pop(c.name, None)
