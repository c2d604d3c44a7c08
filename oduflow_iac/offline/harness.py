"""Run a Pulumi program under `pulumi.runtime.set_mocks` and record every registration the way the
engine would see it: URN, type, parent, dependencies, the options that decide what a change does
(protect, ignoreChanges, replaceOnChanges, deleteBeforeReplace) and the inputs as serialised on
the wire (engine camelCase property names, secrets still marked, unknowns still unknown).

The mocks return realistic outputs (a generated password has a `result`, a bucket an `arn`), so
values computed from them are known, as in a preview against existing state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import signal
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks, settings
from pulumi.runtime.stack import run_pulumi_func

# The wire format's markers (pulumi/sdk/go/common/resource/sig): a secret is a map carrying this
# signature key; an unknown value during preview is this exact string.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
STACK_TYPE = "pulumi:pulumi:Stack"


class Secret:
    """A value the engine knows to be secret. Never printed: `repr` and `str` hide it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret([secret])"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("secret", repr(self.value)))


def decode(value: Any) -> Any:
    """Wire JSON -> Python: secret maps become `Secret`, everything else stays as it is."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return Secret(decode(value.get("value")))
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def reveal(value: Any) -> Any:
    """The plain value with every `Secret` unwrapped (what a policy analyzer is given)."""
    if isinstance(value, Secret):
        return reveal(value.value)
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def redact(value: Any, secret: str = "[secret]", unknown: str = "[unknown]") -> Any:
    """The value with every `Secret` replaced by `secret` and every unknown by `unknown`."""
    if isinstance(value, Secret):
        return secret
    if isinstance(value, dict):
        return {k: redact(v, secret, unknown) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secret, unknown) for v in value]
    if value == UNKNOWN:
        return unknown
    return value


def contains_secret(value: Any) -> bool:
    if isinstance(value, Secret):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    dependencies: list[str]
    protect: bool
    provider: str | None = None
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    ignore_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    replace_on_changes: list[str] = field(default_factory=list)
    # The (name, parent URN) of each alias naming another logical name (what a rename keeps).
    aliases: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PlannedRun:
    project: str
    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    # What the program read rather than declared (StackReferences): in the state, not created.
    reads: list[PlannedResource] = field(default_factory=list)

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def by_urn(self) -> dict[str, PlannedResource]:
        return {r.urn: r for r in self.resources}


def _fake(urn: str, what: str, length: int = 24) -> str:
    """A stable stand-in for a value the provider would generate; never a real credential."""
    return "mock" + hashlib.sha256(f"{what}:{urn}".encode()).hexdigest()[: length - 4]


STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"
SHARED_SECRET_OUTPUTS = frozenset({"teamDatabases"})


def shared_stack_outputs(
    ref: str, team_ids: list[str] | None = None, docker_host: str = "unix:///var/run/docker.sock"
) -> dict[str, Any]:
    """Plausible outputs of a server stack (`shared` or `server-NAME`), as a StackReference to it
    reads them: `teamDatabases` holds the roles of `team_ids` (the team of a `team-N` stack)."""
    from oduflow_iac import naming

    return {
        "dockerHost": docker_host,
        "networkName": naming.SHARED_NETWORK,
        "postgresAdminHost": "127.0.0.1",
        "postgresAdminPort": 5432,
        "dbHost": naming.SHARED_DB_CONTAINER,
        "dbPort": 5432,
        "teamDatabases": {
            team: {
                "role": naming.team_role_name(team),
                "password": _fake(ref, f"team-{team}-role-password", 32),
                "admin": naming.team_db_admin_role_name(team),
                "adminPassword": _fake(ref, f"team-{team}-db-admin-password", 32),
            }
            for team in team_ids or []
        },
    }


class OfflineMocks(pulumi.runtime.Mocks):
    """Provider stand-ins: each resource's state is its inputs plus the outputs the program reads."""

    def __init__(self, project: str, stack: str, docker_hosts: dict[str, str] | None = None) -> None:
        self.project = project
        self.stack = stack
        # The Docker host each referenced stack exports, by stack name (the config's, when known).
        self.docker_hosts = docker_hosts or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        typ, name = args.typ, args.name
        key = f"{typ}::{name}"
        if typ.startswith("random:index/randomPassword") or typ.startswith("random:index/randomString"):
            length = int(state.get("length", 24))
            state["result"] = _fake(key, "result", max(length, 8))
            state["bcryptHash"] = "$2a$10$" + _fake(key, "bcrypt", 53)
        elif typ == "aws:s3/bucket:Bucket":
            bucket = state.get("bucket") or name
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}", region=state.get("region", "eu-west-1"))
        elif typ == "aws:iam/user:User":
            state["arn"] = f"arn:aws:iam::000000000000:user/{state.get('name', name)}"
        elif typ == "aws:iam/accessKey:AccessKey":
            state.update(id="AKIA" + _fake(key, "id", 16).upper(), secret=_fake(key, "secret", 40))
        elif typ == "docker:index/network:Network" or typ == "docker:index/volume:Volume":
            state.setdefault("name", name)
        elif typ == STACK_REFERENCE_TYPE:
            # A team stack reading the `shared` stack: the outputs `program._export_shared` exports.
            ref = str(state.get("name") or args.resource_id or name)
            team = self.stack[len("team-") :] if self.stack.startswith("team-") else None
            outputs = shared_stack_outputs(ref, [team] if team else [], *filter(None, [self.docker_hosts.get(ref)]))
            return ref, {"name": ref, "outputs": outputs, "secretOutputNames": sorted(SHARED_SECRET_OUTPUTS)}
        return state.get("id") or f"{name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(mocks.MockMonitor):
    """The SDK's mock monitor, recording what the engine would receive, with the engine's URNs."""

    def __init__(
        self, mocks_: pulumi.runtime.Mocks, on_register: Callable[[PlannedResource], None] | None = None
    ) -> None:
        super().__init__(mocks_)
        self.on_register = on_register
        self.recorded: list[PlannedResource] = []
        self.reads: list[PlannedResource] = []
        self.stack_urn = ""

    def ReadResource(self, request: Any) -> Any:
        response = super().ReadResource(request)
        self.reads.append(
            PlannedResource(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                custom=True,
                inputs=decode(json_format.MessageToDict(request.properties)),
                dependencies=sorted(set(request.dependencies)),
                protect=False,
                provider=request.provider or None,
            )
        )
        return response

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # As the engine does: a child's qualified type is its parent's qualified type, `$`, its own
        # type; top-level resources are not prefixed with the Stack type.
        if parent:
            parent_type = parent.split("::")[2]
            if parent_type != STACK_TYPE:
                type_ = f"{parent_type}${type_}"
        return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), type_, name])

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == STACK_TYPE:
            self.stack_urn = response.urn
            return response
        if request.additionalSecretOutputs:
            # The engine, not the SDK, makes these outputs secret (RandomPassword.result, ...).
            state = json_format.MessageToDict(response.object)
            for key in request.additionalSecretOutputs:
                if key in state and not (isinstance(state[key], dict) and state[key].get(SIG_KEY)):
                    state[key] = {SIG_KEY: SECRET_SIG, "value": state[key]}
            response.object.Clear()
            json_format.ParseDict(state, response.object)
        parent = request.parent or None
        if parent == self.stack_urn:
            parent = None
        inputs = decode(json_format.MessageToDict(request.object))
        # The SDK collects dependencies in sets: sorted, so a plan is the same in every process.
        prop_deps = {k: sorted(set(v.urns)) for k, v in sorted(request.propertyDependencies.items())}
        planned = PlannedResource(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=parent,
            custom=bool(request.custom),
            inputs=inputs,
            dependencies=sorted(set(request.dependencies)),
            protect=bool(request.protect),
            provider=request.provider or None,
            property_dependencies=prop_deps,
            ignore_changes=list(request.ignoreChanges),
            delete_before_replace=bool(request.deleteBeforeReplace),
            replace_on_changes=list(request.replaceOnChanges),
            aliases=[(a.spec.name, a.spec.parentUrn) for a in request.aliases if a.spec.name],
        )
        self.recorded.append(planned)
        if self.on_register is not None:
            self.on_register(planned)
        return response


