"""What the Docker provider does with a container, network or volume: Create, Read and Delete,
reproduced against a real engine with the Docker API client, from the plan's recorded inputs.

The provider is the Terraform provider pulumi-docker bridges: kreuzwerker/terraform-provider-docker
v4.5.0 (the submodule `upstream` of pulumi/pulumi-docker from v5.1.0 on; pulumi_docker 5.2.0's
Container schema has one input more, `device_cgroup_rules`, which the program does not use).
File references below are to that tag's internal/provider/ (see docs/docker-provider.md):
  C  = resource_docker_container.go        (schema: which input is ForceNew)
  F  = resource_docker_container_funcs.go  (Create, Read, Update, Delete)
  S  = resource_docker_container_structures.go
  NF = resource_docker_network_funcs.go, V = resource_docker_volume.go, H = helpers.go

Inputs are the plan's wire form (camelCase keys, numbers as floats, secrets unwrapped by the caller).
`read_container` returns the state the provider's Read writes, under the same wire keys, so a test
can compare each input the plan sends with what a `pulumi refresh` would put in its place.
"""

from __future__ import annotations

import contextlib
import io
import re
import tarfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

MIB = 1024 * 1024

# Container inputs that replace the container when they differ from the state (C: ForceNew: true).
CONTAINER_FORCE_NEW = frozenset(
    {
        "name",
        "readOnly",
        "image",
        "hostname",
        "domainname",
        "command",
        "entrypoints",
        "user",
        "dns",
        "dnsOpts",
        "dnsSearches",
        "publishAllPorts",
        "workingDir",
        "capabilities",
        "securityOpts",
        "runtime",
        "platform",
        "stopSignal",
        "stopTimeout",
        "mounts",
        "volumes",
        "ports",
        "hosts",
        "ulimits",
        "envs",
        "privileged",
        "devices",
        "deviceRequests",
        "labels",
        "shmSize",
        "logDriver",
        "logOpts",
        "networkMode",
        "networksAdvanced",
        "pidMode",
        "usernsMode",
        "uploads",
        "sysctls",
        "ipcMode",
        "groupAdds",
        "tty",
        "stdinOpen",
        "storageOpts",
        "gpus",
        "cpus",
        "cgroupnsMode",
        "cgroupParent",
    }
)
# Inputs Update applies in place with one ContainerUpdate (F:1016-1019).
CONTAINER_UPDATABLE = frozenset(
    {
        "restart",
        "maxRetryCount",
        "cpuShares",
        "memory",
        "memoryReservation",
        "cpuSet",
        "memorySwap",
        "deviceReadBps",
        "deviceReadIops",
        "deviceWriteBps",
        "deviceWriteIops",
    }
)
# Inputs Read never writes (state keeps what was sent; F:893-898, F:882, F:931, F:959, F:786-796).
CONTAINER_NOT_READ = frozenset(
    {
        "envs",
        "labels",
        "networksAdvanced",
        "volumes",
        "uploads",
        "destroyGraceSeconds",
        "attach",
        "logs",
        "start",
        "wait",
        "waitTimeout",
        "removeVolumes",
        "containerReadRefreshTimeoutMilliseconds",
        "cpuPeriod",
        "cpuQuota",
        "cgroupParent",
        "cgroupnsMode",
        "deviceCgroupRules",
    }
)

# Schema defaults of the inputs Read writes (C), for inputs the plan leaves out.
CONTAINER_DEFAULTS: dict[str, Any] = {
    "rm": False,
    "readOnly": False,
    "restart": "no",
    "maxRetryCount": 0,
    "networkMode": "bridge",
    "memoryReservation": 0,
    "tty": False,
    "stdinOpen": False,
    "privileged": False,
    "publishAllPorts": False,
    "mustRun": True,
}
# Read writes these, but they are Computed: a value the plan does not send is no diff.
CONTAINER_COMPUTED = frozenset(
    {
        "hostname",
        "command",
        "entrypoints",
        "securityOpts",
        "runtime",
        "platform",
        "stopSignal",
        "stopTimeout",
        "shmSize",
        "logDriver",
        "ipcMode",
        "init",
        "healthcheck",
        "envs",
        "labels",
        "exitCode",
        "containerLogs",
        "bridge",
        "networkDatas",
    }
)


