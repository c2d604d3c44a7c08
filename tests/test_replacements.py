"""The provider table: entries checked against the provider sources read (cited in the module),
every input the program sends is classified, and every name in the table is an input of the
installed SDK's resource (a typo would silently classify nothing)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from oduflow_iac.offline import replacements
from oduflow_iac.offline.plan import plan_config
from oduflow_iac.offline.replacements import RULES, classify, covered, top_level
from tests.conftest import ROOT

CONTAINER = "docker:index/container:Container"


@pytest.mark.parametrize(
    ("type_", "prop", "action"),
    [
        # kreuzwerker/terraform-provider-docker v4.5.0 resource_docker_container.go
        (CONTAINER, "labels", "replace"),  # "labels": ForceNew: true
        (CONTAINER, "cpus", "replace"),  # "cpus": ForceNew: true
        (CONTAINER, "image", "replace"),
        (CONTAINER, "envs", "replace"),  # "env": ForceNew
        (CONTAINER, "uploads", "replace"),  # "upload": ForceNew
        (CONTAINER, "networksAdvanced", "replace"),
        (CONTAINER, "memory", "update"),  # no ForceNew: the provider's Update sets it
        (CONTAINER, "memorySwap", "update"),
        (CONTAINER, "healthcheck", "update"),
        (CONTAINER, "destroyGraceSeconds", "update"),
        (CONTAINER, "restart", "update"),
        ("docker:index/network:Network", "labels", "replace"),  # no Update at all
        ("docker:index/volume:Volume", "labels", "replace"),
        # cyrilgdn/terraform-provider-postgresql: a database is renamed in place, a role always
        ("postgresql:index/database:Database", "name", "update"),
        ("postgresql:index/database:Database", "template", "replace"),
        ("postgresql:index/database:Database", "lcCollate", "replace"),
        ("postgresql:index/role:Role", "name", "update"),
        ("postgresql:index/role:Role", "password", "update"),
        ("postgresql:index/grant:Grant", "privileges", "update"),
        ("postgresql:index/grant:Grant", "database", "replace"),
        # hashicorp/terraform-provider-random v3.9.0: every input RequiresReplace
        ("random:index/randomPassword:RandomPassword", "length", "replace"),
        ("random:index/randomPassword:RandomPassword", "keepers", "replace"),
        ("random:index/randomString:RandomString", "special", "replace"),
        # cloudflare v5.19.1 dns_record: zone_id and type RequiresReplace
        ("cloudflare:index/dnsRecord:DnsRecord", "content", "update"),
        ("cloudflare:index/dnsRecord:DnsRecord", "zoneId", "replace"),
        ("aws:iam/accessKey:AccessKey", "user", "replace"),
        ("aws:iam/userPolicy:UserPolicy", "policy", "update"),
        ("aws:s3/bucket:Bucket", "bucket", "replace"),
        # providers: DiffConfig replaces only ForcesProviderReplace keys, which none sets
        ("pulumi:providers:docker", "host", "update"),
        ("pulumi:providers:postgresql", "password", "update"),
    ],
)
def test_entries_follow_the_provider_source(type_: str, prop: str, action: str) -> None:
    assert classify(type_, True, [f"{prop}[0].x" if prop == "labels" else prop], []).action == action


def test_the_docker_provider_deletes_a_container_before_replacing_it() -> None:
    assert replacements.deletes_before_replace(CONTAINER, True, False)
    assert not replacements.deletes_before_replace("docker:index/volume:Volume", True, False)
    assert replacements.deletes_before_replace("docker:index/volume:Volume", True, True)  # asked for


def test_replace_on_changes_and_unknown_inputs_replace() -> None:
    assert classify(CONTAINER, True, ["memory"], ["memory"]).action == "replace"
    assert classify(CONTAINER, True, ["memory"], ["*"]).action == "replace"
    verdict = classify(CONTAINER, True, ["someNewInput"], [])
    assert (verdict.action, verdict.unknown) == ("replace", ["someNewInput"])
    assert classify("vendor:index/thing:Thing", True, ["x"], []).action == "replace"
    assert classify("oduflow:index:OdooEnvironment", False, ["x"], []).action == "update"


def test_paths() -> None:
    assert top_level("labels[2].value") == "labels"
    assert top_level('tags["oduflow.team"]') == "tags"
    assert covered(["envs"], "envs[3]") and covered(["envs[3]"], "envs")
    assert not covered(["env"], "envs[3]") and not covered(["labels[1]"], "labels[10].value")


def _sdk_inputs(type_: str) -> set[str]:
    """The input properties (engine names) of the installed SDK's resource for `type_`."""
    pkg, rest = type_.split(":", 1)
    module_path, cls = rest.split(":")
    mod_dir, mod_file = module_path.split("/")
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", mod_file).lower()
    # Read, not imported: importing a submodule directly defeats the SDKs' lazy loading.
    spec = importlib.util.find_spec(f"pulumi_{pkg}")
    assert spec is not None and spec.origin is not None
    folder = Path(spec.origin).parent / ("" if mod_dir == "index" else mod_dir)
    text = (folder / f"{snake}.py").read_text(encoding="utf-8")
    start = text.index(f"class {cls}(pulumi.CustomResource)")
    source = text[text.index("def _internal_init", start) :]
    source = source[: source.index("super(")]
    names = re.findall(r'__props__\.__dict__\["(\w+)"\] = (?!None\b)', source)
    return {re.sub(r"_(\w)", lambda m: m.group(1).upper(), n) for n in names}


@pytest.mark.parametrize("type_", sorted(RULES))
def test_every_name_in_the_table_is_an_input_of_the_sdk(type_: str) -> None:
    rules = RULES[type_]
    named = rules.replace | rules.update | rules.computed
    missing = named - _sdk_inputs(type_)
    # Write-only and secret inputs are set through `pulumi.Output.secret(...)`, not matched above.
    assert missing <= {"password", "passwordWo"}, sorted(missing)


@pytest.mark.parametrize("stack", ["local", "cloud"])
def test_every_input_the_program_sends_is_classified(stack: str) -> None:
    """A new input of a component must be put in the table (with its source) before a diff trusts it."""
    run = plan_config(None, stack, ROOT)
    unknown = {
        f"{r.type}.{prop}"
        for r in run.resources
        if r.custom
        for prop in r.inputs
        if not replacements.rules_for(r.type, r.custom).known(prop)
    }
    assert not unknown, sorted(unknown)
