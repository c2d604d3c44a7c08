"""The whole program on the example configs, under the Pulumi SDK's mocks: what `pulumi up` declares."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from typing import Any

import pytest

from oduflow_iac import naming
from oduflow_iac.odoo_conf import ODOO_CONF_PATH, parse_odoo_conf
from oduflow_iac.offline.harness import PlannedResource, PlannedRun, Secret, contains_secret, reveal
from oduflow_iac.offline.plan import plan_run, team_of
from oduflow_iac.stack_settings import resolve_config
from tests.conftest import ROOT
from tests.test_pure import assert_real_traefik_labels

CONTAINER = "docker:index/container:Container"
DATABASE = "postgresql:index/database:Database"
GRANT = "postgresql:index/grant:Grant"
VOLUME = "docker:index/volume:Volume"


@cache
def planned(stack: str) -> PlannedRun:
    config, settings = resolve_config(None, stack, ROOT)
    return plan_run(config, settings)[0]


def named(run: PlannedRun, type_: str, name: str) -> PlannedResource:
    matches = [r for r in run.resources if r.type == type_ and reveal(r.inputs).get("name") == name]
    assert len(matches) == 1, (type_, name, len(matches))
    return matches[0]


def label_map(r: PlannedResource) -> dict[str, Any]:
    return {item["label"]: item["value"] for item in r.inputs.get("labels", [])}


def test_resource_counts_by_type_per_team() -> None:
    run = planned("local")
    teams = team_of(run)
    counts: dict[str | None, Counter[str]] = {}
    for r in run.resources:
        counts.setdefault(teams[r.urn], Counter())[r.type] += 1
    # team 1: 4 environments, one template; team 2: 3 environments, one template.
    assert counts["1"]["oduflow:index:OdooEnvironment"] == 4
    assert counts["2"]["oduflow:index:OdooEnvironment"] == 3
    assert counts["1"][DATABASE] == 4 + 1 and counts["2"][DATABASE] == 3 + 1
    assert counts["1"][GRANT] == 5 and counts["2"][GRANT] == 4
    # Roles are the shared side's (created with the superuser, limits the team cannot raise): the two
    # group roles pg_hba.conf admits by and one role per team; PUBLIC's CONNECT revoked on postgres
    # and template1.
    assert counts["1"]["postgresql:index/role:Role"] == 0
    assert counts[None]["postgresql:index/role:Role"] == 2 + 2
    assert counts[None][GRANT] == 2 + 1  # and CONNECT on postgres for the provisioning roles
    # Odoo containers + the template's one-shot init and upgrade + per environment an addons
    # fetcher, an init and an upgrade + the team's PostgreSQL proxy and its mail catcher.
    assert counts["1"][CONTAINER] == 4 + 2 + 4 + 4 + 4 + 1 + 1
    assert counts["2"][CONTAINER] == 3 + 2 + 3 + 3 + 3 + 1 + 1
    assert counts[None][CONTAINER] == 3  # oduflow-db, oduflow-traefik and oduflow-docker-proxy
    assert counts[None]["docker:index/network:Network"] == 1
    assert counts[None]["pulumi:providers:postgresql"] == 1


def test_components_and_names() -> None:
    run = planned("local")
    types = Counter(r.type for r in run.resources)
    assert types["oduflow:index:SharedInfra"] == 1 and types["oduflow:index:TeamStack"] == 2
    for name in ("oduflow-db", "oduflow-traefik", "oduflow-1-feature-login-odoo", "oduflow-2-fix-rounding-odoo"):
        named(run, CONTAINER, name)
    for name in ("oduflow_1_main", "oduflow_1_feature-login", "oduflow_template_1_default", "oduflow_2_main"):
        named(run, DATABASE, name)
    for name in ("oduflow-net", "oduflow-1-net", "oduflow-2-net"):
        named(run, "docker:index/network:Network", name)
    # Children are named after their component and parented to it.
    env = next(r for r in run.resources if r.name == "team-1-feature-login")
    children = [r for r in run.resources if r.parent == env.urn]
    assert children and all(c.name.startswith("team-1-feature-login-") for c in children)


def test_odoo_container_wiring() -> None:
    run = planned("local")
    odoo = named(run, CONTAINER, "oduflow-1-feature-login-odoo")
    inputs = odoo.inputs
    assert inputs["image"] == (
        "odoo:17.0-20260908@sha256:8779f8157ddcc37b84014c94646073f46fd4ad776b7a5d95fc3b0dc73a24a8fa"
    )
    assert inputs["restart"] == "unless-stopped"
    # `cpus` as the provider reads it back (ForceNew: "1" would replace the container on every run);
    # swap sent explicitly (unset, the engine stores twice the memory: an update on every run).
    assert inputs["memory"] == 2048 and inputs["cpus"] == "1.0" and inputs["memorySwap"] == 2048
    assert inputs["securityOpts"] == ["no-new-privileges:true"]
    assert inputs["destroyGraceSeconds"] == 30 and inputs["stopTimeout"] == 30
    assert inputs["healthcheck"]["startPeriod"] == "2m0s" and inputs["healthcheck"]["interval"] == "30s"
    assert inputs["ports"] == [{"internal": 8069, "external": 50002, "ip": "127.0.0.1", "protocol": "tcp"}] or (
        [{k: v for k, v in p.items() if k != "protocol"} for p in inputs["ports"]]
        == [{"internal": 8069, "external": 50002, "ip": "127.0.0.1"}]
    )
    assert "/web/health" in " ".join(inputs["healthcheck"]["tests"])
    # Its team's network only; PostgreSQL through the team's proxy.
    assert [n["name"] for n in inputs["networksAdvanced"]] == ["oduflow-1-net"]
    envs = inputs["envs"]
    # libpq's variables: Odoo runs without the image's entrypoint, which would wait on the `postgres`
    # database (CONNECT revoked) and put the password on Odoo's command line.
    assert envs[:3] == ["PGHOST=oduflow-1-pg", "PGPORT=5432", "PGUSER=oduflow_team_1"]
    assert isinstance(envs[3], Secret) and envs[3].value.startswith("PGPASSWORD=")
    assert inputs["entrypoints"] == ["odoo"] and inputs["command"] == ["--config", ODOO_CONF_PATH]
    labels = label_map(odoo)
    assert labels["oduflow.team"] == "1" and labels["oduflow.managed"] == "true"
    assert labels["oduflow.env"] == "feature/login"
    router = "oduflow-1-feature-login-http"
    assert labels[f"traefik.http.routers.{router}.rule"] == "Host(`feature-login.team-a.localhost`)"
    assert labels[f"traefik.http.routers.{router}.middlewares"] == "oduflow-1-auth@docker"
    assert "traefik.http.routers.oduflow-1-feature-login-ws.rule" not in labels  # development: no workers
    auth = labels["traefik.http.middlewares.oduflow-1-auth.basicauth.users"]
    assert isinstance(auth, Secret) and auth.value.startswith("oduflow:$2b$05$")  # platform.basic_auth_cost


def test_production_routing_has_websocket_and_no_basic_auth() -> None:
    labels = label_map(named(planned("local"), CONTAINER, "oduflow-1-main-odoo"))
    assert labels["traefik.http.routers.oduflow-1-main-ws.rule"] == (
        "Host(`main.team-a.localhost`) && PathPrefix(`/websocket`)"
    )
    assert labels["traefik.http.services.oduflow-1-main-ws.loadbalancer.server.port"] == "8072"
    assert not any("middlewares" in k for k in labels)


def test_every_emitted_traefik_label_is_a_real_one() -> None:
    for stack in ("local", "cloud"):
        keys = [k for r in planned(stack).of_type(CONTAINER) for k in label_map(r)]
        assert any(k.startswith("traefik.http.routers.") for k in keys)
        assert_real_traefik_labels(keys)


def test_odoo_conf_is_hardened_and_secret() -> None:
    odoo = named(planned("local"), CONTAINER, "oduflow-1-staging-odoo")
    (upload,) = odoo.inputs["uploads"]
    assert upload["file"] == ODOO_CONF_PATH
    assert isinstance(upload["content"], Secret)  # it holds admin_passwd
    conf = parse_odoo_conf(upload["content"].value)
    assert conf["list_db"] == "False" and conf["proxy_mode"] == "True"
    assert conf["dbfilter"] == "^oduflow_1_staging$" and conf["db_name"] == "oduflow_1_staging"
    assert conf["workers"] == "2" and len(conf["admin_passwd"]) >= 24
    assert (
        conf["addons_path"] == "/mnt/extra-addons/oca-web,/mnt/extra-addons/org-common,/mnt/extra-addons/team-a-addons"
    )


def test_databases_owned_by_team_role_cloned_from_template_and_closed() -> None:
    run = planned("local")
    grants = {reveal(g.inputs)["database"]: g.inputs for g in run.of_type(GRANT)}
    for db in run.of_type(DATABASE):
        inputs = db.inputs
        team = "1" if inputs["name"].startswith(("oduflow_1_", "oduflow_template_1_")) else "2"
        assert inputs["owner"] == naming.team_role_name(team)
        assert grants[inputs["name"]] == {
            "database": inputs["name"],
            "role": "public",
            "objectType": "database",
            "privileges": [],
        }
    assert named(run, DATABASE, "oduflow_1_main").inputs["template"] == "oduflow_template_1_default"
    assert named(run, DATABASE, "oduflow_2_fix-rounding").inputs["template"] == "template0"
    # not IS_TEMPLATE: a role with CREATEDB (another team's provisioning role) could copy it
    assert named(run, DATABASE, "oduflow_template_1_default").inputs["isTemplate"] is False


def test_no_team_references_another_teams_database_role_or_network() -> None:
    run = planned("local")
    teams = team_of(run)
    for r in run.resources:
        team = teams[r.urn]
        if team is None:
            continue
        other = "2" if team == "1" else "1"
        text = json.dumps(reveal(r.inputs))
        for foreign in (
            f"oduflow_{other}_",
            f"oduflow_template_{other}_",
            f"oduflow_team_{other}",
            f"oduflow-{other}-net",
        ):
            assert foreign not in text, (r.urn, foreign)
        for dep in r.dependencies:
            assert teams.get(dep) in (team, None), (r.urn, dep)


def test_every_secret_is_a_secret_output() -> None:
    run = planned("local")
    for r in run.resources:
        if r.type == "postgresql:index/role:Role" and r.inputs.get("login"):
            assert isinstance(r.inputs["password"], Secret)
        if r.type == "pulumi:providers:postgresql":
            assert isinstance(r.inputs["password"], Secret)
    db = named(run, CONTAINER, "oduflow-db")
    assert any(isinstance(e, Secret) and e.value.startswith("POSTGRES_PASSWORD=") for e in db.inputs["envs"])
    # No generated or configured secret appears outside a Secret anywhere.
    secrets = {
        reveal(v) for r in run.resources for v in _leaves(r.inputs, inside_secret=False) if isinstance(v, Secret)
    }
    plain = json.dumps([_strip_secrets(r.inputs) for r in run.resources])
    for secret in secrets:
        # `NAME=value` container variables: the value is the secret, the name is public (the
        # PostgreSQL wrapper script names POSTGRES_PASSWORD, for one).
        value = str(secret).split("=", 1)[-1]
        if len(value) >= 16:
            assert value not in plain


def _leaves(value: Any, inside_secret: bool) -> list[Any]:
    if isinstance(value, Secret):
        return [value]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v, inside_secret)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v, inside_secret)]
    return []


def _strip_secrets(value: Any) -> Any:
    if isinstance(value, Secret):
        return None
    if isinstance(value, dict):
        return {k: _strip_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_secrets(v) for v in value]
    return value


def test_postgres_only_on_loopback_and_shared_data_protected() -> None:
    run = planned("local")
    db = named(run, CONTAINER, "oduflow-db")
    assert [p["ip"] for p in db.inputs["ports"]] == ["127.0.0.1"]
    assert db.inputs["healthcheck"]["tests"][1].startswith("pg_isready")
    assert named(run, VOLUME, naming.SHARED_DB_VOLUME).protect


def test_production_databases_and_volumes_are_protected() -> None:
    run = planned("local")
    for team in ("1", "2"):
        assert named(run, DATABASE, f"oduflow_{team}_main").protect
        assert named(run, VOLUME, f"oduflow-{team}-main-filestore").protect
    assert not named(run, DATABASE, "oduflow_1_feature-login").protect
    assert not named(run, VOLUME, "oduflow-1-staging-filestore").protect


def test_traefik_is_hardened() -> None:
    run = planned("local")
    traefik = named(run, CONTAINER, "oduflow-traefik")
    inputs = traefik.inputs
    command = inputs["command"]
    assert "--providers.docker.exposedbydefault=false" in command
    assert "--providers.docker.constraints=Label(`oduflow.managed`,`true`)" in command
    assert not any(c.startswith("--api") for c in command)  # dashboard off unless configured
    # The internal entrypoint (ping, dashboard) on the host's loopback, out of every tenant's reach.
    assert "--entrypoints.traefik.address=127.0.0.1:8080" in command
    # The host's network: no team network to join (zero churn), and no `ports` the engine would drop.
    assert inputs["networkMode"] == "host" and "ports" not in inputs and "networksAdvanced" not in inputs
    assert inputs["capabilities"] == {"drops": ["ALL"], "adds": ["CAP_NET_BIND_SERVICE"]}
    assert inputs["securityOpts"] == ["no-new-privileges:true"] and inputs["destroyGraceSeconds"] == 30
    # Never the engine's socket: the filtered one in the proxy's volume.
    assert not any(v.get("hostPath") == "/var/run/docker.sock" for v in inputs["volumes"])
    assert "--providers.docker.endpoint=unix:///run/oduflow-docker/docker.sock" in command
    assert {"volumeName": "oduflow-docker-proxy", "containerPath": "/run/oduflow-docker"} in inputs["volumes"]


def test_docker_api_proxy_allows_only_traefiks_reads() -> None:
    run = planned("local")
    proxy = named(run, CONTAINER, "oduflow-docker-proxy").inputs
    assert proxy["networkMode"] == "none" and "ports" not in proxy
    assert proxy["readOnly"] is True and proxy["capabilities"] == {"drops": ["ALL"]}
    (socket,) = [v for v in proxy["volumes"] if v.get("hostPath") == "/var/run/docker.sock"]
    assert socket["readOnly"] is True
    allowed = [c for c in proxy["command"] if c.startswith("-allow")]
    assert allowed and all(c.startswith(("-allowGET=", "-allowHEAD=")) for c in allowed)
    assert "-proxysocketendpoint=/run/oduflow-docker/docker.sock" in proxy["command"]
    # Nobody else mounts the engine's socket or the proxy's.
    for r in run.of_type(CONTAINER):
        if reveal(r.inputs)["name"] in ("oduflow-docker-proxy", "oduflow-traefik"):
            continue
        for v in r.inputs.get("volumes") or []:
            assert v.get("hostPath") != "/var/run/docker.sock" and v.get("volumeName") != "oduflow-docker-proxy"


def test_no_team_container_joins_a_shared_or_foreign_network() -> None:
    for stack in ("local", "cloud"):
        run = planned(stack)
        for r in run.of_type(CONTAINER):
            labels = label_map(r)
            team = labels.get("oduflow.team")
            if not team:
                continue
            networks = [n["name"] for n in r.inputs.get("networksAdvanced") or []]
            own = naming.team_network_name(team)
            if labels["oduflow.role"] == "db-proxy":
                assert networks == [own, "oduflow-net"]
            else:
                assert networks[:1] == [own] and "oduflow-net" not in networks, (r.name, networks)
                assert r.inputs.get("networkMode", "bridge") == "bridge"


def test_adding_a_team_changes_no_shared_resource(write_config: Any) -> None:
    from oduflow_iac.config import load_config
    from tests.conftest import SEED

    envs = '[[team.{t}.environments]]\nbranch = "main"\ntype = "staging"\nodoo_image = "odoo:17.0"\n'
    three = SEED + envs.format(t=1) + envs.format(t=2)
    four = three + (
        '[team.3]\nhostname = "team-c.example.com"\nauth_token = "t3"\nui_password = "pass-c"\n'
        "port_range = [50100, 50150]\n" + envs.format(t=3)
    )
    before = plan_run(load_config(write_config(three, "a.toml")), None)[0]
    after = plan_run(load_config(write_config(four, "b.toml")), None)[0]
    shared = {r.urn: r for r in before.resources if r.urn.split("::")[-1].startswith("shared")}
    assert shared
    later = after.by_urn()
    for urn, r in shared.items():
        assert later[urn].inputs == r.inputs, urn


def test_local_stack_declares_no_cloud_resources() -> None:
    types = {r.type for r in planned("local").resources}
    assert not any(
        t.startswith(("cloudflare:", "aws:", "pulumi:providers:aws", "pulumi:providers:cloudflare")) for t in types
    )


def test_cloud_stack_declares_dns_tls_and_backups() -> None:
    run = planned("cloud")
    records = {reveal(r.inputs)["name"] for r in run.of_type("cloudflare:index/dnsRecord:DnsRecord")}
    # The client's own domain (erp.client-one.example) is outside the zone: not ours to manage.
    assert records == {
        "client-one.acme.example",
        "*.client-one.acme.example",
        "client-two.acme.example",
        "*.client-two.acme.example",
    }
    types = Counter(r.type for r in run.resources)
    for t in (
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
        "aws:iam/user:User",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/accessKey:AccessKey",
    ):
        assert types[t] == 2, t
    lifecycle = run.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[0]
    expiries = {r["filter"]["prefix"]: r["expiration"]["days"] for r in lifecycle.inputs["rules"]}
    assert expiries == {"daily/": 7, "weekly/": 28, "monthly/": 186}
    backup = named(run, CONTAINER, "oduflow-1-backup")
    envs = backup.inputs["envs"]
    assert sum(isinstance(e, Secret) for e in envs) == 2  # PGPASSWORD and the AWS secret key
    script = backup.inputs["uploads"][0]["content"]
    for db in ("oduflow_1_main", "oduflow_1_staging", "oduflow_1_feature-portal"):
        assert f"--dbname={db}" in script
    traefik = named(run, CONTAINER, "oduflow-traefik")
    assert "--certificatesresolvers.oduflow.acme.dnschallenge.provider=cloudflare" in traefik.inputs["command"]
    assert isinstance(traefik.inputs["envs"][0], Secret)
    labels = label_map(named(run, CONTAINER, "oduflow-2-develop-odoo"))
    assert labels["traefik.http.routers.oduflow-2-develop-http.rule"] == "Host(`env-2.client-two.acme.example`)"
    assert labels["traefik.http.routers.oduflow-2-develop-http.tls.certresolver"] == "oduflow"
    # A client's own domain is outside the Cloudflare zone: its certificate comes through HTTP-01.
    own = label_map(named(run, CONTAINER, "oduflow-1-main-odoo"))
    assert own["traefik.http.routers.oduflow-1-main-http.tls.certresolver"] == "oduflow-http"
    assert "--certificatesresolvers.oduflow-http.acme.httpchallenge.entrypoint=web" in traefik.inputs["command"]


def test_backup_user_only_writes_new_objects_in_its_bucket() -> None:
    run = planned("cloud")
    policies = run.of_type("aws:iam/userPolicy:UserPolicy")
    assert len(policies) == 2
    for policy in policies:
        team = "1" if "team-1" in policy.urn else "2"
        assert reveal(policy.inputs["user"]) == f"oduflow-{team}-backup"
        doc = json.loads(reveal(policy.inputs["policy"]))
        bucket = f"arn:aws:s3:::acme-odoo-backups-team-{team}"
        # Exactly: write and abort unfinished uploads under the three tier prefixes. Nothing else.
        assert doc == {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "WriteNewBackups",
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                    "Resource": [f"{bucket}/{prefix}/*" for prefix in ("daily", "weekly", "monthly", "status")],
                }
            ],
        }


@pytest.mark.parametrize("stack", ["local", "cloud"])
def test_plan_is_deterministic(stack: str) -> None:
    config, settings = resolve_config(None, stack, ROOT)
    a, b = plan_run(config, settings)[0], plan_run(config, settings)[0]
    assert [(r.urn, json.dumps(reveal(r.inputs), sort_keys=True)) for r in a.resources] == [
        (r.urn, json.dumps(reveal(r.inputs), sort_keys=True)) for r in b.resources
    ]
    # Parents come before their children.
    seen: set[str] = set()
    for r in a.resources:
        assert r.parent is None or r.parent in seen
        seen.add(r.urn)
    assert any(contains_secret(r.inputs) for r in a.resources)


def test_every_environment_database_is_initialised_once() -> None:
    run = planned("local")
    # A fresh database gets base installed by the environment's own image and odoo.conf, then its
    # admin user's own password; the marker makes a second run do nothing.
    fresh = named(run, CONTAINER, "oduflow-2-fix-rounding-init")
    assert fresh.inputs["entrypoints"] == ["/bin/sh"] and fresh.inputs["command"] == ["/oduflow/init.sh"]
    uploads = {u["file"]: u["content"] for u in fresh.inputs["uploads"]}
    assert set(uploads) == {ODOO_CONF_PATH, "/oduflow/init.sh", "/oduflow/init_db.py"}
    script = uploads["/oduflow/init.sh"]
    assert "odoo -d oduflow_2_fix-rounding -i base --stop-after-init" in script
    assert script.index("init_db.py check") < script.index("odoo -d") < script.index("init_db.py finish")
    assert fresh.inputs["attach"] is True and fresh.inputs["mustRun"] is False and fresh.inputs["logs"] is False
    assert any(isinstance(e, Secret) and e.value.startswith("ODUFLOW_ADMIN_PASSWORD=") for e in fresh.inputs["envs"])
    # A clone gets the template's filestore and an identity of its own.
    clone = named(run, CONTAINER, "oduflow-1-main-init")
    script = {u["file"]: u["content"] for u in clone.inputs["uploads"]}["/oduflow/init.sh"]
    assert "cp -a /template/filestore/oduflow_template_1_default /var/lib/odoo/filestore/oduflow_1_main" in script
    assert "init_db.py finish --new-identity" in script and "odoo -d" not in script
    mounts = {v["containerPath"]: v for v in clone.inputs["volumes"]}
    assert mounts["/template"] == {
        "volumeName": "oduflow-1-template-default-filestore",
        "containerPath": "/template",
        "readOnly": True,
    }
    assert any(isinstance(e, Secret) and e.value.startswith("PGPASSWORD=") for e in clone.inputs["envs"])
    assert "PGDATABASE=oduflow_1_main" in clone.inputs["envs"]
    # The template's module install keeps its attachments in that volume.
    template_init = named(run, CONTAINER, "oduflow-1-template-default-init")
    assert template_init.inputs["volumes"] == [
        {"volumeName": "oduflow-1-template-default-filestore", "containerPath": "/var/lib/odoo"}
    ]
    # Re-created only on request: every incidental input is ignored by the engine's diff.
    for one_shot in (fresh, clone, template_init):
        assert {"image", "envs", "uploads", "command", "networksAdvanced", "volumes"} <= set(one_shot.ignore_changes)
    # The Odoo container starts after its init, and the clone's database after the template's init.
    odoo = named(run, CONTAINER, "oduflow-1-main-odoo")
    database = next(r for r in run.of_type(DATABASE) if reveal(r.inputs)["name"] == "oduflow_1_main")
    assert clone.urn in odoo.dependencies
    # ... after the template's upgrade one-shot (an image bump of the template), itself after its init.
    template_upgrade = named(run, CONTAINER, "oduflow-1-template-default-upgrade")
    assert template_upgrade.urn in database.dependencies and template_init.urn in template_upgrade.dependencies


def _one_shots(run: PlannedRun) -> dict[str, PlannedResource]:
    return {r.urn: r for r in run.of_type(CONTAINER) if label_map(r).get("oduflow.role") in ("init", "template-init")}


def test_routine_edits_never_rerun_an_initialisation(write_config: Any) -> None:
    """An image bump, other workers, a rotated ui_password or role password, changed odoo options:
    no database one-shot's inputs change outside what the engine is told to ignore."""
    from oduflow_iac.config import load_config

    base = (ROOT / "examples" / "oduflow.toml").read_text()
    before = _one_shots(plan_run(load_config(write_config(base, "a.toml")), None)[0])
    edited = (
        base.replace('odoo_image = "odoo:17.0"', 'odoo_image = "odoo:17.0-20260908"')
        .replace('ui_password = "', 'ui_password = "rotated-')
        .replace("[[team.1.environments]]", "[[team.1.environments]]\nworkers = 3", 1)
    )
    assert edited != base
    after = _one_shots(plan_run(load_config(write_config(edited, "b.toml")), None)[0])
    assert set(before) == set(after)
    changed_somewhere = False
    for urn, old in before.items():
        new = after[urn]
        differing = {k for k in set(old.inputs) | set(new.inputs) if old.inputs.get(k) != new.inputs.get(k)}
        changed_somewhere |= bool(differing)
        assert differing <= set(new.ignore_changes), (urn, differing - set(new.ignore_changes))
    assert changed_somewhere  # the edits did reach the one-shots' inputs: ignoring them is what held


