"""Pure checks of single values that end up in git commands, shell scripts, labels and odoo.conf.

Each returns None when the value is fine, else one line saying why. None of them repeats a URL:
a URL may carry a credential, and a message ends up in terminals, CI logs and pull-request comments.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from oduflow_iac.odoo_conf import control_character

__all__ = [
    "addon_repo_name_problem",
    "control_character",
    "module_name_problem",
    "refname_problem",
    "repo_url_problem",
    "template_name_problem",
]

# --------------------------------------------------------------------------------------------
# git check-ref-format --branch


# Bytes git refuses anywhere in a ref name (refs.c, `refname_disposition`: ASCII controls, DEL,
# space, `~ ^ : ? * [ \`). `*` is allowed only in refspec patterns, never in a branch name.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def refname_problem(name: str) -> str | None:
    """Why `git check-ref-format --branch NAME` refuses `name` (outside a repository, where `@{-1}`
    is not expanded), or None. A transcription of git's rules (git/git refs.c `check_refname_format`
    and `check_refname_component`, object-name.c `strbuf_check_branch_ref`, v2.39): the name is
    checked as `refs/heads/NAME`, and a leading `-` or the name `HEAD` is refused for a branch."""
    if name.startswith("-"):
        return "starts with `-` (it would be read as a command-line option)"
    if name == "HEAD":
        return "is `HEAD`"
    bad = _REF_FORBIDDEN.search(name)
    if bad:
        char = bad.group()
        shown = f"U+{ord(char):04X}" if char <= " " or char == "\x7f" else f"`{char}`"
        return f"contains {shown}, which git refuses in a ref name"
    if ".." in name:
        return "contains `..`"
    if "@{" in name:
        return "contains `@{`"
    if name.endswith("."):
        return "ends with `.`"
    for component in name.split("/"):
        if component == "":
            return "has an empty path component (leading, trailing or double `/`)"
        if component.startswith("."):
            return "has a path component starting with `.`"
        if component.endswith(".lock"):
            return "has a path component ending with `.lock`"
    return None


# --------------------------------------------------------------------------------------------
# Names that become paths, command arguments and database names


# A directory under the addons root and an `addons_path` entry: no `/`, no `,` (the list separator),
# no leading `-` or `.`. Every such name is also a valid ref component.
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# An Odoo module is a Python package directory: `-i` takes them comma-separated.
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_]{1,100}$")
# `/` is allowed (and slugged to `-` in names), as in a branch.
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]|/(?!/)){0,62}$")


def addon_repo_name_problem(name: str) -> str | None:
    """A repository name is a directory, an `addons_path` entry and a name git accepts as a ref."""
    if not _REPO_NAME.match(name):
        return (
            f"repository name {name!r} must be letters, digits, `.`, `_` and `-`, start with a letter or "
            "digit, at most 100 characters (it is a directory and an addons_path entry)"
        )
    problem = refname_problem(name)
    return f"repository name {name!r} {problem} (git check-ref-format)" if problem else None


def module_name_problem(name: str) -> str | None:
    if not _MODULE_NAME.match(name):
        return f"module name {name!r} must be letters, digits and `_` (an Odoo module directory)"
    return None


def template_name_problem(name: str) -> str | None:
    if not _TEMPLATE_NAME.match(name):
        return (
            f"template name {name!r} must be letters, digits, `_`, `.`, `-` and `/`, start with a letter or digit, "
            "at most 63 characters"
        )
    return None


# --------------------------------------------------------------------------------------------
# Repository URLs

_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# `<transport>::<address>` runs the remote helper `git-remote-<transport>` (git transport.c).
_HELPER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+.-]*::")
_SSH_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PATH = re.compile(r"^[A-Za-z0-9._~/%+=@,-]+$")
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>.*)$")
_CREDENTIALS = (
    "embeds credentials; give the team a `git_token` (https) or `git_ssh_key` (ssh) secret instead "
    "(the URL is not repeated here)"
)
_ALLOWED = "must be an https:// URL or an ssh URL (ssh://[user@]host/path or user@host:path)"


def _host_problem(host: str) -> str | None:
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "has an invalid IPv6 host"
        return None
    if not _HOST.match(host):
        return "has a host that is not a DNS name or an address"
    return None


def _path_problem(path: str) -> str | None:
    stripped = path.lstrip("/")
    if not stripped:
        return "names no repository path"
    if path.startswith("-") or not _PATH.match(path) or any(seg in (".", "..") for seg in path.split("/")):
        return "has a path with characters outside letters, digits and `._~/%+=@,-`, or `.`/`..` segments"
    return None


def repo_url_problem(url: str) -> str | None:
    """Why `url` may not be an addon repository's URL, or None. https and ssh only (no `file:`,
    `ext::`, local paths, `git://` or plain http: they run commands, read the host's disk or travel
    in clear); no credentials in it (they would land in the plan, labels and the container
    command); nothing git could read as an option. The message never quotes the URL."""
    if url.startswith("-"):
        return "starts with `-` (git would read it as an option)"
    if control_character(url) or any(c.isspace() for c in url):
        return "contains whitespace or a control character"
    if _HELPER.match(url):
        return _ALLOWED + " (`::` selects a remote helper)"
    if "://" in url:
        try:
            parts = urlsplit(url)
            port = parts.port  # raises on a port that is not a number
        except ValueError:
            return "is not a well-formed URL"
        scheme = parts.scheme.lower()
        if scheme not in ("https", "ssh"):
            return _ALLOWED
        if "@" in parts.netloc:
            userinfo = parts.netloc.rpartition("@")[0]
            if scheme == "https" or ":" in userinfo or not _SSH_USER.match(userinfo):
                return _CREDENTIALS
        if parts.query or parts.fragment or "?" in url or "#" in url:
            return "has a query or fragment"
        host_in_netloc = parts.netloc.rpartition("@")[2]
        host = host_in_netloc.rsplit(":", 1)[0] if port is not None else host_in_netloc
        return _host_problem(host) or _path_problem(parts.path)
    if ":" in url.split("@", 1)[0] and "@" in url:
        return _CREDENTIALS  # `user:password@host:path`
    match = _SCP_LIKE.match(url)
    if match is None or url.startswith("/") or url.startswith("."):
        return _ALLOWED
    user, host, path = match.group("user"), match.group("host"), match.group("path")
    if user is not None and (":" in user or not _SSH_USER.match(user)):
        return _CREDENTIALS
    return _host_problem(host) or _path_problem(path)
