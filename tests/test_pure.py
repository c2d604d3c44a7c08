"""Pure functions the components wire: cascade resolution, odoo.conf, labels, backup script."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from oduflow_iac import backup, labels, naming
from oduflow_iac.cascade import odoo_version, resolve_addons
from oduflow_iac.config import AddonRepo
from oduflow_iac.odoo_conf import parse_odoo_conf, render_odoo_conf

PLATFORM = [AddonRepo(name="oca-web", url="https://git.example.com/u1.git", versions={"17.0": "17.0", "18.0": "18.0"})]
ORG = [AddonRepo(name="common", url="https://git.example.com/u2.git", branch="stable")]
PROJECT = [
    AddonRepo(
        name="acme",
        url="https://git.example.com/u3.git",
        branches={"development": "develop", "staging": "staging", "production": "main"},
    ),
    AddonRepo(name="tools", url="https://git.example.com/u4.git", branch="master"),
]
LEVELS = [("platform", PLATFORM), ("organisation", ORG), ("project", PROJECT)]


def branches(env_type: str, image: str, overrides: dict) -> dict[str, str]:
    return {a.name: a.branch for a in resolve_addons(LEVELS, env_type, image, overrides)}  # type: ignore[arg-type]


def test_cascade_inherits_by_default() -> None:
    assert branches("development", "odoo:17.0", {}) == {
        "oca-web": "17.0",
        "common": "stable",
        "acme": "develop",
        "tools": "master",
    }
    assert branches("production", "odoo:18.0", {})["acme"] == "main"
    assert branches("production", "odoo:18.0", {})["oca-web"] == "18.0"


def test_cascade_overrides_and_exclusions() -> None:
    got = branches("staging", "odoo:17.0", {"acme": "feature/x", "tools": False})
    assert got == {"oca-web": "17.0", "common": "stable", "acme": "feature/x"}


def test_cascade_skips_a_version_the_repository_does_not_map() -> None:
    assert "oca-web" not in branches("development", "odoo:16.0", {})


def test_lower_level_redefinition_replaces_the_higher() -> None:
    org_fork = [AddonRepo(name="oca-web", url="https://git.example.com/fork.git", branch="acme-17")]
    got = resolve_addons([("platform", PLATFORM), ("organisation", org_fork)], "development", "odoo:17.0", {})
    assert [(a.name, a.url, a.branch, a.level) for a in got] == [
        ("oca-web", "https://git.example.com/fork.git", "acme-17", "organisation")
    ]


@pytest.mark.parametrize(
    ("image", "version"),
    [("odoo:17.0", "17.0"), ("registry.example.com:5000/odoo:18.0-20250101", "18.0"), ("odoo", None)],
)
def test_odoo_version(image: str, version: str | None) -> None:
    assert odoo_version(image) == version


def test_odoo_conf_hardening() -> None:
    text = render_odoo_conf(
        database="oduflow_1_feature-login",
        admin_passwd="s3cret",
        workers=2,
        memory_mb=2048,
        addons_paths=["/mnt/extra-addons/acme"],
        options={"log_level": "warn"},
    )
    conf = parse_odoo_conf(text)
    assert conf["dbfilter"] == "^oduflow_1_feature\\-login$"
    assert re.fullmatch(conf["dbfilter"][1:-1], "oduflow_1_feature-login")
    assert not re.match(conf["dbfilter"], "oduflow_2_feature-login")
    assert conf["proxy_mode"] == "True" and conf["admin_passwd"] == "s3cret"
    assert conf["workers"] == "2" and conf["log_level"] == "warn"
    assert conf["list_db"] == "False"
    for forbidden in ({"dbfilter": ".*"}, {"list_db": True}, {"LIST_DB": True}):
        with pytest.raises(ValueError, match="is set by the platform"):
            render_odoo_conf(
                database="d", admin_passwd="x", workers=0, memory_mb=1024, addons_paths=[], options=forbidden
            )
    assert conf["addons_path"] == "/mnt/extra-addons/acme"


def test_development_has_no_workers_by_default_and_no_cron_threads() -> None:
    conf = parse_odoo_conf(render_odoo_conf(database="d", admin_passwd="x", workers=0, memory_mb=1024, addons_paths=[]))
    assert conf["workers"] == "0" and conf["max_cron_threads"] == "0" and conf["list_db"] == "False"


REFERENCE = Path(__file__).parent / "data" / "traefik-v3-docker-labels.txt"


def reference_patterns() -> list[re.Pattern[str]]:
    """Each reference label as a pattern: router0, service02, middleware12 ... stand for any name."""
    out = []
    for line in REFERENCE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key = line.split("=", 1)[0]
        pattern = re.escape(key)
        pattern = re.sub(r"(routers|services|middlewares)\\\.[a-z]+\d+", r"\1\\.[^.]+", pattern)
        pattern = re.sub(r"(name)\d", r"[^.]+", pattern)
        out.append(re.compile(pattern + "$"))
    return out


def assert_real_traefik_labels(keys: list[str]) -> None:
    patterns = reference_patterns()
    assert len(patterns) > 150
    unknown = [k for k in keys if k.startswith("traefik.") and not any(p.match(k) for p in patterns)]
    assert unknown == []


@pytest.mark.parametrize("tls", [True, False])
@pytest.mark.parametrize("websocket", [True, False])
def test_traefik_labels_are_real_traefik_v3_labels(tls: bool, websocket: bool) -> None:
    route = labels.Route("1", "feature/x", "feature-x.team-a.localhost", tls, websocket, basic_auth=True)
    values = labels.traefik_labels(route)
    keys = [*values, labels.basic_auth_label("1", "u:h")[0]]
    assert_real_traefik_labels(keys)
    router = naming.env_router_name("1", "feature/x")
    assert values[f"traefik.http.routers.{router}.rule"] == "Host(`feature-x.team-a.localhost`)"
    assert (f"traefik.http.routers.{router}.tls.certresolver" in values) is tls
    ws = naming.env_router_name("1", "feature/x", "ws")
    assert (router, ws) == ("oduflow-1-feature-x-http", "oduflow-1-feature-x-ws")
    assert (f"traefik.http.services.{ws}.loadbalancer.server.port" in values) is websocket
    assert values["traefik.docker.network"] == "oduflow-net"


def test_a_made_up_label_is_caught() -> None:
    with pytest.raises(AssertionError):
        assert_real_traefik_labels(["traefik.http.routers.x.certresolver"])


def test_basic_auth_is_a_stable_bcrypt_hash_never_the_password() -> None:
    import bcrypt

    users = labels.basic_auth_users("pass-a", "SaltSaltSaltSaltSaltS", 5)
    assert users == labels.basic_auth_users("pass-a", "SaltSaltSaltSaltSaltS", 5)
    user, hashed = users.split(":", 1)
    assert user == naming.BASIC_AUTH_USER and "pass-a" not in users
    assert bcrypt.checkpw(b"pass-a", hashed.encode()) and hashed.startswith("$2b$05$")
    assert labels.basic_auth_users("pass-a", "OtherSaltOtherSaltOthe", 5) != users
    stronger = labels.basic_auth_users("pass-a", "SaltSaltSaltSaltSaltS", 12).split(":", 1)[1]
    assert stronger.startswith("$2b$12$") and bcrypt.checkpw(b"pass-a", stronger.encode())


def test_backup_script_dumps_every_target_in_custom_format() -> None:
    script = backup.backup_script(
        "acme-team-1", [backup.BackupTarget("oduflow_1_main", "v1")], ["daily", "weekly", "monthly"]
    )
    assert "pg_dump --format=custom" in script and "--dbname=oduflow_1_main" in script
    assert '"s3://acme-team-1/$tier/$2"' in script
    assert 'upload /tmp/oduflow-backup/oduflow_1_main.dump "oduflow_1_main/$stamp.dump"' in script
    assert '[ "$(date -u +%u)" = 7 ] && tiers="$tiers weekly"' in script
    assert '[ "$(date -u +%d)" = 01 ] && tiers="$tiers monthly"' in script
    assert "-C /filestores/oduflow_1_main" in script


def test_router_names_of_two_branches_never_collide() -> None:
    # Branch `x` runs workers (a websocket router), branch `x-ws` is another environment.
    x = labels.traefik_labels(labels.Route("1", "x", "x.t.localhost", False, True, False))
    x_ws = labels.traefik_labels(labels.Route("1", "x-ws", "x-ws.t.localhost", False, True, False))
    routers = lambda values: {k.split(".")[3] for k in values if k.startswith("traefik.http.routers.")}  # noqa: E731
    assert routers(x).isdisjoint(routers(x_ws))


def test_clone_finish_and_install_commands() -> None:
    from oduflow_iac import odoo_init

    install = odoo_init.install_script("db", ["base", "sale"])
    assert "odoo -d db -i base,sale --stop-after-init" in install
    script = odoo_init.clone_finish_script("oduflow_template_1_default", "oduflow_1_main")
    assert script.startswith("set -eu\n")
    assert "[ ! -e /var/lib/odoo/filestore/oduflow_1_main ]" in script  # never overwrite an existing filestore
    for text in (install, script):
        assert subprocess.run(["sh", "-n"], input=text, text=True, check=False).returncode == 0
    compile(odoo_init.HELPER, "init_db.py", "exec")


def test_backup_script_is_valid_posix_shell_and_picks_tonights_tiers(tmp_path: Path) -> None:
    import os
    import subprocess

    script = backup.backup_script("b", [backup.BackupTarget("db", "v")], ["daily", "weekly", "monthly"])
    assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0
    # Run the tier selection with a fake `date` saying it is Sunday the 1st: all three tiers.
    fake = tmp_path / "date"
    fake.write_text('#!/bin/sh\ncase "$2" in +%u) echo 7;; +%d) echo 01;; *) echo 20260101T000000Z;; esac\n')
    fake.chmod(0o755)
    head = "\n".join(backup.tier_selection(["daily", "weekly", "monthly"])) + '\necho "$tiers"\n'
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    out = subprocess.run(["sh", "-c", head], text=True, capture_output=True, env=env, check=True).stdout
    assert out.split() == ["daily", "weekly", "monthly"]
