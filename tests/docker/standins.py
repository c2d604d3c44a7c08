"""Stand-in images for the Docker engine tests, built locally (no registry is reachable).

One tiny image, imported from a root filesystem made of Debian's busybox-static, is tagged with
every image reference the plan uses (`odoo:17.0`, `postgres:16.4`, `traefik:...`), so containers
are created from exactly the references the plan sends. A digest-pinned reference
(`name:tag@sha256:...`) cannot be given to a local image (only a registry gives an image a
digest); the stand-in is then tagged `name:tag` (or `name:latest`) and the test says so.

What a stand-in container does, told by variables the harness adds to its environment (the
provider never reads `env` back, F:893-898, so they do not affect the read-back comparison):
- ODUFLOW_STANDIN_LISTEN="ADDR:PORT ..." serves TCP on each address (busybox httpd);
  "0.0.0.0:5432>HOST:PORT" forwards each connection to HOST:PORT (a TCP proxy, busybox nc).
- ODUFLOW_STANDIN_STOP_SECONDS=N: on SIGTERM/SIGINT/SIGQUIT, log it, take N seconds to shut down,
  log "clean exit" and exit 0 (a process that needs time to stop cleanly).
- ODUFLOW_STANDIN_EXIT=N: the exit code of the image's programs (odoo, psql, git...), default 0.
- ODUFLOW_STANDIN_IDLE=1: idle until stopped, whatever arguments the plan gives the real image.
Without a listener it idles until stopped; given a command, it runs it (the plan's one-shots).
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from pathlib import Path

import docker

BASE_REPOSITORY = "oduflow-test-standin"
BASE_TAG = "latest"
BASE = f"{BASE_REPOSITORY}:{BASE_TAG}"

# The applets the stand-in scripts and the probes use.
APPLETS = (
    "sh",
    "nc",
    "httpd",
    "sleep",
    "cat",
    "echo",
    "kill",
    "date",
    "timeout",
    "nslookup",
    "ls",
    "mkdir",
    "cp",
    "tr",
    "seq",
    "env",
    "true",
    "false",
    "wget",
    "ps",
    "grep",
    "id",
    "hostname",
    "printf",
    "test",
    "[",
    "rm",
    "touch",
    "ip",
    "cut",
    "head",
    "sed",
    "mktemp",
    "tail",
    "awk",
    "chmod",
    "mv",
    # `oduflow-iac restore` swaps a filestore in with tar, in a one-shot of the backup image.
    "tar",
)
# The programs the plan's commands and healthchecks call in the real images.
PROGRAMS = (
    "odoo",
    "psql",
    "pg_isready",
    "git",
    "curl",
    "traefik",
    "go-cron",
    "socat",
    "pg_dump",
    "pg_restore",
    "python3",
    "haproxy",
    "aws",
    "gzip",
    "docker-entrypoint.sh",
    "entrypoint.sh",
    "gosu",
)

RUN = r"""#!/bin/sh
# Stand-in for an image's program (see tests/docker/standins.py).
log() { echo "standin: $*"; }
stop() {
    log "got SIG$1"
    sleep "${ODUFLOW_STANDIN_STOP_SECONDS:-0}"
    log "clean exit"
    exit 0
}
trap 'stop TERM' TERM
trap 'stop INT' INT
trap 'stop QUIT' QUIT
if [ -z "${ODUFLOW_STANDIN_LISTEN:-}" ] && [ -z "${ODUFLOW_STANDIN_IDLE:-}" ] && [ "$#" -gt 0 ]; then
    exec "$@"
fi
www=/standin/www
if [ -n "${ODUFLOW_STANDIN_NAME:-}" ] && mkdir -p /tmp/www 2>/dev/null \
        && echo "$ODUFLOW_STANDIN_NAME" >/tmp/www/index.html 2>/dev/null; then
    www=/tmp/www
fi
for spec in ${ODUFLOW_STANDIN_LISTEN:-}; do
    case "$spec" in
        *'>'*)
            listen="${spec%%>*}"
            target="${spec#*>}"
            nc -ll -p "${listen##*:}" -e nc "${target%:*}" "${target##*:}" &
            ;;
        *)
            httpd -f -p "$spec" -h "$www" &
            ;;
    esac
done
log "ready"
while :; do
    sleep 1 &
    wait $!
