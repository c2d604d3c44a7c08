"""The program on several servers, under the SDK's mocks: per server its SharedInfra and providers,
one TeamStack per team and server, DNS at each server's address, server and team stacks reading
each other, and zero churn for everything a change does not concern."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import naming, program, tunnel
from oduflow_iac.config import Config, load_config
from oduflow_iac.offline.harness import PlannedResource, PlannedRun, reveal, run_offline
from oduflow_iac.offline.plan import PlanResult, placement_of, plan_run, render_json, render_markdown, server_use

ROOT = Path(__file__).resolve().parent.parent
FLEET = ROOT / "tests" / "data" / "fleet" / "oduflow.toml"
CONTAINER = "docker:index/container:Container"
DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord"
ADDRESSES = {"default": "203.0.113.10", "s2": "203.0.113.20", "s3": "203.0.113.30"}
HOSTS = {
    "default": "unix:///var/run/docker.sock",
    "s2": "ssh://deploy@s2.example.com",
    "s3": "ssh://deploy@s3.example.com:2222",
}


@pytest.fixture(scope="module")
def fleet() -> Config:
    return load_config(FLEET)


@pytest.fixture(scope="module")
def fleet_run(fleet: Config) -> PlannedRun:
    return plan_run(fleet, None)[0]


def copy_fleet(tmp_path: Path, edit: Callable[[str], str] = lambda s: s) -> Path:
    path = tmp_path / "oduflow.toml"
    path.write_text(edit(FLEET.read_text()), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Where each resource goes


def component_server(run: PlannedRun, r: PlannedResource) -> tuple[str | None, str | None]:
    """(server, team) from the resource's ancestors' names alone: SharedInfra `shared@s2`,
    TeamStack `team-1@s2`, TeamDatabaseRoles `team-1-database-roles@s2`."""
    by_urn = run.by_urn()
    node: PlannedResource | None = r
    while node is not None:
        kind = node.type.removeprefix("oduflow:index:")
        if kind == "TeamStack":
            base, server = node.name.split("@") if "@" in node.name else (node.name, "default")
            return server, base.removeprefix("team-")
        if kind in ("SharedInfra", "TeamDatabaseRoles"):
            return (node.name.split("@")[1] if "@" in node.name else "default"), None
        node = by_urn.get(node.parent) if node.parent else None
    return None, None


def create_urn_of(team_stack: str) -> str:
    return f"urn:pulumi:local::oduflow::oduflow:index:TeamStack::{team_stack}"


def provider_servers(run: PlannedRun) -> dict[str, str]:
    """Each provider reference (`URN::ID`) -> the server whose SharedInfra declares it."""
    out = {}
    for r in run.resources:
        if r.type.startswith("pulumi:providers:"):
            server, _team = component_server(run, r)
            assert server is not None, r.urn
            out[f"{r.urn}::{r.name}-id"] = server
    return out


def test_each_server_has_its_own_shared_infra_and_providers(fleet_run: PlannedRun) -> None:
    shared = sorted(r.name for r in fleet_run.of_type("oduflow:index:SharedInfra"))
    assert shared == ["shared", "shared@s2", "shared@s3"]
    dockers = {r.name: r.inputs["host"] for r in fleet_run.of_type("pulumi:providers:docker")}
    assert dockers == {
        "shared-docker": HOSTS["default"],
        "shared@s2-docker": HOSTS["s2"],
        "shared@s3-docker": HOSTS["s3"],
    }
    for kind in ("postgresql", "cloudflare", "aws"):
        names = sorted(r.name for r in fleet_run.of_type(f"pulumi:providers:{kind}"))
        assert names == [f"shared-{kind}", f"shared@s2-{kind}", f"shared@s3-{kind}"]
    # each server's PostgreSQL provider logs in with that server's own superuser password
    passwords = {reveal(r.inputs["password"]) for r in fleet_run.of_type("pulumi:providers:postgresql")}
    assert len(passwords) == 3


def test_one_team_stack_per_team_and_server(fleet_run: PlannedRun) -> None:
    stacks = sorted(r.name for r in fleet_run.of_type("oduflow:index:TeamStack"))
    assert stacks == ["team-1", "team-1@s3", "team-2@s2", "team-3@s3", "team-4"]
    roles = sorted(r.name for r in fleet_run.of_type("oduflow:index:TeamDatabaseRoles"))
    assert roles == [
        "team-1-database-roles",
        "team-1-database-roles@s3",
        "team-2-database-roles@s2",
        "team-3-database-roles@s3",
        "team-4-database-roles",
    ]


def test_every_team_resource_goes_through_its_servers_providers(fleet_run: PlannedRun) -> None:
    servers = provider_servers(fleet_run)
    checked = 0
    for r in fleet_run.resources:
        server, _team = component_server(fleet_run, r)
        if r.type.startswith(("docker:", "postgresql:", "cloudflare:", "aws:")):
            assert r.provider is not None, r.urn  # never the default provider
            assert servers[r.provider] == server, (r.urn, r.provider)
            checked += 1
    assert checked > 100
    # and the plan's own placement agrees (what the table and the markdown group by)
    placement = placement_of(fleet_run)
    for r in fleet_run.resources:
        if r.custom and not r.type.startswith("random:"):
            assert placement[r.urn][0] == component_server(fleet_run, r)[0], r.urn


def test_each_environment_is_declared_on_its_server(fleet_run: PlannedRun) -> None:
    odoo = {
        reveal(r.inputs["name"]): component_server(fleet_run, r)
        for r in fleet_run.of_type(CONTAINER)
        if reveal(r.inputs["name"]).endswith("-odoo")
    }
    assert odoo == {
        "oduflow-1-main-odoo": ("s3", "1"),
        "oduflow-1-staging-odoo": ("default", "1"),
        "oduflow-1-feature-login-odoo": ("default", "1"),
        "oduflow-2-main-odoo": ("s2", "2"),
        "oduflow-2-develop-odoo": ("s2", "2"),
        "oduflow-3-main-odoo": ("s3", "3"),
        "oduflow-4-main-odoo": ("default", "4"),
    }
    # the template team 1's production is cloned from exists on s3 too; its network and proxy there
    names = {(reveal(r.inputs.get("name")), component_server(fleet_run, r)) for r in fleet_run.resources}
    for server in ("default", "s3"):
        assert ("oduflow_template_1_v17", (server, "1")) in names, server
        assert ("oduflow-1-net", (server, "1")) in names
        assert ("oduflow-1-pg", (server, "1")) in names


def test_dns_records_carry_their_servers_address(fleet_run: PlannedRun) -> None:
    records = {
        (reveal(r.inputs["name"]), reveal(r.inputs["content"])): component_server(fleet_run, r)
        for r in fleet_run.of_type(DNS_RECORD)
    }
    assert records == {
        ("team-a.example.com", ADDRESSES["default"]): ("default", "1"),
        ("*.team-a.example.com", ADDRESSES["default"]): ("default", "1"),
        # team 1's production is on s3: its own record beats the team's wildcard
        ("main.team-a.example.com", ADDRESSES["s3"]): ("s3", "1"),
        ("team-b.example.com", ADDRESSES["s2"]): ("s2", "2"),
        ("*.team-b.example.com", ADDRESSES["s2"]): ("s2", "2"),
        ("team-c.example.com", ADDRESSES["s3"]): ("s3", "3"),
        ("*.team-c.example.com", ADDRESSES["s3"]): ("s3", "3"),
        ("team-d.example.com", ADDRESSES["default"]): ("default", "4"),
        ("*.team-d.example.com", ADDRESSES["default"]): ("default", "4"),
    }


def test_backups_one_bucket_per_team_a_job_per_server_it_serves_on(fleet_run: PlannedRun) -> None:
    buckets = sorted(component_server(fleet_run, r) for r in fleet_run.of_type("aws:s3/bucket:Bucket"))
    assert buckets == [("default", "1"), ("default", "4"), ("s2", "2"), ("s3", "3")]
    jobs = {
        component_server(fleet_run, r): r
        for r in fleet_run.of_type(CONTAINER)
        if reveal(r.inputs["name"]) == "oduflow-1-backup"
    }
    assert set(jobs) == {("default", "1"), ("s3", "1")}
    on_s3 = jobs[("s3", "1")].inputs["uploads"][0]["content"]
    on_default = jobs[("default", "1")].inputs["uploads"][0]["content"]
    assert "oduflow_1_main" in on_s3 and "oduflow_1_staging" not in on_s3
    assert "oduflow_1_main" not in on_default and "oduflow_1_staging" in on_default
    # the bucket and its users are the team's: the same resources if its own server changes
    bucket = next(r for r in fleet_run.of_type("aws:s3/bucket:Bucket") if r.name == "team-1-backup-bucket")
    assert bucket.aliases == [
        ("team-1@s2-backup-bucket", "urn:pulumi:local::oduflow::oduflow:index:TeamStack::team-1@s2"),
        ("team-1@s3-backup-bucket", "urn:pulumi:local::oduflow::oduflow:index:TeamStack::team-1@s3"),
    ]
    users = [r for r in fleet_run.of_type("aws:iam/user:User") if r.name.startswith("team-2@s2-")]
    assert users and all(
        ("team-2" + r.name.removeprefix("team-2@s2"), create_urn_of("team-2")) in r.aliases for r in users
    )
    # both with the team's one job key (from its own server's stack)
    key = next(r.urn for r in fleet_run.of_type("aws:iam/accessKey:AccessKey") if r.name == "team-1-backup-key")
    assert key in jobs[("s3", "1")].dependencies


def test_outputs_name_each_environments_server(fleet_run: PlannedRun) -> None:
    envs = fleet_run.outputs["environments"]
    assert envs["1"]["main"]["server"] == "s3" and envs["1"]["staging"]["server"] == "default"
    assert sorted(fleet_run.outputs[program.SERVERS_OUTPUT]) == ["default", "s2", "s3"]
    assert fleet_run.outputs[program.SERVERS_OUTPUT]["s2"]["dockerHost"] == HOSTS["s2"]


# --------------------------------------------------------------------------------------------
# Stack layouts


def run_stack(config: Config, settings: program.ProgramSettings, stack: str) -> PlannedRun:
    secrets = {"oduflow-secrets:cloudflare-token": "t", **{f"oduflow-secrets:team{t}-ui": "pw" for t in "124"}}
    return run_offline(lambda: program.build(config, settings), stack=stack, config=secrets, secret_keys=list(secrets))


def test_a_server_stack_holds_its_server_and_its_teams_roles(fleet: Config) -> None:
    settings = program.ProgramSettings(docker_host="unix:///ignored.sock", layout="server", server="s3")
    run = run_stack(fleet, settings, "server-s3")
    assert [r.name for r in run.of_type("oduflow:index:SharedInfra")] == ["shared@s3"]
    assert not run.of_type("oduflow:index:TeamStack")
    [docker] = run.of_type("pulumi:providers:docker")
    assert docker.inputs["host"] == HOSTS["s3"]
    # teams 1 (its production) and 3 sit on s3: their roles, with provisioning roles, and nobody else's
    roles = sorted(reveal(r.inputs["name"]) for r in run.of_type("postgresql:index/role:Role"))
    assert roles == [
        "oduflow_team_1",
        "oduflow_team_1_admin",
        "oduflow_team_3",
        "oduflow_team_3_admin",
        "oduflow_tenant_admins",
        "oduflow_tenants",
    ]
    assert sorted(run.outputs[program.TEAM_DATABASES_OUTPUT].value) == ["1", "3"]
    assert run.outputs["dockerHost"] == HOSTS["s3"]


def test_the_shared_layout_is_the_server_layout_of_default(fleet: Config) -> None:
    shared = run_stack(fleet, program.ProgramSettings(docker_host="x", layout="shared"), "shared")
    server = run_stack(fleet, program.ProgramSettings(docker_host="x", layout="server", server="default"), "shared")
    assert [(r.urn, r.inputs) for r in shared.resources] == [(r.urn, r.inputs) for r in server.resources]
    assert [r.name for r in shared.of_type("oduflow:index:SharedInfra")] == ["shared"]


def test_a_team_stack_reads_the_stack_of_every_server_it_sits_on(fleet: Config) -> None:
    settings = program.ProgramSettings(
        docker_host="unix:///ignored.sock", layout="team", team="1", shared_stack="org/oduflow/shared"
    )
    run = run_stack(fleet, settings, "team-1")
    refs = {r.name: r.urn for r in [r for r in run.reads if r.type == "pulumi:pulumi:StackReference"]}
    assert set(refs) == {"org/oduflow/shared", "server-s3"}
    providers = {r.name: r for r in run.resources if r.type.startswith("pulumi:providers:")}
    assert set(providers) == {
        f"{prefix}-{kind}"
        for prefix in ("shared", "shared@s3")
        for kind in ("docker", "postgresql", "cloudflare", "aws")
    }
    for name, provider in providers.items():
        ref = refs["server-s3"] if name.startswith("shared@s3") else refs["org/oduflow/shared"]
        other = refs["org/oduflow/shared"] if name.startswith("shared@s3") else refs["server-s3"]
        if not name.endswith(("cloudflare", "aws")):
            assert ref in provider.dependencies and other not in provider.dependencies, name
    assert sorted(r.name for r in run.of_type("oduflow:index:TeamStack")) == ["team-1", "team-1@s3"]
    # every resource of team 1 on s3 goes through the s3 providers, on default through default's
    by_ref = {f"{p.urn}::{p.name}-id": name.split("-")[0] for name, p in providers.items()}
    for r in run.resources:
        server, _team = component_server(run, r)
        if server is not None and r.provider is not None:
            assert by_ref[r.provider] == naming.shared_component_name(server), r.urn
    # no role is declared here: roles are the server stacks'
    assert not run.of_type("postgresql:index/role:Role")


def test_a_team_stack_names_the_server_stacks_by_the_pattern(fleet: Config) -> None:
    settings = program.ProgramSettings(
        docker_host="x", layout="team", team="2", server_stack_pattern="acme/oduflow/fleet-{server}"
    )
    run = run_stack(fleet, settings, "team-2")
    assert [r.name for r in [r for r in run.reads if r.type == "pulumi:pulumi:StackReference"]] == [
        "acme/oduflow/fleet-s2"
    ]
    # a team not on the default server needs no sharedStack; one on it does
    assert settings.problem(fleet) is None
    needs = program.ProgramSettings(docker_host="x", layout="team", team="1")
    assert "oduflow:sharedStack" in (needs.problem(fleet) or "")
    bad = program.ProgramSettings(docker_host="x", layout="team", team="2", server_stack_pattern="fleet")
    assert "{server}" in (bad.problem(fleet) or "")
    unknown = program.ProgramSettings(docker_host="x", layout="server", server="s9")
    assert "s9" in (unknown.problem(fleet) or "")


# --------------------------------------------------------------------------------------------
# Zero churn


def resource_docs(run: PlannedRun) -> dict[str, str]:
    """Each resource's JSON document (URN, inputs, dependencies, provider, options) by URN."""
    doc = json.loads(render_json(PlanResult(load_config(FLEET), run, [])))
    return {r["urn"]: json.dumps(r, sort_keys=True) for r in doc["resources"]}


