"""What `oduflow-iac env update` reads from the addon repositories: each one's current head, and
the modules of a commit (their git tree ids and manifest versions), fetching as little as git
allows: `git ls-remote` for the head; for the modules, a shallow (`--depth 1`), blobless
(`--filter=blob:none`) fetch of exactly that commit into a temporary bare repository, so only
trees come over the network, then the manifests' blobs alone.

The same safety as the addon fetcher (addons_fetch.py): only https and ssh (`protocol.allow=never`
and an allow-list), user values after `--end-of-options`, no system git config, no terminal
prompt, and the team's credentials only for the team's own (project-level) repositories, through
the environment of the git process (the credential helper reads the token from a variable, the
ssh key is a private temporary file), never in an argument, a URL or a message.

A manifest is read with `ast.literal_eval` (a literal, never code run); its `version` is kept only
when it passes the lock's check, and directories whose name is not an Odoo module name are skipped.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from oduflow_iac import addons_fetch
from oduflow_iac.cascade import ResolvedAddon
from oduflow_iac.config.values import module_name_problem
from oduflow_iac.errors import UsageError
from oduflow_iac.revisions import ModuleRevision, object_id_problem, version_problem

MANIFEST = "__manifest__.py"
MAX_MANIFEST_BYTES = 256 * 1024
TIMEOUT_SECONDS = 300
T = TypeVar("T")
_LS_TREE = re.compile(r"^(\d{6}) (\w+) ([0-9a-f]{40})\t(.+)$", re.DOTALL)


class GitError(UsageError):
    """A repository could not be read (its name said, never its URL: it may carry a host's secret)."""


@dataclass(frozen=True)
class Secrets:
    """The team's git credentials, in clear, for the git processes of `env update` only."""

    token: str | None = field(default=None, repr=False)
    ssh_key: str | None = field(default=None, repr=False)
    username: str = "x-access-token"


class GitRemote:
    """Reads heads and modules of remote repositories with the git client. `protocols` is the
    allow-list (https and ssh); tests construct it with `file` for local repositories, which the
    command line never does (and the config refuses file URLs anyway)."""

    def __init__(
        self,
        secrets: Secrets = Secrets(),
        *,
        protocols: Sequence[str] = addons_fetch.PROTOCOLS,
        git: str = "git",
    ) -> None:
        self.secrets = secrets
        self.protocols = tuple(protocols)
        self.git = git

    # -- plumbing -----------------------------------------------------------------------------

    def _options(self, addon: ResolvedAddon) -> list[str]:
        creds = addons_fetch.GitCredentials(
            token=self.secrets.token is not None,
            ssh_key=self.secrets.ssh_key is not None,
            username=self.secrets.username,
        )
        return addons_fetch.protocol_options(self.protocols) + addons_fetch.credential_options(addon, creds)

    def _run(self, addon: ResolvedAddon, args: list[str], what: str, keydir: Path | None = None) -> bytes:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/nonexistent"),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
        }
        if addon.level == "project" and self.secrets.token is not None:
            env[addons_fetch.TOKEN_ENV] = self.secrets.token
        if keydir is not None:
            env["key"] = str(keydir / "key")  # `-i $key` of core.sshCommand (run by a shell)
        try:
            done = subprocess.run(
                [self.git, *self._options(addon), *args],
                env=env,
                capture_output=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
            )
        except FileNotFoundError:
            raise GitError("`env update` needs git on PATH") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"repository {addon.name}: {what} took longer than {TIMEOUT_SECONDS} s") from None
        if done.returncode != 0:
            last = _last_line(done.stderr.decode(errors="replace"), addon.url)
            raise GitError(f"repository {addon.name} (branch {addon.branch}): {what} failed: {last}")
        return done.stdout

    def _with_key(self, addon: ResolvedAddon, fn: Callable[[Path | None], T]) -> T:
        if addon.level != "project" or self.secrets.ssh_key is None:
            return fn(None)
        with tempfile.TemporaryDirectory(prefix="oduflow-key-") as tmp:
            key = Path(tmp) / "key"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.secrets.ssh_key.rstrip("\n") + "\n")
            return fn(Path(tmp))

    # -- what env update asks -----------------------------------------------------------------

    def head(self, addon: ResolvedAddon) -> str:
        """The commit the branch points at now."""
        ref = f"refs/heads/{addon.branch}"
        out = self._with_key(
            addon,
            lambda k: self._run(addon, ["ls-remote", "--end-of-options", addon.url, ref], "ls-remote", k),
        )
        for line in out.decode(errors="replace").splitlines():
            sha, _, name = line.partition("\t")
            if name == ref and object_id_problem(sha) is None:
                return sha
        raise GitError(f"repository {addon.name}: branch {addon.branch} does not exist on the remote")

    def modules(self, addon: ResolvedAddon, commit: str) -> dict[str, ModuleRevision]:
        """The modules of `commit`: top-level directories with a manifest."""
        if object_id_problem(commit):
            raise GitError(f"repository {addon.name}: {commit!r} is not a 40-hex commit id")
        with tempfile.TemporaryDirectory(prefix="oduflow-revision-") as tmp:
            repo = Path(tmp) / "repo.git"
            return self._with_key(addon, lambda k: self._modules(addon, commit, repo, k))

    def _modules(self, addon: ResolvedAddon, commit: str, repo: Path, keydir: Path | None) -> dict[str, ModuleRevision]:
        r = str(repo)
        self._run(addon, ["init", "--quiet", "--bare", r], "init")
        # A named remote: a partial clone fetches missing objects from its promisor remote only.
        self._run(addon, ["-C", r, "config", "remote.origin.url", addon.url], "config")
        self._run(addon, ["-C", r, "config", "remote.origin.promisor", "true"], "config")
        self._run(addon, ["-C", r, "config", "remote.origin.partialclonefilter", "blob:none"], "config")
        fetch = ["-C", r, "fetch", "--quiet", "--no-tags", "--depth", "1", "--filter=blob:none"]
        self._run(addon, [*fetch, "origin", "--end-of-options", commit], f"fetch of {commit[:12]}", keydir)
        top = _ls_tree(self._run(addon, ["-C", r, "ls-tree", "-z", commit], "ls-tree"))
        candidates = {name: oid for mode, kind, oid, name in top if kind == "tree" and mode == "040000"}
        manifests: dict[str, tuple[str, str]] = {}
        for name, tree in sorted(candidates.items()):
            if module_name_problem(name):
                continue  # not a directory Odoo loads as a module
            entries = _ls_tree(self._run(addon, ["-C", r, "ls-tree", "-z", tree], "ls-tree"))
            blob = next((oid for _m, kind, oid, n in entries if n == MANIFEST and kind == "blob"), None)
            if blob is not None:
                manifests[name] = (tree, blob)
        if manifests:
            # The manifests' blobs, in one round trip (what a lazy fetch would do one by one).
            blobs = sorted({blob for _tree, blob in manifests.values()})
            get = ["-C", r, "fetch", "--quiet", "--no-tags", "--filter=blob:none", "origin", "--end-of-options"]
            self._run(addon, [*get, *blobs], "fetch of the manifests", keydir)
        out: dict[str, ModuleRevision] = {}
        for name, (tree, blob) in manifests.items():
            size = int(self._run(addon, ["-C", r, "cat-file", "-s", blob], "cat-file").strip() or b"0")
            version = None
            if size <= MAX_MANIFEST_BYTES:
                text = self._run(addon, ["-C", r, "cat-file", "blob", blob], "cat-file")
                version = manifest_version(text)
            out[name] = ModuleRevision(tree, version)
        return out


