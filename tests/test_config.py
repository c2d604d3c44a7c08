"""The oduflow.toml model: Oduflow's own file loads unchanged; every bad input is one clear line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac.config import ConfigError, load_config
from tests.conftest import EXAMPLE, SEED

WriteConfig = Callable[[str], Path]


def problems(write_config: WriteConfig, text: str) -> list[str]:
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def one_problem(write_config: WriteConfig, text: str) -> str:
    found = problems(write_config, text)
    assert len(found) == 1, found
    return found[0]


def test_seed_file_of_the_product_loads_unchanged(write_config: WriteConfig) -> None:
    config = load_config(write_config(SEED))
    assert [t for t, _ in config.teams] == ["1", "2"]
    team = config.team["1"]
    assert team.hostname == "team-a.example.com"
    assert team.port_range == (50000, 50050)
    assert team.environment_slots == 20
    assert team.environment_hostname_mode == "branch"
    # Inline secrets are kept, remembered as inline, and never shown.
    assert team.auth_token.is_inline and team.auth_token.reveal() == "token-team-a"
    assert "token-team-a" not in repr(team) and "pass-a" not in repr(config)
    assert config.inline_secrets() == [
        "team.1.auth_token",
        "team.1.ui_password",
        "team.2.auth_token",
        "team.2.ui_password",
    ]


def test_half_open_ranges_that_touch_do_not_overlap(write_config: WriteConfig) -> None:
    config = load_config(write_config(SEED))
    assert config.team["2"].port_range[0] == config.team["1"].port_range[1]


def test_product_keys_and_server_sections_are_accepted(write_config: WriteConfig) -> None:
    config = load_config(
        write_config(
            SEED
            + """
        [server]
        data_dir = "/srv/oduflow"
        [routing]
        mode = "traefik"
        [database]
        host = "oduflow-db"
        [storage]
        x = 1
        [lifecycle]
        y = 2
        [agent]
        z = 3
        [production]
        enabled = true
        [route.api]
        target = "x"
    """.replace("\n        ", "\n")
        )
    )
    assert config.server == {} and list(config.servers) == ["default"]
    assert [n.key for n in config.notices if n.key.startswith("server")] == ["server.data_dir"]


def test_all_documented_team_keys(write_config: WriteConfig) -> None:
    config = load_config(
        write_config("""
        [team.7]
        hostname = "t.example.com"
        auth_token = "secret:t7-token"
        ui_password = "secret:t7-ui"
        port_range = [40000, 40010]
        base_domain = "dev.example.com"
        environment_slots = 5
        environment_hostname_mode = "slots"
        service_slots = 3
        production_token = "secret:t7-prod"
        db_quota_gb = 10
        disk_quota_gb = 50
        public_scheme = "https"
        [[team.7.environments]]
        branch = "feature/x"
        odoo_image = "odoo:17.0"
    """)
    )
    team = config.team["7"]
    assert team.auth_token.config_key == "t7-token" and not team.auth_token.is_inline
    env = team.environments[0]
    assert config.env_hostname("7", env) == "env-1.dev.example.com"
    assert config.inline_secrets() == []


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert len(config.teams) == 2
    types = {e.type for _, t in config.teams for e in t.environments}
    assert types == {"development", "staging", "production"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[team.1\nhostname = "x"\n', "oduflow.toml:1: TOML syntax error"),
        ('[team.1]\nhostname = "a"\nhostname = "b"\n', "oduflow.toml:3: TOML syntax error"),
    ],
)
def test_toml_syntax_errors_name_file_and_line(write_config: WriteConfig, text: str, expected: str) -> None:
    message = one_problem(write_config, text)
    assert message.endswith(str(message)) and expected in message


def test_wrong_type(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED.replace("port_range = [50000, 50050]", 'port_range = "50000"'))
    assert message.startswith(f"{Path('oduflow.toml')}".split("/")[-1]) or "oduflow.toml" in message
    assert "team.1.port_range" in message


def test_missing_required_key(write_config: WriteConfig) -> None:
    message = one_problem(write_config, '[team.1]\nauth_token = "t"\nport_range = [50000, 50010]\n')
    assert message.endswith("team.1.hostname: required key is missing")


def test_unknown_key_in_owned_section_is_a_typo(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED.replace('ui_password = "pass-a"', 'ui_pasword = "pass-a"'))
    assert "team.1.ui_pasword: unknown key" in message


def test_unknown_top_level_section(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED + "\n[platfrom]\ntls = true\n")
    assert "platfrom: unknown key" in message


@pytest.mark.parametrize(
    ("port_range", "expected"),
    [
        ("[50050, 50000]", "team.1.port_range: [50050, 50000) is reversed: the start must be below the end"),
        ("[50000, 50000]", "team.1.port_range: [50000, 50000) is empty: the end is exclusive"),
        ("[80, 100]", "team.1.port_range: [80, 100) is outside 1024-65535"),
        ("[65000, 65540]", "team.1.port_range: [65000, 65540) is outside 1024-65535"),
    ],
)
def test_bad_port_ranges(write_config: WriteConfig, port_range: str, expected: str) -> None:
    message = one_problem(write_config, SEED.replace("[50000, 50050]", port_range))
    assert message.endswith(expected)


def test_overlapping_port_ranges(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED.replace("[50050, 50100]", "[50040, 50100]"))
    assert message == "oduflow.toml: team.2.port_range: [50040, 50100) overlaps team.1 [50000, 50050)" or (
        message.endswith("team.2.port_range: [50040, 50100) overlaps team.1 [50000, 50050)")
    )


def test_overlap_is_found_past_a_wide_range(write_config: WriteConfig) -> None:
    text = (
        SEED.replace("[50000, 50050]", "[50000, 50200]")
        + """
