"""The PostgreSQL container's wrapper entrypoint and pg_hba.conf, run on a real server.

Each test starts its own cluster (initdb in a temporary directory, with the binaries
scripts/with-postgres.sh puts on PATH) through the very script `postgres_server.render_entrypoint`
renders, with a stand-in for the image's docker-entrypoint.sh that `exec`s `postgres` as the real
one does, and the very pg_hba.conf `render_pg_hba` renders. The container's routing table is a file
the test writes: its default gateway plays the published port's source address.

Source addresses are simulated on the loopback: every 127.0.0.0/8 address is local on Linux, and a
small forwarder connects to the server from the source address it is given (127.0.0.3 plays the
gateway of the published port, 127.0.0.5 a team's PostgreSQL proxy on the database network).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oduflow_iac import naming, postgres_server

pytestmark = pytest.mark.postgres

GATEWAY = "127.0.0.3"
DATABASE_NETWORK_PEER = "127.0.0.5"


def _binaries() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("initdb", "postgres", "psql", "pg_isready")}
    missing = sorted(n for n, p in found.items() if p is None)
    if missing:
        reason = f"PostgreSQL server binaries not on PATH ({', '.join(missing)}): run through scripts/with-postgres.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    return {k: str(v) for k, v in found.items()}


def _route_file(gateway: str | None) -> str:
    header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    if gateway is None:
        return header + "eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    little_endian = "".join(f"{int(octet):02X}" for octet in reversed(gateway.split(".")))
    return header + f"eth0\t00000000\t{little_endian}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A server started through the wrapper; `process` is the wrapper, which becomes postgres."""

    root: Path
    port: int
    bins: dict[str, str]
    as_user: str | None
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def hba(self) -> Path:
        return self.root / "pg_hba.conf"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _user_kwargs(self) -> dict[str, Any]:
        if self.as_user is None:
            return {}
        return {"user": self.as_user, "group": pwd.getpwnam(self.as_user).pw_gid, "extra_groups": []}

    def initdb(self) -> None:
        # No password at all: the wrapper is what sets it, as after a lost or regenerated password.
        subprocess.run(
            [self.bins["initdb"], "-D", str(self.data), "-U", postgres_server.SUPERUSER, "--auth-local=peer",
             "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C"],
            check=True, capture_output=True, **self._user_kwargs(),
        )  # fmt: skip

    def start(self, password: str, gateway: str | None = GATEWAY, temp_file_limit_mb: int = 0) -> None:
        (self.root / "route").write_text(_route_file(gateway))
        (self.root / "pg_hba.conf.in").write_text(postgres_server.render_pg_hba())
        image_entrypoint = self.root / "docker-entrypoint.sh"
        # What the image's entrypoint does once the cluster exists: `exec "$@"` (postgres).
        image_entrypoint.write_text(
            "#!/bin/sh\n"
            '[ "$1" = postgres ] && shift\n'
            f"exec {self.bins['postgres']} -D {self.data} -p {self.port} -k {self.socket_dir}"
            f' -c listen_addresses=127.0.0.1 "$@"\n'
        )
        image_entrypoint.chmod(0o755)
        wrapper = self.root / "entrypoint.sh"
        wrapper.write_text(
            postgres_server.render_entrypoint(
                image_entrypoint=str(image_entrypoint),
                hba_template=str(self.root / "pg_hba.conf.in"),
                hba_path=str(self.hba),
                socket_dir=str(self.socket_dir),
                route_file=str(self.root / "route"),
                wait_seconds=60,
            )
        )
        command = postgres_server.server_command(
            max_connections=40, reserved_connections=3, temp_file_limit_mb=temp_file_limit_mb, hba_path=str(self.hba)
        )
        # PGPORT: the socket file is named after the port (5432 in the container).
        env = {"PATH": os.environ["PATH"], postgres_server.PASSWORD_VARIABLE: password, "LC_ALL": "C",
               "PGPORT": str(self.port)}  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["/bin/sh", str(wrapper), *command], env=env, stdout=log, stderr=subprocess.STDOUT,
                **self._user_kwargs(),
            )  # fmt: skip
        self._wait_for_password(password)

    def _wait_for_password(self, password: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            try:
                self.connect(postgres_server.SUPERUSER, password).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise AssertionError(f"the password was not applied:\n{self.log.read_text()}")

    def connect(self, user: str, password: str, source: str | None = None, dbname: str = "postgres") -> Any:
        """A TCP session; from `source` through a forwarder bound to that address."""
        if source is None:
            return psycopg.connect(
                host="127.0.0.1", port=self.port, user=user, password=password, dbname=dbname,
                connect_timeout=5, autocommit=True,
            )  # fmt: skip
        with _forwarder(source, self.port) as port:
            return psycopg.connect(
                host="127.0.0.1", port=port, user=user, password=password, dbname=dbname,
                connect_timeout=5, autocommit=True,
            )  # fmt: skip

    def stop(self, sig: int = signal.SIGINT) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)


