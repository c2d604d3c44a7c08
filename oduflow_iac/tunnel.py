"""Reaching the PostgreSQL of a remote Docker host: the SSH tunnel and the fail-fast check.

The PostgreSQL container publishes its port on the Docker host's loopback only
(`127.0.0.1:<platform.postgres_port>`), and the `postgresql` provider dials
`platform.postgres_admin_host:<port>` from the machine that runs Pulumi. When the Docker host is
`ssh://user@host[:port]`, that machine is another one: `oduflow-iac preview|up|refresh|destroy`
forward a free local port to the host's loopback port over SSH for the duration of the run, and
tell the program which local port that is through ODUFLOW_POSTGRES_ADMIN_PORT (the program reads
it in `program.admin_endpoint`, so the one-stack and per-team layouts behave alike).

The local port is not assumed to be the remote one: a local PostgreSQL often holds 5432 already.

With several servers each remote PostgreSQL needs a local endpoint of its own: the default server's
keeps ODUFLOW_POSTGRES_ADMIN_HOST/PORT, server `s2` reads ODUFLOW_POSTGRES_ADMIN_HOST_S2/PORT_S2
(`server_env_names`: upper case, `-` as `_`), so a stack spanning servers gets every tunnel at once.

Everything here is a small pure function (parsing, the command line, the message) plus thin
socket/process helpers, so the tests can check each against a fake `ssh`.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from oduflow_iac.errors import OduflowError
from oduflow_iac.naming import DEFAULT_SERVER

ENV_ADMIN_HOST = "ODUFLOW_POSTGRES_ADMIN_HOST"
ENV_ADMIN_PORT = "ODUFLOW_POSTGRES_ADMIN_PORT"
LOCALHOST = "127.0.0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# ExitOnForwardFailure: a port that cannot be bound is an exit, not a tunnel that silently forwards
# nothing. BatchMode: never prompt (no terminal to answer; the Docker CLI needs key auth as well).
# ServerAlive*: a dead connection ends within ~45 s instead of hanging the engine's next query.
SSH_OPTIONS = (
    "ExitOnForwardFailure=yes",
    "BatchMode=yes",
    "ServerAliveInterval=15",
    "ServerAliveCountMax=3",
    "ConnectTimeout=15",
)
OPEN_TIMEOUT = 20.0
CHECK_TIMEOUT = 2.0


class TunnelError(OduflowError):
    """The SSH tunnel to the Docker host's PostgreSQL could not be opened."""


@dataclass(frozen=True)
class SshTarget:
    """Where `ssh://user@host:port` points, parsed by the rules of the Docker CLI
    (docker/cli, cli/connhelper/ssh/ssh.go: user optional, no password, a host, an optional port,
    nothing after the host)."""

    host: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def _safe(part: str, what: str, docker_host: str) -> str:
    # The parts become ssh arguments: refuse what ssh would read as an option or a second word.
    if not part or part.startswith("-") or any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in part):
        raise ValueError(f"{docker_host!r}: the {what} is not usable as an ssh argument")
    return part


def parse_ssh_host(docker_host: str) -> SshTarget | None:
    """The SSH target of an `ssh://` Docker host; None for any other scheme (unix://, tcp://, npipe://).
    A malformed ssh:// address is a ValueError naming what is wrong."""
    if not docker_host.startswith("ssh://"):
        return None
    parts = urlsplit(docker_host)
    if parts.password is not None:
        raise ValueError(f"{parts.scheme}://...: a plain-text password is not supported (use an SSH key)")
    if not parts.hostname:
        raise ValueError(f"{docker_host!r}: no host")
    if parts.path or parts.query or parts.fragment:
        raise ValueError(f"{docker_host!r}: nothing may follow the host (no path, query or fragment)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{docker_host!r}: the port is not a number from 1 to 65535") from None
    user = _safe(parts.username, "user", docker_host) if parts.username else None
    return SshTarget(_safe(parts.hostname, "host", docker_host), user, port)


def tunnel_target(docker_host: str, admin_host: str) -> SshTarget | None:
    """The host to tunnel through, when the provider must reach PostgreSQL over SSH: the Docker host is
    `ssh://` and PostgreSQL is to be dialled on loopback. A non-loopback `postgres_admin_host` means
    the operator made PostgreSQL reachable some other way (VPN, private network): no tunnel."""
    target = parse_ssh_host(docker_host)
    if target is None or admin_host not in LOOPBACK_HOSTS:
        return None
    return target


def tunnel_command(target: SshTarget, local_port: int, remote_port: int, *, ssh: str = "ssh") -> list[str]:
    """`ssh -N -L 127.0.0.1:<local>:127.0.0.1:<remote> [-p port] -- user@host` with the options above.
    The local end binds loopback only: nothing else on the operator's machine reaches the server."""
    argv = [ssh, "-N"]
    for option in SSH_OPTIONS:
        argv += ["-o", option]
    argv += ["-L", f"{LOCALHOST}:{local_port}:{LOCALHOST}:{remote_port}"]
    if target.port is not None:
        argv += ["-p", str(target.port)]
    return [*argv, "--", target.destination]


def unreachable_message(
    *, stack: str, docker_host: str, target: SshTarget, host: str, port: int, remote_port: int
) -> str:
    """One line: why the program stops, and the exact commands that make the next run work."""
    ssh = shlex.join(tunnel_command(target, port, remote_port))
    return (
        f"PostgreSQL of Docker host {docker_host} is not reachable at {host}:{port}: "
        f"run `oduflow-iac up --stack {stack}` (it opens the SSH tunnel itself), "
        f"or open the tunnel first with `{ssh}`"
    )