def test_a_failed_one_shot_fails_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    from oduflow_iac.offline import harness

    original = harness.OfflineMocks.new_resource

    def failing_init(self: harness.OfflineMocks, args: Any) -> Any:
        id_, state = original(self, args)
        if args.typ == CONTAINER and str(args.inputs.get("name", "")).endswith("-template-default-init"):
            state = {**state, "exitCode": 3}
        return id_, state

    monkeypatch.setattr(harness.OfflineMocks, "new_resource", failing_init)
    registered: list[PlannedResource] = []
    config, settings = resolve_config(None, "local", ROOT)
    with pytest.raises(Exception, match="oduflow-1-template-default-init exited with code 3: read `docker logs"):
        plan_run(config, settings, on_register=registered.append)
    names = {reveal(r.inputs).get("name") for r in registered if r.type == CONTAINER}
    assert "oduflow-1-template-default-init" in names
    # Nothing that needs the template was created: no clone's init, no Odoo of a clone.
    assert "oduflow-1-main-init" not in names and "oduflow-1-main-odoo" not in names


def test_traefik_reaches_each_environment_on_its_team_network() -> None:
    run = planned("local")
    for r in run.of_type(CONTAINER):
        labels = label_map(r)
        if labels.get("oduflow.role") == "odoo":
            assert labels["traefik.docker.network"] == naming.team_network_name(labels["oduflow.team"])


def test_urns_are_unique() -> None:
    for stack in ("local", "cloud"):
        urns = [r.urn for r in planned(stack).resources]
        assert len(urns) == len(set(urns))


def test_each_environment_has_its_own_admin_password_as_a_secret_output() -> None:
    from oduflow_iac import automation, program

    assert automation.ADMIN_OUTPUT == program.ODOO_ADMIN_OUTPUT
    admins = planned("local").outputs[program.ODOO_ADMIN_OUTPUT]
    assert isinstance(admins, Secret)
    table = admins.value
    assert (
        set(table)
        == {"1/main", "1/staging", "1/feature/login", "1/feature/invoicing", "2/main", "2/staging", "2/fix/rounding"}
        or len(table) == 7
    )
    passwords = [entry["password"] for entry in table.values()]
    assert all(entry["login"] == "admin" for entry in table.values())
    assert len(set(passwords)) == len(passwords) and all(len(p) >= 16 and p != "admin" for p in passwords)
