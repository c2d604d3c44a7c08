"""`oduflow-iac restore` end to end, on the real engines: PostgreSQL (scripts/with-postgres.sh), a
Docker engine (scripts/with-docker.sh) and an S3-compatible server enforcing IAM (moto on loopback).

The plan of the example config (with [backup]) is applied to the server, so the team role, its
databases and their grants are what Pulumi would create. The team's backup job is its own script
with the real pg_dump, tar and AWS CLI (the job's write-only key); the restore reads the bucket with
the team's read-only restore key. The Odoo container and its filestore volume are stand-ins in the
engine (busybox), stopped and started by the restore; the filestore is swapped by the one-shot the
restore runs in the engine. The database step is the very script the restore runs in the job
container, run here with the server's client tools as the team role (the engine's private network
cannot reach the test server).

Proves: backup -> change rows and attachments -> restore -> the same rows, sums and attachment
bytes, the database keeps its name, owner and grants (the plan applies with no change); `--at`
picks the right backup; a failing step starts the container again and leaves the database as it
was; a restore into another environment is neutralised (Odoo's command on the target, a new uuid
and secret).
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from oduflow_iac import automation, naming, odoo_conf, odoo_init
from oduflow_iac.config import Config, load_config
from oduflow_iac.lifecycle import backup_ops, restore
from tests.docker.conftest import Images, clean_engine
from tests.postgres import plans
from tests.postgres.conftest import PgServer, applier, pg, pg_dsn  # noqa: F401 (fixtures)
from tests.postgres.sql_apply import Applier
from tests.test_backup_s3 import REGION, S3Server, _relocated, serve_s3

pytestmark = pytest.mark.postgres

TEAM = "1"
ROLE = naming.team_role_name(TEAM)
ADMIN_PASSWORD = "the-staging-admin-password"

# Odoo's tables a restore and a neutralisation touch, and data of a business.
SCHEMA = """
CREATE TABLE res_partner (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE sale_order (id serial PRIMARY KEY, partner_id int NOT NULL REFERENCES res_partner(id),
                         amount numeric(12, 2));
CREATE INDEX sale_order_partner ON sale_order (partner_id);
CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar NOT NULL UNIQUE, value text NOT NULL,
                                  create_date timestamp, write_date timestamp);
