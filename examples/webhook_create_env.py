#!/usr/bin/env python3
"""Create the environment of a branch the way a CI webhook handler would, then print its URL.

    ODUFLOW_TOKEN=<team token> python examples/webhook_create_env.py --branch feature/login \\
        [--host team-a.localhost] [--stack local] [--type development] [--template T | --image I] \\
        [--no-deploy] [--json]

1. Resolve the team as the Oduflow server does: the bearer token first, then the Host header, then
   the single team / team 1. Strictly: a token that matches no team is refused, never passed on to
   the fallbacks, so a mistyped token cannot act for another team. `secret:KEY` tokens of
   oduflow.toml are read from ODUFLOW_SECRET_<KEY> environment variables, else from the stack's
   Pulumi config secret `oduflow-secrets:KEY`.
2. If the branch has no environment yet: add it to oduflow.toml (comments and formatting kept) and
   record its host port in the port lock. A branch that already has one is updated instead: a push
   moves its addon repositories, so `env update` pins each one's new head (and its modules' trees
   and versions) in the revision lock, `<config stem>.revisions.json`.
3. Deploy that team only (`up` of its component, or of its team-N stack in the per-team layout):
   a new environment is created; an updated one fetches the new commits, upgrades the modules whose
   code or version changed, and only then replaces its Odoo. A push that moved nothing deploys nothing.
4. Print the URL (one JSON object with --json).

Exit status: 0 done, 1 the deployment failed, 2 refused (unknown token, invalid branch, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from oduflow_iac import automation, git_revisions, teams, updates
from oduflow_iac.config import load_config
from oduflow_iac.errors import OduflowError, UsageError
from oduflow_iac.stack_settings import resolve_config

# How a push's new heads are read: git, with the addon fetcher's protocol allow-list.
make_remote = git_revisions.GitRemote


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--branch", required=True)
    parser.add_argument("--token", default=os.environ.get("ODUFLOW_TOKEN"), help="default: $ODUFLOW_TOKEN")
    parser.add_argument("--host", default=os.environ.get("ODUFLOW_HOST"), help="the request's Host header")
    parser.add_argument("--stack", default="local")
    parser.add_argument("--project-dir", type=Path, default=None)
    parser.add_argument("--type", choices=("development", "staging", "production"), default="development")
    parser.add_argument("--template")
    parser.add_argument("--image")
    parser.add_argument("--no-deploy", action="store_true")
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args(argv)
    try:
        return run(ns)
    except OduflowError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2


def run(ns: argparse.Namespace) -> int:
    if not ns.token:
        raise UsageError("no token: pass --token or set ODUFLOW_TOKEN")
    deploy = not ns.no_deploy
    if deploy:
        automation.require_pulumi_cli()
    # The lock may pin a repository the file no longer has: `env update` re-records the environment.
    config, settings = resolve_config(None, ns.stack, ns.project_dir, check_revisions=False)
    if settings is None:  # pragma: no cover - without --config the stack is always read
        raise UsageError(f"no stack config for stack {ns.stack}")

    resolvers = [teams.env_secrets()]
    if shutil.which("pulumi"):
        resolvers.append(automation.stack_secrets(settings.project_dir, settings.stack))
    secrets = teams.chain(*resolvers)
    team_id = teams.resolve_team(config, ns.token, ns.host, secrets=secrets, strict=True)

    runner = automation.Runner(settings.project_dir, out=lambda line: print(line, file=sys.stderr))
    lifecycle = automation.Lifecycle(
        config.path,
        deploy=automation.make_deploy(runner, settings) if deploy else None,
        settings=settings,
        out=lambda line: print(line, file=sys.stderr),
    )
    existing = any(e.branch == ns.branch for e in config.team[team_id].environments)
    exit_code = 0
    updated = False
    if existing:
        # A push: pin the repositories' new heads, deploy when something moved (`env update`).
        remote = make_remote(updates.team_secrets(config, team_id, secrets))
        update = updates.resolve_revisions(config, team_id, ns.branch, remote)
        path, updated = updates.write_entry(config, team_id, ns.branch, update.after)
        for line in update.lines(team_id, ns.branch):
            print(line, file=sys.stderr)
        print(f"{path}: {'updated' if updated else 'unchanged'}", file=sys.stderr)
        if updated and lifecycle.deploy is not None:
            exit_code = lifecycle.deploy(load_config(config.path), team_id, ()).exit_code
        info = automation.environment_info(config, team_id, ns.branch)
    else:
        outcome, info = lifecycle.create_environment(
            team_id, ns.branch, env_type=ns.type, template=ns.template, image=ns.image
        )
        exit_code = outcome.exit_code
    if ns.json:
        result = {
            "team": team_id,
            "branch": ns.branch,
            "url": info.url,
            "hostPort": info.host_port,
            "created": not existing,
            "updated": updated,
            "deployed": deploy and (updated or not existing) and exit_code == 0,
        }
        print(json.dumps(result))
    else:
        print(info.url)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