def test_adding_a_server_changes_no_resource(tmp_path: Path, fleet_run: PlannedRun) -> None:
    grown = copy_fleet(
        tmp_path,
        lambda s: s.replace(
            "[team.1]\n",
            '[server.s4]\ndocker_host = "ssh://deploy@s4.example.com"\naddress = "203.0.113.40"\n\n[team.1]\n',
        ),
    )
    before, after = resource_docs(fleet_run), resource_docs(plan_run(load_config(grown), None)[0])
    assert set(before) <= set(after)
    assert all(before[urn] == after[urn] for urn in before)
    added = {urn.split("::")[-1] for urn in set(after) - set(before)}
    assert added and all(name.startswith("shared@s4") for name in added), added


def test_moving_one_team_changes_nothing_of_any_other(tmp_path: Path, fleet_run: PlannedRun) -> None:
    moved = copy_fleet(tmp_path, lambda s: s.replace('[team.4]\nserver = "default"', '[team.4]\nserver = "s2"'))
    after_run = plan_run(load_config(moved), None)[0]
    before, after = resource_docs(fleet_run), resource_docs(after_run)
    teams = {**placement_of(fleet_run), **placement_of(after_run)}

    def of_team_4(urn: str) -> bool:
        return teams[urn][1] == "4" or urn.split("::")[-1].startswith(("team-4-", "team-4@"))

    untouched = [urn for urn in before if not of_team_4(urn)]
    assert untouched and all(after.get(urn) == before[urn] for urn in untouched)
    assert all(of_team_4(urn) for urn in set(after) ^ set(before))
    # team 4 now lives on s2, through s2's providers
    assert "team-4@s2" in {r.name for r in after_run.of_type("oduflow:index:TeamStack")}
    assert "team-4" not in {r.name for r in after_run.of_type("oduflow:index:TeamStack")}