[team.3]
hostname = "c.example.com"
auth_token = "token-c"
port_range = [50150, 50160]
"""
    )
    found = problems(write_config, text)
    assert any("team.2.port_range" in p and "overlaps team.1" in p for p in found)
    assert any("team.3.port_range" in p and "overlaps team.1" in p for p in found)


def test_duplicate_hostnames_case_insensitive(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED.replace("team-b.example.com", "Team-A.Example.com"))
    assert message.endswith("team.2.hostname: 'Team-A.Example.com' is already the hostname of team.1")


def test_duplicate_auth_tokens(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED.replace("token-team-b", "token-team-a"))
    assert message.endswith("team.2.auth_token: the same token as team.1.auth_token")
    assert "token-team-a" not in message  # the token itself is never printed


def env_block(team: str, branch: str, extra: str = "") -> str:
    return f'\n[[team.{team}.environments]]\nbranch = "{branch}"\nodoo_image = "odoo:17.0"\n{extra}'


def test_more_environments_than_slots(write_config: WriteConfig) -> None:
    text = SEED.replace("port_range = [50000, 50050]", "port_range = [50000, 50050]\nenvironment_slots = 2")
    text += "".join(env_block("1", f"b{i}") for i in range(3))
    message = one_problem(write_config, text)
    assert message.endswith("team.1.environments: 3 environments but environment_slots is 2")


def test_more_environments_than_ports(write_config: WriteConfig) -> None:
    text = SEED.replace("[50000, 50050]", "[50000, 50002]")
    text += "".join(env_block("1", f"b{i}") for i in range(3))
    message = one_problem(write_config, text)
    assert message.endswith("team.1.environments: 3 environments but port_range has only 2 ports")


def test_pins_outside_the_range_leave_its_ports_to_the_others(write_config: WriteConfig) -> None:
    # A pin outside the range is the policy pack's business, not a config error.
    text = SEED.replace("[50000, 50050]", "[50000, 50003]")
    text += env_block("1", "a", "port = 50060\n") + env_block("1", "b") + env_block("1", "c", "port = 50001\n")
    config = load_config(write_config(text))
    assert config.ports["1"] == {"a": 50060, "b": 50000, "c": 50001}


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("", "branch name is empty"),
        (" main", "branch name ' main' has surrounding whitespace"),
        ("feature/../x", "branch name 'feature/../x' contains `..` (git check-ref-format --branch)"),
        ("./x", "branch name './x' has a path component starting with `.`"),
        ("a\\\\b", "contains `\\`, which git refuses in a ref name"),
        ("a\\u0000b", "contains U+0000, which git refuses in a ref name"),
        ("--upload-pack=touch x", "starts with `-` (it would be read as a command-line option)"),
        ("a b", "contains U+0020, which git refuses in a ref name"),
        ("x.lock", "has a path component ending with `.lock`"),
        ("!!!", "branch name '!!!' has nothing left after slugging"),
        ("x" * 101, "branch name is longer than 100 characters"),
    ],
)
def test_invalid_branch_names(write_config: WriteConfig, branch: str, expected: str) -> None:
    message = one_problem(write_config, SEED + env_block("1", branch))
    assert "team.1.environments[0].branch" in message
    assert expected in message


def test_branches_mapping_to_one_database(write_config: WriteConfig) -> None:
    text = SEED + env_block("1", "feature/login") + env_block("1", "feature-login")
    message = one_problem(write_config, text)
    assert message.endswith(
        "team.1.environments[1].branch: 'feature-login' and 'feature/login' both map to database "
        "'oduflow_1_feature-login'"
    )


def test_same_branch_in_two_teams_is_fine(write_config: WriteConfig) -> None:
    config = load_config(write_config(SEED + env_block("1", "main") + env_block("2", "main")))
    assert config.ports == {"1": {"main": 50000}, "2": {"main": 50050}}


def test_unknown_environment_type(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED + env_block("1", "main", 'type = "prod"\n'))
    assert "team.1.environments[0].type: 'prod' is not one of" in message


def test_undefined_template(write_config: WriteConfig) -> None:
    text = SEED + '\n[[team.1.environments]]\nbranch = "main"\ntemplate = "default"\n'
    message = one_problem(write_config, text)
    assert message.endswith("team.1.environments[0].template: template 'default' is not defined in [team.1.templates]")


def test_undefined_addon_repository(write_config: WriteConfig) -> None:
    text = SEED + env_block("1", "main", 'addons = { "ghost" = "x" }\n')
    message = one_problem(write_config, text)
    assert message.endswith("team.1.environments[0].addons.ghost: addon repository 'ghost' is not defined at any level")


def test_environment_needs_an_image(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED + '\n[[team.1.environments]]\nbranch = "main"\n')
    assert message.endswith("team.1.environments[0].odoo_image: an environment needs `odoo_image` or a `template`")


def test_bad_secret_reference(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED.replace('"token-team-a"', '"secret:"'))
    assert "team.1.auth_token" in message and "secret:KEY" in message


def test_every_problem_is_reported_one_per_line(write_config: WriteConfig) -> None:
    text = SEED.replace("team-b.example.com", "team-a.example.com").replace("token-team-b", "token-team-a")
    found = problems(write_config, text)
    assert len(found) == 2
    with pytest.raises(ConfigError) as info:
        load_config(write_config(text))
    assert str(info.value).count("\n") == 1


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/oduflow.toml")
    assert str(info.value) == "/nonexistent/oduflow.toml: file not found"


def test_platform_defaults_are_overridable_per_type(write_config: WriteConfig) -> None:
    text = SEED + "\n[platform.environment_defaults.development]\nmemory_mb = 1024\n" + env_block("1", "dev")
    config = load_config(write_config(text))
    limits = config.env_limits(config.team["1"].environments[0])
    assert (limits.cpu, limits.memory_mb, limits.workers) == (1.0, 1024, 0)


def test_team_ids_cannot_make_database_names_collide(write_config: WriteConfig) -> None:
    text = """
        [team.1]
        hostname = "a.example.com"
        auth_token = "ta"
        port_range = [50000, 50010]
        [[team.1.environments]]
        branch = "2_x"
        odoo_image = "odoo:17.0"
        [team.1_2]
        hostname = "b.example.com"
        auth_token = "tb"
        port_range = [50010, 50020]
        [[team.1_2.environments]]
        branch = "x"
        odoo_image = "odoo:17.0"
    """
    found = problems(write_config, text)
    assert any(
        p.endswith(
            "team.1_2: a team id is lower-case letters and digits (it is part of database, container and bucket "
            "names, where `_` and `-` separate it from the branch) and not `template`"
        )
        for p in found
    )
    assert any("database 'oduflow_1_2_x' is already the database of team.1.environments[0].branch" in p for p in found)


def test_template_and_environment_databases_are_distinct(write_config: WriteConfig) -> None:
    text = (
        SEED
        + """
