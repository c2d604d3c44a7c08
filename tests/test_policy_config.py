"""The policy-pack config rendered from oduflow.toml, and its fit with the pack's schemas."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oduflow_iac import policy
from oduflow_iac.config import load_config
from oduflow_iac.offline import bridge
from oduflow_iac.policy_config import render_policy_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "oduflow.toml"
SCHEMAS = {p.name: p.config_schema for p in policy.POLICIES}


def test_example_config() -> None:
    rendered = render_policy_config(load_config(EXAMPLE))
    assert rendered["ports"] == {"ranges": {"1": {"start": 50000, "end": 50050}, "2": {"start": 50050, "end": 50100}}}
    environments = rendered["quotas"].pop("environments")
    assert rendered["quotas"] == {
        "teams": {
            "1": {"cpu": 8, "memory_mb": 16384, "environments": 10},
            "2": {"cpu": 6, "memory_mb": 12288, "environments": 8},
        },
        "organisation": {"cpu": 16, "memory_mb": 32768, "environments": 20},
    }
    assert len(environments) == 7
    assert environments["oduflow-1-main-odoo"] == {"team": "1", "cpu": 2.0, "memory_mb": 4096}
    assert rendered["isolation"] == {"teams": ["1", "2"], "shared_network": "oduflow-net"}
    production = [
        {"team": "1", "branch": "main", "database": "oduflow_1_main", "filestore": "oduflow-1-main-filestore"},
        {"team": "2", "branch": "main", "database": "oduflow_2_main", "filestore": "oduflow-2-main-filestore"},
    ]
    assert rendered["backups"] == {"configured": False, "production": production}
    assert rendered["production-protected"] == {"production": production}
    assert rendered["inline-secrets"] == {"paths": []}
    # Only policies that take config have an entry; every entry is a policy of the pack.
    assert set(rendered) == {name for name, schema in SCHEMAS.items() if schema is not None}
    json.dumps(rendered)  # what `oduflow-iac policy-config` prints


def test_inline_secrets_backups_and_partial_quotas(write_config: Callable[..., Path]) -> None:
    path = write_config(
        """
        [dns]
        zone = "example.com"
        zone_id = "abc"
        target = "203.0.113.7"
        api_token = "inline-cloudflare-token"

        [backup]
        bucket_prefix = "acme-odoo"
        region = "eu-west-1"

        [platform]
        network = "platform-net"

        [team.7]
        hostname = "t7.example.com"
        auth_token = "token-seven"
        ui_password = "secret:t7-ui"
        production_token = "prod-seven"
        port_range = [51000, 51010]

        [team.7.quota]
        memory_mb = 4096

        [[team.7.environments]]
        branch = "release/1.0"
        type = "production"
        odoo_image = "odoo:17.0"
        """
    )
    rendered = render_policy_config(load_config(path))
    assert rendered["inline-secrets"] == {"paths": ["dns.api_token", "team.7.auth_token", "team.7.production_token"]}
    assert rendered["backups"]["configured"] is True
    assert rendered["backups"]["production"] == [
        {
            "team": "7",
            "branch": "release/1.0",
            "database": "oduflow_7_release-10",
            "filestore": "oduflow-7-release-10-filestore",
        }
    ]
    assert rendered["quotas"]["teams"] == {"7": {"memory_mb": 4096}} and rendered["quotas"]["organisation"] == {}
    assert rendered["isolation"]["shared_network"] == "platform-net"


def test_rendered_config_fits_the_schemas(write_config: Callable[..., Path]) -> None:
    configs, levels = bridge.configure(policy.POLICIES, render_policy_config(load_config(EXAMPLE)))
    assert configs["ports"]["ranges"]["1"] == {"start": 50000.0, "end": 50050.0}
    assert levels["ports"] is policy.MANDATORY and levels["inline-secrets"] is policy.ADVISORY


INVALID: list[tuple[str, Any]] = [
    ("ports", {"ranges": {"1": {"start": 50000}}}),
    ("ports", {"ranges": {"1": {"start": 50000, "end": "50050"}}}),
    ("ports", {"ranges": {"1": {"start": 50000, "end": 50050, "step": 1}}}),
    ("ports", {"ranges": {"1": {"start": 0, "end": 10}}}),
    ("ports", {"ranges": []}),
    ("quotas", {"teams": {"1": {"cpu": "8"}}}),
    ("quotas", {"organisation": {"memory_mb": 1.5}}),
    ("quotas", {"organisation": {"environments": -1}}),
    ("quotas", {"environments": {"oduflow-1-main-odoo": {"cpu": 1, "memory_mb": 1}}}),
    ("quotas", {"environments": {"oduflow-1-main-odoo": {"team": 1, "cpu": 1, "memory_mb": 1}}}),
    ("isolation", {"teams": [1, 2]}),
    ("isolation", {"shared_network": None}),
    ("backups", {"configured": 1}),
    ("backups", {"production": [{"team": "1", "branch": "main", "database": "d"}]}),
    ("production-protected", {"production": {"team": "1"}}),
    ("inline-secrets", {"paths": "team.1.auth_token"}),
    (
        "capacity",
        {
            "servers": {
                "s2": {
                    "capacity": {"cpu": 4, "memory_mb": 1},
                    "environments": {},
                    "services_memory_mb": 0,
                    "disk_gb": 0,
                }
            }
        },
    ),
    (
        "capacity",
        {
            "servers": {
                "s2": {
                    "capacity": {"cpu": 4, "memory_mb": 1, "disk_gb": 1},
                    "environments": {"x": {"cpu": "1", "memory_mb": 1}},
                    "services_memory_mb": 0,
                    "disk_gb": 0,
                }
            }
        },
    ),
    (
        "capacity",
        {
            "servers": {
                "s2": {
                    "capacity": {"cpu": 4, "memory_mb": 1, "disk_gb": 1},
                    "environments": {},
                    "services_memory_mb": 1.5,
                    "disk_gb": 0,
                }
            }
        },
    ),
    (
        "capacity",
        {
            "servers": {
                "s2": {
                    "capacity": {"cpu": 4, "memory_mb": 1, "disk_gb": 1},
                    "environments": {},
                    "services_memory_mb": 0,
                }
            }
        },
    ),
    ("capacity", {"servers": []}),
]


def _document(name: str) -> dict[str, Any]:
    schema = SCHEMAS[name]
    assert schema is not None
    return {"type": "object", "properties": schema.properties, "required": schema.required or []}


@pytest.mark.parametrize("name,value", INVALID)
def test_invalid_config_is_refused(name: str, value: Any) -> None:
    assert bridge.schema_problems(value, _document(name))
    with pytest.raises(bridge.PolicyConfigError):
        bridge.configure(policy.POLICIES, {name: value})


def test_schema_check_agrees_with_json_schema() -> None:
    """The bridge checks the subset of JSON schema the pack uses; the reference implementation
    must agree on every rendered and every invalid config."""
    jsonschema = pytest.importorskip("jsonschema")
    rendered = render_policy_config(load_config(EXAMPLE))
    fleet = render_policy_config(load_config(EXAMPLE.parent / "fleet" / "oduflow.toml"))
    cases = [*rendered.items(), *fleet.items(), *INVALID]
    for name, value in cases:
        document = _document(name)
        jsonschema.Draft7Validator.check_schema(document)
        reference = list(jsonschema.Draft7Validator(document).iter_errors(value))
        assert bool(reference) == bool(bridge.schema_problems(value, document)), (name, value)
