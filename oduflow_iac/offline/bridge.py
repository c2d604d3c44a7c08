"""Run the policy pack against a planned program, the way the Pulumi engine runs it.

`run_policies(run, policy_config)` feeds every planned resource to the very same Policy objects the
pack gives the engine (`oduflow_iac.policy.POLICIES`):

- each policy's config is validated against its `config_schema` first, as the engine validates
  `--policy-pack-config`, and then handed over as the analyzer receives it (a protobuf Struct
  turns every number into a float);
- properties are re-encoded to the wire format and decoded by pulumi_policy's own
  `deserialize_properties` (secrets unwrapped to plain values) and wrapped in its
  `unknown_checking_proxy`, so a rule reading an unknown value raises `UnknownValueError`, reported
  as the engine reports it: an advisory "can't run policy ... during preview";
- resource policies run per resource, in registration order; stack policies then get every
  resource as a `PolicyResource` with its parent and dependencies resolved.

One difference, on purpose: the engine does not tell policies which values were secret; here each
resource policy gets `policy.SecretAwareArgs`, so rules that need secretness enforce it offline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any, Literal

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from oduflow_iac import policy
from oduflow_iac.offline.harness import SECRET_SIG, SIG_KEY, PlannedResource, PlannedRun, Secret

Level = Literal["mandatory", "advisory"]
ENFORCEMENT_KEY = "enforcementLevel"
ALL_POLICIES = "all"
_LEVELS = {level.value: level for level in EnforcementLevel}


@dataclass(frozen=True)
class Violation:
    """One diagnostic: the policy, its level, the resource (None for the stack) and the message."""

    policy: str
    level: Level
    urn: str | None
    message: str


class PolicyConfigError(ValueError):
    """The policy-pack config is not what the pack's schemas accept (the engine refuses to run)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid policy-pack config:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


# --------------------------------------------------------------------------------------------
# Config