def write_moves(config_path: Path, *moves: dict[str, Any]) -> None:
    config_path.with_name(f"{config_path.stem}.moves.json").write_text(
        json.dumps({"version": 1, "moves": list(moves)}), encoding="utf-8"
    )


@pytest.mark.parametrize(("phase", "dns_on"), [("copying", "default"), ("switched", "s2")])
def test_during_a_move_the_team_is_on_both_servers(
    tmp_path: Path, fleet_run: PlannedRun, phase: str, dns_on: str
) -> None:
    path = copy_fleet(tmp_path)  # the file keeps the team where it is until the move is done
    write_moves(path, {"team": "4", "branch": None, "from": "default", "to": "s2", "phase": phase})
    config = load_config(path)
    run = plan_run(config, None)[0]
    stacks = {r.name for r in run.of_type("oduflow:index:TeamStack")}
    assert {"team-4", "team-4@s2"} <= stacks
    odoo = sorted(
        component_server(run, r) for r in run.of_type(CONTAINER) if reveal(r.inputs["name"]) == "oduflow-4-main-odoo"
    )
    assert odoo == [("default", "4"), ("s2", "4")]
    records = {reveal(r.inputs["name"]): reveal(r.inputs["content"]) for r in run.of_type(DNS_RECORD)}
    assert records["team-d.example.com"] == records["*.team-d.example.com"] == ADDRESSES[dns_on]
    # one backup job, where users are served
    jobs = [
        component_server(run, r)[0] for r in run.of_type(CONTAINER) if reveal(r.inputs["name"]) == "oduflow-4-backup"
    ]
    dumping = [
        component_server(run, r)[0]
        for r in run.of_type(CONTAINER)
        if reveal(r.inputs["name"]) == "oduflow-4-backup" and "oduflow_4_main" in r.inputs["uploads"][0]["content"]
    ]
    assert dumping == [dns_on] and len(jobs) >= 1
    # in phase copying, the old placement is what it was before the move began
    if phase == "copying":
        before = resource_docs(fleet_run)
        after = resource_docs(run)
        # (the bucket and its users follow the team's own server by alias, and the job reads its key:
        # the mocks derive the key from its logical name, a real run keeps it; not compared here)
        old_team_4 = [
            urn
            for urn in before
            if placement_of(fleet_run)[urn] == ("default", "4") and "aws:" not in urn and not urn.endswith("-backup")
        ]
        assert old_team_4 and all(after[urn] == before[urn] for urn in old_team_4)