CREATE TABLE res_users (id serial PRIMARY KEY, login varchar NOT NULL UNIQUE, password varchar);
CREATE TABLE ir_model_data (id serial PRIMARY KEY, module varchar, name varchar, model varchar, res_id int);
INSERT INTO res_partner (name) SELECT 'p' || g FROM generate_series(1, 300) g;
INSERT INTO sale_order (partner_id, amount) SELECT 1 + g % 300, g * 1.5 FROM generate_series(1, 1000) g;
INSERT INTO ir_config_parameter (key, value) VALUES ('database.uuid', 'prod-uuid'), ('database.secret', 'prod-secret');
INSERT INTO res_users (login, password) VALUES ('admin', 'prod-hash');
INSERT INTO ir_model_data (module, name, model, res_id) VALUES ('base', 'user_admin', 'res.users', 1);
"""

FAKE_ODOO = """#!/bin/sh
# Odoo cannot run here: record how it was called.
echo "$*" >> "$ODOO_CALLS"
"""


def _files(seed: int) -> dict[str, bytes]:
    """Attachments as Odoo stores them: filestore/<db>/<2 hex>/<sha1>."""
    return {f"{i:02x}/{'%040x' % (seed * 1000 + i)}": os.urandom(100 + 37 * i) for i in range(6)}


def _tar(files: dict[str, bytes], prefix: str, uid: int = 101) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size, info.uid, info.gid, info.mode = len(data), uid, uid, 0o640
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _read_filestore(container: Any, database: str) -> dict[str, bytes]:
    stream, _ = container.get_archive(f"{odoo_conf.FILESTORE_PATH}/filestore/{database}")
    found = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                found[member.name.split("/", 1)[1]] = handle.read()
    return found


@dataclass
class Env:
    branch: str
    database: str
    container: Any


@dataclass
class World:
    config: Config
    pg: PgServer
    s3: S3Server
    client: docker.DockerClient
    docker_host: str
    role_password: str
    job_root: Path
    job_script: Path
    envs: dict[str, Env]
    tmp: Path
    applier: Applier
    run: Any

    def team_env(self) -> dict[str, str]:
        """libpq's variables as the team's containers have them (here: the test server)."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_"))}
        return {
            **keep,
            "PGHOST": self.pg.host,
            "PGPORT": str(self.pg.port),
            "PGUSER": ROLE,
            "PGPASSWORD": self.role_password,
        }

    def run_job(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **self.team_env(),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "AWS_ACCESS_KEY_ID": self.s3.job.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.s3.job.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.s3.endpoint,
            "AWS_CONFIG_FILE": str(self.tmp / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.tmp / "none"),
        }
        return subprocess.run(["sh", str(self.job_script), *args], env=env, capture_output=True, text=True, timeout=300)

    def backup(self, branch: str) -> backup_ops.NowResult:
        """The job for one database, after copying the volume's files where the job's mount is."""
        env = self.envs[branch]
        mount = self.job_root / "filestores" / env.database
        subprocess.run(["rm", "-rf", str(mount)], check=True)
        (mount / "filestore" / env.database).mkdir(parents=True)
        for name, data in _read_filestore(env.container, env.database).items():
            path = mount / "filestore" / env.database / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.chown(path, 101, 101)
        time.sleep(1.1)  # one run per second at most: stamps are seconds
        done = self.run_job(env.database)
        keys = backup_ops.written_keys(done.stdout)
        return backup_ops.NowResult(done.returncode == 0, keys, done.stdout + done.stderr, f"exit {done.returncode}")

    def store(self) -> backup_ops.S3Store:
        key = backup_ops.RestoreKey(self.s3.restore.access_key_id, self.s3.restore.secret_access_key, REGION)
        return backup_ops.S3Store(self.s3.bucket, REGION, key)

    def sets(self) -> list[backup_ops.BackupSet]:
        return backup_ops.listing(self.config, TEAM, self.store()).sets

    def sql(self, database: str, statement: str) -> None:
        with self.pg.login(ROLE, self.role_password, database) as conn:
            conn.execute(statement.encode())

    def state(self, database: str) -> dict[str, Any]:
        return {
            "partners": self.pg.scalar("SELECT count(*) FROM res_partner", database=database),
            "orders": self.pg.scalar("SELECT count(*) FROM sale_order", database=database),
            "sum": self.pg.scalar("SELECT sum(amount) FROM sale_order", database=database),
            "names": self.pg.scalar(
                "SELECT md5(string_agg(name, ',' ORDER BY id)) FROM res_partner", database=database
            ),
            "tables": sorted(
                r[0]
                for r in self.pg.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database=database)
            ),
            "index": self.pg.scalar(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'sale_order_partner'", database=database
            ),
        }

    def database_object(self, database: str) -> tuple[Any, ...]:
        rows = self.pg.rows(
            "SELECT d.oid, d.datname, pg_get_userbyid(d.datdba), d.datacl::text, pg_encoding_to_char(d.encoding),"
            " d.datcollate, d.datconnlimit FROM pg_database d WHERE datname = %s",
            (database,),
        )
        return rows[0]


