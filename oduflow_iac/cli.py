"""`oduflow-iac`: the command line. The one place errors become messages.

Exit status: 0 success; 1 the plan has mandatory policy violations (or the engine failed);
2 a config or usage error, printed as one line per problem on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from oduflow_iac.errors import OduflowError

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="oduflow.toml (default: the stack's oduflow:configFile)")
    p.add_argument("--stack", default="local", help="stack whose config is read from stacks/ (default: local)")
    p.add_argument("--project-dir", type=Path, default=None, help="directory of Pulumi.yaml (default: found upward)")


def _cmd_validate(ns: argparse.Namespace) -> int:
    from oduflow_iac.stack_settings import resolve_config

    config, _ = resolve_config(ns.config, ns.stack, ns.project_dir)
    teams = config.teams
    envs = sum(len(t.environments) for _, t in teams)
    print(f"{config.path}: valid: {len(teams)} teams, {envs} environments")
    for team_id, team in teams:
        for env in team.environments:
            print(
                f"  team {team_id}  {env.type:<11}  {env.branch:<30}  "
                f"port {config.environment_port(team_id, env.branch)}  {config.env_hostname(team_id, env)}"
            )
    return EXIT_OK


def _cmd_lock(ns: argparse.Namespace) -> int:
    from oduflow_iac import ports
    from oduflow_iac.stack_settings import resolve_config

    config, _ = resolve_config(ns.config, ns.stack, ns.project_dir)
    path = ports.lock_path_for(config.path)
    changed = ports.write_lock(path, ports.lock_from(config))
    print(f"{path}: {'updated' if changed else 'unchanged'}")
    return EXIT_OK


def _cmd_policy_config(ns: argparse.Namespace) -> int:
    from oduflow_iac.policy_config import render_policy_config
    from oduflow_iac.stack_settings import resolve_config

    config, _ = resolve_config(ns.config, ns.stack, ns.project_dir)
    text = json.dumps(render_policy_config(config), indent=2) + "\n"
    if ns.output:
        Path(ns.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_plan(ns: argparse.Namespace) -> int:
    from oduflow_iac.offline.plan import plan_command

    return plan_command(ns)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="oduflow-iac", description="Odoo for many teams on shared infrastructure.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("validate", help="check oduflow.toml and list every environment with its port and host")
    _add_config_args(p)
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("lock", help="record every environment's host port in the port lock beside the config")
    _add_config_args(p)
    p.set_defaults(handler=_cmd_lock)

    p = sub.add_parser("policy-config", help="render the policy pack's config JSON from oduflow.toml")
    _add_config_args(p)
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(handler=_cmd_policy_config)

    p = sub.add_parser("plan", help="offline plan: the program under mocks plus every policy, no credentials")
    _add_config_args(p)
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    base = p.add_mutually_exclusive_group()
    base.add_argument(
        "--diff-against", type=Path, metavar="BASE.json", help="lead with the change against this JSON plan"
    )
    base.add_argument(
        "--base-ref", metavar="REF", help="lead with the change against the plan of the files as they are at git REF"
    )
    p.set_defaults(handler=_cmd_plan)

    from oduflow_iac import ops_cli

    ops_cli.register(sub, _add_config_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    handler: Handler = ns.handler
    try:
        return handler(ns)
    except OduflowError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