[team.1.templates."a/b"]
odoo_image = "odoo:17.0"
[team.1.templates.a-b]
odoo_image = "odoo:17.0"
"""
    )
    message = one_problem(write_config, text)
    assert message.endswith(
        "team.1.templates.a-b: database 'oduflow_template_1_a-b' is already the database of team.1.templates.a/b"
    )


def test_backup_image_must_dump_the_server_version(write_config: WriteConfig) -> None:
    text = SEED + '\n[platform]\npostgres_image = "postgres:17.2"\n'
    text += '[backup]\nbucket_prefix = "acme"\nregion = "eu-west-1"\n'
    message = one_problem(write_config, text)
    assert message.endswith(
        "platform.backup_image: its pg_dump 16 cannot dump the PostgreSQL 17 server of "
        "platform.postgres_image; use a backup image for PostgreSQL 17"
    )
    # A matching image (still under [platform]) is accepted.
    fixed = text.replace("[backup]", 'backup_image = "eeshugerman/postgres-backup-s3:17"\n[backup]')
    assert load_config(write_config(fixed)).platform.backup_image.endswith(":17")


def test_backup_image_version_read_before_the_digest(write_config: WriteConfig) -> None:
    digits = "sha256:" + "1" * 64  # a digest of digits only must not read as a version
    seed = SEED + '\n[backup]\nbucket_prefix = "acme"\nregion = "eu-west-1"\n[platform]\n'
    pinned = seed + 'postgres_image = "postgres:17.2-bookworm@' + digits + '"\n'
    assert "its pg_dump 16 cannot dump the PostgreSQL 17 server" in one_problem(write_config, pinned)
    digest_only = seed + 'postgres_image = "postgres@' + digits + '"\n'
    assert load_config(write_config(digest_only)).platform.postgres_image.endswith(digits)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('\n[platform]\ntls = "yes"\n', "platform.tls"),
        ("\n[platform]\nbasic_auth_cost = 3\n", "platform.basic_auth_cost"),
        ("\n[platform]\nbasic_auth_cost = 15\n", "platform.basic_auth_cost"),
        (
            '\n[[team.1.environments]]\nbranch = "m"\nodoo_image = "odoo:17.0"\nbackup = "off"\n',
            "team.1.environments[0].backup",
        ),
        (
            '\n[[team.1.environments]]\nbranch = "m"\nodoo_image = "odoo:17.0"\nworkers = "2"\n',
            "team.1.environments[0].workers",
        ),
        (
            '\n[[team.1.environments]]\nbranch = "m"\nodoo_image = "odoo:17.0"\ncpu = inf\n',
            "team.1.environments[0].cpu",
        ),
        (
            '\n[[team.1.environments]]\nbranch = "m"\nodoo_image = "odoo:17.0"\naddons = { x = true }\n',
            "team.1.environments[0].addons.x",
        ),
    ],
)
def test_wrong_types_are_not_coerced_and_give_one_line(write_config: WriteConfig, extra: str, key: str) -> None:
    message = one_problem(write_config, SEED + extra)
    assert f": {key}: " in message


def test_port_range_of_three_numbers(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED.replace("[50000, 50050]", "[50000, 50050, 50100]"))
    assert "team.1.port_range" in message


@pytest.mark.parametrize(
    "host", ["https://team-a.example.com/odoo", "Team A.example.com", "a`) || PathPrefix(`/", "-a.example.com"]
)
def test_hostnames_must_be_hostnames(write_config: WriteConfig, host: str) -> None:
    message = one_problem(write_config, SEED.replace("team-a.example.com", host))
    assert "team.1.hostname" in message and "is not a hostname" in message


def test_environment_hostnames_are_unique_across_teams(write_config: WriteConfig) -> None:
    text = SEED + env_block("1", "feature_y") + env_block("1", "feature/y")
    message = one_problem(write_config, text)
    assert message.endswith(
        "team.1.environments[1].branch: hostname 'feature-y.team-a.example.com' is already that of "
        "team.1.environments[0]"
    )
    text = SEED + env_block("1", "main", 'hostname = "team-b.example.com"\n')
    message = one_problem(write_config, text)
    assert (
        "team.1.environments[0].hostname: 'team-b.example.com' is not under the team's base "
        "'team-a.example.com' nor one of its custom_domains; it is owned by team.2 (" in message
    )
    assert message.endswith("oduflow.toml: team.2.hostname)")


def test_two_teams_cannot_share_a_base_domain(write_config: WriteConfig) -> None:
    text = SEED.replace(
        "port_range = [50050, 50100]", 'port_range = [50050, 50100]\nbase_domain = "team-a.example.com"'
    )
    message = one_problem(write_config, text)
    assert message.endswith(
        "team.2.base_domain: environments would live under 'team-a.example.com', as those of team.1.hostname"
    )


def test_ui_password_within_bcrypt_limit(write_config: WriteConfig) -> None:
    message = one_problem(write_config, SEED.replace('"pass-a"', '"' + "p" * 73 + '"'))
    assert message.endswith("team.1.ui_password: is longer than 72 bytes, the most a bcrypt hash takes")
    assert "ppppp" not in message


DNS = '\n[dns]\nzone = "example.com"\nzone_id = "z"\ntarget = "203.0.113.1"\n'


def test_dns_ttl_rules_and_token_with_tls(write_config: WriteConfig) -> None:
    assert "dns: ttl is 1 (automatic) or 60-86400" in one_problem(write_config, SEED + DNS + "ttl = 5\n")
    assert "dns: ttl is 1" in one_problem(write_config, SEED + DNS + "ttl = 300\nproxied = true\n")
    message = one_problem(write_config, SEED + DNS + "\n[platform]\ntls = true\n")
    assert message.endswith(
        "dns.api_token: required when platform.tls is on: certificates are issued through Cloudflare DNS"
    )


def test_model_dump_hides_inline_secrets(write_config: WriteConfig) -> None:
    config = load_config(write_config(SEED))
    assert "token-team-a" not in config.model_dump_json() and "pass-a" not in str(config.model_dump())


def test_default_images_are_pinned_by_digest() -> None:
    """Every default image carries a well-formed digest, except the backup image, which has none
    published (docs/configuration.md, Images) and is reported as floating."""
    from oduflow_iac.config import Platform
    from oduflow_iac.policy import floating_tag, image_problem

    images = {k: v for k, v in Platform().model_dump().items() if k.endswith("_image")}
    assert set(images) >= {"postgres_image", "traefik_image", "addons_fetch_image", "docker_proxy_image"}
    assert "db_proxy_image" in images and "backup_image" in images
    for key, image in images.items():
        assert image_problem(image) is None, key
        if key == "backup_image":
            assert floating_tag(image) == "16"
        else:
            assert "@sha256:" in image and floating_tag(image) is None, key


def test_an_oduflow_template_name_keeps_its_case(write_config: WriteConfig) -> None:
    from oduflow_iac import naming

    path = write_config(
        SEED + '\n[team.1.templates.Big-Client_2]\nodoo_image = "odoo:17.0"\n'
        '[[team.1.environments]]\nbranch = "main"\ntype = "production"\ntemplate = "Big-Client_2"\n'
    )
    config = load_config(path)
    assert list(config.team["1"].templates) == ["Big-Client_2"]
    assert naming.template_db_name("1", "Big-Client_2") == "oduflow_template_1_Big-Client_2"