def server_env_names(server: str = DEFAULT_SERVER) -> tuple[str, str]:
    """The variables giving `server`'s PostgreSQL endpoint: ODUFLOW_POSTGRES_ADMIN_HOST/PORT for the
    default server (as before servers), `..._HOST_S2`/`..._PORT_S2` for server `s2`. Server names
    are `[a-z][a-z0-9-]*`: upper-cased with `-` as `_` they are valid variable names, and
    distinct (no server name holds `_`)."""
    if server == DEFAULT_SERVER:
        return ENV_ADMIN_HOST, ENV_ADMIN_PORT
    suffix = server.upper().replace("-", "_")
    return f"{ENV_ADMIN_HOST}_{suffix}", f"{ENV_ADMIN_PORT}_{suffix}"


def admin_endpoint(
    default_host: str, default_port: int, environ: Mapping[str, str], server: str = DEFAULT_SERVER
) -> tuple[str, int]:
    """Where the postgresql provider of `server` dials: its ODUFLOW_POSTGRES_ADMIN_HOST/PORT[_SERVER]
    when set (by `oduflow-iac` for its tunnel, or by an operator), else the configured defaults."""
    host_var, port_var = server_env_names(server)
    host = environ.get(host_var) or default_host
    raw = environ.get(port_var)
    if not raw:
        return host, default_port
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"{port_var}={raw!r} is not a port number (1-65535)")
    return host, int(raw)


def has_endpoint(environ: Mapping[str, str], server: str) -> bool:
    """The run was told where `server`'s PostgreSQL is (its port variable is set)."""
    return bool(environ.get(server_env_names(server)[1]))


# --------------------------------------------------------------------------------------------
# Sockets


def port_accepts(host: str, port: int, timeout: float = CHECK_TIMEOUT) -> bool:
    """A TCP connection to host:port succeeds within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port: int, host: str = LOCALHOST) -> bool:
    """Nothing listens on host:port: ssh could bind it. With SO_REUSEADDR, as ssh sets it on its
    forwarding listeners (openssh-portable, channels.c, set_reuseaddr): connections of the last run
    still in TIME_WAIT do not make the port busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOCALHOST) -> int:
    """A port the kernel says is free now (ssh binds it a moment later; ExitOnForwardFailure
    turns the rare race into an exit that `open_tunnel` retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The tunnel process


class Tunnel:
    """A running `ssh -N -L` forward; a context manager that always stops it."""

    def __init__(self, argv: Sequence[str], local_port: int, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        self.argv = list(argv)
        self.local_port = local_port
        self.process = process
        self._log = log

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def stderr_tail(self) -> str:
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _start(argv: list[str], local_port: int, timeout: float) -> Tunnel:
    # Not a pipe: ssh's messages over a long run must never block it. Closed by Tunnel.close.
    log = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        # In oduflow-iac's own process group: a signal to the group (Ctrl-C, a CI job cancelled) ends
        # ssh with everything else even when oduflow-iac gets no chance to close it.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    except OSError as exc:
        log.close()
        raise TunnelError(f"could not run {argv[0]}: {exc.strerror or exc}") from None
    tunnel = Tunnel(argv, local_port, process, log)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                reason = tunnel.stderr_tail() or f"exit status {process.returncode}"
                raise TunnelError(f"the SSH tunnel to PostgreSQL failed ({reason}): `{tunnel.command}`")
            if port_accepts(LOCALHOST, local_port, timeout=0.2):
                return tunnel
            if time.monotonic() > deadline:
                raise TunnelError(f"the SSH tunnel to PostgreSQL did not open within {timeout:g} s: `{tunnel.command}`")
            time.sleep(0.05)
    except BaseException:
        tunnel.close()
        raise


def open_tunnel(
    target: SshTarget,
    remote_port: int,
    *,
    preferred: int | None = None,
    strict: bool = False,
    timeout: float | None = None,
) -> Tunnel:
    """Forward a local port to the Docker host's loopback `remote_port` and wait until it accepts.

    `preferred` (the port the stack's state already records) is used when it is free, so the
    provider's configuration does not change between runs. `strict`: only `preferred` will do
    (refresh and destroy do not run the program; the engine dials the port recorded in the state).
    """
    ssh = shutil.which("ssh")
    if ssh is None:
        raise TunnelError(
            "the `ssh` client is not on PATH; it is needed to reach the PostgreSQL of an ssh:// Docker host"
        )
    if preferred is not None and not port_free(preferred):
        if strict:
            raise TunnelError(
                f"the stack's state dials PostgreSQL at {LOCALHOST}:{preferred}, and something already listens there: "
                f"stop it (or, if it is your own tunnel to this host, run pulumi directly), "
                f"or run `oduflow-iac up` first, which moves the provider to a free port"
            )
        preferred = None
    last: TunnelError | None = None
    for attempt in range(1 if strict else 3):
        port = preferred if attempt == 0 and preferred is not None else free_port()
        try:
            return _start(tunnel_command(target, port, remote_port, ssh=ssh), port, timeout or OPEN_TIMEOUT)
        except TunnelError as exc:
            last = exc
            if port_free(port):  # not a port lost to another process: ssh itself failed, retrying will not help
                raise
    assert last is not None
    raise last


def tunnel_env(tunnel: Tunnel, server: str = DEFAULT_SERVER) -> dict[str, str]:
    """What the program reads to dial `server`'s PostgreSQL through `tunnel`."""
    host_var, port_var = server_env_names(server)
    return {host_var: LOCALHOST, port_var: str(tunnel.local_port)}
