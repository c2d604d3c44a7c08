#!/usr/bin/env bash
# Run COMMAND with a throw-away Docker engine: scripts/with-docker.sh COMMAND [ARG...]
#
# The engine is a `dockerd` of its own: data root, exec root, socket and log in a temporary
# directory, started in a network namespace and a mount namespace of its own. In that network
# namespace there is nothing but the loopback interface and the bridges the tests create, so no
# container can send a packet off the machine (no uplink, --ip-masq=false), its iptables rules never
# touch the host's, and a container with network_mode "host" shares the engine's namespace, not the
# machine's. The mount namespace keeps the engine's mounts (overlay, netns, shm) out of the host's
# mount table and hides any system containerd, so the engine runs a containerd of its own.
# No default bridge (--bridge=none): containers are only on the networks the tests create.
#
# COMMAND sees the engine's socket in ODUFLOW_TEST_DOCKER_HOST (unix://...). When COMMAND ends,
# every container, network, volume and image is removed, the engine is stopped and its directory
# deleted; the script exits with COMMAND's status. The tests build their stand-in images locally
# (no registry is reachable): Debian's busybox-static is installed alongside the engine for that.
#
# Where dockerd is missing and we are root with apt-get, Debian's `docker.io` (and busybox-static)
# are installed first. Where no engine can be provided (not root, no apt-get, start failure),
# COMMAND runs without ODUFLOW_TEST_DOCKER_HOST and the Docker tests are skipped with that reason,
# except with CI=true: there a missing engine is an error, never a silent skip.
# An ODUFLOW_TEST_DOCKER_HOST already set by the caller (an existing test engine) is used as it is.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

CMD=("$@")
WORK=""
SOCK=""
LAUNCHER=""

log() { echo "with-docker: $*" >&2; }

is_ci() { [ "${CI:-}" = "true" ]; }

engine() { docker -H "unix://$SOCK" "$@"; }

engine_pid() { cat "$WORK/dockerd.pid" 2>/dev/null || true; }

# Everything the tests left, then the engine, then its directory. Safe to call twice.
stop_engine() {
    [ -n "$WORK" ] || return 0
    if [ -S "$SOCK" ]; then
        local ids
        ids="$(engine ps -aq 2>/dev/null || true)"
        # shellcheck disable=SC2086
        [ -z "$ids" ] || engine rm -f -v $ids >/dev/null 2>&1 || true
        engine network prune -f >/dev/null 2>&1 || true
        ids="$(engine volume ls -q 2>/dev/null || true)"
        # shellcheck disable=SC2086
        [ -z "$ids" ] || engine volume rm -f $ids >/dev/null 2>&1 || true
        ids="$(engine images -aq 2>/dev/null | sort -u || true)"
        # shellcheck disable=SC2086
        [ -z "$ids" ] || engine rmi -f $ids >/dev/null 2>&1 || true
    fi
    local pid
    pid="$(engine_pid)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    # The launcher (unshare) ends with dockerd; its mount and network namespaces go with it.
    if [ -n "$LAUNCHER" ]; then
        wait "$LAUNCHER" 2>/dev/null || true
        LAUNCHER=""
    fi
    rm -rf "$WORK"
    WORK=""
}

# No engine: an error under CI, else run COMMAND without one (the tests say why they skip).
unavailable() {
    if is_ci; then
        log "ERROR: cannot provide a Docker engine: $1"
        log "CI=true requires the Docker tests to run; install dockerd (Debian: docker.io) or set ODUFLOW_TEST_DOCKER_HOST."
        exit 1
    fi
    log "no Docker engine ($1); running without ODUFLOW_TEST_DOCKER_HOST, Docker tests will be skipped"
    unset ODUFLOW_TEST_DOCKER_HOST
    trap - EXIT
    stop_engine
    exec "${CMD[@]}"
}

if [ -n "${ODUFLOW_TEST_DOCKER_HOST:-}" ]; then
    log "using the engine given in ODUFLOW_TEST_DOCKER_HOST"
    exec "${CMD[@]}"
fi

have_tools() {
    command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 \
        && command -v busybox >/dev/null 2>&1
}

if [ "$(id -u)" -ne 0 ]; then
    unavailable "dockerd needs root"
fi
for tool in unshare ip; do
    command -v "$tool" >/dev/null 2>&1 || unavailable "$tool not found (util-linux, iproute2)"
done

if ! have_tools; then
    if command -v apt-get >/dev/null 2>&1; then
        log "installing the Docker engine (Debian packages docker.io, busybox-static)"
        if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                    docker.io busybox-static >/dev/null; }; then
            unavailable "apt-get install docker.io failed"
        fi
        have_tools || unavailable "docker.io installed but dockerd/docker/busybox not found"
    else
        unavailable "dockerd not found and cannot install it (needs apt-get)"
    fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/oduflow-docker.XXXXXX")" || unavailable "cannot create a temporary directory"
chmod 700 "$WORK"
SOCK="$WORK/docker.sock"
export ODUFLOW_TEST_DOCKER_HOST="unix://$SOCK"

cleanup() {
    local status=$?
    stop_engine
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The daemon's own configuration file (empty: the host's /etc/docker/daemon.json must not apply).
echo '{}' >"$WORK/daemon.json"

# Inside the new namespaces: loopback up, any system containerd hidden (so dockerd starts its own,
# under the exec root), then dockerd. Options: no default bridge, no masquerading; the iptables
# rules for the test networks' isolation stay inside this network namespace.
cat >"$WORK/launch.sh" <<EOF
#!/bin/sh
set -e
ip link set lo up
mount -t tmpfs -o size=1m,mode=0755 tmpfs /run/containerd 2>/dev/null || true
exec dockerd \\
    --config-file "$WORK/daemon.json" \\
    --data-root "$WORK/data" \\
    --exec-root "$WORK/exec" \\
    --pidfile "$WORK/dockerd.pid" \\
    --host "unix://$SOCK" \\
    --bridge=none \\
    --ip-masq=false \\
    --log-level=warn
EOF
chmod 700 "$WORK/launch.sh"
mkdir -p /run/containerd 2>/dev/null || true

unshare --net --mount --propagation private --fork -- "$WORK/launch.sh" >"$WORK/dockerd.log" 2>&1 &
LAUNCHER=$!

ready=0
for _ in $(seq 1 150); do
    if ! kill -0 "$LAUNCHER" 2>/dev/null; then
        break
    fi
    if [ -S "$SOCK" ] && engine version >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.2
done
if [ "$ready" -ne 1 ]; then
    tail -n 20 "$WORK/dockerd.log" >&2 2>/dev/null || true
    unavailable "dockerd did not start"
fi

log "Docker $(engine version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null) on $ODUFLOW_TEST_DOCKER_HOST (private network namespace)"

set +e
"${CMD[@]}"
status=$?
set -e
exit "$status"