def test_one_server_configs_keep_every_urn_and_input(tmp_path: Path) -> None:
    example = (ROOT / "examples" / "oduflow.toml").read_text()
    plain = tmp_path / "plain" / "oduflow.toml"
    plain.parent.mkdir()
    plain.write_text(example)
    config = load_config(plain)
    declared = tmp_path / "declared" / "oduflow.toml"
    declared.parent.mkdir()
    address = f'address = "{config.dns.target}"\n' if config.dns else ""
    declared.write_text(f'[server.default]\ndocker_host = "{config.platform.docker_host}"\n{address}\n' + example)
    for name in ("oduflow.ports.json", "oduflow.revisions.json"):
        if (ROOT / "examples" / name).exists():
            shutil.copy(ROOT / "examples" / name, plain.parent / name)
            shutil.copy(ROOT / "examples" / name, declared.parent / name)
    a, b = plan_run(load_config(plain), None)[0], plan_run(load_config(declared), None)[0]
    assert [(r.urn, r.inputs, r.provider, r.dependencies) for r in a.resources] == [
        (r.urn, r.inputs, r.provider, r.dependencies) for r in b.resources
    ]
    assert not any("@" in r.urn for r in a.resources)


# --------------------------------------------------------------------------------------------
# Plan output


def test_plan_groups_by_server_with_use_against_capacity(fleet: Config, fleet_run: PlannedRun) -> None:
    use = server_use(fleet, "default")
    # team 1's staging (2 cpu? no: the type's defaults) and feature, team 4's staging
    limits = [fleet.env_limits(e) for _t, e in fleet.server_environments("default")]
    assert (use.environments, use.cpu, use.memory_mb) == (
        3,
        sum(x.cpu for x in limits),
        sum(x.memory_mb for x in limits),
    )
    assert (use.capacity_cpu, use.capacity_memory_mb) == (16, 65536)
    assert server_use(fleet, "s3").capacity_cpu is None
    text = render_markdown(PlanResult(fleet, fleet_run, []))
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    heads = [i for i, line in enumerate(rows) if line.startswith("| **server ")]
    assert [rows[i].split("·")[0] for i in heads] == ["| **server default ", "| **server s2 ", "| **server s3 "]
    assert "cpu 3 of 16" in rows[heads[0]] or f"of {16:g}" in rows[heads[0]]
    s3 = rows[heads[2] : heads[2] + 4]
    assert s3[1].startswith("| shared |") and s3[2].startswith("| 1 | main (production) |")
    assert s3[3].startswith("| 3 | main (production) |")
    doc = json.loads(render_json(PlanResult(fleet, fleet_run, [])))
    odoo = next(r for r in doc["resources"] if r["inputs"].get("name") == "oduflow-2-main-odoo")
    assert odoo["provider"].endswith("::shared@s2-docker") and odoo["provider"] in {r["urn"] for r in doc["resources"]}


