"""`oduflow-iac`: the command line. The one place errors become messages.

Exit status (docs/operations.md has the same table):

| status | meaning |
|---|---|
| 0 | success |
| 1 | the plan has mandatory policy violations, or a deployment failed |
| 2 | a usage or configuration error, or an OS error (unreadable file, full disk, ...): one line per problem on stderr |
| 130 | interrupted (Ctrl-C) |
| 141 | stdout was closed early (piped into `head -1`): nothing more is written, silently |

Every message is one line, `error: FILE: key.path: what is wrong; what to do`, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from oduflow_iac.errors import OduflowError
from oduflow_iac.wording import plural

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, what `yes | head -1` reports for `yes`

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; see `{self.prog} --help`\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("oduflow-iac")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        from oduflow_iac import __version__

        return __version__


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="oduflow.toml (default: the stack's oduflow:configFile)")
    p.add_argument("--stack", default=None, help="stack whose config is read from stacks/ (default: local)")
    p.add_argument("--project-dir", type=Path, default=None, help="directory of Pulumi.yaml (default: found upward)")


def _cmd_validate(ns: argparse.Namespace) -> int:
    from oduflow_iac.stack_settings import print_notices, resolve_config

    config, _ = resolve_config(ns.config, ns.stack, ns.project_dir)
    print_notices(config)
    teams = config.teams
    envs = sum(len(t.environments) for _, t in teams)
    disabled = sum(1 for _, t in teams for e in t.environments if e.disabled)
    note = f" ({disabled} disabled)" if disabled else ""
    several = len(config.servers) > 1
    servers = f" on {plural(len(config.servers), 'server')}" if several else ""
    print(f"{config.path}: valid: {plural(len(teams), 'team')}, {plural(envs, 'environment')}{note}{servers}")
    for team_id, team in teams:
        for env in team.environments:
            state = "  disabled" if env.disabled else ""
            # With several servers, where each runs (both ends while it moves).
            where = f"  on {' -> '.join(config.env_servers(team_id, env))}" if several else ""
            port = config.environment_port(team_id, env.branch)
            print(
                f"  team {team_id}  {env.type:<11}  {env.branch:<30}  "
                f"port {port}  {config.env_hostname(team_id, env)}{where}{state}"
            )
    return EXIT_OK


def _cmd_lock(ns: argparse.Namespace) -> int:
    from oduflow_iac import ports
    from oduflow_iac.stack_settings import print_notices, resolve_config

    config, _ = resolve_config(ns.config, ns.stack, ns.project_dir, move_ports=ns.move)
    print_notices(config)
    path = ports.lock_path_for(config.path)
    before = ports.read_lock(path)
    after = ports.lock_from(config)
    changed = ports.write_lock(path, after)
    for team_id, branch, old, new in ports.moves(before, after):
        print(f"{path}: team {team_id} {branch}: port {old} -> {new}")
    print(f"{path}: {'updated' if changed else 'unchanged'}")
    return EXIT_OK


def _cmd_policy_config(ns: argparse.Namespace) -> int:
    from oduflow_iac.policy_config import render_policy_config
    from oduflow_iac.stack_settings import print_notices, resolve_config

    config, _ = resolve_config(ns.config, ns.stack, ns.project_dir)
    print_notices(config)
    text = json.dumps(render_policy_config(config), indent=2) + "\n"
    if ns.output:
        Path(ns.output).write_text(text, encoding="utf-8")
        print(f"{ns.output}: written", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_plan(ns: argparse.Namespace) -> int:
    from oduflow_iac.offline.plan import plan_command

    return plan_command(ns)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="oduflow-iac",
        description="Odoo for many teams on shared infrastructure.",
        epilog="exit status: 0 ok, 1 mandatory policy violation or failed deployment, "
        "2 usage or configuration error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("validate", help="check oduflow.toml and list every environment with its port and host")
    _add_config_args(p)
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("lock", help="record every environment's host port in the port lock beside the config")
    _add_config_args(p)
    p.add_argument(
        "--move",
        action="store_true",
        help="let a pinned `port` take a port the lock gives to another environment, which moves to a new one",
    )
    p.set_defaults(handler=_cmd_lock)

    p = sub.add_parser("policy-config", help="render the policy pack's config JSON from oduflow.toml")
    _add_config_args(p)
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(handler=_cmd_policy_config)

    p = sub.add_parser("plan", help="offline plan: the program under mocks plus every policy, no credentials")
    _add_config_args(p)
    p.add_argument(
        "--format",
        choices=("table", "json", "markdown"),
        default="table",
        help="table: the resource tree (default); json: the machine-readable plan; markdown: a pull-request comment",
    )
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


def _os_error_line(exc: OSError) -> str:
    """`/nonexistent/x.json: No such file or directory`: the file first, as every other message."""
    what = exc.strerror or exc.__class__.__name__
    if exc.filename is not None:
        return f"{exc.filename}: {what}"
    return what


def _silence_stdout() -> None:
    """The reader of our stdout has gone: whatever is still buffered must not be flushed at exit
    (Python would print a BrokenPipeError of its own)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - stdout without a descriptor
        pass


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; every error becomes a message and an exit status."""
    try:
        parser = build_parser()
        ns = parser.parse_args(argv)
        handler: Handler | None = getattr(ns, "handler", None)
        if handler is None:
            # `oduflow-iac` alone: what the commands are, and a usage status.
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        code = handler(ns)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except OduflowError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_CLOSED_PIPE
    except OSError as exc:
        print(f"error: {_os_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    code = run(argv)
    if argv is None and code == EXIT_INTERRUPTED:
        # The command line itself (not a caller of main([...])): an interrupted plan leaves a
        # large heap of abandoned objects whose teardown at exit would take seconds of garbage
        # collection for nothing. The loop and the worker threads are closed already.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
