"""Fixtures of the tests that run against a real Docker engine.

The engine comes from ODUFLOW_TEST_DOCKER_HOST (unix://...), which scripts/with-docker.sh sets up
with a throw-away dockerd in a network namespace of its own. Without it the tests skip, saying
so, except under CI=true where a missing engine fails them: CI must never pass by skipping.

One engine and one stand-in image build per session; every test removes what it created.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import docker
import docker.errors
import pytest

from oduflow_iac.offline import harness
from oduflow_iac.offline.plan import plan_config
from tests.docker import standins, topology

DOCKER_VARIABLE = "ODUFLOW_TEST_DOCKER_HOST"
DATA = Path(__file__).resolve().parent / "data"
THREE_TEAMS = DATA / "three-teams.toml"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    url = os.environ.get(DOCKER_VARIABLE, "")
    if not url:
        reason = (
            f"{DOCKER_VARIABLE} is not set: run the tests through scripts/with-docker.sh "
            "(it starts a throw-away Docker engine)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    client = docker.DockerClient(base_url=url, version="auto", timeout=120)
    try:
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"{DOCKER_VARIABLE} is set but the engine cannot be reached: {exc}", pytrace=False)
    yield client
    client.close()


class Images:
    """The stand-in image, imported once, tagged as each image reference a test asks for."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.tags: dict[str, str] = {}
        self._lock = threading.Lock()
        standins.build(client, [])

    def local(self, reference: str) -> str:
        with self._lock:
            if reference not in self.tags:
                local = standins.local_reference(reference)
                repository, tag = local.rsplit(":", 1)
                self.client.images.get(standins.BASE).tag(repository, tag)
                self.tags[reference] = local
            return self.tags[reference]


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> Images:
    return Images(docker_client)


@cache
def _plan(path: str, digest: str) -> harness.PlannedRun:
    del digest  # part of the cache key only
    return plan_config(path)


def plan_of(path: Path) -> harness.PlannedRun:
    """The planned run of the config at `path` (cached by content)."""
    return _plan(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.fixture(scope="session")
def three_team_plan() -> harness.PlannedRun:
    return plan_of(THREE_TEAMS)


@pytest.fixture(scope="session")
def four_team_plan(tmp_path_factory: pytest.TempPathFactory) -> harness.PlannedRun:
    path = tmp_path_factory.mktemp("four-teams") / "oduflow.toml"
    path.write_text(THREE_TEAMS.read_text(encoding="utf-8") + topology.FOURTH_TEAM, encoding="utf-8")
    return plan_of(path)


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """Where the plan's host paths are replaced by placeholder files."""
    path = tmp_path / "host"
    path.mkdir()
    return path


def clean_engine(client: docker.DockerClient) -> None:
    """Remove every container, non-predefined network and volume (the images stay for the session)."""
    for container in client.containers.list(all=True):
        container.remove(force=True, v=True)
    for network in client.networks.list():
        if network.name not in ("bridge", "host", "none"):
            topology.remove_network(client, network.id)
    for volume in client.volumes.list():
        volume.remove(force=True)
