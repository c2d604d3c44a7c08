"""The addon fetcher's script, as a pure function: clone (or update) each repository of an
environment's cascade at its resolved branch, shallowly, then stop.

Every value in it comes from oduflow.toml, which the loader validates (https/ssh URLs without
credentials, branch names as `git check-ref-format --branch` accepts them, plain directory names);
the script does not rely on that alone:
- each value is one shell word (`shlex.quote`) and comes after `--end-of-options`, so a branch or
  URL beginning with `-` (`--upload-pack=...`) is an argument, never an option (git parse-options,
  since git 2.24);
- `protocol.allow=never` with only https and ssh allowed, so neither a URL nor a redirect nor a
  submodule reaches `file://`, `ext::` (runs a command) or plain `git://`/`http://`;
- the team's credentials travel as secret environment variables of the container and reach git
  through a credential helper (token) or `core.sshCommand` with a key file written at run time
  (deploy key), never through a URL, an argument, a label or the plan. Only the team's own
  (project-level) repositories get them: platform and organisation repositories are fetched
  anonymously, so a team's token is never offered to a host the platform chose.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from oduflow_iac.cascade import ResolvedAddon
from oduflow_iac.odoo_conf import ADDONS_ROOT

TOKEN_ENV = "ODUFLOW_GIT_TOKEN"
SSH_KEY_ENV = "ODUFLOW_GIT_SSH_KEY"
PROTOCOLS: tuple[str, ...] = ("https", "ssh")
# ssh without a terminal never prompts; a fresh container knows no host key, so the first one is
# accepted (and pinned for the rest of the run).
_SSH = "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"


@dataclass(frozen=True)
class GitCredentials:
    """Which credentials the team has (their values are in the container's secret variables)."""

    token: bool = False
    ssh_key: bool = False
    username: str = "x-access-token"


def _protocol_options(protocols: Iterable[str]) -> list[str]:
    opts = ["-c", "protocol.allow=never"]
    for protocol in protocols:
        opts += ["-c", f"protocol.{protocol}.allow=always"]
    return opts


def _credential_options(addon: ResolvedAddon, credentials: GitCredentials) -> list[str]:
    """`-c` options handing the team's credentials to git, for its own repositories only. The
    helper prints the token from the environment when git asks (`get`); the empty
    `credential.helper` first drops any helper the image configures."""
    own = addon.level == "project"
    opts = ["-c", "credential.helper="]
    if own and credentials.token:
        helper = (
            '!f() { test "$1" = get || return 0; '
            f"printf 'username=%s\\npassword=%s\\n' {shlex.quote(credentials.username)} \"${TOKEN_ENV}\"; }}; f"
        )
        opts += ["-c", f"credential.helper={helper}"]
    # `$key` is expanded by the script's shell (the option is double-quoted there): a mktemp path.
    ssh = f"{_SSH} -o IdentitiesOnly=yes -i $key" if own and credentials.ssh_key else _SSH
    return [*opts, "-c", f"core.sshCommand={ssh}"]


def git_argv(addon: ResolvedAddon, target: str, *, update: bool) -> list[str]:
    """The argument vector after git's global options: user values only after `--end-of-options`."""
    if update:
        return ["-C", target, "fetch", "--quiet", "--depth", "1", "--end-of-options", addon.url, addon.branch]
    return [
        "clone", "--quiet", "--depth", "1", "--single-branch", f"--branch={addon.branch}",
        "--end-of-options", addon.url, target,
    ]  # fmt: skip


def fetch_script(
    addons: Sequence[ResolvedAddon],
    root: str = ADDONS_ROOT,
    *,
    credentials: GitCredentials = GitCredentials(),
    protocols: Sequence[str] = PROTOCOLS,
) -> str:
    """The `/bin/sh -c` script of an environment's addon fetcher."""
    lines = [
        "set -eu",
        "export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1",
        'key=""',
    ]
    if credentials.ssh_key:
        # The key file lives only while the script runs; the variable never appears in a command.
        lines += [
            f'if [ -n "${{{SSH_KEY_ENV}:-}}" ]; then',
            '  key="$(mktemp)"; trap \'rm -f "$key"\' EXIT',
            f'  (umask 077 && printf \'%s\\n\' "${SSH_KEY_ENV}" > "$key")',
            "fi",
        ]
    for addon in addons:
        target = f"{root}/{addon.name}"
        opts = _protocol_options(protocols) + _credential_options(addon, credentials)
        common = " ".join(shlex.quote(o) if "$key" not in o else f'"{o}"' for o in opts)
        clone = " ".join(shlex.quote(a) for a in git_argv(addon, target, update=False))
        fetch = " ".join(shlex.quote(a) for a in git_argv(addon, target, update=True))
        quoted = shlex.quote(target)
        lines.append(
            f"if [ -d {quoted}/.git ]; then git {common} {fetch}"
            f" && git -C {quoted} checkout --quiet -f FETCH_HEAD; else git {common} {clone}; fi"
        )
    return "\n".join(lines) + "\n"
