"""The isolation checks can pass and can fail: on the engine, the reference topology
(tests/docker/reference.py, two teams) has no breach; one extra network connection (team 2's Odoo
joining team 1's network) is reported as exactly that breach, and PostgreSQL published to a team
network is reported too. Guards test_isolation.py against checks that no topology could meet."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from oduflow_iac import naming
from oduflow_iac.offline import harness
from tests.docker import reference, test_isolation, topology
from tests.docker.conftest import Images, clean_engine
from tests.docker.topology import Built

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def reference_platform(
    docker_client: docker.DockerClient,
    images: Images,
    three_team_plan: harness.PlannedRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Built]:
    clean_engine(docker_client)
    run = reference.reference(three_team_plan, teams={"1", "2"})
    built = topology.build(docker_client, run, images, tmp_path_factory.mktemp("host"), standin=True)
    try:
        yield built
    finally:
        built.remove()
        clean_engine(docker_client)


def test_the_reference_topology_meets_the_matrix(reference_platform: Built) -> None:
    found = (
        test_isolation.violations(reference_platform)
        + test_isolation.routing_violations(reference_platform)
        + test_isolation.docker_api_violations(reference_platform.plan)
    )
    assert not found, "\n".join(found)


def test_one_extra_connection_is_reported(reference_platform: Built) -> None:
    intruder = next(c for c in reference_platform.plan if c.role == "odoo" and c.team == "2")
    database = next(c for c in reference_platform.plan if c.role == "database")
    api = reference_platform.client.api
    team_one = reference_platform.networks[naming.team_network_name("1")]
    api.connect_container_to_network(reference_platform.ids[intruder.name], team_one)
    api.connect_container_to_network(reference_platform.ids[database.name], team_one)
    try:
        found = test_isolation.violations(reference_platform)
    finally:
        api.disconnect_container_from_network(reference_platform.ids[intruder.name], team_one)
        api.disconnect_container_from_network(reference_platform.ids[database.name], team_one)
    assert any(line.startswith(f"{intruder.name} (odoo, team 2) reaches another team's odoo") for line in found), found
    assert any("team 1) reaches another team's odoo " + intruder.name in line for line in found), found
    assert any("team 1) reaches PostgreSQL directly" in line for line in found), found
    unexpected = [line for line in found if intruder.name not in line and "PostgreSQL directly" not in line]
    assert not unexpected, unexpected