async def _resolve_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in outputs.items():
        out = pulumi.Output.from_input(value)
        plain = await out.future(with_unknowns=True)
        known = await out.is_known()
        secret = await out.is_secret()
        plain = plain if known else UNKNOWN
        resolved[key] = Secret(plain) if secret else plain
    return resolved


def run_offline(
    program: Callable[[], None],
    *,
    project: str = "oduflow",
    stack: str = "local",
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    preview: bool = True,
    on_register: Callable[[PlannedResource], None] | None = None,
    referenced_docker_hosts: dict[str, str] | None = None,
) -> PlannedRun:
    """Run `program` under mocks and return what it registered, in registration order.
    `referenced_docker_hosts`: the `dockerHost` output of each stack a StackReference names."""
    run = partial(
        _run_offline, program, project, stack, config, secret_keys, preview, on_register, referenced_docker_hosts
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    # Called from a running event loop (a notebook, an async service): a thread of its own.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="oduflow-offline-run") as pool:
        return pool.submit(run).result()


class _WorkerLoops:
    """The mock monitor answers in executor threads and needs an event loop in each (the SDK would
    create one and never close it): the executor's initializer gives every thread one, closed with
    the run."""

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.lock = threading.Lock()

    def give(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        with self.lock:
            self.loops.append(loop)

    def close(self) -> None:
        for loop in self.loops:
            loop.close()


def _run_offline(
    program: Callable[[], None],
    project: str,
    stack: str,
    config: dict[str, str] | None,
    secret_keys: list[str] | None,
    preview: bool,
    on_register: Callable[[PlannedResource], None] | None,
    referenced_docker_hosts: dict[str, str] | None = None,
) -> PlannedRun:
    monitor = RecordingMonitor(OfflineMocks(project, stack, referenced_docker_hosts), on_register)
    # Each run on an event loop and worker threads of its own, all closed at the end: nothing is
    # left for the interpreter to tear down (and complain about) when it exits, and nothing
    # pending from a failed run reaches the next one. Current from the start: `set_mocks`
    # already registers the root Stack.
    previous = _current_loop()
    loop = asyncio.new_event_loop()
    workers = _WorkerLoops()
    executor = ThreadPoolExecutor(thread_name_prefix="oduflow-offline", initializer=workers.give)
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    interrupt = _FirstInterrupt(loop)
    try:
        interrupt.install()
        pulumi.runtime.set_all_config(dict(config or {}), list(secret_keys or []))
        # A fresh root Stack per run: set_mocks keeps an existing one, which would carry the
        # previous run's stack name and outputs into this one.
        settings.ROOT.set(None)
        # The SDK logs mock-engine messages through the root logger; keep plan output clean.
        mocks.set_mocks(
            monitor.mocks,
            project=project,
            stack=stack,
            preview=preview,
            monitor=monitor,
            logger=logging.getLogger("oduflow_iac.offline"),
        )
        # Nothing left over from an earlier run (one that failed leaves outputs pending).
        settings.SETTINGS.rpc_manager.clear()
        settings.SETTINGS.outputs.clear()
        interrupt.run(run_pulumi_func(program))
        root = settings.get_root_resource()
        outputs = interrupt.run(_resolve_outputs(dict(getattr(root, "outputs", {}) or {})))
    finally:
        interrupt.uninstall()
        # As `asyncio.run` does: what a failed run left pending is cancelled, not abandoned.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if interrupt.hit:
            interrupt.wind_down(pending, executor)
        else:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
        workers.close()
        loop.close()
        asyncio.set_event_loop(previous)
    reads = sorted(monitor.reads, key=lambda r: r.urn)
    return PlannedRun(project, stack, stable_order(monitor.recorded), outputs, reads)


# How long cancelled tasks get to finish after Ctrl-C before the loop is closed anyway.
INTERRUPT_GRACE_SECONDS = 2.0


class _FirstInterrupt:
    """Ctrl-C during a run: stop it at once and cleanly.

    Left to Python's default handler, the KeyboardInterrupt is raised in the middle of the
    program (which declares its resources synchronously), the SDK's `run_pulumi_func` catches it
    as any error and then waits for the registrations the interrupted program left unresolved:
    forever, at 0 % CPU. So the first SIGINT also schedules, on the run's own loop, the
    cancellation of every task and a stop of the loop; `run` turns the stopped loop into
    KeyboardInterrupt and the caller's `finally` closes the loop and the worker threads. Python's
    handler is back from then on: a second Ctrl-C interrupts whatever is left.

    Only in the main thread and only when SIGINT has Python's default handler (an ignored
    SIGINT, e.g. in a background job, stays ignored; a caller's own handler is left alone).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.hit = False
        self.installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return
        signal.signal(signal.SIGINT, self._on_sigint)
        self.installed = True

    def uninstall(self) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.installed = False

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.hit = True
        self.uninstall()
        gc.disable()
        # Thread-safe also means safe from a signal handler: a deque append and a byte written
        # to the loop's self-pipe, which wakes it if it is waiting.
        self.loop.call_soon_threadsafe(self._stop)
        raise KeyboardInterrupt

    def _stop(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.stop()

    def run(self, coro: Any) -> Any:
        """`loop.run_until_complete(coro)`, raising KeyboardInterrupt when Ctrl-C stopped it."""
        if self.hit:
            coro.close()
            raise KeyboardInterrupt
        try:
            result = self.loop.run_until_complete(coro)
        except BaseException:
            if self.hit:
                raise KeyboardInterrupt from None
            raise
        if self.hit:
            raise KeyboardInterrupt
        return result

    def wind_down(self, pending: set[asyncio.Task[Any]], executor: ThreadPoolExecutor) -> None:
        """After Ctrl-C: give the cancelled tasks a moment, drop what is queued for the workers,
        and hide what the abandoned run leaves for the garbage collector (the user asked to stop;
        warnings about unfinished coroutines would only be noise)."""
        warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
        if pending:
            # RuntimeError: a stop still queued ended the wait early.
            with contextlib.suppress(RuntimeError):
                self.loop.run_until_complete(asyncio.wait(pending, timeout=INTERRUPT_GRACE_SECONDS))
            for task in pending:
                if not task.done():
                    # What asyncio.gather does for the children it gives up on.
                    task._log_destroy_pending = False  # type: ignore[attr-defined]
        executor.shutdown(wait=True, cancel_futures=True)
        gc.enable()


def _current_loop() -> asyncio.AbstractEventLoop | None:
    """This thread's event loop, if one is set. Not `asyncio.get_event_loop()`: in the main thread
    it would create one, left open for the interpreter to finalise."""
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    loop = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


def stable_order(resources: list[PlannedResource]) -> list[PlannedResource]:
    """Registration order depends on how asyncio interleaves RPCs; a plan must not. Depth-first
    over the parent tree, siblings by URN: parents always come before their children."""
    children: dict[str | None, list[PlannedResource]] = {}
    known = {r.urn for r in resources}
    for r in resources:
        children.setdefault(r.parent if r.parent in known else None, []).append(r)
    ordered: list[PlannedResource] = []
    stack = sorted(children.get(None, []), key=lambda r: r.urn, reverse=True)
    while stack:
        r = stack.pop()
        ordered.append(r)
        stack.extend(sorted(children.get(r.urn, []), key=lambda c: c.urn, reverse=True))
    return ordered
