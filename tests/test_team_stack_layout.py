"""The per-team layout under the SDK's mocks: a team-N stack reads the shared stack through a
StackReference, builds its providers from it, and declares nothing of SharedInfra."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from oduflow_iac import program
from oduflow_iac.config import Config, load_config
from oduflow_iac.offline.harness import PlannedRun, Secret, _fake, reveal, run_offline, shared_stack_outputs
from oduflow_iac.offline.plan import plan_run
from oduflow_iac.stack_settings import read_stack_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = "org/oduflow/shared"
REF_URN = f"urn:pulumi:team-1::oduflow::pulumi:pulumi:StackReference::{SHARED}"

# Fallbacks that differ from the reference's outputs, so a value read from the reference shows.
CONFIG = """
[platform]
docker_host = "ssh://ops@fallback.example"
postgres_admin_host = "10.9.9.9"
postgres_port = 15432
network = "fallback-net"

[team.1]
hostname = "team-a.example.com"
auth_token = "token-a"
ui_password = "secret:team1-ui"
port_range = [50000, 50050]

[team.1.templates.default]
odoo_image = "odoo:17.0"

[[team.1.environments]]
branch = "main"
type = "production"
template = "default"

[[team.1.environments]]
branch = "feature/login"
template = "default"

[team.2]
hostname = "team-b.example.com"
auth_token = "token-b"
ui_password = "pass-b"
port_range = [50050, 50100]

