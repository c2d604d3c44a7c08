"""Servers: `[server.NAME]`, the placement of teams and environments, and its one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac import naming
from oduflow_iac.config import ConfigError, Server, load_config
from oduflow_iac.config.servers import (
    address_problem,
    docker_host_problem,
    normalise_docker_host,
    server_name_problem,
)
from tests.conftest import EXAMPLE, ROOT, SEED

WriteConfig = Callable[..., Path]

SERVERS = """
[server.default]
docker_host = "unix:///var/run/docker.sock"
address = "203.0.113.10"

[server.s2]
docker_host = "ssh://deploy@s2.example.com"
address = "203.0.113.20"
capacity = { cpu = 32, memory_mb = 131072, disk_gb = 1000 }
"""

PLACED = (
    SERVERS
    + SEED.replace("port_range = [50000, 50050]", 'port_range = [50000, 50050]\nserver = "default"').replace(
        "port_range = [50050, 50100]", 'port_range = [50050, 50100]\nserver = "s2"'
    )
    + """
[[team.1.environments]]
branch = "main"
type = "production"
odoo_image = "odoo:17.0"
server = "s2"

[[team.1.environments]]
branch = "dev"
odoo_image = "odoo:17.0"

[[team.2.environments]]
branch = "main"
odoo_image = "odoo:17.0"
"""
)


def problems(write_config: WriteConfig, text: str) -> list[str]:
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    return [line.removeprefix(f"{path}: ") for line in lines]


# --------------------------------------------------------------------------------------------
# Pure checks


@pytest.mark.parametrize("name", ["default", "s1", "eu-west-2", "a" * 31])
def test_good_server_names(name: str) -> None:
    assert server_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "S1", "1s", "-s", "s_1", "s.1", "a" * 32, "s 1", "s\n1", "s1;rm"])
def test_bad_server_names(name: str) -> None:
    assert server_name_problem(name)


@pytest.mark.parametrize(
    "host",
    [
        "unix:///var/run/docker.sock",
        "unix:///run/user/1000/docker.sock",
        "ssh://deploy@s1.example.com",
        "ssh://deploy@s1.example.com:2222",
        "ssh://s1.example.com",
        "ssh://deploy@203.0.113.7",
        "ssh://deploy@[2001:db8::1]:22",
        "tcp://10.0.0.5:2376",
        "tcp://docker.internal:2375",
    ],
)
def test_accepted_docker_hosts(host: str) -> None:
    assert docker_host_problem(host) is None


@pytest.mark.parametrize(
    "host",
    [
        "",
        "/var/run/docker.sock",
        "unix://var/run/docker.sock",  # relative
        "unix:///var/run/../../etc/shadow",
        "unix:///var/run/docker.sock;rm -rf /",
        "unix:///var/run/$(id).sock",
        "ssh://deploy@s1.example.com/var/run/docker.sock",
        "ssh://deploy:hunter2@s1.example.com",
        "ssh://-oProxyCommand=sh@s1.example.com",
        "ssh://deploy@-oProxyCommand=sh",
        "ssh://deploy@s1.example.com?x=1",
        "ssh://deploy@s1.example.com#x",
        "ssh://de ploy@s1.example.com",
        "ssh://deploy@s1.example.com:99999",
        "ssh://deploy@s1.example.com:0",
        "tcp://10.0.0.5:0",
        "ssh://deploy@s1.example.com\nrm",
        "ssh://deploy@s1`id`.example.com",
        "ssh://",
        "tcp://10.0.0.5",  # no port
        "tcp://user@10.0.0.5:2376",
        "http://10.0.0.5:2375",
        "npipe:////./pipe/docker_engine",
        " unix:///var/run/docker.sock",
    ],
)
def test_refused_docker_hosts(host: str) -> None:
    assert docker_host_problem(host)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("unix:///var/run/docker.sock", "unix:///var/run//docker.sock/"),
        ("unix:///var/run/docker.sock", "unix:///var/run/./docker.sock"),
        ("ssh://deploy@s1.example.com", "ssh://deploy@S1.Example.com:22"),
        ("ssh://deploy@s1.example.com", "ssh://deploy@s1.example.com/"),
        ("tcp://10.0.0.5:2376", "tcp://10.0.0.5:2376/"),
        # A second name for the same machine must not pass as a second server.
        ("ssh://deploy@s1.example.com", "ssh://deploy@s1.example.com."),
        ("ssh://deploy@s1.example.com", "ssh://root@s1.example.com"),
        ("ssh://deploy@s1.example.com", "ssh://s1.example.com"),
        ("tcp://docker.internal:2376", "tcp://Docker.Internal.:2376"),
    ],
)
def test_one_engine_has_one_spelling(one: str, other: str) -> None:
    assert normalise_docker_host(one) == normalise_docker_host(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ssh://deploy@s1.example.com", "ssh://deploy@s1.example.com:2222"),
        ("tcp://10.0.0.5:2375", "tcp://10.0.0.5:2376"),
        ("unix:///var/run/docker.sock", "unix:///run/docker.sock"),
    ],
)
def test_distinct_engines_stay_distinct(one: str, other: str) -> None:
    assert normalise_docker_host(one) != normalise_docker_host(other)


@pytest.mark.parametrize("value", ["203.0.113.10", "2001:db8::1", "s1.example.com", "lb"])
def test_addresses(value: str) -> None:
    assert address_problem(value) is None


@pytest.mark.parametrize("value", ["", "s1.example.com.", "a b", "1.2.3.4;x", "-x.example", "x\n.example"])
def test_bad_addresses(value: str) -> None:
    assert address_problem(value)


# --------------------------------------------------------------------------------------------
# The implicit server: every existing file plans unchanged


@pytest.mark.parametrize(
    "path", [EXAMPLE, ROOT / "examples/cloud/oduflow.toml", ROOT / "tests/data/oduflow-server.toml"]
)
def test_a_file_without_servers_has_the_default_one(path: Path) -> None:
    config = load_config(path)
    assert list(config.servers) == [naming.DEFAULT_SERVER] == ["default"]
    assert config.servers["default"].docker_host == config.platform.docker_host
    assert config.servers["default"].address == (config.dns.target if config.dns else None)
    every = [(t, e.branch) for t, team in config.teams for e in team.environments]
    assert [(t, e.branch) for t, e in config.server_environments("default")] == every
    for team_id, team in config.teams:
        assert config.team_server(team_id) == "default"
        assert config.team_servers(team_id) == ["default"]
        for env in team.environments:
            assert config.env_server(team_id, env) == "default"
            assert config.env_servers(team_id, env) == ["default"]
            assert config.env_dns_server(team_id, env) == "default"
    assert config.moves == []


def test_the_default_server_follows_platform_docker_host(write_config: WriteConfig) -> None:
    config = load_config(write_config('[platform]\ndocker_host = "ssh://ops@box.example"\n' + SEED))
    assert config.servers == {"default": Server(docker_host="ssh://ops@box.example")}


def test_one_declared_server_places_every_team(write_config: WriteConfig) -> None:
    text = '[server.main]\ndocker_host = "ssh://ops@box.example"\n' + SEED
    config = load_config(write_config(text))
    assert list(config.servers) == ["main"]
    assert config.team_server("1") == config.team_server("2") == "main"


# --------------------------------------------------------------------------------------------
# Placement


def test_teams_and_environments_are_placed(write_config: WriteConfig) -> None:
    config = load_config(write_config(PLACED))
    assert list(config.servers) == ["default", "s2"]
    assert config.servers["s2"].capacity is not None and config.servers["s2"].capacity.memory_mb == 131072
    main, dev = config.team["1"].environments
    assert config.team_server("1") == "default" and config.team_server("2") == "s2"
    assert config.env_server("1", main) == "s2" and config.env_server("1", dev) == "default"
    assert config.team_servers("1") == ["default", "s2"]
    assert config.team_servers("2") == ["s2"]
    assert [(t, e.branch) for t, e in config.server_environments("s2")] == [("1", "main"), ("2", "main")]
    assert [(t, e.branch) for t, e in config.server_environments("default")] == [("1", "dev")]
    assert config.server_environments("nowhere") == []


def test_a_declared_default_server_takes_dns_target_as_address(write_config: WriteConfig) -> None:
    dns = '[dns]\nzone = "example.com"\nzone_id = "z"\ntarget = "198.51.100.1"\n'
    text = PLACED.replace('address = "203.0.113.10"\n', "", 1) + dns
    config = load_config(write_config(text))
    assert config.servers["default"].address == "198.51.100.1"
    assert config.servers["s2"].address == "203.0.113.20"
    assert config.server["default"].address is None  # the file's own value is untouched


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('server = "s2"', 'server = "s3"', 1), "team.2.server: server 's3' is not declared (declared: default, s2)"),
        (
            (
                'type = "production"\nodoo_image = "odoo:17.0"\nserver = "s2"',
                'odoo_image = "odoo:17.0"\nserver = "zz"',
                1,
            ),
            "team.1.environments[0].server: server 'zz' is not declared (declared: default, s2)",
        ),
        (('server = "default"\n', "", 1), "team.1.server: required: 2 servers are declared (default, s2)"),
        (
            ('"ssh://deploy@s2.example.com"', '"unix:///var/run//docker.sock/"', 1),
            "server.s2.docker_host: 'unix:///var/run//docker.sock/' is the Docker host of server.default",
        ),
        (
            ('docker_host = "unix:///var/run/docker.sock"', 'docker_host = "ssh://root@S2.example.com."', 1),
            "server.s2.docker_host: 'ssh://deploy@s2.example.com' is the Docker host of server.default",
        ),
        (("[server.s2]", "[server.S2]", 1), "server.S2: a server name is a lower-case letter"),
        (('server = "s2"', 'server = "S 2"', 1), "team.2.server: 'S 2': a server name is"),
        (
            ('"ssh://deploy@s2.example.com"', '"ssh://deploy@s2.example.com; rm -rf /"', 1),
            "server.s2.docker_host: must not contain whitespace",
        ),
        (
            ('"ssh://deploy@s2.example.com"', '"ssh://deploy@s2.example.com/var/run/docker.sock"', 1),
            "server.s2.docker_host: nothing may follow the host",
        ),
        (('"ssh://deploy@s2.example.com"', '"unix://$(reboot)"', 1), "server.s2.docker_host: a unix:// Docker host"),
        (('address = "203.0.113.20"', 'address = "203.0.113.20 evil"', 1), "server.s2.address: '203.0.113.20 evil'"),
        (("cpu = 32", "cpu = 0", 1), "server.s2.capacity.cpu: must be greater than 0"),
        ((", disk_gb = 1000", "", 1), "server.s2.capacity.disk_gb: required key is missing"),
        (("capacity = {", "capacty = {", 1), "server.s2.capacty: unknown key; did you mean `capacity`?"),
        (('docker_host = "ssh', 'docker_hots = "ssh', 1), "server.s2.docker_hots: unknown key; did you mean"),
    ],
)
def test_placement_errors_are_one_line(write_config: WriteConfig, change: tuple[str, str, int], expected: str) -> None:
    text = PLACED.replace(*change)
    assert text != PLACED
    found = problems(write_config, text)
    assert any(line.startswith(expected) for line in found), found


def test_a_newline_in_a_docker_host_is_one_line(write_config: WriteConfig) -> None:
    text = PLACED.replace('"ssh://deploy@s2.example.com"', '"ssh://deploy@s2.example.com\\nProxyCommand sh"', 1)
    found = problems(write_config, text)
    assert [line.split(":")[0] for line in found] == ["server.s2.docker_host"]


def test_platform_docker_host_beside_servers_is_refused(write_config: WriteConfig) -> None:
    text = '[platform]\ndocker_host = "unix:///var/run/docker.sock"\n' + PLACED
    found = problems(write_config, text)
    assert found[0].startswith("platform.docker_host: not used when [server.NAME] tables are declared")


def test_an_unknown_server_without_declared_servers(write_config: WriteConfig) -> None:
    found = problems(write_config, SEED.replace("[50050, 50100]", '[50050, 50100]\nserver = "s2"'))
    assert found == [
        "team.2.server: server 's2' is not declared (no [server.NAME] is declared, so the only one is 'default')"
    ]
    # ... but naming the implicit one is fine
    load_config(write_config(SEED.replace("[50050, 50100]", '[50050, 50100]\nserver = "default"')))


def test_dns_needs_an_address_for_every_server_but_default(write_config: WriteConfig) -> None:
    dns = '[dns]\nzone = "example.com"\nzone_id = "z"\ntarget = "198.51.100.1"\n'
    text = PLACED.replace('address = "203.0.113.20"\n', "", 1).replace('address = "203.0.113.10"\n', "", 1) + dns
    assert problems(write_config, text) == [
        "server.s2.address: required when [dns] is set: the DNS records of the environments on this server point to it"
    ]
    # without [dns], no address is needed
    load_config(write_config(PLACED.replace('address = "203.0.113.20"\n', "", 1)))


@pytest.mark.parametrize(
    ("record", "address", "expected"),
    [
        ("A", "2001:db8::1", "is not an IPv4 address"),
        ("A", "s2.example.net", "is not an IPv4 address"),
        ("AAAA", "203.0.113.20", "is not an IPv6 address"),
        ("CNAME", "203.0.113.20", "is an IP address"),
    ],
)
def test_the_address_fits_the_dns_record_type(
    write_config: WriteConfig, record: str, address: str, expected: str
) -> None:
    dns = f'[dns]\nzone = "example.com"\nzone_id = "z"\ntarget = "t.example.net"\nrecord_type = "{record}"\n'
    text = PLACED.replace('address = "203.0.113.10"\n', "", 1).replace("203.0.113.20", address, 1) + dns
    found = problems(write_config, text)
    assert len(found) == 1 and found[0].startswith("server.s2.address: ") and expected in found[0], found


def test_oduflow_server_keys_and_server_tables_live_together(write_config: WriteConfig) -> None:
    text = PLACED.replace(
        "[server.default]", '[server]\nbind = "0.0.0.0"\nport = 8000\ntrace = false\n\n[server.default]', 1
    )
    config = load_config(write_config(text))
    assert list(config.servers) == ["default", "s2"] and config.notices == []


def test_a_server_key_without_its_name_is_not_silently_a_server(write_config: WriteConfig) -> None:
    text = '[server]\ndocker_host = "ssh://ops@box.example"\n' + SEED
    config = load_config(write_config(text))
    assert list(config.servers) == ["default"]
    assert [str(n.key) for n in config.notices] == ["server.docker_host"]
    assert "a Docker host is a table [server.NAME]" in config.notices[0].message


def test_the_connection_budget_is_per_server(write_config: WriteConfig) -> None:
    # Each server runs its own PostgreSQL of 55 usable connections; a team with one production
    # environment needs 14, and 10 for its provisioning role: two teams fit on one server, not three.
    head = "[platform]\npostgres_max_connections = 60\npostgres_reserved_connections = 5\n" + SERVERS

    def fleet(placement: str) -> str:
        return head + "".join(
            f'[team.{t}]\nhostname = "t{t}.example.com"\nui_password = "p"\n'
            f"port_range = [{50000 + 50 * t}, {50050 + 50 * t}]\n"
            f'server = "{server}"\n[[team.{t}.environments]]\nbranch = "main"\ntype = "production"\n'
            'odoo_image = "odoo:17.0"\n'
            for t, server in enumerate(placement.split(), start=1)
        )

    load_config(write_config(fleet("default s2 s2")))
    found = problems(write_config, fleet("s2 s2 s2"))
    assert len(found) == 1, found
    assert found[0].startswith(
        "platform.postgres_max_connections: 60 minus 5 reserved leaves 55 connections on server 's2'"
    )
    assert "team.3: 14" in found[0]


def test_a_copy_of_the_config_recomputes_the_placement(write_config: WriteConfig) -> None:
    config = load_config(write_config(PLACED))
    assert [t for t, _ in config.server_environments("s2")] == ["1", "2"]
    team = config.team["2"].model_copy(update={"server": "default"})
    copy = config.model_copy(update={"team": {**config.team, "2": team}})
    assert [t for t, _ in copy.server_environments("s2")] == ["1"]
    assert [t for t, _ in config.server_environments("s2")] == ["1", "2"]
    assert copy.environment_port("2", "main") == config.environment_port("2", "main")  # the rest is kept


def test_validate_shows_where_each_environment_runs(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    from oduflow_iac import moves
    from oduflow_iac.cli import main

    path = write_config(PLACED)
    entry = {"team": "1", "branch": "dev", "from": "default", "to": "s2", "phase": "copying"}
    moves.moves_path_for(path).write_text(f'{{"version": 1, "moves": [{json.dumps(entry)}]}}', encoding="utf-8")
    assert main(["validate", "--config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("valid: 2 teams, 3 environments on 2 servers")
    assert [line.rsplit("  on ", 1)[1] for line in out[1:]] == ["s2", "default -> s2", "s2"]
    # one server: the listing is as it always was
    assert main(["validate", "--config", str(EXAMPLE)]) == 0
    assert " on " not in capsys.readouterr().out