def _ls_tree(raw: bytes) -> list[tuple[str, str, str, str]]:
    out = []
    for entry in raw.decode(errors="replace").split("\0"):
        match = _LS_TREE.match(entry)
        if match:
            mode, kind, oid, name = match.groups()
            out.append((mode, kind, oid, name))
    return out


def manifest_version(text: bytes) -> str | None:
    """The `version` of a manifest (a Python dict literal), or None when absent, unreadable or not
    a value the lock accepts. Never executed: `ast.literal_eval` reads literals only."""
    try:
        manifest = ast.literal_eval(text.decode("utf-8"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(manifest, dict):
        return None
    version = manifest.get("version")
    return version if isinstance(version, str) and version_problem(version) is None else None


def _last_line(stderr: str, url: str) -> str:
    """git's last message line, without the URL (it may hold a credential of its host)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    line = lines[-1] if lines else "git failed"
    return line.replace(url, "<url>")[:300]


# --------------------------------------------------------------------------------------------
# Resolution (pure given a remote)


class Remote(Protocol):
    """What a resolver needs of the repositories (GitRemote, or a stand-in in tests)."""

    def head(self, addon: ResolvedAddon) -> str: ...

    def modules(self, addon: ResolvedAddon, commit: str) -> dict[str, ModuleRevision]: ...


def parse_revs(values: Sequence[str]) -> dict[str, str]:
    """`--rev REPO=SHA` options: full 40-hex commit ids, one per repository."""
    out: dict[str, str] = {}
    for value in values:
        repo, sep, sha = value.partition("=")
        if not sep or not repo:
            raise UsageError(f"--rev {value!r}: expected REPO=SHA")
        sha = sha.strip().lower()
        if object_id_problem(sha):
            raise UsageError(f"--rev {repo}: {sha!r} must be a full 40-hex commit id")
        if repo in out and out[repo] != sha:
            raise UsageError(f"--rev {repo}: given twice")
        out[repo] = sha
    return out


def known(addons: Sequence[ResolvedAddon], revs: Mapping[str, str]) -> None:
    names = [a.name for a in addons]
    for repo in revs:
        if repo not in names:
            raise UsageError(
                f"--rev {repo}: not an addon repository of this environment (its repositories: "
                f"{', '.join(names) or 'none'})"
            )
