"""Operations commands: preview/up/destroy/refresh over the Automation API, environment and
template lifecycle (edit oduflow.toml, then deploy that team), cleanup, and backups (list, now,
restore: lifecycle/backup_ops.py and lifecycle/restore.py).

The handlers are thin: `automation.py` runs stacks and lifecycles, `editing.py` edits the file.
Commands that deploy check for the `pulumi` executable before anything else (`--no-deploy` edits only).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from oduflow_iac import automation, fleet, git_revisions, teams, updates
from oduflow_iac.config import ENV_TYPES, Config, load_config
from oduflow_iac.errors import UsageError
from oduflow_iac.stack_settings import StackSettings, print_notices, resolve_config

EXIT_OK = 0
EXIT_FAILED = 1

AddConfigArgs = Callable[[argparse.ArgumentParser], None]
_BRANCH_HELP = "git branch of the environment (e.g. feature/login)"
_TEMPLATE_HELP = "template name, as in [team.N.templates.NAME]"


def register(sub: Any, add_config_args: AddConfigArgs) -> None:
    """Add the operations subcommands to the CLI."""
    helps: dict[automation.Operation, str] = {
        "preview": "show what `up` would change (runs the policy pack)",
        "up": "deploy the stack (runs the policy pack; refreshes the port lock first)",
        "destroy": "delete every resource of the stack (protected resources refuse)",
        "refresh": "read the real state of the stack's resources into its state",
    }
    for operation, text in helps.items():
        p = sub.add_parser(operation, help=text)
        add_config_args(p)
        p.set_defaults(stack=None)  # `local`, or `shared` with --all
        scope = p.add_mutually_exclusive_group()
        scope.add_argument("--team", help="only this team: its stack team-N, or its component in a one-stack layout")
        scope.add_argument(
            "--all", action="store_true", help="every server's stack in parallel, then every team-N stack in parallel"
        )
        p.add_argument("--parallel", type=int, default=automation.MAX_PARALLEL, help="stacks at once (--all)")
        if operation in ("preview", "up"):
            p.add_argument("--no-policy", action="store_true", help="do not run the policy pack")
        p.set_defaults(handler=_operation_handler(operation), no_policy=False)

    env = sub.add_parser("env", help="create, disable, enable or delete an environment")
    env_sub = env.add_subparsers(dest="env_command", metavar="ACTION", required=True)
    p = _lifecycle_parser(env_sub, "create", "add an environment for a branch and deploy it", add_config_args)
    p.add_argument("--branch", required=True, help=_BRANCH_HELP)
    p.add_argument("--type", choices=ENV_TYPES, default="development", help="environment type (default: development)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--template", help="template of the team (default: its `default` or only template)")
    source.add_argument("--image", help="Odoo image, for an environment without a template")
    p.set_defaults(handler=_env_create)
    p = _lifecycle_parser(env_sub, "disable", "stop serving an environment; keep its database", add_config_args)
    p.add_argument("--branch", required=True, help=_BRANCH_HELP)
    p.set_defaults(handler=_env_disable)
    p = _lifecycle_parser(env_sub, "enable", "serve a disabled environment again", add_config_args)
    p.add_argument("--branch", required=True, help=_BRANCH_HELP)
    p.set_defaults(handler=_env_enable)
    p = _lifecycle_parser(env_sub, "delete", "delete an environment and its database", add_config_args)
    p.add_argument("--branch", required=True, help=_BRANCH_HELP)
    p.add_argument("--force", action="store_true", help="delete a production environment without a backup")
    p.set_defaults(handler=_env_delete)
    fleet.register_env(env_sub, add_config_args)

    p = _lifecycle_parser(
        env_sub, "update", "pin the addon repositories to their heads (or --rev), then deploy", add_config_args
    )
    p.add_argument("--branch", required=True, help=_BRANCH_HELP)
    p.add_argument(
        "--rev",
        action="append",
        default=[],
        metavar="REPO=SHA",
        help="pin this repository to this commit (full 40-hex id) instead of its head; repeatable",
    )
    p.set_defaults(handler=_env_update)
    p = _lifecycle_parser(
        env_sub, "refresh", "copy the environment's source (clone_from) again, then deploy", add_config_args
    )
    p.add_argument("--branch", required=True, help=_BRANCH_HELP)
    p.set_defaults(handler=_env_refresh)

    p = env_sub.add_parser("credentials", help="print an environment's Odoo admin login and password")
    add_config_args(p)
    p.add_argument("--team", help="team id (default: the only team, else 1)")
    p.add_argument("--branch", required=True, help=_BRANCH_HELP)
    p.add_argument(
        "--show-secret",
        "--show",
        dest="show_secret",
        action="store_true",
        help="print the password even when stdout is not a terminal (a pipe, a file, a CI log)",
    )
    p.set_defaults(handler=_env_credentials)

    fleet.register_team(sub, add_config_args)

    template = sub.add_parser("template", help="init, list or delete a team's templates")
    template_sub = template.add_subparsers(dest="template_command", metavar="ACTION", required=True)
    p = _lifecycle_parser(template_sub, "init", "add a template database (Oduflow's init-template)", add_config_args)
    p.add_argument("--name", required=True, help=_TEMPLATE_HELP)
    p.add_argument("--image", required=True, help="Odoo image of the template")
    p.add_argument("--modules", help="modules installed in the template, comma-separated (default: base,web)")
    p.set_defaults(handler=_template_init)
    p = template_sub.add_parser("list", help="list a team's templates and who uses them (list-templates)")
    add_config_args(p)
    p.add_argument("--team", help="team id (default: the only team, else 1)")
    p.set_defaults(handler=_template_list)
    p = _lifecycle_parser(template_sub, "delete", "delete a template no environment uses", add_config_args)
    p.add_argument("--name", required=True, help=_TEMPLATE_HELP)
    p.set_defaults(handler=_template_delete)

    p = _lifecycle_parser(
        sub, "cleanup", "remove environments of gone branches (and disabled ones), report leftovers", add_config_args
    )
    p.add_argument(
        "--gone-branches",
        action="append",
        default=[],
        metavar="A,B",
        help="branches deleted from git: their (unprotected) environments are removed; repeatable",
    )
    p.add_argument("--remove-disabled", action="store_true", help="also remove disabled (unprotected) environments")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed; change nothing")
    p.add_argument("--orphans", action="store_true", help="list the team's containers the program no longer declares")
    p.add_argument("--remove-orphans", action="store_true", help="remove those containers (docker rm -f)")
    p.set_defaults(handler=_cleanup)

    _register_backups(sub, add_config_args)


def _backup_parser(sub: Any, name: str, text: str, add_config_args: AddConfigArgs) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=text)
    add_config_args(p)
    p.add_argument("--team", help="team id (default: the only team, else 1)")
    return p


_CREDENTIALS_HELP = (
    "read the bucket with your own AWS credentials (environment, profile) instead of the team's "
    "restore key (stack output backupRestore)"
)


def _register_backups(sub: Any, add_config_args: AddConfigArgs) -> None:
    group = sub.add_parser("backup", help="list a team's backups, or back up an environment now")
    backup_sub = group.add_subparsers(dest="backup_command", metavar="ACTION", required=True)
    p = _backup_parser(
        backup_sub, "list", "backups in the team's bucket, and whether the last run failed", add_config_args
    )
    p.add_argument("--branch", help="only this environment's backups")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--ambient-credentials", action="store_true", help=_CREDENTIALS_HELP)
    p.set_defaults(handler=_backup_list)
    p = _backup_parser(backup_sub, "now", "run the team's backup job for one environment now", add_config_args)
    p.add_argument("--branch", required=True, help=_BRANCH_HELP)
    p.set_defaults(handler=_backup_now)

    p = _backup_parser(sub, "restore", "restore an environment (database and filestore) from a backup", add_config_args)
    p.add_argument("--branch", required=True, help="environment whose backup is restored " + f"({_BRANCH_HELP})")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--at", metavar="TIME", help="the newest backup at or before TIME (ISO 8601, UTC by default)")
    which.add_argument(
        "--key", help="the backup with this key (as `backup list --json` shows), e.g. daily/DB/STAMP.dump"
    )
    p.add_argument(
        "--into", metavar="OTHER_BRANCH", help="restore into this other environment of the team, neutralised"
    )
    p.add_argument(
        "--no-backup-first",
        action="store_true",
        help="do not back up the target before overwriting it (for a target the job does not back up)",
    )
    p.add_argument("--dry-run", action="store_true", help="say which backup and what would be done; change nothing")
    p.add_argument("--ambient-credentials", action="store_true", help=_CREDENTIALS_HELP)
    p.set_defaults(handler=_restore)


def _lifecycle_parser(sub: Any, name: str, text: str, add_config_args: AddConfigArgs) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=text)
    add_config_args(p)
    p.add_argument("--team", help="team id (default: the only team, else 1)")
    p.add_argument("--no-deploy", action="store_true", help="edit oduflow.toml only; deploy later")
    p.add_argument("--no-policy", action="store_true", help="deploy without the policy pack")
    return p


def _csv(values: list[str] | str | None) -> list[str]:
    items = [values] if isinstance(values, str) else values or []
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


# --------------------------------------------------------------------------------------------
# preview / up / destroy / refresh


def _operation_handler(operation: automation.Operation) -> Callable[[argparse.Namespace], int]:
    def handler(ns: argparse.Namespace) -> int:
        automation.require_pulumi_cli()
        stack = ns.stack or (automation.SHARED_STACK if ns.all else "local")
        config, settings = resolve_config(ns.config, stack, ns.project_dir)
        print_notices(config)
        settings = _require_settings(settings, ns)
        if ns.config is not None:
            automation.check_config_file(settings, config.path)
        runner = automation.Runner(settings.project_dir, policy=not ns.no_policy, parallel=ns.parallel)
        if ns.all:
            results = fleet.run_all(runner, operation, settings, config)
            print("summary:")
            for result in results:
                print(f"  {result.line()}")
            failed = [r.stack for r in results if not r.ok]
            if failed:
                print(f"{len(failed)} of {len(results)} stacks failed: {', '.join(failed)}")
            return EXIT_FAILED if failed else EXIT_OK
        if ns.team is not None:
            teams.require_team(config, ns.team)
        selection = automation.select(settings, ns.team)
        if selection.settings is not settings:
            automation.check_config_file(selection.settings, config.path)
        return runner.run(operation, selection, config).exit_code

    return handler


def _require_settings(settings: StackSettings | None, ns: argparse.Namespace) -> StackSettings:
    if settings is None:
        raise UsageError(
            f"no stack config for stack {ns.stack or 'local'} (Pulumi.yaml and stacks/): "
            "pass --project-dir, or --no-deploy to edit only"
        )
    return settings


# --------------------------------------------------------------------------------------------
# Lifecycle commands


def _lifecycle(
    ns: argparse.Namespace, *, deploys: bool = True, check_revisions: bool = True
) -> tuple[automation.Lifecycle, Config, str]:
    deploy = deploys and not getattr(ns, "no_deploy", False)
    if deploy:
        automation.require_pulumi_cli()
    config, settings = resolve_config(ns.config, ns.stack, ns.project_dir, check_revisions=check_revisions)
    print_notices(config)
    team_id = teams.require_team(config, ns.team) if ns.team is not None else teams.resolve_team(config)
    deploy_fn = None
    if deploy:
        settings = _require_settings(settings, ns)
        # Refuse before editing when the deployment could not see the edit or has no stack.
        automation.check_config_file(automation.select(settings, team_id).settings, config.path)
        runner = automation.Runner(settings.project_dir, policy=not getattr(ns, "no_policy", False))
        deploy_fn = automation.make_deploy(runner, settings)
    lifecycle = automation.Lifecycle(
        config.path,
        deploy=deploy_fn,
        settings=settings,
        docker_host=automation.docker_host_for(settings, config),
        out=print,
    )
    return lifecycle, config, team_id


def _print(outcome: automation.Outcome) -> int:
    """Lines were printed as they happened (Lifecycle's `out`); the exit status is what is left."""
    return outcome.exit_code


def _env_create(ns: argparse.Namespace) -> int:
    lifecycle, _, team_id = _lifecycle(ns)
    outcome, _info = lifecycle.create_environment(
        team_id, ns.branch, env_type=ns.type, template=ns.template, image=ns.image
    )
    return _print(outcome)


def _env_disable(ns: argparse.Namespace) -> int:
    lifecycle, _, team_id = _lifecycle(ns)
    return _print(lifecycle.set_disabled(team_id, ns.branch, True))


def _env_enable(ns: argparse.Namespace) -> int:
    lifecycle, _, team_id = _lifecycle(ns)
    return _print(lifecycle.set_disabled(team_id, ns.branch, False))


def _env_delete(ns: argparse.Namespace) -> int:
    lifecycle, _, team_id = _lifecycle(ns)
    return _print(lifecycle.delete_environment(team_id, ns.branch, force=ns.force))


# How `env update` reads the repositories: the git client with the fetcher's protocol allow-list.
# Tests replace it with a reader of local repositories.
RemoteFactory = Callable[[git_revisions.Secrets], git_revisions.Remote]
make_remote: RemoteFactory = git_revisions.GitRemote


def _record(lifecycle: automation.Lifecycle, config: Config, team_id: str, branch: str, update: updates.Update) -> int:
    """Write the environment's entry, say what moved, deploy when something did."""
    path, changed = updates.write_entry(config, team_id, branch, update.after)
    outcome = lifecycle._outcome(*update.lines(team_id, branch), f"{path}: {'updated' if changed else 'unchanged'}")
    if not changed:
        outcome.add("nothing to deploy (`oduflow-iac up` retries a failed deployment)")
        return _print(outcome)
    return _print(lifecycle._finish(outcome, load_config(config.path), team_id))


def _env_update(ns: argparse.Namespace) -> int:
    # The lock may pin repositories the file no longer has: this command is how it is put right.
    lifecycle, config, team_id = _lifecycle(ns, check_revisions=False)
    revs = git_revisions.parse_revs(ns.rev)
    resolver = teams.env_secrets()
    settings = lifecycle.settings
    if settings is not None:
        resolver = teams.chain(resolver, automation.stack_secrets(settings.project_dir, settings.stack))
    remote = make_remote(updates.team_secrets(config, team_id, resolver))
    update = updates.resolve_revisions(config, team_id, ns.branch, remote, revs, out=print)
    return _record(lifecycle, config, team_id, ns.branch, update)


def _env_refresh(ns: argparse.Namespace) -> int:
    lifecycle, config, team_id = _lifecycle(ns)
    return _record(lifecycle, config, team_id, ns.branch, updates.next_refresh(config, team_id, ns.branch))


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _env_credentials(ns: argparse.Namespace) -> int:
    config, settings = resolve_config(ns.config, ns.stack, ns.project_dir)
    team_id = teams.require_team(config, ns.team) if ns.team is not None else teams.resolve_team(config)
    branches = [e.branch for e in config.team[team_id].environments]
    if ns.branch not in branches:
        raise UsageError(
            f"{config.path}: team {team_id} has no environment for branch {ns.branch!r} "
            f"(environments: {', '.join(branches) or 'none'})"
        )
    # A password printed into a pipe ends up in files and CI logs: only a person at a terminal, or
    # an explicit flag, gets it. Checked before the secret is even read.
    if not (ns.show_secret or stdout_is_terminal()):
        raise UsageError(
            "not printing a password to something that is not a terminal: "
            "run it in a terminal, or pass --show-secret to print it anyway"
        )
    settings = _require_settings(settings, ns)
    selection = automation.select(settings, team_id)
    credentials = automation.read_credentials(settings.project_dir, selection, team_id, ns.branch)
    print(f"environment {ns.branch!r} of team {team_id} (stack {selection.stack})")
    print(f"login:    {credentials.login}")
    print(f"password: {credentials.password}")
    return EXIT_OK


def _template_init(ns: argparse.Namespace) -> int:
    lifecycle, _, team_id = _lifecycle(ns)
    return _print(lifecycle.init_template(team_id, ns.name, ns.image, _csv(ns.modules) or None))


def _template_list(ns: argparse.Namespace) -> int:
    lifecycle, _, team_id = _lifecycle(ns, deploys=False)
    rows = lifecycle.list_templates(team_id)
    if not rows:
        print(f"team {team_id} has no templates")
    for name, image, modules, users in rows:
        used = f"used by: {', '.join(users)}" if users else "not used"
        print(f"{name:<20} {image:<24} modules: {','.join(modules):<30} {used}")
    return EXIT_OK


def _template_delete(ns: argparse.Namespace) -> int:
    lifecycle, _, team_id = _lifecycle(ns)
    return _print(lifecycle.delete_template(team_id, ns.name))


def _cleanup(ns: argparse.Namespace) -> int:
    lifecycle, _, team_id = _lifecycle(ns, deploys=not ns.dry_run)
    outcome = lifecycle.cleanup(
        team_id,
        gone_branches=_csv(ns.gone_branches),
        remove_disabled=ns.remove_disabled,
        dry_run=ns.dry_run,
        orphans=ns.orphans,
        remove_orphans=ns.remove_orphans,
    )
    return _print(outcome)


# --------------------------------------------------------------------------------------------
# Backups


def _backup_context(ns: argparse.Namespace) -> tuple[Config, StackSettings | None, str]:
    from oduflow_iac.lifecycle import backup_ops

    config, settings = resolve_config(ns.config, ns.stack, ns.project_dir)
    print_notices(config)
    team_id = teams.require_team(config, ns.team) if ns.team is not None else teams.resolve_team(config)
    backup_ops.require_backups(config)
    if getattr(ns, "branch", None):
        backup_ops.environment(config, team_id, ns.branch)
    if getattr(ns, "into", None):
        backup_ops.environment(config, team_id, ns.into)
    return config, settings, team_id


def _store(ns: argparse.Namespace, config: Config, settings: StackSettings | None, team_id: str) -> Any:
    """The team's bucket with operator credentials: the restore key, or the ambient ones."""
    from oduflow_iac import naming
    from oduflow_iac.lifecycle import backup_ops

    plan = backup_ops.require_backups(config)
    key = None
    if plan.restore_user and not ns.ambient_credentials:
        settings = _require_settings(settings, ns)
        selection = automation.select(settings, team_id)
        key = backup_ops.read_restore_key(settings.project_dir, selection.stack, team_id)
    bucket = backup_ops.bucket_of(config, team_id)
    return backup_ops.S3Store(bucket, plan.region, key, job_user=naming.team_backup_user_name(team_id))


def _backup_list(ns: argparse.Namespace) -> int:
    import json

    from oduflow_iac.lifecycle import backup_ops

    config, settings, team_id = _backup_context(ns)
    listing = backup_ops.listing(config, team_id, _store(ns, config, settings, team_id), ns.branch)
    if ns.json:
        print(json.dumps(listing.to_json(), indent=2))
    else:
        backup_ops.print_listing(listing)
    return EXIT_OK


def _backup_now(ns: argparse.Namespace) -> int:
    from oduflow_iac.lifecycle import backup_ops

    config, settings, team_id = _backup_context(ns)
    host = backup_ops.env_docker_host(config, team_id, ns.branch, automation.docker_host_for(settings, config))
    print(f"backing up {ns.branch!r} of team {team_id} on {host}")
    result = backup_ops.backup_now(config, team_id, ns.branch, automation.run_docker, host)
    for line in result.output.splitlines():
        print(f"  {line}")
    print(result.message)
    return EXIT_OK if result.ok else EXIT_FAILED


def _restore(ns: argparse.Namespace) -> int:
    from oduflow_iac.lifecycle import backup_ops, restore

    config, settings, team_id = _backup_context(ns)
    at = restore.parse_time(ns.at) if ns.at else None
    store = _store(ns, config, settings, team_id)
    sets = backup_ops.listing(config, team_id, store, ns.branch).sets
    plan = restore.plan_restore(
        config, team_id, ns.branch, sets, at=at, key=ns.key, into=ns.into, backup_first=not ns.no_backup_first
    )
    if ns.dry_run:
        for line in plan.steps():
            print(line)
        print("dry run: nothing changed")
        return EXIT_OK
    host = backup_ops.env_docker_host(config, team_id, plan.target_branch, automation.docker_host_for(settings, config))
    docker = automation.run_docker
    neutraliser = None
    if plan.neutralise:
        # The target's admin password (stack output odooAdmin): checked before anything changes.
        stack_settings = _require_settings(settings, ns)
        selection = automation.select(stack_settings, team_id)
        password = automation.read_credentials(stack_settings.project_dir, selection, team_id, plan.target_branch)
        neutraliser = restore.OneShotNeutraliser(docker, host, lambda: password.password)
    restorer = restore.Restorer(
        store=store,
        docker=docker,
        docker_host=host,
        database=restore.JobContainerDatabase(docker, host, team_id),
        backup_now=lambda: backup_ops.backup_now(config, team_id, plan.target_branch, docker, host),
        neutraliser=neutraliser,
        out=print,
    )
    return EXIT_OK if restorer.run(plan).ok else EXIT_FAILED
