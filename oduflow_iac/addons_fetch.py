"""The addon fetcher's script, as a pure function: fetch each repository of an environment's
cascade, shallowly, then stop.

A repository pinned in the revision lock (revisions.py) is fetched at exactly that commit into a
directory of its own, `{repo}@{commit[:12]}` (naming.addons_checkout_dir): the Odoo container still
running reads the previous revision's directory, untouched, while the upgrade one-shot loads the
new one; only once the upgrade succeeded is Odoo replaced with an odoo.conf naming the new
directories. The fetcher keeps the current and the previous revision of each repository and
removes older ones. An unpinned repository is cloned at its branch head into `{repo}` as before
(the plan warns about such environments: what they run depends on when they were fetched).

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

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from oduflow_iac import naming
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


def protocol_options(protocols: Iterable[str]) -> list[str]:
    opts = ["-c", "protocol.allow=never"]
    for protocol in protocols:
        opts += ["-c", f"protocol.{protocol}.allow=always"]
    return opts


def credential_options(addon: ResolvedAddon, credentials: GitCredentials) -> list[str]:
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


def pinned_fetch_argv(addon: ResolvedAddon, target: str, commit: str) -> list[str]:
    """Fetch exactly `commit` (40 hex, validated by the lock) into the repository at `target`."""
    return ["-C", target, "fetch", "--quiet", "--depth", "1", "--end-of-options", addon.url, commit]


def checkout_dir(addon: ResolvedAddon, pins: Mapping[str, str], root: str = ADDONS_ROOT) -> str:
    """Where a repository's code is, for the fetcher and odoo.conf's addons_path."""
    return f"{root}/{naming.addons_checkout_dir(addon.name, pins.get(addon.name))}"


def _pinned_lines(addon: ResolvedAddon, commit: str, root: str, common: str) -> list[str]:
    """Fetch into `<dir>.tmp`, then rename: an interrupted fetch never leaves a half directory
    under the name odoo.conf will use. A directory already at the commit is kept as it is."""
    if not re.fullmatch(r"[0-9a-f]{40}", commit):  # the lock reader refuses it first
        raise ValueError(f"commit of {addon.name} is not a 40-hex object id")
    target = checkout_dir(addon, {addon.name: commit}, root)
    tmp = f"{target}.tmp"
    q, qt = shlex.quote(target), shlex.quote(tmp)
    fetch = " ".join(shlex.quote(a) for a in pinned_fetch_argv(addon, tmp, commit))
    return [
        f'if [ "$(git -C {q} rev-parse -q --verify HEAD 2>/dev/null || true)" != {commit} ]; then',
        f"  rm -rf {qt} && git init --quiet {qt}",
        f"  git {common} {fetch}",
        f"  git -C {qt} checkout --quiet -f FETCH_HEAD",
        f"  rm -rf {q} && mv {qt} {q}",
        "fi",
    ]


def _keep_lines(addon: ResolvedAddon, current: str, root: str) -> list[str]:
    """Record the repository's current directory (the one before becomes the previous one) and
    remove every other revision directory of it."""
    state = shlex.quote(f"{root}/{KEEP_DIR}")
    cur, prev = shlex.quote(f"{root}/{KEEP_DIR}/{addon.name}.current"), shlex.quote(
        f"{root}/{KEEP_DIR}/{addon.name}.previous"
    )
    base = shlex.quote(f"{root}/{addon.name}")
    return [
        f"mkdir -p {state}",
        f'old="$(cat {cur} 2>/dev/null || true)"',
        f'if [ "$old" != {shlex.quote(current)} ]; then printf "%s\\n" "$old" > {prev};'
        f' printf "%s\\n" {shlex.quote(current)} > {cur}; fi',
        f'prev="$(cat {prev} 2>/dev/null || true)"',
        f"for dir in {base} {base}@*; do",
        '  [ -e "$dir" ] || continue',
        '  name="${dir##*/}"',
        f'  case "$name" in *.tmp) ;; {shlex.quote(current)}|"$prev") continue ;; esac',
        '  rm -rf "$dir"',
        "done",
    ]


KEEP_DIR = ".oduflow"


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
    pins: Mapping[str, str] | None = None,
) -> str:
    """The `/bin/sh -c` script of an environment's addon fetcher. `pins`: repository -> commit
    from the revision lock; repositories without one are fetched at their branch head."""
    pins = pins or {}
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
        opts = protocol_options(protocols) + credential_options(addon, credentials)
        common = " ".join(shlex.quote(o) if "$key" not in o else f'"{o}"' for o in opts)
        commit = pins.get(addon.name)
        if commit is not None:
            lines += _pinned_lines(addon, commit, root, common)
            lines += _keep_lines(addon, naming.addons_checkout_dir(addon.name, commit), root)
            continue
        clone = " ".join(shlex.quote(a) for a in git_argv(addon, target, update=False))
        fetch = " ".join(shlex.quote(a) for a in git_argv(addon, target, update=True))
        quoted = shlex.quote(target)
        lines.append(
            f"if [ -d {quoted}/.git ]; then git {common} {fetch}"
            f" && git -C {quoted} checkout --quiet -f FETCH_HEAD; else git {common} {clone}; fi"
        )
        lines += _keep_lines(addon, addon.name, root)
    return "\n".join(lines) + "\n"