# --------------------------------------------------------------------------------------------
# One PostgreSQL endpoint per server


def test_each_server_reads_its_own_endpoint_variables() -> None:
    assert tunnel.server_env_names("default") == ("ODUFLOW_POSTGRES_ADMIN_HOST", "ODUFLOW_POSTGRES_ADMIN_PORT")
    assert tunnel.server_env_names("eu-2") == ("ODUFLOW_POSTGRES_ADMIN_HOST_EU_2", "ODUFLOW_POSTGRES_ADMIN_PORT_EU_2")
    env = {"ODUFLOW_POSTGRES_ADMIN_PORT": "40001", "ODUFLOW_POSTGRES_ADMIN_PORT_S2": "40002"}
    assert tunnel.admin_endpoint("127.0.0.1", 5432, env) == ("127.0.0.1", 40001)
    assert tunnel.admin_endpoint("127.0.0.1", 5432, env, "s2") == ("127.0.0.1", 40002)
    assert tunnel.admin_endpoint("127.0.0.1", 5432, env, "s3") == ("127.0.0.1", 5432)
    with pytest.raises(ValueError, match="ODUFLOW_POSTGRES_ADMIN_PORT_S3"):
        tunnel.admin_endpoint("127.0.0.1", 5432, {"ODUFLOW_POSTGRES_ADMIN_PORT_S3": "x"}, "s3")


