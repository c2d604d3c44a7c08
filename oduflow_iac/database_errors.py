"""Plain-language explanations of the PostgreSQL errors an operator meets when databases are created.

An environment database is created with `CREATE DATABASE ... TEMPLATE <template database>`, which
PostgreSQL refuses while any other session is connected to the template (it copies the template's
files and must know nobody is changing them). The provider reports that as a bare server message;
`explain_clone_failure` turns it, and the other ways a clone fails, into what happened and what to do.
"""

from __future__ import annotations

import re

# PostgreSQL's messages (src/backend/commands/dbcommands.c), as they reach us through the provider
# ("Error creating database "x": pq: <message>") or a driver (message, then a DETAIL line).
_IN_USE = re.compile(r'source database "(?P<template>(?:[^"]|"")+)" is being accessed by other users')
_SESSIONS = re.compile(r"There (?:is|are) (?P<count>\d+) other sessions? using the database")
_PREPARED = re.compile(r"There (?:is|are) (?P<count>\d+) prepared transactions? using the database")
_TARGET = re.compile(r'(?:creating|create) database "(?P<target>(?:[^"]|"")+)"', re.IGNORECASE)
_MISSING = re.compile(r'template database "(?P<template>(?:[^"]|"")+)" does not exist')
_NO_COPY = re.compile(r'permission denied to copy database "(?P<template>(?:[^"]|"")+)"')
_EXISTS = re.compile(r'database "(?P<target>(?:[^"]|"")+)" already exists')
_LOCALE = re.compile(
    r"new (?P<what>collation|LC_CTYPE|encoding) \((?P<new>[^)]*)\) is incompatible with the "
    r"(?:collation|LC_CTYPE|encoding) of the template database \((?P<old>[^)]*)\)"
)


def _unquote(name: str) -> str:
    return name.replace('""', '"')


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def explain_clone_failure(exc_message: str) -> str | None:
    """What went wrong when creating a database from a template, and how to fix it; None when
    `exc_message` is not a template-clone failure this function knows."""
    target_match = _TARGET.search(exc_message)
    target = f' "{_unquote(target_match.group("target"))}"' if target_match else ""

    in_use = _IN_USE.search(exc_message)
    if in_use:
        template = _unquote(in_use.group("template"))
        sessions = _SESSIONS.search(exc_message)
        prepared = _PREPARED.search(exc_message)
        if sessions:
            n = int(sessions.group("count"))
            who = f"{n} other session{'s are' if n != 1 else ' is'} connected to it"
        elif prepared:
            n = int(prepared.group("count"))
            who = f"{n} prepared transaction{'s hold' if n != 1 else ' holds'} it"
        else:
            who = "another session is connected to it"
        lit = _literal(template)
        return (
            f'Cannot create the environment database{target} from template database "{template}": '
            f"{who}. PostgreSQL copies a template only while nobody else is connected to it.\n"
            "What to do:\n"
            f"  1. See who is connected: SELECT pid, usename, application_name, client_addr, state "
            f"FROM pg_stat_activity WHERE datname = {lit};\n"
            "     (usually an Odoo container, a shell or a database tool still using the template).\n"
            "  2. Close those sessions (stop that container or client), or end them as a superuser:\n"
            f"     SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = {lit} AND pid <> pg_backend_pid();\n"
            "  3. Run the deployment again: nothing was created, so it simply retries."
        )

    missing = _MISSING.search(exc_message)
    if missing:
        template = _unquote(missing.group("template"))
        return (
            f'Cannot create the environment database{target}: its template database "{template}" '
            "does not exist on the server. Deploy the template first (it is created by the same "
            "deployment when it is defined in the team's [templates]), or fix the environment's "
            "`template` key, then run the deployment again."
        )

    no_copy = _NO_COPY.search(exc_message)
    if no_copy:
        template = _unquote(no_copy.group("template"))
        return (
            f"Cannot create the environment database{target}: the connecting role may not copy "
            f"\"{template}\". Only a superuser or the template's owner (or a member of it: the team's "
            "provisioning role) may clone a database not marked IS_TEMPLATE, and team templates are not "
            "marked so that no other team can copy them: deploy the environment with its own team's "
            "provisioning role or the platform's superuser."
        )

    locale = _LOCALE.search(exc_message)
    if locale:
        return (
            f"Cannot create the environment database{target}: its {locale.group('what')} "
            f"({locale.group('new')}) differs from the template's ({locale.group('old')}). A copy "
            "keeps the template's encoding and locale: create both with the same encoding, "
            "LC_COLLATE and LC_CTYPE."
        )

    exists = _EXISTS.search(exc_message)
    if exists:
        name = _unquote(exists.group("target"))
        return (
            f'Cannot create database "{name}": a database of that name already exists. Either it '
            "was made outside the deployment (import it, or rename or drop it), or the deployment "
            "is replacing it and tried to create the new one before dropping the old one (database "
            "resources must be replaced delete-before-replace, as names are unique on the server)."
        )
    return None
