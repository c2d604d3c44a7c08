"""Names: identical to Oduflow's wherever those are valid, unique, and within 63 bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from oduflow_iac import naming
from oduflow_iac.config import branch_problem


def test_names_from_the_product_docs() -> None:
    assert naming.env_db_name("1", "feature/login") == "oduflow_1_feature-login"
    assert naming.template_db_name("1", "default") == "oduflow_template_1_default"
    assert naming.template_db_name("2", "client/v17") == "oduflow_template_2_client-v17"
    # Oduflow keeps the case and dots of a template name: an existing template database is adopted.
    assert naming.template_db_name("1", "Big-Client_2") == "oduflow_template_1_Big-Client_2"
    assert naming.template_db_name("1", "v17.0/Base") == "oduflow_template_1_v17.0-Base"
    assert naming.env_container_name("1", "feature/login") == "oduflow-1-feature-login-odoo"
    assert naming.team_network_name("2") == "oduflow-2-net"
    assert naming.SHARED_NETWORK == "oduflow-net"
    assert naming.SHARED_DB_CONTAINER == "oduflow-db"
    assert naming.SHARED_TRAEFIK_CONTAINER == "oduflow-traefik"
    assert (naming.LABEL_TEAM, naming.LABEL_MANAGED, naming.LABEL_ENV) == (
        "oduflow.team",
        "oduflow.managed",
        "oduflow.env",
    )


def test_slug_drops_and_lowercases() -> None:
    assert naming.slugify_branch("Feature/JIRA-12_fix.v2") == "feature-jira-12_fixv2"


def test_long_names_are_cut_with_a_digest() -> None:
    branch = "feature/" + "x" * 90
    name = naming.env_db_name("1", branch)
    assert len(name.encode()) == 63
    assert name.startswith("oduflow_1_feature-xxx")
    other = naming.env_db_name("1", branch + "y")
    assert other != name and len(other.encode()) == 63
    assert naming.env_db_name("1", branch) == name  # deterministic


def test_hostnames() -> None:
    assert naming.env_hostname("team-a.localhost", "feature/Login_2", "branch", 3) == "feature-login-2.team-a.localhost"
    assert naming.env_hostname("team-a.localhost", "feature/x", "slots", 3) == "env-3.team-a.localhost"


def test_bucket_names_are_valid_s3_names() -> None:
    assert naming.team_backup_bucket_name("Acme_Backups", "1") == "acme-backups-team-1"


branches = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00\\"), min_size=1, max_size=100).filter(
    lambda b: branch_problem(b) is None
)


@settings(max_examples=300)
@given(st.lists(branches, min_size=1, max_size=30, unique_by=naming.slugify_branch), st.sampled_from(["1", "42"]))
def test_db_names_unique_and_within_63_bytes(branch_list: list[str], team: str) -> None:
    names = [naming.env_db_name(team, b) for b in branch_list]
    assert all(len(n.encode()) <= naming.MAX_IDENTIFIER_BYTES for n in names)
    assert len(set(names)) == len(names)
    containers = [naming.env_container_name(team, b) for b in branch_list]
    assert all(len(c.encode()) <= 63 for c in containers)
    assert len(set(containers)) == len(containers)
