"""Team resolution in the server's order: token, Host header, the single team, team "1"."""

from __future__ import annotations

import hmac
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from oduflow_iac import teams
from oduflow_iac.config import Config, load_config
from oduflow_iac.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TWO_TEAMS = """
[team.1]
hostname = "team-a.example.com"
auth_token = "token-a"
ui_password = "pass-a"
production_token = "prod-a"
port_range = [50000, 50050]
custom_domains = ["erp.customer.example"]

[[team.1.environments]]
branch = "main"
odoo_image = "odoo:17.0"
hostname = "erp.customer.example"

[team.2]
hostname = "Team-B.Example.com"
auth_token = "secret:team2-token"
ui_password = "pass-b"
base_domain = "b.example.com"
port_range = [50050, 50100]

[[team.2.environments]]
branch = "feature/x"
odoo_image = "odoo:17.0"
"""

ONE_TEAM = """
[team.7]
hostname = "solo.example.com"
auth_token = "token-solo"
port_range = [50000, 50050]
"""

NO_TEAM_ONE = """
[team.2]
hostname = "b.example.com"
auth_token = "token-b"
port_range = [50000, 50050]

[team.3]
hostname = "c.example.com"
auth_token = "token-c"
port_range = [50050, 50100]
"""


@pytest.fixture
def two(write_config: Callable[..., Path]) -> Config:
    return load_config(write_config(TWO_TEAMS))


def secrets(**values: str) -> teams.SecretResolver:
    table = {k.replace("_", "-"): v for k, v in values.items()}
    return table.get


# --------------------------------------------------------------------------------------------
# 1. Token


def test_inline_token(two: Config) -> None:
    assert teams.resolve_team(two, token="token-a") == "1"
    assert teams.resolve_team(two, token="prod-a") == "1"  # the production token names the team too


def test_secret_token_through_the_resolver(two: Config) -> None:
    assert teams.resolve_team(two, token="s3cret", secrets=secrets(team2_token="s3cret")) == "2"


def test_secret_token_from_the_environment_by_default(two: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODUFLOW_SECRET_TEAM2_TOKEN", "from-env")
    assert teams.resolve_team(two, token="from-env") == "2"


def test_token_wins_over_host(two: Config) -> None:
    assert teams.resolve_team(two, token="token-a", host="team-b.example.com") == "1"


def test_every_team_is_compared_with_compare_digest(two: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(teams.hmac, "compare_digest", spy)
    assert teams.resolve_team(two, token="token-a", secrets=secrets(team2_token="s")) == "1"
    # auth and production tokens of team 1, then team 2's: no early exit on the first match
    assert [a for a, _ in seen] == [b"token-a", b"prod-a", b"s"]


def test_a_wrong_token_falls_through_to_the_host(two: Config) -> None:
    assert teams.resolve_team(two, token="wrong", host="team-b.example.com") == "2"


def test_strict_refuses_a_wrong_token_and_names_the_unresolved_secrets(two: Config) -> None:
    with pytest.raises(UsageError) as info:
        teams.resolve_team(two, token="wrong", host="team-b.example.com", secrets=secrets(), strict=True)
    message = str(info.value)
    assert message.split(": ", 1)[1].startswith("the token matches no team's auth_token")
    assert "secret tokens team2-token" in message and "ODUFLOW_SECRET_TEAM2_TOKEN" in message


def test_non_ascii_tokens_compare(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(ONE_TEAM.replace("token-solo", "jeton-été")))
    assert teams.match_token(config, "jeton-été")[0] == "7"
    assert teams.match_token(config, "jeton-ete")[0] is None


# --------------------------------------------------------------------------------------------
# 2. Host header


@pytest.mark.parametrize(
    ("host", "team"),
    [
        ("team-a.example.com", "1"),
        ("TEAM-A.example.com:8443", "1"),  # case-insensitive, port stripped
        ("team-b.example.com", "2"),  # the configured hostname is mixed-case
        ("team-b.example.com.", "2"),  # trailing dot
        ("erp.customer.example", "1"),  # an environment's own hostname
        ("feature-x.b.example.com", "2"),  # an environment under the team's base
        ("new-branch.b.example.com:80", "2"),  # any name under the base (wildcard DNS)
        ("x.team-a.example.com", "1"),  # base defaults to the hostname
    ],
)
def test_host(two: Config, host: str, team: str) -> None:
    assert teams.resolve_team(two, host=host) == team


NESTED = """
[team.1]
hostname = "example.com"
auth_token = "a"
port_range = [50000, 50050]

[team.2]
hostname = "portal.example.com"
base_domain = "b.example.com"
auth_token = "b"
port_range = [50050, 50100]
"""


def test_nested_bases_are_refused(write_config: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(NESTED))
    assert "team.2.hostname: 'portal.example.com' is under 'example.com', owned by team.1" in str(err.value)


def test_nested_bases_pick_the_longest() -> None:
    # The loader refuses nested bases; a config built without it still resolves deterministically.
    config = Config.model_validate(tomllib.loads(NESTED))
    assert teams.match_host(config, "x.b.example.com") == "2"
    assert teams.match_host(config, "x.example.com") == "1"


def test_host_normalisation() -> None:
    assert teams.normalise_host(" Team-A.Example.com:8443 ") == "team-a.example.com"
    assert teams.normalise_host("[::1]:8080") == "::1"
    assert teams.normalise_host("::1") == "::1"


def test_unknown_host_falls_through(two: Config) -> None:
    assert teams.resolve_team(two, host="elsewhere.org") == "1"  # default team


# --------------------------------------------------------------------------------------------
# 3. Single team, 4. team "1"


def test_single_team(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(ONE_TEAM))
    assert teams.resolve_team(config) == "7"
    assert teams.resolve_team(config, token="wrong", host="nowhere") == "7"


def test_default_is_team_1(two: Config) -> None:
    assert teams.resolve_team(two) == "1"


def test_no_team_1_and_nothing_matched_is_refused(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(NO_TEAM_ONE))
    with pytest.raises(UsageError, match=r"cannot tell the team: .* \(teams: 2, 3\)"):
        teams.resolve_team(config)
    assert teams.resolve_team(config, host="c.example.com") == "3"


def test_no_team_at_all(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config("[platform]\n"))
    with pytest.raises(UsageError, match="no team is configured"):
        teams.resolve_team(config)


def test_require_team(two: Config) -> None:
    assert teams.require_team(two, "2") == "2"
    with pytest.raises(UsageError, match=r"team '5' is not defined \(teams: 1, 2\)"):
        teams.require_team(two, "5")


# --------------------------------------------------------------------------------------------
# Resolvers


def test_env_var_names_and_chaining() -> None:
    assert teams.env_var_for("team1-token") == "ODUFLOW_SECRET_TEAM1_TOKEN"
    assert teams.env_var_for("a.b") == "ODUFLOW_SECRET_A_B"
    env = teams.env_secrets({"ODUFLOW_SECRET_K": "v", "ODUFLOW_SECRET_EMPTY": ""})
    assert env("k") == "v" and env("empty") is None and env("missing") is None
    resolve = teams.chain(env, secrets(missing="fallback"))
    assert resolve("k") == "v" and resolve("missing") == "fallback" and resolve("none") is None