@contextlib.contextmanager
def _forwarder(source: str, target_port: int) -> Iterator[int]:
    """One TCP connection forwarded to the server from `source` (kept alive while the session lasts)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def pump(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def serve() -> None:
        client, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", target_port), source_address=(source, 0))
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bins = _binaries()
    as_user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a `postgres` OS user to run the server as")
        as_user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="oduflow-wrapper-"))
    for sub in ("sock",):
        (root / sub).mkdir()
    if as_user is not None:
        shutil.chown(root, as_user, as_user)
        shutil.chown(root / "sock", as_user, as_user)
    root.chmod(0o700)
    c = Cluster(root, _free_port(), bins, as_user)
    c.initdb()
    try:
        yield c
    finally:
        if c.process is not None and c.process.poll() is None:
            c.process.kill()
            c.process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _refused(cluster: Cluster, user: str, password: str, source: str | None) -> str:
    with pytest.raises(psycopg.OperationalError) as info:
        cluster.connect(user, password, source).close()
    return str(info.value)


def _setup_roles(cluster: Cluster, password: str) -> None:
    with cluster.connect(postgres_server.SUPERUSER, password) as conn:
        for group in (naming.TENANT_GROUP_ROLE, naming.TENANT_ADMIN_GROUP_ROLE):
            conn.execute(f'CREATE ROLE "{group}" NOLOGIN'.encode())
        conn.execute(b"CREATE ROLE oduflow_team_9 LOGIN PASSWORD 'team-pw' IN ROLE oduflow_tenants")
        conn.execute(
            b"CREATE ROLE oduflow_team_9_admin LOGIN CREATEDB PASSWORD 'admin-pw'"
            b" IN ROLE oduflow_team_9, oduflow_tenant_admins"
        )
        conn.execute(b"CREATE ROLE intruder LOGIN PASSWORD 'intruder-pw'")


def test_the_wrapper_applies_the_password_and_keeps_postgres_as_the_process(cluster: Cluster) -> None:
    cluster.start("first-password")
    assert cluster.process is not None
    # exec all the way down: the wrapper's PID is the postmaster's, so `docker stop` signals it
    postmaster_pid = int((cluster.data / "postmaster.pid").read_text().splitlines()[0])
    assert postmaster_pid == cluster.process.pid
    with cluster.connect("postgres", "first-password") as conn:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()[0]
        assert stored.startswith("SCRAM-SHA-256$")
        assert conn.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"
        assert conn.execute("SHOW hba_file").fetchone()[0] == str(cluster.hba)
    # the password never reaches the server's log, nor the process list
    log = cluster.log.read_text()
    assert "first-password" not in log
    assert "is in force" in log
    # the image's stop signal (SIGINT) is a fast, clean shutdown of the postmaster itself
    assert cluster.stop(signal.SIGINT) == 0
    assert "database system is shut down" in cluster.log.read_text()


def test_a_changed_password_is_in_force_after_the_next_start(cluster: Cluster) -> None:
    cluster.start("first-password")
    assert cluster.stop() == 0
    # The stored password was regenerated (a new stack re-using the volume): the next start applies it.
    cluster.start("second-password")
    with cluster.connect("postgres", "second-password") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert "password authentication failed" in _refused(cluster, "postgres", "first-password", None)
    assert cluster.stop(signal.SIGTERM) == 0


def test_pg_hba_admits_each_role_only_from_its_path(cluster: Cluster) -> None:
    cluster.start("pw")
    _setup_roles(cluster, "pw")
    # The superuser: in-container loopback and the published port's gateway; not the database network.
    cluster.connect("postgres", "pw").close()
    cluster.connect("postgres", "pw", GATEWAY).close()
    assert "rejects connection" in _refused(cluster, "postgres", "pw", DATABASE_NETWORK_PEER)
    # A provisioning role: the published path only.
    cluster.connect("oduflow_team_9_admin", "admin-pw", GATEWAY).close()
    assert "rejects connection" in _refused(cluster, "oduflow_team_9_admin", "admin-pw", DATABASE_NETWORK_PEER)
    # A team role: the database network only, never the host's published port.
    cluster.connect("oduflow_team_9", "team-pw", DATABASE_NETWORK_PEER).close()
    assert "rejects connection" in _refused(cluster, "oduflow_team_9", "team-pw", GATEWAY)
    # Any other role: nowhere.
    for source in (GATEWAY, DATABASE_NETWORK_PEER, None):
        assert "rejects connection" in _refused(cluster, "intruder", "intruder-pw", source)
    # A wrong password is still a wrong password on an admitted path.
    assert "password authentication failed" in _refused(cluster, "oduflow_team_9", "nope", DATABASE_NETWORK_PEER)
    # The local socket: the superuser as the OS user postgres (peer), nobody else.
    socket_dir = str(cluster.socket_dir)
    kwargs = {"user": cluster.as_user, "group": pwd.getpwnam(cluster.as_user).pw_gid} if cluster.as_user else {}
    ok = subprocess.run(
        [cluster.bins["psql"], "-X", "-h", socket_dir, "-p", str(cluster.port), "-U", "postgres", "-d", "postgres",
         "-Atc", "SELECT current_user"],
        capture_output=True, text=True, **kwargs,
    )  # fmt: skip
    assert ok.stdout.strip() == "postgres", ok.stderr
    refused = subprocess.run(
        [cluster.bins["psql"], "-X", "-h", socket_dir, "-p", str(cluster.port), "-U", "oduflow_team_9",
         "-d", "postgres", "-c", "SELECT 1"],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": "team-pw"}, **kwargs,
    )  # fmt: skip
    assert refused.returncode != 0 and "rejects connection" in refused.stderr
    # no trust anywhere, and the gateway was filled in
    text = cluster.hba.read_text()
    assert "trust" not in text and postgres_server.GATEWAY_PLACEHOLDER not in text and f"{GATEWAY}/32" in text


def test_without_a_default_route_nothing_comes_through_a_published_port(cluster: Cluster) -> None:
    cluster.start("pw", gateway=None)
    _setup_roles(cluster, "pw")
    text = cluster.hba.read_text()
    assert postgres_server.GATEWAY_PLACEHOLDER not in text and f"{GATEWAY}/32" not in text
    cluster.connect("postgres", "pw").close()
    assert "rejects connection" in _refused(cluster, "postgres", "pw", GATEWAY)
    assert "rejects connection" in _refused(cluster, "oduflow_team_9_admin", "admin-pw", GATEWAY)


def test_temp_file_limit_holds_for_a_team_role(cluster: Cluster) -> None:
    cluster.start("pw", temp_file_limit_mb=1)
    _setup_roles(cluster, "pw")
    with cluster.connect("oduflow_team_9", "team-pw", DATABASE_NETWORK_PEER) as conn:
        assert conn.execute("SHOW temp_file_limit").fetchone()[0] == "1MB"
        conn.execute("SET work_mem = '64kB'")
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="temp_file_limit"):
            conn.execute("SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 200000) g ORDER BY 1) s")
        # superuser-only: the team cannot lift it in its own session
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET temp_file_limit = -1")
