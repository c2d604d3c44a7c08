"""Server capacity: what the config places on a server (`server_demand`), the policy config that
carries the placement to the pack, the `capacity` rule, and the organisation quota across servers."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from pulumi_policy import PolicyProviderResource

from oduflow_iac import moves, naming
from oduflow_iac.config import load_config
from oduflow_iac.config.servers import server_demand
from oduflow_iac.policy.capacity import capacity_problem
from oduflow_iac.policy_config import capacity_servers, render_policy_config
from tests.conftest import ROOT
from tests.test_policy import container, odoo, run_stack
from tests.test_servers import PLACED
from tests.test_violations import check

WriteConfig = Callable[..., Path]
FLEET = ROOT / "examples" / "fleet" / "oduflow.toml"


# --------------------------------------------------------------------------------------------
# What a server is asked for


def test_demand_of_each_server(write_config: WriteConfig) -> None:
    config = load_config(write_config(PLACED))
    # s2: team 1's production (2 CPUs, 4096 MB) and team 2's development environment (1, 2048);
    # PostgreSQL 2048 + Traefik 512 + socket proxy 64, the PostgreSQL proxies of teams 1 and 2, and
    # the mail catcher (128) of team 2, whose development environment runs there.
    s2 = server_demand(config, "s2")
    assert (s2.environments, s2.cpu, s2.environments_memory_mb) == (2, Decimal(3), 6144)
    assert s2.services_memory_mb == 2048 + 512 + 64 + 2 * 64 + 128
    assert s2.memory_mb == 6144 + 2880 and s2.disk_gb == 0
    default = server_demand(config, "default")
    assert (default.environments, default.cpu, default.environments_memory_mb) == (1, Decimal(1), 2048)
    assert default.services_memory_mb == 2048 + 512 + 64 + 64 + 128  # team 1 only


def test_backup_jobs_and_disk_reservations_count(write_config: WriteConfig) -> None:
    text = PLACED + '\n[backup]\nbucket_prefix = "acme"\nregion = "eu-west-1"\nmemory_mb = 256\n'
    text += "\n[team.2.quota]\ndisk_gb = 70\n\n[team.1.quota]\ndisk_gb = 30\n"
    config = load_config(write_config(text))
    s2 = server_demand(config, "s2")
    assert s2.services_memory_mb == 2048 + 512 + 64 + 2 * (64 + 256) + 128
    # team 1's reservation counts on its own server, even though its production runs on s2
    assert (s2.disk_gb, server_demand(config, "default").disk_gb) == (70, 30)


def test_cpu_sums_exactly(write_config: WriteConfig) -> None:
    text = PLACED.replace(
        'branch = "dev"\nodoo_image = "odoo:17.0"\n', 'branch = "dev"\nodoo_image = "odoo:17.0"\ncpu = 0.1\n'
    )
    for b in ("a", "b"):
        text += f'\n[[team.1.environments]]\nbranch = "{b}"\nodoo_image = "odoo:17.0"\ncpu = 0.1\n'
    assert server_demand(load_config(write_config(text)), "default").cpu == Decimal("0.3")


def test_a_moving_environment_counts_on_both_servers(write_config: WriteConfig) -> None:
    path = write_config(PLACED)
    entry = {"team": "1", "branch": "dev", "from": "default", "to": "s2", "phase": "copying"}
    moves.moves_path_for(path).write_text(json.dumps({"version": 1, "moves": [entry]}), encoding="utf-8")
    config = load_config(path)
    assert server_demand(config, "s2").environments == 3
    assert server_demand(config, "default").environments == 1
    assert naming.env_container_name("1", "dev") in capacity_servers(config)["s2"]["environments"]


# --------------------------------------------------------------------------------------------
# The policy config


def test_policy_config_lists_only_servers_with_a_capacity(write_config: WriteConfig) -> None:
    config = load_config(write_config(PLACED))
    servers = render_policy_config(config)["capacity"]["servers"]
    assert list(servers) == ["s2"]
    assert servers["s2"] == {
        "capacity": {"cpu": 32, "memory_mb": 131072, "disk_gb": 1000},
        "environments": {
            "oduflow-1-main-odoo": {"cpu": 2.0, "memory_mb": 4096},
            "oduflow-2-main-odoo": {"cpu": 1.0, "memory_mb": 2048},
        },
        "services_memory_mb": 2880,
        "disk_gb": 0,
    }


def test_a_file_without_servers_has_no_capacity_to_check() -> None:
    assert render_policy_config(load_config(ROOT / "examples" / "oduflow.toml"))["capacity"] == {"servers": {}}


# --------------------------------------------------------------------------------------------
# The rule

S2 = {
    "capacity": {"cpu": 4, "memory_mb": 8192, "disk_gb": 100},
    "environments": {
        "oduflow-1-main-odoo": {"cpu": 2, "memory_mb": 4096},
        "oduflow-2-main-odoo": {"cpu": 1, "memory_mb": 2048},
    },
    "services_memory_mb": 1000,
    "disk_gb": 50,
}


def test_a_server_that_holds_its_environments_passes() -> None:
    assert run_stack("capacity", [odoo("1", "main", cpus="2", memory=4096.0)], {"servers": {"s2": S2}}) == []


def test_an_over_full_server_names_the_server_and_the_figures() -> None:
    # in this stack, team 1's container asks for more than the config said; team 2's is elsewhere
    found = run_stack("capacity", [odoo("1", "main", cpus="3.5", memory=6144.0)], {"servers": {"s2": S2}})
    assert found == [
        "server s2: 2 environments and the platform's services need 4.5 CPUs, 9192 MB, 50 GB of disk; "
        "capacity is 4 CPUs, 8192 MB, 100 GB of disk (over on CPU, memory)"
    ]


def test_figures_of_environments_outside_the_stack_come_from_the_config() -> None:
    over = {**S2, "environments": {**S2["environments"], "oduflow-3-main-odoo": {"cpu": 2, "memory_mb": 512}}}
    found = run_stack("capacity", [], {"servers": {"s2": over}})
    assert found == [
        "server s2: 3 environments and the platform's services need 5 CPUs, 7656 MB, 50 GB of disk; "
        "capacity is 4 CPUs, 8192 MB, 100 GB of disk (over on CPU)"
    ]


def test_disk_reservations_over_capacity() -> None:
    assert run_stack("capacity", [], {"servers": {"s2": {**S2, "disk_gb": 101}}}) == [
        "server s2: 2 environments and the platform's services need 3 CPUs, 7144 MB, 101 GB of disk; "
        "capacity is 4 CPUs, 8192 MB, 100 GB of disk (over on disk)"
    ]


def test_only_odoo_containers_of_the_server_count() -> None:
    name = naming.env_container_name("1", "main")
    helper = container(name, team="1", role="backup", cpus="64", memory=99999.0)  # same name, not Odoo
    other = odoo("9", "main", cpus="64", memory=99999.0)  # not placed on s2
    assert run_stack("capacity", [helper, other], {"servers": {"s2": S2}}) == []


def test_without_config_nothing_is_checked() -> None:
    assert run_stack("capacity", [odoo("1", "main", cpus="64")]) == []


@pytest.mark.parametrize(
    ("use", "expected"),
    [
        ({"environments": Decimal(1), "cpu": Decimal(4), "memory_mb": Decimal(8192), "disk_gb": Decimal(100)}, None),
        ({"environments": Decimal(1), "cpu": Decimal("4.01"), "memory_mb": Decimal(0), "disk_gb": Decimal(0)}, "CPU"),
        ({"environments": Decimal(1), "cpu": Decimal(0), "memory_mb": Decimal(8193), "disk_gb": Decimal(0)}, "memory"),
    ],
)
def test_capacity_problem_at_the_edge(use: dict[str, Decimal], expected: str | None) -> None:
    problem = capacity_problem("s1", use, {"cpu": 4, "memory_mb": 8192, "disk_gb": 100})
    assert (
        (problem is None) if expected is None else (problem is not None and problem.endswith(f"(over on {expected})"))
    )


def test_an_over_full_server_from_a_config(write_config: WriteConfig) -> None:
    config = load_config(write_config(PLACED.replace("cpu = 32, memory_mb = 131072", "cpu = 2, memory_mb = 4096")))
    found = run_stack("capacity", [], render_policy_config(config)["capacity"])
    assert found == [
        "server s2: 2 environments and the platform's services need 3 CPUs, 9024 MB, 0 GB of disk; "
        "capacity is 2 CPUs, 4096 MB, 1000 GB of disk (over on CPU, memory)"
    ]


# --------------------------------------------------------------------------------------------
# The organisation quota counts every server


def _provider(server: str) -> PolicyProviderResource:
    urn = f"urn:pulumi:local::oduflow::pulumi:providers:docker::shared@{server}-docker"
    return PolicyProviderResource("pulumi:providers:docker", {}, urn, f"shared@{server}-docker")


def test_the_organisation_quota_counts_every_server() -> None:
    # One stack holding the Odoo containers of two servers (the `all` layout): each through its own
    # server's provider. The organisation quota sums them all.
    first, second = odoo("1", "main"), odoo("2", "main")
    first.provider, second.provider = _provider("default"), _provider("s2")
    quota = {"organisation": {"environments": 1, "cpu": 1, "memory_mb": 2048}}
    assert run_stack("quotas", [first, second], quota) == [
        "all teams together run 2 environments, over the organisation quota of 1",
        "all teams together ask for 2 CPUs, over the organisation quota of 1",
        "all teams together ask for 4096 MB of memory, over the organisation quota of 2048 MB",
    ]


# --------------------------------------------------------------------------------------------
# The fleet example


def test_the_fleet_example_places_a_team_on_each_server() -> None:
    config = load_config(FLEET)
    assert list(config.servers) == ["default", "s2", "prod"]
    assert [config.team_server(t) for t, _ in config.teams] == ["default", "s2", "prod"]
    assert config.team_servers("1") == ["default", "prod"]
    prod = [(t, e.branch, e.type) for t, e in config.server_environments("prod")]
    assert prod == [("1", "main", "production"), ("3", "main", "production")]
    assert all(s.capacity is not None and s.address for s in config.servers.values())
    assert set(render_policy_config(config)["capacity"]["servers"]) == {"default", "s2", "prod"}


def test_the_fleet_example_passes_every_policy() -> None:
    found = check(FLEET)
    assert [v for v in found if v.level == "mandatory"] == []
    assert not [v for v in found if v.policy == "capacity"]


def test_a_partial_stack_counts_the_rest_of_the_fleet_from_the_config(write_config: WriteConfig) -> None:
    # Team 1's stack holds its own containers only; team 2 runs on s2 and is counted from the config,
    # and team 1's production (in the stack, with more memory than the config says) is not counted twice.
    config = load_config(write_config(PLACED + "\n[organisation.quota]\nenvironments = 2\nmemory_mb = 8192\n"))
    quotas = render_policy_config(config)["quotas"]
    assert set(quotas["environments"]) == {"oduflow-1-main-odoo", "oduflow-1-dev-odoo", "oduflow-2-main-odoo"}
    in_stack = [odoo("1", "main", cpus="2", memory=6144.0), odoo("1", "dev")]
    assert run_stack("quotas", in_stack, quotas) == [
        "all teams together run 3 environments, over the organisation quota of 2",
        "all teams together ask for 10240 MB of memory, over the organisation quota of 8192 MB",
    ]
    # without the config's list, only the stack counts: 2 environments, 8192 MB, within the quota
    assert run_stack("quotas", in_stack, {**quotas, "environments": {}}) == []


def test_team_quotas_count_their_environments_on_every_server(write_config: WriteConfig) -> None:
    config = load_config(write_config(PLACED + "\n[team.1.quota]\nenvironments = 1\n"))
    quotas = render_policy_config(config)["quotas"]
    # a stack holding none of team 1's containers (another server's) still sees both
    assert run_stack("quotas", [], quotas) == ["team 1 runs 2 environments, over its quota of 1"]
