"""Small wiring helpers shared by the components."""

from __future__ import annotations

from typing import Any, cast

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from oduflow_iac import docker_form, labels, odoo_init


def label_args(values: dict[str, str]) -> list[pulumi.Input[docker.ContainerLabelArgsDict]]:
    """Docker's label list from a plain mapping (order kept, so plans diff cleanly)."""
    return [docker.ContainerLabelArgsDict(label=k, value=v) for k, v in values.items()]


def as_secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`value` as a secret Output. (Output.secret's overloads leave mypy unable to infer `str`.)"""
    return cast("pulumi.Output[str]", pulumi.Output.secret(value))


def secret_env(name: str, value: pulumi.Input[str]) -> pulumi.Output[str]:
    """A `NAME=value` container variable whose value is secret, so the whole entry is."""
    return as_secret(value).apply(lambda v: f"{name}={v}")


# Inputs of a one-shot that change for incidental reasons (an image tag, a rotated password, an
# edited script, a re-created network) and must never re-run it against a database in service: the
# one-shot is re-created only when its name or labels change, or on an explicit `--replace`.
ONE_SHOT_IGNORED = [
    "image",
    "envs",
    "uploads",
    "command",
    "entrypoints",
    "networksAdvanced",
    "volumes",
    "memory",
    "memorySwap",
    "securityOpts",
    "capabilities",
]
NO_NEW_PRIVILEGES = "no-new-privileges:true"  # as the engine stores it (read back verbatim)
ONE_SHOT_MEMORY_MB = 2048


def hardening(memory_mb: int, grace_seconds: int) -> dict[str, Any]:
    """What every long-running container gets: a memory limit without swap (sent explicitly, see
    docker_form.memory_swap), no privilege escalation, and time to stop cleanly. The provider stops
    a container it deletes or replaces with `destroy_grace_seconds` (0 when unset: SIGKILL at once);
    `stop_timeout` is what the engine itself gives it on `docker stop` and daemon shutdown."""
    return {
        "memory": memory_mb,
        "memory_swap": docker_form.memory_swap(memory_mb),
        "security_opts": [NO_NEW_PRIVILEGES],
        "destroy_grace_seconds": grace_seconds,
        "stop_timeout": grace_seconds,
    }


def one_shot(
    resource_name: str,
    *,
    container_name: str,
    image: str,
    command: list[str],
    labels: list[pulumi.Input[docker.ContainerLabelArgsDict]],
    opts: pulumi.ResourceOptions,
    entrypoints: list[str] | None = None,
    envs: list[pulumi.Input[str]] | None = None,
    uploads: list[docker.ContainerUploadArgsDict] | None = None,
    volumes: list[docker.ContainerVolumeArgsDict] | None = None,
    networks: list[pulumi.Input[str]] | None = None,
    memory_mb: int = ONE_SHOT_MEMORY_MB,
    rerun_on: list[str] | None = None,
) -> docker.Container:
    """A container that runs once, when created: `attach` makes Pulumi wait until it exits, and
    `must_run=False` leaves it stopped afterwards instead of restarting it (the provider starts a
    stopped `must_run` container on every refresh). Its log stays out of the state (`logs=False`):
    `docker logs NAME` has it. Incidental inputs are ignored (ONE_SHOT_IGNORED), except those
    named in `rerun_on` for a one-shot that touches no data."""
    ignored = [p for p in ONE_SHOT_IGNORED if p not in (rerun_on or [])]
    return docker.Container(
        resource_name,
        name=container_name,
        image=image,
        entrypoints=entrypoints,
        command=command,
        envs=envs,
        uploads=uploads,
        volumes=volumes,
        networks_advanced=[docker.ContainerNetworksAdvancedArgsDict(name=n) for n in networks or []],
        attach=True,
        logs=False,
        must_run=False,
        restart="no",
        memory=memory_mb,
        memory_swap=docker_form.memory_swap(memory_mb),
        security_opts=[NO_NEW_PRIVILEGES],
        labels=labels,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=ignored)),
    )


def init_uploads(script: str) -> list[docker.ContainerUploadArgsDict]:
    """The initialisation script and its database helper (odoo_init.py), for the image's shell."""
    return [
        docker.ContainerUploadArgsDict(file=odoo_init.INIT_SCRIPT_PATH, content=script),
        docker.ContainerUploadArgsDict(file=odoo_init.HELPER_PATH, content=odoo_init.HELPER),
    ]


def stable_basic_auth(
    resource_name: str, password: pulumi.Input[str], cost: int, opts: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    """Traefik's `user:bcrypt-hash` for `password`, salted from a stored RandomString: a new salt
    on every run would change the label, and labels force a new container."""
    seed = random.RandomString(resource_name, length=21, special=False, opts=opts)
    return pulumi.Output.all(as_secret(password), seed.result).apply(
        lambda v: labels.basic_auth_users(v[0], v[1], cost)
    )


def one_shot_failure(container_name: str, code: int) -> str:
    return (
        f"one-shot {container_name} exited with code {code}: read `docker logs {container_name}`; "
        "`oduflow-iac up` retries it (or `pulumi up --replace` its URN)"
    )


def succeeded(container: docker.Container, container_name: str) -> pulumi.Output[docker.Container]:
    """The one-shot itself once it has exited 0, to put in `depends_on` of whatever needs its work.
    The provider does not look at the exit code of an attached container (a failed module install
    is a successful create), so this Output fails instead: nothing that depends on it is created
    from a half-initialised database, and the deployment fails naming the one-shot."""

    def check(code: int | None) -> docker.Container:
        if code:
            raise RuntimeError(one_shot_failure(container_name, code))
        return container

    return container.exit_code.apply(check)