def schema_problems(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """What JSON schema (the subset the pack's schemas use) finds wrong with `value`: `type`,
    `properties`, `required`, `additionalProperties`, `items`, `minimum`, `maximum`, `enum`."""
    where = path or "(root)"
    problems: list[str] = []
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        return [f"{where}: expected {kind}, got {_json_type(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: must be one of {schema['enum']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: must be <= {schema['maximum']}")
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key in schema.get("required") or []:
            if key not in value:
                problems.append(f"{where}: {key} is required")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if key in properties:
                problems += schema_problems(item, properties[key], child)
            elif extra is False:
                problems.append(f"{where}: additional property {key} is not allowed")
            elif isinstance(extra, Mapping):
                problems += schema_problems(item, extra, child)
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            problems += schema_problems(item, schema["items"], f"{path}[{i}]")
    return problems


def _is_type(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    # As JSON schema has it, 3.0 is an integer.
    return kind == "number" or (kind == "integer" and float(value).is_integer())


def _json_type(value: Any) -> str:
    for kind in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, kind):
            return kind
    return type(value).__name__


def _level(value: Any, where: str, problems: list[str]) -> EnforcementLevel | None:
    if value in _LEVELS:
        return _LEVELS[value]
    problems.append(f"{where}: {value!r} is not an enforcement level ({', '.join(_LEVELS)})")
    return None


def configure(
    policies: Sequence[Policy], policy_config: Mapping[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, EnforcementLevel]]:
    """Each policy's config (as the engine hands it over) and enforcement level, after checking the
    policy-pack config against the policies' schemas. Raises `PolicyConfigError`.

    The config maps a policy name to an enforcement level or to an object of its properties with an
    optional `enforcementLevel`; `all` sets the level of every policy not given its own."""
    problems: list[str] = []
    names = {p.name for p in policies}
    levels = {p.name: p.enforcement_level or EnforcementLevel.ADVISORY for p in policies}
    properties: dict[str, dict[str, Any]] = {name: {} for name in names}
    entries = sorted(policy_config.items(), key=lambda kv: kv[0] != ALL_POLICIES)  # `all` first
    for name, entry in entries:
        if name not in names and name != ALL_POLICIES:
            problems.append(f"{name}: no such policy in pack {policy.PACK_NAME}")
            continue
        level: EnforcementLevel | None = None
        props: dict[str, Any] = {}
        if isinstance(entry, str):
            level = _level(entry, name, problems)
        elif isinstance(entry, Mapping):
            if ENFORCEMENT_KEY in entry:
                level = _level(entry[ENFORCEMENT_KEY], name, problems)
            props = {k: v for k, v in entry.items() if k != ENFORCEMENT_KEY}
        else:
            problems.append(f"{name}: expected an enforcement level or an object")
            continue
        if name == ALL_POLICIES:
            if props:
                problems.append(f"{name}: takes only {ENFORCEMENT_KEY}")
            if level is not None:
                levels = dict.fromkeys(levels, level)
            continue
        if level is not None:
            levels[name] = level
        properties[name] = props
    for p in policies:
        schema = p.config_schema
        if schema is None:
            if properties[p.name]:
                problems.append(f"{p.name}: takes no configuration")
            continue
        document = {"type": "object", "properties": schema.properties, "required": schema.required or []}
        problems += [f"{p.name}: {m}" for m in schema_problems(properties[p.name], document)]
    if problems:
        raise PolicyConfigError(problems)
    return {name: _through_struct(props) for name, props in properties.items()}, levels


def _through_struct(value: Any) -> Any:
    """The config as the analyzer receives it, through a protobuf Struct: every number a float."""
    if isinstance(value, Mapping):
        return {str(k): _through_struct(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_through_struct(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# --------------------------------------------------------------------------------------------
# Resources as the analyzer sees them


def to_wire(value: Any) -> Any:
    """Harness values back to the wire format: a `Secret` becomes the engine's secret map."""
    if isinstance(value, Secret):
        return {SIG_KEY: SECRET_SIG, "value": to_wire(value.value)}
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    return value


def secret_paths(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Paths of the values marked secret (not below them: everything inside a secret is secret)."""
    if isinstance(value, Secret):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from secret_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from secret_paths(v, (*path, i))


def _props(wire: dict[str, Any]) -> Mapping[str, Any]:
    result: Mapping[str, Any] = unknown_checking_proxy(deserialize_properties(wire))
    return result


def _options(res: PlannedResource) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=res.protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=res.parent,
    )


def _providers(
    run: PlannedRun, by_urn: Mapping[str, PlannedResource], props: Mapping[str, Mapping[str, Any]]
) -> dict[str, PolicyProviderResource | None]:
    """The provider resource of each `urn::id` provider reference in the run, built once for all
    the resources that use it ("" and unknown references: None)."""
    out: dict[str, PolicyProviderResource | None] = {"": None}
    for ref in {r.provider for r in run.resources if r.provider}:
        prov = by_urn.get(ref.rsplit("::", 1)[0])
        out[ref] = PolicyProviderResource(prov.type, props[prov.urn], prov.urn, prov.name) if prov else None
    return out


def _stack_resources(
    run: PlannedRun, props: Mapping[str, Mapping[str, Any]], providers: Mapping[str, PolicyProviderResource | None]
) -> list[PolicyResource]:
    """Every resource, with its parent and dependencies resolved to the other PolicyResources."""
    resources = {
        r.urn: PolicyResource(
            r.type, props[r.urn], r.urn, r.name, _options(r), providers[r.provider or ""], None, [], {}
        )
        for r in run.resources
    }
    for r in run.resources:
        res = resources[r.urn]
        if r.parent is not None and r.parent in resources:
            res.parent = resources[r.parent]
        res.dependencies.extend(resources[d] for d in r.dependencies if d in resources)
        for key, urns in r.property_dependencies.items():
            res.property_dependencies[key] = [resources[d] for d in urns if d in resources]
    return list(resources.values())


# --------------------------------------------------------------------------------------------
# Running


def _settle(result: Any) -> None:
    """Wait for an asynchronous rule, as the analyzer does."""
    if isawaitable(result):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(result)
        finally:
            loop.close()


def _preview_message(name: str, error: UnknownValueError) -> str:
    return (
        f"can't run policy '{name}' from policy pack '{policy.PACK_NAME}@v{policy.PACK_VERSION}' "
        f"during preview: {error.message}"
    )


def run_policies(
    run: PlannedRun, policy_config: Mapping[str, Any], policies: Sequence[Policy] | None = None
) -> list[Violation]:
    """Every violation the pack reports on `run`: resource policies per resource in registration
    order, then stack policies. Raises `PolicyConfigError` when the config does not fit the pack."""
    policies = list(policy.POLICIES if policies is None else policies)
    configs, levels = configure(policies, policy_config)
    active = [p for p in policies if levels[p.name] is not EnforcementLevel.DISABLED]
    violations: list[Violation] = []

    def reporter(p: Policy, default_urn: str | None, fixed: bool) -> Callable[[str, str | None], None]:
        level: Level = "advisory" if levels[p.name] is EnforcementLevel.ADVISORY else "mandatory"

        def report(message: str, urn: str | None = None) -> None:
            # A resource policy's violation is always about its resource, whatever it passes.
            where = default_urn if fixed else (urn or None)
            violations.append(Violation(p.name, level, where, message or p.description))

        return report

    def unknown(p: Policy, urn: str | None, error: UnknownValueError) -> None:
        violations.append(Violation(p.name, "advisory", urn, _preview_message(p.name, error)))

    by_urn = run.by_urn()
    wires = {r.urn: to_wire(r.inputs) for r in run.resources}
    # The analyzer deserializes each resource again for every policy; the rules only read what
    # they are given, so one deserialization per resource serves them all (linear, and cheaper).
    props = {urn: _props(wire) for urn, wire in wires.items()}
    stack_resources: list[PolicyResource] | None = None
    resource_policies = [p for p in active if isinstance(p, ResourceValidationPolicy)]
    # Built once: a copy per resource would grow with the config (per-team entries) times resources.
    resource_configs = {p.name: dict(configs[p.name]) for p in resource_policies}
    providers = _providers(run, by_urn, props)
    for res in run.resources:
        if not resource_policies:
            break
        secrets = frozenset(secret_paths(res.inputs))
        opts = _options(res)
        provider = providers[res.provider or ""]
        for p in resource_policies:
            args = policy.SecretAwareArgs(
                res.type,
                props[res.urn],
                res.urn,
                res.name,
                opts,
                provider,
                resource_configs[p.name],
                secret_paths=secrets,
            )
            report = reporter(p, res.urn, fixed=True)
            try:
                _settle(p.validate(args, report))
            except UnknownValueError as error:
                unknown(p, res.urn, error)

    for sp in active:
        if not isinstance(sp, StackValidationPolicy):
            continue
        if stack_resources is None:
            stack_resources = _stack_resources(run, props, providers)
        stack_args = StackValidationArgs(stack_resources, dict(configs[sp.name]))
        report = reporter(sp, None, fixed=False)
        try:
            _settle(sp.validate(stack_args, report))
        except UnknownValueError as error:
            unknown(sp, None, error)
    return violations