done
"""

PROGRAM = r"""#!/bin/sh
# Stand-in for a program of the real image: succeeds (or exits ODUFLOW_STANDIN_EXIT), except a
# long-running scheduler, which idles like the image's main process.
case "${0##*/}" in
    # The image's main process: the PostgreSQL image's entrypoint (which the platform's wrapper
    # execs) and Odoo as a server (as a one-shot it runs with --stop-after-init, or a subcommand
    # such as `odoo neutralize`).
    go-cron | docker-entrypoint.sh) exec /standin/run ;;
    odoo)
        # A server, except as a one-shot: --stop-after-init, or a subcommand that ends (neutralize).
        case " $* " in
            *" --stop-after-init "* | " neutralize "*) ;;
            *) exec /standin/run ;;
        esac
        ;;
esac
exit "${ODUFLOW_STANDIN_EXIT:-0}"
"""

PASSWD = """root:x:0:0:root:/root:/bin/sh
odoo:x:101:101:odoo:/var/lib/odoo:/bin/sh
postgres:x:999:999:postgres:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
"""
GROUP = "root:x:0:\nodoo:x:101:\npostgres:x:999:\nnogroup:x:65534:\n"


def find_busybox() -> Path:
    """A statically linked busybox (Debian: busybox-static), so the image needs no libraries."""
    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and Path(candidate).is_file():
            path = Path(candidate).resolve()
            if _is_static(path):
                return path
    raise FileNotFoundError(
        "no statically linked busybox found (Debian package busybox-static; scripts/with-docker.sh installs it)"
    )


def _is_static(path: Path) -> bool:
    """An ELF without a PT_INTERP program header (no dynamic loader)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return False
    little = data[5] == 1
    order = "little" if little else "big"
    phoff = int.from_bytes(data[0x20:0x28], order)
    phentsize = int.from_bytes(data[0x36:0x38], order)
    phnum = int.from_bytes(data[0x38:0x3A], order)
    for i in range(phnum):
        start = phoff + i * phentsize
        if int.from_bytes(data[start : start + 4], order) == 3:  # PT_INTERP
            return False
    return True


def rootfs(busybox: Path) -> bytes:
    """The stand-in's root filesystem as a tar archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def directory(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def file(name: str, content: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))

        def link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)

        for d in (
            "bin",
            "usr",
            "usr/bin",
            "usr/local",
            "usr/local/bin",
            "etc",
            "etc/odoo",
            "standin",
            "standin/www",
            "var",
            "var/lib",
            "var/lib/odoo",
            "var/lib/postgresql",
            "var/lib/postgresql/data",
            "mnt",
            "mnt/extra-addons",
            "root",
            "run",
            "var/run",
            "var/run/postgresql",
            "proc",
            "sys",
            "dev",
        ):
            directory(d)
        directory("tmp", 0o1777)
        file("bin/busybox", busybox.read_bytes(), 0o755)
        for applet in APPLETS:
            link(f"bin/{applet}", "busybox")
        file("standin/run", RUN.encode(), 0o755)
        file("standin/program", PROGRAM.encode(), 0o755)
        for program in PROGRAMS:
            link(f"usr/local/bin/{program}", "/standin/program")
        file("standin/www/index.html", b"stand-in\n")
        file("etc/passwd", PASSWD.encode())
        file("etc/group", GROUP.encode())
    return buffer.getvalue()


def local_reference(reference: str) -> str:
    """The tag a local image can carry for `reference`: digest dropped, `latest` when untagged."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def build(client: docker.DockerClient, references: list[str]) -> dict[str, str]:
    """Import the stand-in once and tag it as every reference; returns reference -> local tag."""
    changes = ['ENTRYPOINT ["/standin/run"]', "ENV PATH=/usr/local/bin:/usr/bin:/bin"]
    client.api.import_image_from_data(rootfs(find_busybox()), repository=BASE_REPOSITORY, tag=BASE_TAG, changes=changes)
    image = client.images.get(BASE)
    tags = {}
    for reference in sorted(set(references)):
        local = local_reference(reference)
        repository, tag = local.rsplit(":", 1)
        image.tag(repository, tag)
        tags[reference] = local
    return tags


DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def is_digest_pinned(reference: str) -> bool:
    return bool(DIGEST.search(reference))