def test_a_remote_server_without_its_own_tunnel_stops_the_run(fleet: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi

    monkeypatch.setattr(program, "_under_mocks", lambda: False)
    settings = program.ProgramSettings(docker_host="x")
    # s2's variable is missing: the default port may be another server's tunnel, never dialled
    env = {"ODUFLOW_POSTGRES_ADMIN_PORT_S3": "40003"}
    with pytest.raises(pulumi.RunError, match="ODUFLOW_POSTGRES_ADMIN_PORT_S2"):
        program.reach_servers(fleet, settings, env, accepts=lambda h, p: True, stack="local")
    env["ODUFLOW_POSTGRES_ADMIN_PORT_S2"] = "40002"
    reached = program.reach_servers(fleet, settings, env, accepts=lambda h, p: True, stack="local")
    assert dict(reached.endpoints) == {"s2": ("127.0.0.1", 40002), "s3": ("127.0.0.1", 40003)}
    with pytest.raises(pulumi.RunError, match="not reachable"):
        program.reach_servers(fleet, settings, env, accepts=lambda h, p: p != 40003, stack="local")
    assert program.reach_servers(fleet, settings, env, accepts=lambda h, p: True, stack="local") == reached
    # a server stack dials its own server only; a team stack those it sits on
    only_s2 = program.ProgramSettings(docker_host="x", layout="server", server="s2")
    assert program.stack_servers(fleet, only_s2) == ["s2"]
    team_1 = program.ProgramSettings(docker_host="x", layout="team", team="1", shared_stack="s")
    assert program.stack_servers(fleet, team_1) == ["default", "s3"]
    # the endpoint reaches each server's provider, and only that one
    monkeypatch.undo()
    run = run_stack(fleet, reached, "local")
    ports = {r.name: r.inputs["port"] for r in run.of_type("pulumi:providers:postgresql")}
    assert ports == {"shared-postgresql": "5432", "shared@s2-postgresql": "40002", "shared@s3-postgresql": "40003"}


def test_the_shipped_fleet_example_keeps_every_team_on_its_servers_providers() -> None:
    config = load_config(ROOT / "examples" / "fleet" / "oduflow.toml")
    run = plan_run(config, None)[0]
    servers = provider_servers(run)
    assert set(servers.values()) == set(config.servers)
    hosts = {component_server(run, r)[0]: r.inputs["host"] for r in run.of_type("pulumi:providers:docker")}
    assert hosts == {name: server.docker_host for name, server in config.servers.items()}
    for r in run.resources:
        server, team = component_server(run, r)
        if r.type.startswith(("docker:", "postgresql:", "cloudflare:", "aws:")):
            assert r.provider is not None and servers[r.provider] == server, r.urn
        if r.type == "oduflow:index:OdooEnvironment":
            env = next(e for e in config.team[team or ""].environments if r.name.endswith(f"-{e.slug}"))
            assert server in config.env_servers(team or "", env), r.urn
        if r.type == DNS_RECORD:
            assert reveal(r.inputs["content"]) == config.servers[server or ""].address, r.urn


def test_a_refresh_across_servers_is_refused(tmp_path: Path) -> None:
    from oduflow_iac.errors import ConfigError

    # team 1's staging copied from its production, which is on s3 while staging is on default:
    # the config refuses it (the TeamStack would too: a copy reads its source on its own server)
    path = copy_fleet(
        tmp_path,
        lambda s: s.replace(
            'branch = "staging"\ntype = "staging"\n', 'branch = "staging"\ntype = "staging"\nclone_from = "main"\n'
        ),
    )
    with pytest.raises(ConfigError, match=r"clone_from"):
        load_config(path)