[[team.2.environments]]
branch = "main"
odoo_image = "odoo:18.0"
"""

SECRETS = {"oduflow-secrets:team1-ui": "pw"}
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Config:
    return load_config(write_config(CONFIG))


def run_layout(config: Config, settings: program.ProgramSettings, stack: str) -> PlannedRun:
    return run_offline(
        lambda: program.build(config, settings), stack=stack, config=dict(SECRETS), secret_keys=list(SECRETS)
    )


@pytest.fixture
def team_run(config: Config) -> PlannedRun:
    settings = program.ProgramSettings(docker_host="unix:///ignored.sock", layout="team", team="1", shared_stack=SHARED)
    return run_layout(config, settings, "team-1")


def test_providers_are_built_from_the_shared_stack_reference(team_run: PlannedRun) -> None:
    outputs = shared_stack_outputs(SHARED)
    [docker] = team_run.of_type("pulumi:providers:docker")
    [pg] = team_run.of_type("pulumi:providers:postgresql")
    assert docker.name == "shared-docker" and pg.name == "shared-postgresql"
    assert docker.inputs["host"] == outputs["dockerHost"]
    assert pg.inputs["host"] == outputs["postgresAdminHost"]
    assert pg.inputs["port"] == str(outputs["postgresAdminPort"])
    # the provider logs in as the team's provisioning role, not as the superuser; its password
    # stays a secret all the way from the reference
    mine = outputs_for_team_1()["teamDatabases"]["1"]
    assert pg.inputs["username"] == "oduflow_team_1_admin" == mine["admin"]
    assert pg.inputs["superuser"] == "false"
    assert pg.inputs["password"] == Secret(mine["adminPassword"])
    for provider in (docker, pg):
        assert REF_URN in provider.dependencies


def outputs_for_team_1() -> dict[str, object]:
    return shared_stack_outputs(SHARED, ["1"])


def test_a_team_stack_never_sees_the_superuser_password(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every output the team stack's program asks the shared stack for, recorded.
    read: list[str] = []
    for method in ("get_output", "require_output", "get_output_details"):
        original = getattr(pulumi.StackReference, method)

        def spy(self: pulumi.StackReference, name: str, _original: Any = original) -> Any:
            read.append(name)
            return _original(self, name)

        monkeypatch.setattr(pulumi.StackReference, method, spy)
    settings = program.ProgramSettings(docker_host="unix:///ignored.sock", layout="team", team="1", shared_stack=SHARED)
    team_run = run_layout(config, settings, "team-1")
    assert read and set(read) <= {"dockerHost", "networkName", "postgresAdminHost", "postgresAdminPort",
                                  "teamDatabases"}, read  # fmt: skip
    # ... and the shared stack does not export the superuser password at all
    shared = run_layout(config, program.ProgramSettings(docker_host="unix:///d.sock", layout="shared"), "shared")
    assert "postgresPassword" not in shared.outputs
    # the mocks' value of the superuser's RandomPassword appears in none of the shared stack's outputs
    assert [r.name for r in shared.of_type(RANDOM_PASSWORD) if r.name == "shared-postgres-password"]
    superuser_password = _fake(f"{RANDOM_PASSWORD}::shared-postgres-password", "result", 32)
    db = next(r for r in shared.of_type("docker:index/container:Container") if r.inputs.get("name") == "oduflow-db")
    assert f"POSTGRES_PASSWORD={superuser_password}" in reveal(db.inputs["envs"])  # the right value
    assert superuser_password not in json.dumps(reveal(shared.outputs))
    assert superuser_password not in json.dumps([reveal(r.inputs) for r in team_run.resources])
    # no team-stack resource runs as the superuser: the only postgresql provider is the team's own
    [pg] = team_run.of_type("pulumi:providers:postgresql")
    assert pg.inputs["username"] == "oduflow_team_1_admin" and pg.inputs["superuser"] == "false"
    assert not [r for r in team_run.resources if r.name.startswith("shared-postgres-")]


def test_a_team_stack_declares_no_role(team_run: PlannedRun) -> None:
    # roles (and their limits) are the shared stack's: a team stack cannot raise its own quota
    assert not team_run.of_type("postgresql:index/role:Role")
    owners = {r.inputs["owner"] for r in team_run.of_type("postgresql:index/database:Database")}
    assert owners == {"oduflow_team_1"}


def test_team_resources_use_those_providers(team_run: PlannedRun) -> None:
    urns = {r.name: r.urn for r in team_run.resources if r.type.startswith("pulumi:providers:")}
    custom = [r for r in team_run.resources if r.custom and not r.type.startswith("pulumi:providers:")]
    assert custom
    for resource in custom:
        if resource.type.startswith("docker:"):
            assert resource.provider == f"{urns['shared-docker']}::shared-docker-id", resource.urn
        elif resource.type.startswith("postgresql:"):
            assert resource.provider == f"{urns['shared-postgresql']}::shared-postgresql-id", resource.urn
    # the team's PostgreSQL proxy joins the database network the shared stack exports, not the
    # config's fallback; Odoo joins its team's network only
    proxy = next(r for r in team_run.of_type("docker:index/container:Container") if r.name.endswith("-db-proxy"))
    networks = [n["name"] for n in proxy.inputs["networksAdvanced"]]
    assert networks == ["oduflow-1-net", shared_stack_outputs(SHARED)["networkName"]]
    assert "fallback-net" not in networks
    odoo = next(r for r in team_run.of_type("docker:index/container:Container") if r.name.endswith("-main-odoo"))
    assert [n["name"] for n in odoo.inputs["networksAdvanced"]] == ["oduflow-1-net"]


def test_nothing_of_shared_infra_and_only_this_team(team_run: PlannedRun) -> None:
    types = {r.type for r in team_run.resources}
    assert "oduflow:index:SharedInfra" not in types
    assert [r.name for r in team_run.of_type("oduflow:index:TeamStack")] == ["team-1"]
    container_names = {r.inputs.get("name") for r in team_run.of_type("docker:index/container:Container")}
    assert "oduflow-db" not in container_names and "oduflow-traefik" not in container_names
    assert all(not r.name.startswith("team-2") for r in team_run.resources)
    assert all(not r.name.startswith("shared-") or r.type.startswith("pulumi:providers:") for r in team_run.resources)
    assert not team_run.of_type("docker:index/network:Network") or all(
        r.inputs["name"] == "oduflow-1-net" for r in team_run.of_type("docker:index/network:Network")
    )
    assert set(team_run.outputs["environments"]) == {"1"}


def test_production_stays_protected_in_a_team_stack(team_run: PlannedRun) -> None:
    db = next(r for r in team_run.of_type("postgresql:index/database:Database") if r.inputs["name"] == "oduflow_1_main")
    assert db.protect


def test_the_shared_stack_exports_what_the_reference_reads(config: Config) -> None:
    settings = program.ProgramSettings(docker_host="unix:///var/run/docker.sock", layout="shared")
    run = run_layout(config, settings, "shared")
    assert set(run.outputs) == set(shared_stack_outputs(SHARED))
    assert "postgresPassword" not in run.outputs
    # one entry per team of the config, a secret, with the team role and its provisioning role
    databases = run.outputs["teamDatabases"]
    assert isinstance(databases, Secret)
    assert sorted(databases.value) == ["1", "2"]
    assert databases.value["2"]["role"] == "oduflow_team_2" and databases.value["2"]["admin"] == "oduflow_team_2_admin"
    roles = {r.inputs["name"]: r.inputs for r in run.of_type("postgresql:index/role:Role")}
    admin = roles["oduflow_team_1_admin"]
    assert admin["createDatabase"] is True and admin.get("createRole") in (None, False)
    assert admin.get("superuser") in (None, False)
    assert admin["roles"] == ["oduflow_team_1", "oduflow_tenant_admins"]
    assert roles["oduflow_team_1"]["roles"] == ["oduflow_tenants"]
    assert not run.of_type("oduflow:index:TeamStack")
    assert run.of_type("oduflow:index:SharedInfra")


def test_a_team_stack_without_shared_stack_is_refused(config: Config) -> None:
    settings = program.ProgramSettings(docker_host="unix:///x.sock", layout="team", team="1")
    with pytest.raises(Exception, match="oduflow:sharedStack"):
        run_layout(config, settings, "team-1")


# --------------------------------------------------------------------------------------------
# The stack files of the repository


def test_the_shipped_stack_files_describe_the_split_layout() -> None:
    shared = read_stack_settings("shared", ROOT)
    team = read_stack_settings("team-1", ROOT)
    assert shared.get("layout") == "shared"
    assert team.get("layout") == "team" and team.get("team") == "1"
    assert team.get("sharedStack") == f"organization/{team.project}/shared"
    assert team.get("configFile") == shared.get("configFile")


@pytest.mark.parametrize(
    ("stack", "team_stacks"), [("shared", []), ("team-1", ["team-1"]), ("local", ["team-1", "team-2"])]
)
def test_the_shipped_stacks_plan_offline(stack: str, team_stacks: list[str]) -> None:
    config, settings = load_config(ROOT / "examples" / "oduflow.toml"), read_stack_settings(stack, ROOT)
    run, _missing = plan_run(config, settings)
    assert sorted(r.name for r in run.of_type("oduflow:index:TeamStack")) == team_stacks
    assert bool(run.of_type("oduflow:index:SharedInfra")) == (stack != "team-1")
