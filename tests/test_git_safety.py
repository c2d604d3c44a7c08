"""git inputs: branch names as git itself judges them, repository URLs, and the fetcher's script run
with the real git against local repositories (no network): injections stay inert, credentials
travel only through the environment."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oduflow_iac.addons_fetch import SSH_KEY_ENV, TOKEN_ENV, GitCredentials, fetch_script, git_argv
from oduflow_iac.cascade import ResolvedAddon
from oduflow_iac.config.values import addon_repo_name_problem, refname_problem, repo_url_problem

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def git_accepts_branch(name: str, cwd: Path) -> bool:
    """`git check-ref-format --branch NAME` outside any repository (no `@{-1}` expansion)."""
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(cwd.parent), "GIT_DIR": str(cwd / "no-repo")}
    out = subprocess.run([GIT or "git", "check-ref-format", "--branch", name], cwd=cwd, env=env, capture_output=True)
    return out.returncode == 0


NAMES = [
    "main", "feature/login", "feature/ü", "release-1.0", "a.b", "@", "a@b", "HEAD", "head", "-x", "x-",
    "a..b", "a/.b", ".a", "a.", "a.lock", "a.lock/b", "a/b.lock", "a//b", "/a", "a/", "a b", "a~b", "a^b",
    "a:b", "a?b", "a*b", "a[b", "a\\b", "a@{b", "a{b", "a}b", "a\x7fb", "a\tb", "--upload-pack=touch x",
    "refs/heads/x", "x.lock.y", "a/./b", "a/../b", "...", "_", "+", "a%b", "a'b", 'a"b', "a;b", "a|b", "$(x)",
    "`x`", "a#b", "a!b", "a,b", "a=b", "@{-1}", "a@", "@a",
]  # fmt: skip


@needs_git
@pytest.mark.parametrize("name", NAMES)
def test_refname_rules_agree_with_git(name: str, tmp_path: Path) -> None:
    assert (refname_problem(name) is None) == git_accepts_branch(name, tmp_path), refname_problem(name)


@needs_git
@given(st.text(alphabet="ab./-@{}~^:?*[\\ lockHED_", min_size=1, max_size=12))
@settings(max_examples=150, deadline=None)
def test_refname_rules_agree_with_git_on_generated_names(name: str) -> None:
    here = Path(os.environ.get("TMPDIR", "/tmp"))
    assert (refname_problem(name) is None) == git_accepts_branch(name, here), (name, refname_problem(name))


@needs_git
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True))
@settings(max_examples=80, deadline=None)
def test_every_accepted_repository_name_is_a_valid_branch_for_git(name: str) -> None:
    if addon_repo_name_problem(name) is None:
        assert git_accepts_branch(name, Path(os.environ.get("TMPDIR", "/tmp")))


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/OCA/web.git",
        "https://git.example.com:8443/team-a/addons.git",
        "https://[2001:db8::1]/x.git",
        "ssh://git@github.com/acme/addons.git",
        "ssh://git.example.com:2222/acme/addons",
        "git@github.com:acme/addons.git",
        "github.com:acme/addons.git",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert repo_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file:///srv/git/addons.git", "must be an https:// URL or an ssh URL"),
        ("/srv/git/addons.git", "must be an https:// URL or an ssh URL"),
        ("./addons", "must be an https:// URL or an ssh URL"),
        ("../addons", "must be an https:// URL or an ssh URL"),
        ("addons", "must be an https:// URL or an ssh URL"),
        ("ext::sh -c touch% /tmp/pwned", "whitespace"),
        ("ext::sh%20-c", "`::` selects a remote helper"),
        ("http://github.com/OCA/web.git", "must be an https:// URL or an ssh URL"),
        ("git://github.com/OCA/web.git", "must be an https:// URL or an ssh URL"),
        ("-uhttps://x/y", "starts with `-`"),
        ("--upload-pack=touch /tmp/x", "starts with `-`"),
        ("ssh://-oProxyCommand=touch%20x/y", "host that is not a DNS name"),
        ("-oProxyCommand=x:y", "starts with `-`"),
        ("git@-oProxyCommand=x:y", "host that is not a DNS name"),
        ("host:-x", "path with characters"),
        ("https://github.com/a\nb", "control character"),
        ("https://github.com/", "names no repository path"),
        ("https://github.com/a/../b", "`.`/`..` segments"),
        ("https://github.com/a?x=1", "query or fragment"),
        ("https://github.com:x/a", "not a well-formed URL"),
    ],
)
def test_refused_urls(url: str, problem: str) -> None:
    found = repo_url_problem(url)
    assert found is not None and problem in found, found


@pytest.mark.parametrize(
    "url",
    [
        "https://ghp_Secret123@github.com/acme/private.git",
        "https://user:ghp_Secret123@github.com/acme/private.git",
        "https://oauth2:ghp_Secret123@gitlab.com/acme/private.git",
        "ssh://git:ghp_Secret123@github.com/acme/private.git",
        "git:ghp_Secret123@github.com:acme/private.git",
    ],
)
def test_credentials_in_a_url_are_refused_without_repeating_them(url: str) -> None:
    found = repo_url_problem(url)
    assert found is not None and "embeds credentials" in found
    assert "Secret123" not in found and "github" not in found


# --------------------------------------------------------------------------------------------
# The fetcher's script


def addon(name: str, url: str, branch: str, level: str = "project") -> ResolvedAddon:
    return ResolvedAddon(name, url, branch, level)  # type: ignore[arg-type]


def test_user_values_come_after_end_of_options() -> None:
    a = addon("acme", "--upload-pack=touch /x", "--upload-pack=touch /y")
    for update in (False, True):
        argv = git_argv(a, "/mnt/extra-addons/acme", update=update)
        cut = argv.index("--end-of-options")
        assert a.url in argv[cut:] and a.url not in argv[:cut]
        assert all(not arg.startswith("--upload-pack") for arg in argv[:cut])
        # clone carries the branch as the value of its own option, fetch after the separator.
        assert f"--branch={a.branch}" in argv[:cut] if not update else a.branch in argv[cut:]


def git_line(script: str) -> str:
    """The (last) line of a fetch script that runs git against a remote."""
    return [line for line in script.splitlines() if "protocol.allow=never" in line][-1]


def test_no_credential_value_in_the_script() -> None:
    script = fetch_script(
        [addon("acme", "https://git.example.com/acme.git", "main")], credentials=GitCredentials(True, True)
    )
    assert f"${TOKEN_ENV}" in script and f"${SSH_KEY_ENV}" in script
    assert "protocol.allow=never" in script and "protocol.https.allow=always" in script
    assert "protocol.file.allow" not in script and "protocol.ext.allow" not in script


def test_only_the_teams_own_repositories_get_its_credentials() -> None:
    creds = GitCredentials(token=True, ssh_key=True)
    platform_line = fetch_script(
        [addon("oca", "https://github.com/OCA/web.git", "17.0", "platform")], credentials=creds
    )
    own_line = fetch_script([addon("acme", "https://git.example.com/acme.git", "main")], credentials=creds)
    assert TOKEN_ENV not in git_line(platform_line) and "-i $key" not in platform_line
    assert TOKEN_ENV in git_line(own_line) and "-i $key" in own_line


def make_repo(path: Path, branch: str = "main", content: str = "v1") -> Path:
    """A bare repository with one commit on `branch`, built with the real git."""
    work = path.with_name(path.name + "-work")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path.parent)}  # fmt: skip
    if not work.exists():
        subprocess.run([GIT or "git", "init", "-q", "-b", branch, str(work)], check=True, env=env)
    (work / "__manifest__.py").write_text(f"{{'name': '{content}'}}\n")
    subprocess.run([GIT or "git", "-C", str(work), "add", "."], check=True, env=env)
    subprocess.run([GIT or "git", "-C", str(work), "commit", "-qm", content], check=True, env=env)
    if not path.exists():
        subprocess.run([GIT or "git", "clone", "-q", "--bare", str(work), str(path)], check=True, env=env)
    else:
        subprocess.run([GIT or "git", "-C", str(work), "push", "-q", str(path), branch], check=True, env=env)
    return path


def run_script(
    script: str, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **(extra_env or {})}
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)


@needs_git
def test_the_script_clones_then_updates_with_real_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "acme.git")
    root = tmp_path / "addons"
    root.mkdir()
    script = fetch_script([addon("acme", f"file://{repo}", "main")], str(root), protocols=("file",))
    first = run_script(script, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "v1" in (root / "acme" / "__manifest__.py").read_text()
    make_repo(repo, content="v2")
    second = run_script(script, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "v2" in (root / "acme" / "__manifest__.py").read_text()


@needs_git
def test_the_platform_protocols_refuse_a_local_repository(tmp_path: Path) -> None:
    """With the script's real protocol list (https, ssh), even a file:// URL that slipped past the
    loader is refused by git itself."""
    repo = make_repo(tmp_path / "acme.git")
    (tmp_path / "addons").mkdir()
    out = run_script(fetch_script([addon("acme", f"file://{repo}", "main")], str(tmp_path / "addons")), tmp_path)
    assert out.returncode != 0 and "transport 'file' not allowed" in out.stderr


@needs_git
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("branch", "--upload-pack=touch {marker}"),
        ("branch", "main; touch {marker}"),
        ("branch", "$(touch {marker})"),
        ("branch", "main\ntouch {marker}"),
        ("url", "--upload-pack=touch {marker}"),
        ("url", "ext::sh -c touch% {marker}"),
        ("url", "$(touch {marker})"),
        ("url", "`touch {marker}`"),
        ("name", "x; touch {marker}"),
        ("name", "$(touch {marker})"),
    ],
)
def test_injections_stay_inert_with_real_git(tmp_path: Path, field: str, value: str) -> None:
    """Values the loader refuses, handed to the script directly: none of them runs a command, on the
    clone path nor on the update path."""
    repo = make_repo(tmp_path / "acme.git")
    root = tmp_path / "addons"
    root.mkdir()
    marker = tmp_path / "pwned"
    fields = {"name": "acme", "url": f"file://{repo}", "branch": "main"}
    fields[field] = value.format(marker=marker)
    hostile = addon(fields["name"], fields["url"], fields["branch"])
    protocols = ("file",)  # the local repository's transport, and nothing else
    run_script(fetch_script([hostile], str(root), protocols=protocols), tmp_path)
    assert not marker.exists()
    # The update path: a clone is already there.
    good = fetch_script([addon(fields["name"], f"file://{repo}", "main")], str(root), protocols=("file",))
    run_script(good, tmp_path)
    run_script(fetch_script([hostile], str(root), protocols=protocols), tmp_path)
    assert not marker.exists()


@needs_git
def test_the_deploy_key_reaches_ssh_as_a_file_that_is_removed(tmp_path: Path) -> None:
    """A stand-in `ssh` records how git calls it: the key arrives as `-i FILE` (mode 600, the
    secret's content), never as an argument or in the script; the file is gone afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "ssh.log"
    fake = bin_dir / "ssh"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {log}\n'
        'while [ $# -gt 0 ]; do if [ "$1" = -i ]; then '
        f'stat -c %a "$2" >> {log}; cat "$2" >> {log}; fi; shift; done\n'
        "exit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "addons").mkdir()
    secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecretkey\n-----END OPENSSH PRIVATE KEY-----"
    script = fetch_script(
        [addon("acme", "ssh://git@git.example.com/acme/addons.git", "main")],
        str(tmp_path / "addons"),
        credentials=GitCredentials(ssh_key=True),
    )
    assert "AAAAsecretkey" not in script
    out = run_script(script, tmp_path, {"PATH": f"{bin_dir}:{os.environ['PATH']}", SSH_KEY_ENV: secret})
    assert out.returncode != 0
    recorded = log.read_text()
    args, mode, *key = recorded.splitlines()
    assert "-i /" in args and "IdentitiesOnly=yes" in args and "git@git.example.com" in args
    assert "AAAAsecretkey" not in args
    assert mode == "600" and "AAAAsecretkey" in "\n".join(key)
    key_file = args.split("-i ", 1)[1].split()[0]
    assert not Path(key_file).exists()


@needs_git
def test_the_token_reaches_git_only_through_the_credential_helper(tmp_path: Path) -> None:
    """git asks the helper the script configures: it answers with the token from the environment
    (the value is nowhere in the script or the command line)."""
    script = fetch_script(
        [addon("acme", "https://git.example.com/acme.git", "main")],
        credentials=GitCredentials(token=True, username="x-access-token"),
    )
    assert "tok-123" not in script
    words = shlex.split(git_line(script))
    helper_arg = next(w for w in words if w.startswith("credential.helper=!"))
    helper = helper_arg.removeprefix("credential.helper=")
    out = subprocess.run(
        [GIT or "git", "-c", "credential.helper=", "-c", f"credential.helper={helper}", "credential", "fill"],
        input="protocol=https\nhost=git.example.com\npath=acme.git\n\n",
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), TOKEN_ENV: "tok-123", "GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "username=x-access-token" in out.stdout and "password=tok-123" in out.stdout