class LocalDatabase:
    """The restore's database script, run with the server's client tools as the team role."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.scripts: list[str] = []

    def restore(self, database: str, dump: Path) -> tuple[int, str]:
        return self._run(restore.database_restore_script(database, str(dump)))

    def empty(self, database: str) -> tuple[int, str]:
        return self._run(restore.database_empty_script(database))

    def _run(self, script: str) -> tuple[int, str]:
        self.scripts.append(script)
        done = subprocess.run(["sh", "-c", script], env=self.env, capture_output=True, text=True, timeout=300)
        return done.returncode, (done.stdout + done.stderr).strip()


class BothNeutralisers:
    """The one-shot the restore runs in the engine (the stand-in's Odoo and psql succeed), then the
    same neutralisation script against the real server (a recording `odoo`, the real psql)."""

    def __init__(self, world: World, bindir: Path) -> None:
        self.world, self.bindir = world, bindir
        self.engine = restore.OneShotNeutraliser(automation.run_docker, world.docker_host, lambda: ADMIN_PASSWORD)
        self.calls = bindir / "odoo-calls"

    def neutralise(self, plan: restore.RestorePlan) -> tuple[int, str]:
        code, output = self.engine.neutralise(plan)
        if code != 0:
            return code, output
        env = {
            **self.world.team_env(),
            "PATH": f"{self.bindir}:{os.environ['PATH']}",
            "ODOO_CALLS": str(self.calls),
            odoo_init.ADMIN_PASSWORD_ENV: ADMIN_PASSWORD,
        }
        script = "set -eu\n" + restore.neutralize_script(plan.target_db, base_url=plan.base_url)
        done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=300)
        return done.returncode, (output + "\n" + done.stdout + done.stderr).strip()


@pytest.fixture
def world(
    pg: PgServer,  # noqa: F811
    applier: Applier,  # noqa: F811
    docker_client: docker.DockerClient,
    images: Images,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    path = plans.write_config(tmp_path, plans.with_backup(plans.load_document(plans.EXAMPLE)))
    run = plans.plan_of(path)
    applier.apply(run)
    config = load_config(path)
    role_password = plans.roles(run)[ROLE].password
    job = next(c for c in plans.backup_containers(run) if c.envs.get("PGUSER") == ROLE)
    bucket = backup_ops.bucket_of(config, TEAM)
    docker_host = os.environ["ODUFLOW_TEST_DOCKER_HOST"]
    images.local(config.platform.backup_image)
    with serve_s3(bucket, TEAM) as s3:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        job_root = tmp_path / "job"
        (job_root / "filestores").mkdir(parents=True)
        script = job_root / "backup.sh"
        script.write_text(_relocated(job.script, job_root))
        envs = {}
        team = config.team[TEAM]
        for env in team.environments:
            if env.branch not in ("main", "staging"):
                continue
            database = naming.env_db_name(TEAM, env.branch)
            volume = naming.env_filestore_volume_name(TEAM, env.branch)
            docker_client.volumes.create(volume)
            container = docker_client.containers.run(
                images.local(config.env_image(TEAM, env)),
                name=naming.env_container_name(TEAM, env.branch),
                detach=True,
                environment={
                    "ODUFLOW_STANDIN_IDLE": "1",
                    "PGHOST": naming.team_db_proxy_container_name(TEAM),
                    "PGPORT": "5432",
                    "PGUSER": ROLE,
                    "PGPASSWORD": role_password,
                },
                volumes={volume: {"bind": odoo_conf.FILESTORE_PATH, "mode": "rw"}},
            )
            container.put_archive("/etc/odoo", _tar({"odoo.conf": b"[options]\ndata_dir = /var/lib/odoo\n"}, ".", 0))
            envs[env.branch] = Env(env.branch, database, container)
        docker_client.networks.create(naming.team_network_name(TEAM), driver="bridge")
        world = World(
            config, pg, s3, docker_client, docker_host, role_password, job_root, script, envs, tmp_path, applier, run
        )
        for branch, env in envs.items():
            world.sql(env.database, SCHEMA)
            env.container.put_archive(
                odoo_conf.FILESTORE_PATH, _tar(_files(1 if branch == "main" else 2), f"filestore/{env.database}")
            )
        try:
            yield world
        finally:
            clean_engine(docker_client)


def _restorer(world: World, database: restore.DatabaseRunner, branch: str, **kw: Any) -> restore.Restorer:
    lines: list[str] = []
    return restore.Restorer(
        store=world.store(),
        docker=automation.run_docker,
        docker_host=world.docker_host,
        database=database,
        backup_now=lambda: world.backup(branch),
        out=lines.append,
        **kw,
    )


def test_backup_change_restore_gives_back_the_same_rows_and_files(world: World) -> None:
    main = world.envs["main"]
    original_rows = world.state(main.database)
    original_files = _read_filestore(main.container, main.database)
    database_object = world.database_object(main.database)
    first = world.backup("main")
    assert first.ok, first.output

    # A day of work: rows changed, a module installed since (a table pointing at a restored one),
    # attachments added, changed and removed.
    world.sql(main.database, "DELETE FROM sale_order WHERE id % 3 = 0; UPDATE res_partner SET name = name || 'x'")
    world.sql(main.database, "CREATE TABLE x_new (id serial PRIMARY KEY, partner_id int REFERENCES res_partner(id))")
    world.sql(main.database, "INSERT INTO x_new (partner_id) VALUES (1), (2)")
    changed = dict(list(original_files.items())[1:])
    changed[next(iter(changed))] = b"rewritten"
    changed["ff/" + "f" * 40] = b"new attachment"
    main.container.exec_run(["rm", "-rf", f"{odoo_conf.FILESTORE_PATH}/filestore/{main.database}"])
    main.container.put_archive(odoo_conf.FILESTORE_PATH, _tar(changed, f"filestore/{main.database}"))
    assert world.state(main.database) != original_rows
    assert _read_filestore(main.container, main.database) != original_files

    plan = restore.plan_restore(world.config, TEAM, "main", world.sets(), key=first.keys[0])
    assert plan.backup.stamp == first.stamp
    result = _restorer(world, LocalDatabase(world.team_env()), "main").run(plan)
    assert result.ok, "\n".join(result.lines)
    # The restore backed the target up first (a new run), stopped the container and started it.
    assert result.pre_restore_keys and result.pre_restore_keys[0] != first.keys[0]
    assert f"stopped {main.container.name}" in result.lines and f"started {main.container.name}" in result.lines
    main.container.reload()
    assert main.container.status == "running"

    assert world.state(main.database) == original_rows
    assert "x_new" not in world.state(main.database)["tables"]
    assert _read_filestore(main.container, main.database) == original_files
    # Same database object: name, owner, grants, encoding, collation, limit, even its oid.
    assert world.database_object(main.database) == database_object
    assert (
        world.pg.scalar(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'sale_order'", database=main.database
        )
        == ROLE
    )
    # What Pulumi declares is what is there: applying the plan again changes nothing.
    assert not world.applier.apply(world.run).changed


def test_at_picks_the_newest_backup_at_or_before(world: World) -> None:
    main = world.envs["main"]
    first = world.backup("main")
    world.sql(main.database, "DELETE FROM sale_order WHERE id > 500")
    second = world.backup("main")
    world.sql(main.database, "DELETE FROM sale_order WHERE id > 100")
    third = world.backup("main")
    assert first.ok and second.ok and third.ok and first.stamp and second.stamp and third.stamp
    sets = world.sets()
    between = backup_ops.stamp_time(second.stamp)
    assert restore.pick_backup(sets, main.database, at=between).stamp == second.stamp
    plan = restore.plan_restore(
        world.config, TEAM, "main", sets, at=restore.parse_time(second.stamp), backup_first=False
    )
    assert plan.backup.stamp == second.stamp
    result = _restorer(world, LocalDatabase(world.team_env()), "main").run(plan)
    assert result.ok, "\n".join(result.lines)
    assert world.state(main.database)["orders"] == 500
    with pytest.raises(Exception, match="no complete backup"):
        restore.pick_backup(sets, main.database, at=backup_ops.stamp_time(first.stamp).replace(year=2000))


def test_a_failing_step_starts_the_container_again_and_changes_nothing(world: World) -> None:
    main = world.envs["main"]
    first = world.backup("main")
    world.sql(main.database, "DELETE FROM sale_order WHERE id > 10")
    before = world.state(main.database)
    files_before = _read_filestore(main.container, main.database)

    class BrokenDatabase(LocalDatabase):
        """The dump is cut half-way: pg_restore fails after psql has applied part of it."""

        def restore(self, database: str, dump: Path) -> tuple[int, str]:
            data = dump.read_bytes()
            dump.write_bytes(data[: len(data) // 2])
            return super().restore(database, dump)

    plan = restore.plan_restore(world.config, TEAM, "main", world.sets(), key=first.keys[0], backup_first=False)
    result = _restorer(world, BrokenDatabase(world.team_env()), "main").run(plan)
    assert not result.ok
    assert "rolled back" in "\n".join(result.lines) and "nothing was changed" in result.state
    main.container.reload()
    assert main.container.status == "running"
    assert world.state(main.database) == before
    assert _read_filestore(main.container, main.database) == files_before

    # The filestore step failing (a damaged archive): the database holds the backup, the state
    # says so, the live attachments are untouched, and the container runs again.
    class DamagedStore:
        def __init__(self, inner: backup_ops.S3Store) -> None:
            self.inner, self.bucket = inner, inner.bucket

        def list(self, prefix: str) -> list[backup_ops.StoredObject]:
            return self.inner.list(prefix)

        def read(self, key: str) -> bytes:
            return self.inner.read(key)

        def download(self, key: str, path: Path) -> None:
            self.inner.download(key, path)
            if key.endswith(backup_ops.FILESTORE_SUFFIX):
                path.write_bytes(b"not a tar archive")

    restorer = _restorer(world, LocalDatabase(world.team_env()), "main")
    restorer.store = DamagedStore(world.store())
    result = restorer.run(plan)
    assert not result.ok and result.state.startswith("PARTLY RESTORED")
    main.container.reload()
    assert main.container.status == "running"
    assert _read_filestore(main.container, main.database) == files_before
    assert world.state(main.database)["orders"] == 1000


def test_restore_into_another_environment_is_neutralised(world: World) -> None:
    main, staging = world.envs["main"], world.envs["staging"]
    main_files = _read_filestore(main.container, main.database)
    first = world.backup("main")
    bindir = world.tmp / "bin"
    bindir.mkdir()
    (bindir / "odoo").write_text(FAKE_ODOO)
    (bindir / "odoo").chmod(0o755 | stat.S_IXUSR)
    neutraliser = BothNeutralisers(world, bindir)

    plan = restore.plan_restore(world.config, TEAM, "main", world.sets(), key=first.keys[0], into="staging")
    assert plan.neutralise and plan.target_db == staging.database and plan.container == staging.container.name
    result = _restorer(world, LocalDatabase(world.team_env()), "staging", neutraliser=neutraliser).run(plan)
    assert result.ok, "\n".join(result.lines)
    # Production's rows and attachments, under the target's own names.
    assert world.state(staging.database)["orders"] == world.state(main.database)["orders"]
    assert _read_filestore(staging.container, staging.database) == main_files
    # Odoo's own neutralisation ran on the target, with the target's odoo.conf.
    calls = neutraliser.calls.read_text().splitlines()
    assert calls == [f"neutralize -c {odoo_conf.ODOO_CONF_PATH} -d {staging.database}"]
    # Its own identity: not production's uuid and secret.
    params = dict(world.pg.rows("SELECT key, value FROM ir_config_parameter", database=staging.database))
    assert params["database.uuid"] != "prod-uuid" and params["database.secret"] != "prod-secret"
    assert params["web.base.url"] == plan.base_url and plan.base_url and "staging" in plan.base_url
    # Its own admin password (the environment's, hashed as Odoo stores it), not production's.
    password = world.pg.scalar("SELECT password FROM res_users WHERE login = 'admin'", database=staging.database)
    assert password != "prod-hash" and password.startswith("$pbkdf2-sha512$")
    prod = dict(world.pg.rows("SELECT key, value FROM ir_config_parameter", database=main.database))
    assert prod["database.uuid"] == "prod-uuid" and "web.base.url" not in prod
    staging.container.reload()
    assert staging.container.status == "running"
    # The neutralisation one-shot is gone; production's container was never touched.
    assert not world.client.containers.list(all=True, filters={"name": "restore-neutralize"})
    main.container.reload()
    assert main.container.status == "running"

    # Never into production.
    with pytest.raises(Exception, match="production"):
        restore.plan_restore(world.config, TEAM, "staging", world.sets(), into="main")