# ---------------------------------------------------------------------------------------------
# Value formats (pure functions, tested without an engine)


def nano_to_decimal_string(nanos: int) -> str:
    """H:133-149 nanoInt64ToDecimalString: how Read writes `cpus` from HostConfig.NanoCpus.

    Go: s = big.Rat(n, 1e9).FloatString(9); if strings.Count(s, "0") == 9 { return FloatString(1) };
    return strings.TrimRight(s, "0"). FloatString rounds half away from zero."""
    if nanos == 0:
        return "0"
    rat = Fraction(nanos, 10**9)
    text = _float_string(rat, 9)
    if text.count("0") == 9:
        return _float_string(rat, 1)
    return text.rstrip("0")


def _float_string(value: Fraction, digits: int) -> str:
    """Go's big.Rat.FloatString: `digits` decimals, rounded half away from zero."""
    negative = value < 0
    scaled = abs(value) * 10**digits
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest >= scaled.denominator:
        whole += 1
    integer, fraction = divmod(whole, 10**digits)
    text = str(integer) if digits == 0 else f"{integer}.{fraction:0{digits}d}"
    return f"-{text}" if negative else text


def parse_cpus(text: str) -> int:
    """docker/cli opts.ParseCPUs (F:354-360): the decimal times 1e9, which must be a whole number."""
    value = Fraction(text) * 10**9
    if value.denominator != 1:
        raise ValueError(f"value is too precise: {text!r}")
    return int(value)


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NANOS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration (what Create applies to the healthcheck's durations, F:147-158), in
    nanoseconds. Create ignores a parse error (`_`), which leaves 0: so does this."""
    if text in ("0", ""):
        return 0
    pos, total = 0, Fraction(0)
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    while pos < len(body):
        match = _DURATION.match(body, pos)
        if not match:
            return 0
        total += Fraction(match.group(1)) * _UNIT_NANOS[match.group(2)]
        pos = match.end()
    return sign * int(total)


def go_duration_string(nanos: int) -> str:
    """Go's time.Duration.String(): how Read writes the healthcheck's durations (F:960-971)."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    n = abs(nanos)
    if n < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if n >= size:
                return sign + _trim_fraction(Fraction(n, size)) + unit
    hours, rest = divmod(n, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = _trim_fraction(Fraction(rest, 10**9))
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def _trim_fraction(value: Fraction) -> str:
    whole, rest = divmod(value.numerator, value.denominator)
    if rest == 0:
        return str(whole)
    digits = str(round(Fraction(rest, value.denominator) * 10**9)).rjust(9, "0").rstrip("0")
    return f"{whole}.{digits}"


# ---------------------------------------------------------------------------------------------
# Create


def _int(value: Any, default: int = 0) -> int:
    return default if value is None else int(value)


def _set(value: Any) -> bool:
    """Terraform's GetOk: set and not the zero value of its type."""
    return value not in (None, "", 0, False, [], {})


class CreateFailed(Exception):
    """The engine refused a step of Create: `pulumi up` fails the same way on this resource."""

    def __init__(self, step: str, error: Exception, container_id: str | None = None) -> None:
        super().__init__(f"{step}: {getattr(error, 'explanation', None) or error}")
        self.container_id = container_id


@dataclass
class Applied:
    """A container as the harness created it: its id and what the test engine changed on the way."""

    id: str
    name: str
    inputs: dict[str, Any]
    # What had to differ from the provider on this engine (said in test messages).
    deviations: list[str] = field(default_factory=list)


def container_create_body(inputs: dict[str, Any], image: str) -> dict[str, Any]:
    """The ContainerCreate request F:69-452 builds (config + hostConfig), for the given image."""
    config: dict[str, Any] = {
        "Image": image,
        "Hostname": inputs.get("hostname") or "",
        "Domainname": inputs.get("domainname") or "",
        "Tty": bool(inputs.get("tty", False)),
        "OpenStdin": bool(inputs.get("stdinOpen", False)),
        "StopSignal": inputs.get("stopSignal") or "",
    }
    if _set(inputs.get("stopTimeout")):
        config["StopTimeout"] = _int(inputs["stopTimeout"])
    if _set(inputs.get("envs")):
        config["Env"] = list(inputs["envs"])
    if _set(inputs.get("command")):
        if any(part == "" for part in inputs["command"]):
            raise ValueError("values for command may not be empty")  # F:85-88
        config["Cmd"] = list(inputs["command"])
    if _set(inputs.get("entrypoints")):
        config["Entrypoint"] = list(inputs["entrypoints"])
    if _set(inputs.get("user")):
        config["User"] = inputs["user"]
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in inputs.get("ports") or []:
        key = f"{_int(port['internal'])}/{port.get('protocol') or 'tcp'}"
        exposed[key] = {}
        binding = {
            "HostIp": port.get("ip") if port.get("ip") is not None else "0.0.0.0",  # C: ip default
            "HostPort": str(_int(port.get("external"))) if port.get("external") is not None else "",
        }
        bindings.setdefault(key, []).append(binding)
    if exposed:
        config["ExposedPorts"] = exposed
    if _set(inputs.get("workingDir")):
        config["WorkingDir"] = inputs["workingDir"]
    binds, volumes, volumes_from = _volumes(inputs.get("volumes") or [])
    if volumes:
        config["Volumes"] = {path: {} for path in volumes}
    if _set(inputs.get("labels")):
        config["Labels"] = {item["label"]: item["value"] for item in inputs["labels"]}
    if inputs.get("healthcheck"):
        hc = inputs["healthcheck"]
        config["Healthcheck"] = {
            "Test": list(hc.get("tests") or []),
            "Interval": parse_go_duration(hc.get("interval", "0s")),
            "Timeout": parse_go_duration(hc.get("timeout", "0s")),
            "StartPeriod": parse_go_duration(hc.get("startPeriod", "0s")),
            "Retries": _int(hc.get("retries")),
        }
        if hc.get("startInterval") not in (None, "0s", "0", ""):
            config["Healthcheck"]["StartInterval"] = parse_go_duration(hc["startInterval"])

    host: dict[str, Any] = {
        "Privileged": bool(inputs.get("privileged", False)),
        "PublishAllPorts": bool(inputs.get("publishAllPorts", False)),
        "RestartPolicy": {
            "Name": inputs.get("restart") or "no",
            "MaximumRetryCount": _int(inputs.get("maxRetryCount")),
        },
        "Runtime": inputs.get("runtime") or "",
        "Mounts": [_mount(m) for m in inputs.get("mounts") or []],
        "AutoRemove": bool(inputs.get("rm", False)),
        "ReadonlyRootfs": bool(inputs.get("readOnly", False)),
        "LogConfig": {"Type": inputs.get("logDriver") or ""},
        # F:447-448: always sent, false unless `init` is set.
        "Init": bool(inputs.get("init", False)),
        # C:901-907 network_mode defaults to "bridge"; F:391-399 always sends it.
        "NetworkMode": inputs.get("networkMode") or "bridge",
    }
    if _set(inputs.get("tmpfs")):
        host["Tmpfs"] = dict(inputs["tmpfs"])
    if bindings:
        host["PortBindings"] = bindings
    if _set(inputs.get("hosts")):
        host["ExtraHosts"] = [f"{h['host']}:{h['ip']}" for h in inputs["hosts"]]
    if binds:
        host["Binds"] = binds
    if volumes_from:
        host["VolumesFrom"] = volumes_from
    if _set(inputs.get("ulimits")):
        host["Ulimits"] = [
            {"Name": u["name"], "Soft": _int(u["soft"]), "Hard": _int(u["hard"])} for u in inputs["ulimits"]
        ]
    caps = inputs.get("capabilities")
    if caps:
        host["CapAdd"] = list(caps.get("adds") or [])
        host["CapDrop"] = list(caps.get("drops") or [])
    for key, api in (
        ("dns", "Dns"),
        ("dnsOpts", "DnsOptions"),
        ("dnsSearches", "DnsSearch"),
        ("groupAdds", "GroupAdd"),
    ):
        if _set(inputs.get(key)):
            host[api] = list(inputs[key])
    if _set(inputs.get("securityOpts")):
        opts = list(inputs["securityOpts"])
        if "systempaths=unconfined" in opts:  # F:686-703: handled client-side, not sent
            opts.remove("systempaths=unconfined")
            host["MaskedPaths"], host["ReadonlyPaths"] = [], []
        host["SecurityOpt"] = opts
    if _set(inputs.get("memory")):
        host["Memory"] = _int(inputs["memory"]) * MIB
    if _set(inputs.get("memoryReservation")):
        host["MemoryReservation"] = _int(inputs["memoryReservation"]) * MIB
    if _set(inputs.get("memorySwap")):
        swap = _int(inputs["memorySwap"])
        host["MemorySwap"] = swap * MIB if swap > 0 else swap
    if _set(inputs.get("shmSize")):
        host["ShmSize"] = _int(inputs["shmSize"]) * MIB
    if _set(inputs.get("cpus")):
        host["NanoCpus"] = parse_cpus(str(inputs["cpus"]))
    else:
        if _set(inputs.get("cpuPeriod")):
            host["CpuPeriod"] = _int(inputs["cpuPeriod"])
        if _set(inputs.get("cpuQuota")):
            host["CpuQuota"] = _int(inputs["cpuQuota"])
    if _set(inputs.get("cpuShares")):
        host["CpuShares"] = _int(inputs["cpuShares"])
    if _set(inputs.get("cpuSet")):
        host["CpusetCpus"] = inputs["cpuSet"]
    if _set(inputs.get("logOpts")):
        host["LogConfig"]["Config"] = dict(inputs["logOpts"])
    for key, api in (
        ("usernsMode", "UsernsMode"),
        ("pidMode", "PidMode"),
        ("ipcMode", "IpcMode"),
        ("cgroupnsMode", "CgroupnsMode"),
        ("cgroupParent", "CgroupParent"),
    ):
        if _set(inputs.get(key)):
            host[api] = inputs[key]
    if _set(inputs.get("sysctls")):
        host["Sysctls"] = dict(inputs["sysctls"])
    if _set(inputs.get("storageOpts")):
        host["StorageOpt"] = dict(inputs["storageOpts"])
    config["HostConfig"] = host
    return config


def _volumes(volumes: list[dict[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """S:289-329 volumeSetToDockerVolumes: binds "source:path:rw|ro", anonymous paths, volumes-from."""
    binds, paths, from_containers = [], [], []
    for v in volumes:
        source = v.get("hostPath") or v.get("volumeName") or ""
        path = v.get("containerPath") or ""
        if v.get("fromContainer"):
            from_containers.append(v["fromContainer"])
        elif source:
            mode = "ro" if v.get("readOnly") else "rw"
            if v.get("selinuxRelabel"):
                mode += "," + v["selinuxRelabel"]
            paths.append(path)
            binds.append(f"{source}:{path}:{mode}")
        else:
            paths.append(path)
    return binds, paths, from_containers


def _mount(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Type": m["type"],
        "Target": m["target"],
        "Source": m.get("source") or "",
        "ReadOnly": bool(m.get("readOnly", False)),
    }
    if m["type"] == "tmpfs" and m.get("tmpfsOptions"):
        opts = m["tmpfsOptions"]
        out["TmpfsOptions"] = {"SizeBytes": _int(opts.get("sizeBytes")), "Mode": _int(opts.get("mode"))}
    return out


def upload_archive(upload: dict[str, Any]) -> bytes:
    """F:505-582: one tar per upload, the file at its absolute path, extracted at "/"."""
    content = upload.get("content")
    if content is None and upload.get("contentBase64"):
        import base64

        content = base64.b64decode(upload["contentBase64"]).decode("latin-1")
    data = (content or "").encode()
    if upload.get("permissions"):
        mode = int(upload["permissions"], 8)
    elif upload.get("executable"):
        mode = 0o744
    else:
        mode = 0o644
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(upload["file"])
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _attach_start(
    client: docker.DockerClient,
    cid: str,
    inputs: dict[str, Any],
    body: dict[str, Any],
    network_for: dict[str, str] | None,
    default_bridge: str | None,
    deviations: list[str],
) -> None:
    """F:463-671: networks, uploads, start, wait for health, wait for the end of an attached one."""
    api = client.api
    networks = inputs.get("networksAdvanced") or []
    mode = body["HostConfig"]["NetworkMode"]
    emulate_bridge = not networks and mode == "bridge" and default_bridge is not None
    if networks or emulate_bridge:
        # F:463-503: leave the default bridge, join each network with its endpoint settings.
        _leave_default_bridge(client, cid)
    for net in networks:
        target = (network_for or {}).get(net["name"], net["name"])
        api.connect_container_to_network(
            cid,
            target,
            aliases=list(net.get("aliases") or []) or None,
            ipv4_address=net.get("ipv4Address") or None,
            ipv6_address=net.get("ipv6Address") or None,
            link_local_ips=list(net.get("linkLocalIps") or []) or None,
        )
    if emulate_bridge:
        api.connect_container_to_network(cid, default_bridge)
        deviations.append(f"default bridge emulated by the internal network {default_bridge}")

    for upload in inputs.get("uploads") or []:
        api.put_archive(cid, "/", upload_archive(upload))

    if inputs.get("start", True):
        api.start(cid)
        if inputs.get("wait", False):
            wait_healthy(client, cid, _int(inputs.get("waitTimeout"), 60))
    if inputs.get("attach", False):
        # F:657: ContainerWait(not-running); no check of the exit code.
        api.wait(cid, timeout=120)


def create_container(
    client: docker.DockerClient,
    inputs: dict[str, Any],
    *,
    image: str,
    network_for: dict[str, str] | None = None,
    default_bridge: str | None = None,
    extra_env: list[str] | None = None,
    entrypoint: list[str] | None = None,
    command: list[str] | None = None,
) -> Applied:
    """F:43-674 resourceDockerContainerCreate against the test engine.

    `image` replaces the plan's reference (stand-ins carry the same tags, except digest pins);
    `network_for` maps a plan network name to the test network created for it; `default_bridge`
    is the internal network standing for Docker's default bridge, which the test engine does not
    have (--bridge=none): a container the provider leaves on it (network_mode "bridge" and no
    networks_advanced) is connected to that network instead. `extra_env`, `entrypoint` and `command`
    let the isolation test run a stand-in listener in place of the image's program; the read-back
    test passes none of them."""
    api = client.api
    body = container_create_body(inputs, image)
    deviations: list[str] = []
    if extra_env:
        body["Env"] = [*body.get("Env", []), *extra_env]
    if entrypoint is not None:
        body["Entrypoint"] = entrypoint
        deviations.append("entrypoint replaced by the stand-in's")
    if command is not None:
        body["Cmd"] = command
    name = inputs["name"]
    try:
        response = api._post_json(api._url("/containers/create"), data=body, params={"name": name})
        api._raise_for_status(response)
    except docker.errors.APIError as exc:
        raise CreateFailed("ContainerCreate (F:456)", exc) from exc
    cid = response.json()["Id"]
    try:
        _attach_start(client, cid, inputs, body, network_for, default_bridge, deviations)
    except (docker.errors.APIError, RuntimeError) as exc:
        raise CreateFailed("after ContainerCreate (F:463-628)", exc, cid) from exc
    return Applied(id=cid, name=name, inputs=inputs, deviations=deviations)


def wait_healthy(client: docker.DockerClient, cid: str, timeout: int) -> None:
    """F:590-628: poll the health status every second until healthy; an error after wait_timeout,
    or at once when the container has no healthcheck."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.api.inspect_container(cid)["State"]
        health = state.get("Health")
        if health is None:
            raise RuntimeError("you have supplied a 'wait' argument, but the container does not have a healthcheck")
        if health.get("Status") == "healthy":
            return
        if time.monotonic() > deadline:
            raise RuntimeError("container failed to be in healthy state")
        time.sleep(1)


def _leave_default_bridge(client: docker.DockerClient, cid: str) -> None:
    """F:464-468: NetworkDisconnect("bridge"), "is not connected" ignored. The test engine has no
    default bridge (--bridge=none) and answers with an error, ignored too; the call still matters:
    without it, 20.10 leaves the endpoint of the next network behind when the container is removed."""
    try:
        client.api.disconnect_container_from_network(cid, "bridge")
    except docker.errors.APIError as exc:
        if "is not connected" in str(exc):
            return
        if client.networks.list(names=["bridge"]):
            raise


# ---------------------------------------------------------------------------------------------
# Read


def read_container(container: Container, inputs: dict[str, Any], *, internal_networks: bool = True) -> dict[str, Any]:
    """F:750-981 resourceDockerContainerRead: the state a refresh writes, under the wire keys.

    Keys Read does not write are left out (the state keeps the inputs for them).

    internal_networks: the test engine's networks are all `internal`, on which the engine publishes
    no port (NetworkSettings.Ports stays empty). For a container on bridge networks the published
    ports are then taken from HostConfig.PortBindings, which is what the engine publishes once a
    network has a way out. With network_mode host or none the engine publishes nothing whatever
    the network, and NetworkSettings.Ports (empty) is used as the provider would."""
    info = container.attrs
    cfg, host, net = info["Config"], info["HostConfig"], info.get("NetworkSettings") or {}
    state: dict[str, Any] = {}
    running = bool(info["State"]["Running"])
    must_run = inputs.get("mustRun", True)
    if inputs.get("ports") and (running or must_run):  # F:800-806
        published = net.get("Ports") or {}
        if not published and internal_networks and host.get("NetworkMode") not in ("host", "none"):
            published = host.get("PortBindings") or {}
        state["ports"] = flatten_ports(published)
    if not running:  # F:815-824
        state["exitCode"] = info["State"]["ExitCode"]
        if must_run:
            state["mustRun"] = False
    state["name"] = info["Name"].lstrip("/")
    state["rm"] = bool(host.get("AutoRemove"))
    state["readOnly"] = bool(host.get("ReadonlyRootfs"))
    image = inputs.get("image", "")
    state["image"] = info["Image"] if str(image).startswith("sha256:") else cfg.get("Image")
    state["hostname"] = cfg.get("Hostname") or ""
    state["domainname"] = cfg.get("Domainname") or ""
    state["command"] = list(cfg.get("Cmd") or [])
    state["entrypoints"] = list(cfg.get("Entrypoint") or [])
    state["user"] = cfg.get("User") or ""
    state["dns"] = list(host.get("Dns") or [])
    state["dnsOpts"] = list(host.get("DnsOptions") or [])
    state["securityOpts"] = list(host.get("SecurityOpt") or [])
    state["dnsSearches"] = list(host.get("DnsSearch") or [])
    state["publishAllPorts"] = bool(host.get("PublishAllPorts"))
    state["restart"] = (host.get("RestartPolicy") or {}).get("Name", "")
    state["maxRetryCount"] = (host.get("RestartPolicy") or {}).get("MaximumRetryCount", 0)
    state["init"] = bool(host.get("Init")) if host.get("Init") is not None else False
    state["workingDir"] = cfg.get("WorkingDir") or ""
    if host.get("CapAdd") or host.get("CapDrop"):  # F:870-878
        state["capabilities"] = {"adds": list(host.get("CapAdd") or []), "drops": list(host.get("CapDrop") or [])}
    state["runtime"] = host.get("Runtime") or ""
    state["platform"] = info.get("Platform") or ""
    state["tmpfs"] = dict(host.get("Tmpfs") or {})
    state["hosts"] = [{"host": h.split(":")[0], "ip": h.split(":")[1]} for h in host.get("ExtraHosts") or []]
    if inputs.get("ulimits"):
        state["ulimits"] = [
            {"name": u["Name"], "soft": u["Soft"], "hard": u["Hard"]} for u in host.get("Ulimits") or []
        ]
    state["privileged"] = bool(host.get("Privileged"))
    state["memory"] = (host.get("Memory") or 0) // MIB  # F:932
    reservation = host.get("MemoryReservation") or 0
    state["memoryReservation"] = reservation // MIB if reservation > 0 else reservation
    swap = host.get("MemorySwap") or 0
    state["memorySwap"] = swap // MIB if swap > 0 else swap  # F:940-944
    state["shmSize"] = (host.get("ShmSize") or 0) // MIB
    if (host.get("NanoCpus") or 0) > 0:  # F:946-948
        state["cpus"] = nano_to_decimal_string(host["NanoCpus"])
    state["cpuShares"] = host.get("CpuShares") or 0
    state["cpuSet"] = host.get("CpusetCpus") or ""
    state["logDriver"] = (host.get("LogConfig") or {}).get("Type", "")
    if inputs.get("logOpts"):
        state["logOpts"] = dict((host.get("LogConfig") or {}).get("Config") or {})
    state["storageOpts"] = dict(host.get("StorageOpt") or {})
    state["networkMode"] = host.get("NetworkMode") or ""  # F:954
    if inputs.get("pidMode"):
        state["pidMode"] = host.get("PidMode") or ""
    state["usernsMode"] = host.get("UsernsMode") or ""
    hc = cfg.get("Healthcheck")
    if hc is not None:  # F:960-971
        state["healthcheck"] = {
            "tests": list(hc.get("Test") or []),
            "interval": go_duration_string(hc.get("Interval") or 0),
            "timeout": go_duration_string(hc.get("Timeout") or 0),
            "startPeriod": go_duration_string(hc.get("StartPeriod") or 0),
            "startInterval": go_duration_string(hc.get("StartInterval") or 0),
            "retries": hc.get("Retries") or 0,
        }
    state["sysctls"] = dict(host.get("Sysctls") or {})
    state["ipcMode"] = host.get("IpcMode") or ""
    state["groupAdds"] = list(host.get("GroupAdd") or [])
    state["tty"] = bool(cfg.get("Tty"))
    state["stdinOpen"] = bool(cfg.get("OpenStdin"))
    state["stopSignal"] = cfg.get("StopSignal") or ""
    state["stopTimeout"] = cfg.get("StopTimeout")
    return state


def flatten_ports(port_map: dict[str, list[dict[str, str]] | None]) -> list[dict[str, Any]]:
    """S:35-59 flattenContainerPorts: one entry per binding, sorted by internal port."""
    out = []
    for key in sorted(port_map, key=lambda k: int(k.split("/")[0])):
        internal, protocol = key.split("/")
        for binding in port_map[key] or []:
            out.append(
                {
                    "internal": int(internal),
                    "external": int(binding.get("HostPort") or 0),
                    "ip": binding.get("HostIp", ""),
                    "protocol": protocol,
                }
            )
    return out


# ---------------------------------------------------------------------------------------------
# Comparison: the second apply's diff


def normalise_input(key: str, value: Any) -> Any:
    """An input in the form the state holds it (schema defaults filled in, numbers as ints, sets as
    sorted lists), so it compares with `read_container`'s value."""
    if key == "ports":
        return [
            {
                "internal": _int(p["internal"]),
                "external": _int(p.get("external")),
                "ip": p.get("ip") or "0.0.0.0",
                "protocol": p.get("protocol") or "tcp",
            }
            for p in value
        ]
    if key == "healthcheck":
        return {
            "tests": list(value.get("tests") or []),
            "interval": value.get("interval", "0s"),
            "timeout": value.get("timeout", "0s"),
            "startPeriod": value.get("startPeriod", "0s"),
            "startInterval": value.get("startInterval", "0s"),
            "retries": _int(value.get("retries")),
        }
    if key == "capabilities":
        return {"adds": sorted(value.get("adds") or []), "drops": sorted(value.get("drops") or [])}
    if key in ("securityOpts", "dns", "dnsOpts", "dnsSearches", "groupAdds"):  # TypeSet
        return sorted(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def normalise_state(key: str, value: Any) -> Any:
    if key == "capabilities":
        return {"adds": sorted(value.get("adds") or []), "drops": sorted(value.get("drops") or [])}
    if key in ("securityOpts", "dns", "dnsOpts", "dnsSearches", "groupAdds"):
        return sorted(value or [])
    return value


@dataclass(frozen=True)
class Drift:
    key: str
    sent: Any
    read: Any
    replaces: bool

    def __str__(self) -> str:
        effect = "REPLACES the container" if self.replaces else "perpetual in-place update"
        return f"{self.key}: sent {self.sent!r}, the provider reads back {self.read!r} ({effect})"


def container_drift(inputs: dict[str, Any], state: dict[str, Any], ignore: frozenset[str] = frozenset()) -> list[Drift]:
    """Every input whose read-back differs: the changes a `pulumi refresh` + `pulumi preview` right
    after `pulumi up` would show. Inputs in `ignore` (the resource's ignoreChanges) are skipped."""
    drifts = []
    for key, read in state.items():
        if key in ignore or key in CONTAINER_NOT_READ or key in ("exitCode",):
            continue
        if key in inputs and inputs[key] is not None:
            sent = normalise_input(key, inputs[key])
        elif key in CONTAINER_COMPUTED:
            continue
        elif key in CONTAINER_DEFAULTS:
            sent = CONTAINER_DEFAULTS[key]
        else:
            sent = None
        got = normalise_state(key, read)
        if _empty(sent) and _empty(got):
            continue
        if sent != got:
            drifts.append(Drift(key, sent, got, key in CONTAINER_FORCE_NEW))
    return drifts


def _empty(value: Any) -> bool:
    return value in (None, "", 0, False, [], {})


# ---------------------------------------------------------------------------------------------
# Delete


def delete_container(client: docker.DockerClient, inputs: dict[str, Any], cid: str) -> None:
    """F:1079-1131: stop with destroy_grace_seconds (0 when unset: killed at once) unless attached,
    then remove with force."""
    api = client.api
    if not inputs.get("attach", False):
        grace = _int(inputs.get("destroyGraceSeconds"))
        try:
            api.stop(cid, timeout=max(grace, 0))
        except docker.errors.NotFound:
            return
    with contextlib.suppress(docker.errors.NotFound):
        api.remove_container(cid, v=bool(inputs.get("removeVolumes", True)), force=True)


# ---------------------------------------------------------------------------------------------
# Networks and volumes


def create_network(client: docker.DockerClient, inputs: dict[str, Any], name: str) -> str:
    """NF:26-82 resourceDockerNetworkCreate, always `internal` on the test engine (the harness's
    safety rule: no test network has a way out)."""
    labels = {item["label"]: item["value"] for item in inputs.get("labels") or []}
    network = client.networks.create(
        name,
        driver=inputs.get("driver") or None,
        options=dict(inputs.get("options") or {}) or None,
        internal=True,
        attachable=bool(inputs.get("attachable", False)),
        labels=labels or None,
        enable_ipv6=bool(inputs.get("ipv6", False)),
    )
    return str(network.id)


def read_network(client: docker.DockerClient, network_id: str) -> dict[str, Any]:
    """NF:160-203: the state Read writes."""
    attrs = client.api.inspect_network(network_id)
    ipam = attrs.get("IPAM") or {}
    return {
        "name": attrs["Name"],
        "labels": sorted(
            ({"label": k, "value": v} for k, v in (attrs.get("Labels") or {}).items()), key=lambda item: item["label"]
        ),
        "driver": attrs.get("Driver"),
        "internal": bool(attrs.get("Internal")),
        "attachable": bool(attrs.get("Attachable")),
        "ingress": bool(attrs.get("Ingress")),
        "ipv6": bool(attrs.get("EnableIPv6")),
        "ipamDriver": ipam.get("Driver"),
        "ipamOptions": dict(ipam.get("Options") or {}),
        "options": dict(attrs.get("Options") or {}),
        "ipamConfigs": [
            {
                k: v
                for k, v in (("subnet", c.get("Subnet")), ("ipRange", c.get("IPRange")), ("gateway", c.get("Gateway")))
                if v
            }
            for c in ipam.get("Config") or []
        ],
    }


def create_volume(client: docker.DockerClient, inputs: dict[str, Any], name: str) -> str:
    """V:149-286 resourceDockerVolumeCreate (local driver)."""
    labels = {item["label"]: item["value"] for item in inputs.get("labels") or []}
    volume = client.volumes.create(
        name=name,
        driver=inputs.get("driver") or None,
        driver_opts=dict(inputs.get("driverOpts") or {}) or None,
        labels=labels or None,
    )
    return str(volume.name)


def read_volume(client: docker.DockerClient, name: str) -> dict[str, Any]:
    """V:288-360: the state Read writes."""
    attrs = client.api.inspect_volume(name)
    return {
        "name": attrs["Name"],
        "labels": sorted(
            ({"label": k, "value": v} for k, v in (attrs.get("Labels") or {}).items()), key=lambda item: item["label"]
        ),
        "driver": attrs.get("Driver"),
        "driverOpts": dict(attrs.get("Options") or {}),
    }
