"""Apply the `postgresql:*` resources of a PlannedRun to a real server, with the SQL the provider issues.

pulumi-postgresql wraps the Terraform provider cyrilgdn/terraform-provider-postgresql; each class
below mirrors one resource of it (docs/postgresql-provider.md maps every statement to the upstream
function it comes from). `Applier` plays the part of the engine around them, as `pulumi up --refresh`:

- resources are visited in dependency order (topological over `dependencies`, ties in registration
  order); deletions run in reverse order;
- every resource already in the state is read back from the server first (the provider's Read) and
  diffed against the desired inputs: a difference in a force-new property replaces the resource, any
  other difference updates it in place, no difference does nothing;
- resources of the state that the plan no longer has are deleted.

The state (what was applied, by URN) lives in the `Applier`, as Pulumi's state file would: applying
the same plan twice through the same `Applier` must issue no statement at all the second time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from oduflow_iac.database_errors import explain_clone_failure
from oduflow_iac.offline import harness

ROLE_TYPE = "postgresql:index/role:Role"
DATABASE_TYPE = "postgresql:index/database:Database"
GRANT_TYPE = "postgresql:index/grant:Grant"
PROVIDER_TYPE = "pulumi:providers:postgresql"
SQL_TYPES = (ROLE_TYPE, DATABASE_TYPE, GRANT_TYPE)

REDACTED = "[secret]"


class PlanError(Exception):
    """The plan declares something this helper (or the provider) cannot apply."""


class CreateDatabaseError(Exception):
    """CREATE DATABASE failed in a way `explain_clone_failure` knows; `explanation` says why and
    what to do (the exception's text), `message` is the server's own message."""

    def __init__(self, database: str, message: str, explanation: str | None) -> None:
        super().__init__(explanation or message)
        self.database = database
        self.message = message
        self.explanation = explanation


# ---------------------------------------------------------------------------------------------
# Quoting exactly as the provider does (lib/pq's QuoteIdentifier, the provider's pqQuoteLiteral).


def quote_ident(name: str) -> str:
    """pq.QuoteIdentifier: double quotes, embedded quotes doubled, cut at a NUL."""
    name = name.split("\x00", 1)[0]
    return '"' + name.replace('"', '""') + '"'


def quote_literal_body(value: str) -> str:
    """The provider's pqQuoteLiteral: backslashes AND quotes doubled, then put inside plain '...'.

    With standard_conforming_strings on (the default) a doubled backslash stays doubled, so a
    password containing `\\` is stored with two: reproduced here on purpose."""
    return value.replace("\\", "\\\\").replace("'", "''")


def _bool_sql(value: bool) -> str:
    return "true" if value else "false"  # Go's fmt of a bool


# ---------------------------------------------------------------------------------------------
# The desired state of each resource, from the plan's engine inputs.


def _plain_inputs(resource: harness.PlannedResource) -> dict[str, Any]:
    inputs = harness.reveal(resource.inputs)
    if _has_unknown(inputs):
        raise PlanError(f"{resource.urn}: inputs still unknown in the plan, cannot apply: {sorted(inputs)}")
    return {k: v for k, v in inputs.items() if not k.startswith("__")}


def _has_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return value == harness.UNKNOWN


def _check_keys(urn: str, inputs: dict[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(inputs) - set(allowed))
    if unknown:
        raise PlanError(f"{urn}: inputs this helper does not implement: {unknown}")


@dataclass(frozen=True)
class RoleSpec:
    name: str
    password: str | None = None
    login: bool = False
    connection_limit: int = -1
    superuser: bool = False
    create_database: bool = False
    create_role: bool = False
    inherit: bool = True
    replication: bool = False
    bypass_rls: bool = False
    valid_until: str = "infinity"
    encrypted_password: bool = True
    roles: frozenset[str] = frozenset()
    skip_drop_role: bool = False
    skip_reassign_owned: bool = False
    statement_timeout: int = 0
    idle_in_transaction_session_timeout: int = 0

    KEYS = (
        "name",
        "password",
        "login",
        "connectionLimit",
        "superuser",
        "createDatabase",
        "createRole",
        "inherit",
        "replication",
        "bypassRowLevelSecurity",
        "validUntil",
        "encryptedPassword",
        "roles",
        "skipDropRole",
        "skipReassignOwned",
        "statementTimeout",
        "idleInTransactionSessionTimeout",
    )

    @classmethod
    def from_inputs(cls, urn: str, inputs: dict[str, Any]) -> RoleSpec:
        _check_keys(urn, inputs, cls.KEYS)
        return cls(
            name=inputs["name"],
            password=inputs.get("password"),
            login=bool(inputs.get("login", False)),
            connection_limit=int(inputs.get("connectionLimit", -1)),
            superuser=bool(inputs.get("superuser", False)),
            create_database=bool(inputs.get("createDatabase", False)),
            create_role=bool(inputs.get("createRole", False)),
            inherit=bool(inputs.get("inherit", True)),
            replication=bool(inputs.get("replication", False)),
            bypass_rls=bool(inputs.get("bypassRowLevelSecurity", False)),
            valid_until=str(inputs.get("validUntil", "infinity")),
            encrypted_password=bool(inputs.get("encryptedPassword", True)),
            roles=frozenset(inputs.get("roles", [])),
            skip_drop_role=bool(inputs.get("skipDropRole", False)),
            skip_reassign_owned=bool(inputs.get("skipReassignOwned", False)),
            statement_timeout=int(inputs.get("statementTimeout", 0)),
            idle_in_transaction_session_timeout=int(inputs.get("idleInTransactionSessionTimeout", 0)),
        )


@dataclass(frozen=True)
class DatabaseSpec:
    name: str
    owner: str | None = None
    template: str | None = None
    encoding: str | None = None
    lc_collate: str | None = None
    lc_ctype: str | None = None
    tablespace: str | None = None
    connection_limit: int = -1
    allow_connections: bool = True
    is_template: bool | None = None
    alter_object_ownership: bool = False

    KEYS = (
        "name",
        "owner",
        "template",
        "encoding",
        "lcCollate",
        "lcCtype",
        "tablespaceName",
        "connectionLimit",
        "allowConnections",
        "isTemplate",
        "alterObjectOwnership",
    )

    @classmethod
    def from_inputs(cls, urn: str, inputs: dict[str, Any]) -> DatabaseSpec:
        _check_keys(urn, inputs, cls.KEYS)
        is_template = inputs.get("isTemplate")
        return cls(
            name=inputs["name"],
            owner=inputs.get("owner") or None,
            template=inputs.get("template") or None,
            encoding=inputs.get("encoding") or None,
            lc_collate=inputs.get("lcCollate") or None,
            lc_ctype=inputs.get("lcCtype") or None,
            tablespace=inputs.get("tablespaceName") or None,
            connection_limit=int(inputs.get("connectionLimit", -1)),
            allow_connections=bool(inputs.get("allowConnections", True)),
            is_template=None if is_template is None else bool(is_template),
            alter_object_ownership=bool(inputs.get("alterObjectOwnership", False)),
        )


@dataclass(frozen=True)
class GrantSpec:
    database: str
    role: str
    object_type: str
    privileges: frozenset[str]
    with_grant_option: bool = False

    KEYS = ("database", "role", "objectType", "privileges", "schema", "objects", "columns", "withGrantOption")

    @classmethod
    def from_inputs(cls, urn: str, inputs: dict[str, Any]) -> GrantSpec:
        _check_keys(urn, inputs, cls.KEYS)
        if inputs.get("objectType") != "database":
            kind = inputs.get("objectType")
            raise PlanError(f"{urn}: only objectType 'database' is implemented, not {kind!r}")
        if inputs.get("schema") or inputs.get("objects") or inputs.get("columns"):
            raise PlanError(f"{urn}: schema/objects/columns make no sense for objectType 'database'")
        return cls(
            database=inputs["database"],
            role=inputs["role"],
            object_type="database",
            privileges=frozenset(p.upper() for p in inputs.get("privileges", [])),
            with_grant_option=bool(inputs.get("withGrantOption", False)),
        )


Spec = RoleSpec | DatabaseSpec | GrantSpec


def spec_of(resource: harness.PlannedResource) -> Spec:
    inputs = _plain_inputs(resource)
    if resource.type == ROLE_TYPE:
        return RoleSpec.from_inputs(resource.urn, inputs)
    if resource.type == DATABASE_TYPE:
        return DatabaseSpec.from_inputs(resource.urn, inputs)
    if resource.type == GRANT_TYPE:
        return GrantSpec.from_inputs(resource.urn, inputs)
    raise PlanError(f"{resource.urn}: resource type {resource.type} is not implemented")


# ---------------------------------------------------------------------------------------------
# Ordering


def dependency_order(resources: Sequence[harness.PlannedResource]) -> list[harness.PlannedResource]:
    """Topological order over `dependencies`, `property_dependencies` and `parent` (Kahn's algorithm,
    ties broken by registration order). Raises PlanError on a cycle."""
    index = {r.urn: i for i, r in enumerate(resources)}
    deps: dict[str, set[str]] = {}
    for r in resources:
        wanted = set(r.dependencies)
        for urns in r.property_dependencies.values():
            wanted.update(urns)
        if r.parent:
            wanted.add(r.parent)
        deps[r.urn] = {d for d in wanted if d in index and d != r.urn}
    dependents: dict[str, list[str]] = {r.urn: [] for r in resources}
    for urn, ds in deps.items():
        for d in ds:
            dependents[d].append(urn)
    remaining = {urn: len(ds) for urn, ds in deps.items()}
    ready = [(index[u], u) for u, n in remaining.items() if n == 0]
    heapq.heapify(ready)
    ordered: list[harness.PlannedResource] = []
    while ready:
        _, urn = heapq.heappop(ready)
        ordered.append(resources[index[urn]])
        for nxt in dependents[urn]:
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                heapq.heappush(ready, (index[nxt], nxt))
    if len(ordered) != len(resources):
        stuck = sorted(u for u, n in remaining.items() if n > 0)
        raise PlanError(f"dependency cycle among: {stuck}")
    return ordered


Plan = harness.PlannedRun | Sequence[harness.PlannedResource]


def sql_resources(run: Plan) -> list[harness.PlannedResource]:
    """The postgresql:* resources of a plan (the provider resource excluded), in dependency order."""
    resources = list(run.resources if isinstance(run, harness.PlannedRun) else run)
    ordered = dependency_order(resources)
    for r in ordered:
        if r.type.startswith("postgresql:") and r.type not in SQL_TYPES:
            raise PlanError(f"{r.urn}: resource type {r.type} is not implemented")
    return [r for r in ordered if r.type in SQL_TYPES]


# ---------------------------------------------------------------------------------------------
# The server side


@dataclass
class Statement:
    database: str
    sql: str  # as logged: secrets replaced by REDACTED


@dataclass
class Step:
    urn: str
    op: str  # create | update | replace | delete
    statements: list[Statement] = field(default_factory=list)


@dataclass
class ApplyResult:
    steps: list[Step]

    @property
    def changed(self) -> bool:
        return any(s.statements for s in self.steps)

    def urns(self, op: str) -> list[str]:
        return [s.urn for s in self.steps if s.op == op]

    @property
    def statements(self) -> list[str]:
        return [st.sql for s in self.steps for st in s.statements]


# Properties whose change replaces the resource (ForceNew in the provider's schema), by type, with
# their engine (camelCase) names.
FORCE_NEW = {
    ROLE_TYPE: frozenset(),
    DATABASE_TYPE: frozenset({"template", "encoding", "lcCollate", "lcCtype"}),
    GRANT_TYPE: frozenset({"database", "role", "schema", "objectType", "objects", "columns", "withGrantOption"}),
}


@dataclass
class StateEntry:
    urn: str
    type: str
    spec: Spec
    inputs: dict[str, Any]
    protect: bool
    property_dependencies: dict[str, list[str]]
    ignore_changes: frozenset[str]
    replace_with: tuple[str, ...]
    delete_before_replace: bool

    @classmethod
    def of(cls, resource: harness.PlannedResource) -> StateEntry:
        """`delete_before_replace`: the resource option, or what the bridge decides by itself: a
        resource whose autonamed `name` the program sets explicitly (Role, Database) is always
        replaced delete-before-replace (pulumi-terraform-bridge, nameRequiresDeleteBeforeReplace)."""
        inputs = _plain_inputs(resource)
        named = resource.type in (ROLE_TYPE, DATABASE_TYPE) and "name" in inputs
        return cls(
            urn=resource.urn,
            type=resource.type,
            spec=spec_of(resource),
            inputs=inputs,
            protect=resource.protect,
            property_dependencies={k: list(v) for k, v in resource.property_dependencies.items()},
            ignore_changes=frozenset(getattr(resource, "ignore_changes", None) or ()),
            replace_with=tuple(getattr(resource, "replace_with", None) or ()),
            delete_before_replace=bool(getattr(resource, "delete_before_replace", False)) or named,
        )

    def force_new_change(self, old: StateEntry) -> list[str]:
        """Force-new properties whose desired value differs from the state's (ignore_changes honoured)."""
        keys = FORCE_NEW[self.type] - self.ignore_changes
        return sorted(k for k in keys if _normal(self.inputs.get(k)) != _normal(old.inputs.get(k)))


def _normal(value: Any) -> Any:
    return sorted(value) if isinstance(value, list) else value


class ProtectedError(PlanError):
    """The plan would delete or replace a protected resource; Pulumi refuses the whole update."""


class Server:
    """Connections as the provider's superuser; every mutating statement is recorded."""

    def __init__(self, admin_dsn: str, maintenance_db: str = "postgres") -> None:
        self.admin_dsn = admin_dsn
        self.maintenance_db = maintenance_db
        self.log: list[Statement] = []
        with self.connect() as conn:
            row = conn.execute("SELECT current_user, current_setting('server_version_num')::int").fetchone()
            assert row is not None
            self.current_user: str = row[0]
            self.version_num: int = row[1]

    def connect(self, database: str | None = None, autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_dsn, dbname=database or self.maintenance_db, autocommit=autocommit)

    def execute(self, conn: psycopg.Connection[Any], sql: str, shown: str | None = None) -> None:
        database = conn.info.dbname
        conn.execute(sql.encode())  # bytes: sent as is, no client-side placeholder handling
        self.log.append(Statement(database, shown if shown is not None else sql))

    def query(self, sql: str, params: Sequence[Any] = (), database: str | None = None) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn:
            return conn.execute(sql, params).fetchall()


# -- Role (resource_postgresql_role.go) ---------------------------------------------------------


def role_create(server: Server, spec: RoleSpec) -> None:
    """resourcePostgreSQLRoleCreate: one CREATE ROLE ... WITH <options> in a transaction, then the
    role memberships and search_path."""
    opts: list[str] = []
    shown: list[str] = []
    if spec.password:
        if spec.password.upper() == "NULL":
            opts.append("PASSWORD NULL")
            shown.append("PASSWORD NULL")
        else:
            enc = "ENCRYPTED" if spec.encrypted_password else "UNENCRYPTED"
            opts += [enc, f"PASSWORD '{quote_literal_body(spec.password)}'"]
            shown += [enc, f"PASSWORD '{REDACTED}'"]
    valid = "infinity" if spec.valid_until.lower() in ("", "infinity") else spec.valid_until
    tail = [f"VALID UNTIL '{quote_literal_body(valid)}'", f"CONNECTION LIMIT {spec.connection_limit}"]
    for value, on, off in (
        (spec.superuser, "SUPERUSER", "NOSUPERUSER"),
        (spec.create_database, "CREATEDB", "NOCREATEDB"),
        (spec.create_role, "CREATEROLE", "NOCREATEROLE"),
        (spec.inherit, "INHERIT", "NOINHERIT"),
        (spec.login, "LOGIN", "NOLOGIN"),
        (spec.bypass_rls, "BYPASSRLS", "NOBYPASSRLS"),
        (spec.replication, "REPLICATION", "NOREPLICATION"),
    ):
        tail.append(on if value else off)
    head = f"CREATE ROLE {quote_ident(spec.name)} WITH "
    with server.connect(autocommit=False) as conn, conn.transaction():
        server.execute(conn, head + " ".join(opts + tail), head + " ".join(shown + tail))
        for granted in sorted(spec.roles):
            server.execute(conn, f"GRANT {quote_ident(granted)} TO {quote_ident(spec.name)}")
        server.execute(conn, f"ALTER ROLE {quote_ident(spec.name)} SET search_path TO DEFAULT")
        # setStatementTimeout, setIdleInTransactionSessionTimeout: only when set (HasChange on create)
        for key, value in _role_timeouts(spec).items():
            if value:
                server.execute(conn, f"ALTER ROLE {quote_ident(spec.name)} SET {key} TO {value}")


ROLE_TIMEOUTS = ("statement_timeout", "idle_in_transaction_session_timeout")


def _role_timeouts(spec: RoleSpec) -> dict[str, int]:
    return {key: getattr(spec, key) for key in ROLE_TIMEOUTS}


@dataclass(frozen=True)
class RoleState:
    login: bool
    connection_limit: int
    superuser: bool
    create_database: bool
    create_role: bool
    inherit: bool
    replication: bool
    bypass_rls: bool
    roles: frozenset[str]
    statement_timeout: int = 0
    idle_in_transaction_session_timeout: int = 0


def _read_timeout(config: Sequence[str], key: str) -> int:
    """readStatementTimeout / readIdleInTransactionSessionTimeout: the `key=` entry of rolconfig."""
    for entry in config:
        if entry.startswith(f"{key}="):
            return int(entry[len(key) + 1 :].split(", ")[0])
    return 0


def role_read(server: Server, name: str) -> RoleState | None:
    """resourcePostgreSQLRoleReadImpl. The password is not compared: for a SCRAM verifier the
    provider keeps the password of its state (it cannot check it), so a password only changes when
    the desired password differs from the state's."""
    rows = server.query(
        "SELECT rolcanlogin, rolconnlimit, rolsuper, rolcreatedb, rolcreaterole, rolinherit,"
        " rolreplication, rolbypassrls,"
        " ARRAY(SELECT pg_get_userbyid(roleid) FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid),"
        " rolconfig"
        " FROM pg_catalog.pg_roles r WHERE rolname = %s",
        (name,),
    )
    if not rows:
        return None
    r = rows[0]
    config = list(r[9] or [])
    return RoleState(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], frozenset(r[8]),
        _read_timeout(config, "statement_timeout"), _read_timeout(config, "idle_in_transaction_session_timeout"),
    )  # fmt: skip


def role_drift(spec: RoleSpec, live: RoleState) -> list[str]:
    want = RoleState(
        spec.login,
        spec.connection_limit,
        spec.superuser,
        spec.create_database,
        spec.create_role,
        spec.inherit,
        spec.replication,
        spec.bypass_rls,
        spec.roles,
        spec.statement_timeout,
        spec.idle_in_transaction_session_timeout,
    )
    return [f for f in RoleState.__dataclass_fields__ if getattr(want, f) != getattr(live, f)]


def role_update(server: Server, old: RoleSpec | None, spec: RoleSpec, drift: Sequence[str]) -> None:
    """resourcePostgreSQLRoleUpdate: one ALTER ROLE per changed attribute, in a transaction."""
    name = quote_ident(spec.name)
    with server.connect(autocommit=False) as conn, conn.transaction():
        if old is None or old.password != spec.password:
            server.execute(
                conn,
                f"ALTER ROLE {name} PASSWORD '{quote_literal_body(spec.password or '')}'",
                f"ALTER ROLE {name} PASSWORD '{REDACTED}'",
            )
        flags = {
            "bypass_rls": ("BYPASSRLS", "NOBYPASSRLS", spec.bypass_rls),
            "create_database": ("CREATEDB", "NOCREATEDB", spec.create_database),
            "create_role": ("CREATEROLE", "NOCREATEROLE", spec.create_role),
            "inherit": ("INHERIT", "NOINHERIT", spec.inherit),
            "login": ("LOGIN", "NOLOGIN", spec.login),
            "replication": ("REPLICATION", "NOREPLICATION", spec.replication),
            "superuser": ("SUPERUSER", "NOSUPERUSER", spec.superuser),
        }
        if "connection_limit" in drift:
            server.execute(conn, f"ALTER ROLE {name} CONNECTION LIMIT {spec.connection_limit}")
        for key, (on, off, value) in flags.items():
            if key in drift:
                server.execute(conn, f"ALTER ROLE {name} WITH {on if value else off}")
        if "roles" in drift:
            for granted in server.query(
                "SELECT pg_get_userbyid(roleid) FROM pg_auth_members m JOIN pg_roles r"
                " ON m.member = r.oid WHERE rolname = %s",
                (spec.name,),
            ):
                server.execute(conn, f"REVOKE {quote_ident(granted[0])} FROM {name}")
            for granted_name in sorted(spec.roles):
                server.execute(conn, f"GRANT {quote_ident(granted_name)} TO {name}")
        # setStatementTimeout, setIdleInTransactionSessionTimeout (after the memberships and search_path)
        for key, value in _role_timeouts(spec).items():
            if key in drift:
                sql = f"ALTER ROLE {name} SET {key} TO {value}" if value else f"ALTER ROLE {name} RESET {key}"
                server.execute(conn, sql)


def role_delete(server: Server, spec: RoleSpec) -> None:
    """resourcePostgreSQLRoleDelete: REASSIGN OWNED to the provider's user, DROP OWNED, DROP ROLE."""
    name = quote_ident(spec.name)
    with server.connect(autocommit=False) as conn, conn.transaction():
        if not spec.skip_reassign_owned:
            server.execute(conn, f"REASSIGN OWNED BY {name} TO {quote_ident(server.current_user)}")
            server.execute(conn, f"DROP OWNED BY {name}")
        if not spec.skip_drop_role:
            server.execute(conn, f"DROP ROLE {name}")


# -- Database (resource_postgresql_database.go) -------------------------------------------------


def database_create(server: Server, spec: DatabaseSpec) -> None:
    """createDatabase: a single CREATE DATABASE with every option spelled out."""
    b = f"CREATE DATABASE {quote_ident(spec.name)}"
    b += f" OWNER {quote_ident(spec.owner or server.current_user)}"
    if spec.template is None:
        b += " TEMPLATE template0"
    elif spec.template.upper() == "DEFAULT":
        b += " TEMPLATE DEFAULT"
    else:
        b += f" TEMPLATE {quote_ident(spec.template)}"
    if spec.encoding is None:
        b += " ENCODING 'UTF8'"
    elif spec.encoding.upper() == "DEFAULT":
        b += " ENCODING DEFAULT"
    else:
        b += f" ENCODING '{quote_literal_body(spec.encoding)}' "
    for key, value in (("LC_COLLATE", spec.lc_collate), ("LC_CTYPE", spec.lc_ctype)):
        if value is None:
            continue
        b += f" {key} DEFAULT" if value.upper() == "DEFAULT" else f" {key} '{quote_literal_body(value)}' "
    if spec.tablespace is not None:
        space = spec.tablespace
        b += " TABLESPACE DEFAULT" if space.upper() == "DEFAULT" else f" TABLESPACE {quote_ident(space)}"
    b += f" ALLOW_CONNECTIONS {_bool_sql(spec.allow_connections)}"
    b += f" CONNECTION LIMIT {spec.connection_limit}"
    b += f" IS_TEMPLATE {_bool_sql(bool(spec.is_template))}"
    with server.connect() as conn:
        try:
            server.execute(conn, b)
        except psycopg.Error as exc:
            # As the provider reports it ("Error creating database ...: pq: <message>"), plus the
            # DETAIL line a driver shows.
            message = f'Error creating database "{spec.name}": {exc.diag.message_primary or exc}'
            if exc.diag.message_detail:
                message += f"\nDETAIL: {exc.diag.message_detail}"
            explanation = explain_clone_failure(message)
            if explanation is None:
                raise
            raise CreateDatabaseError(spec.name, message, explanation) from exc


@dataclass(frozen=True)
class DatabaseState:
    owner: str
    encoding: str
    lc_collate: str
    lc_ctype: str
    tablespace: str
    connection_limit: int
    allow_connections: bool
    is_template: bool


def database_read(server: Server, name: str) -> DatabaseState | None:
    """resourcePostgreSQLDatabaseReadImpl (the template is not read back: it stays as in the state)."""
    rows = server.query(
        "SELECT pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.pg_encoding_to_char(d.encoding),"
        " d.datcollate, d.datctype, ts.spcname, d.datconnlimit, d.datallowconn, d.datistemplate"
        " FROM pg_catalog.pg_database AS d, pg_catalog.pg_tablespace AS ts"
        " WHERE d.datname = %s AND d.dattablespace = ts.oid",
        (name,),
    )
    return DatabaseState(*rows[0]) if rows else None


FORCE_NEW_DATABASE = ("encoding", "lc_collate", "lc_ctype")


def database_drift(spec: DatabaseSpec, live: DatabaseState) -> list[str]:
    """Properties whose desired value differs from the server's; Optional+Computed properties the
    plan leaves out are not compared (the provider keeps what the server has)."""
    drift = []
    for key in ("owner", "encoding", "lc_collate", "lc_ctype", "tablespace", "is_template"):
        want = getattr(spec, key)
        if want is not None and want != getattr(live, key):
            drift.append(key)
    if spec.connection_limit != live.connection_limit:
        drift.append("connection_limit")
    if spec.allow_connections != live.allow_connections:
        drift.append("allow_connections")
    return drift


def database_update(server: Server, spec: DatabaseSpec, live: DatabaseState, drift: Sequence[str]) -> None:
    """resourcePostgreSQLDatabaseUpdate: owner, tablespace, connection limit, allow connections,
    is_template, in that order, one ALTER DATABASE each."""
    name = quote_ident(spec.name)
    with server.connect() as conn:
        if "owner" in drift and spec.owner:
            server.execute(conn, f"ALTER DATABASE {name} OWNER TO {quote_ident(spec.owner)}")
            if spec.alter_object_ownership:
                with server.connect(spec.name) as inside:
                    server.execute(inside, f"REASSIGN OWNED BY {quote_ident(live.owner)} TO {quote_ident(spec.owner)}")
        if "tablespace" in drift and spec.tablespace:
            server.execute(conn, f"ALTER DATABASE {name} SET TABLESPACE {quote_ident(spec.tablespace)}")
        if "connection_limit" in drift:
            server.execute(conn, f"ALTER DATABASE {name} CONNECTION LIMIT = {spec.connection_limit}")
        if "allow_connections" in drift:
            allow = _bool_sql(spec.allow_connections)
            server.execute(conn, f"ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}")
        if "is_template" in drift and spec.is_template is not None:
            server.execute(conn, f"ALTER DATABASE {name} IS_TEMPLATE {_bool_sql(spec.is_template)}")


def database_delete(server: Server, spec: DatabaseSpec) -> None:
    """resourcePostgreSQLDatabaseDelete: clear IS_TEMPLATE (a template cannot be dropped), block
    and end the other sessions (terminateBConnections), then DROP DATABASE ... WITH ( FORCE )."""
    name = quote_ident(spec.name)
    with server.connect() as conn:
        if spec.is_template:
            server.execute(conn, f"ALTER DATABASE {name} IS_TEMPLATE false")
        server.execute(conn, f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        server.execute(
            conn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{quote_literal_body(spec.name)}' AND pid <> pg_backend_pid()",
        )
        force = " WITH ( FORCE )" if server.version_num >= 130000 else ""
        server.execute(conn, f"DROP DATABASE {name}{force}")


# -- Grant (resource_postgresql_grant.go), objectType "database" ---------------------------------


def _role_oid(server: Server, role: str) -> int | None:
    if role == "public":
        return 0  # aclexplode reports PUBLIC as grantee 0 (getRoleOID)
    rows = server.query("SELECT oid FROM pg_roles WHERE rolname = %s", (role,))
    return int(rows[0][0]) if rows else None


def grant_read(server: Server, spec: GrantSpec) -> frozenset[str] | None:
    """resourcePostgreSQLGrantRead -> readDatabaseRolePrivileges: the privileges `datacl` lists for
    the role, read over a connection to that database (as the provider does). None when the
    database or role is gone. A NULL `datacl` (never granted nor revoked) lists nothing."""
    if not server.query("SELECT 1 FROM pg_database WHERE datname = %s", (spec.database,)):
        return None
    oid = _role_oid(server, spec.role)
    if oid is None:
        return None
    rows = server.query(
        "SELECT array_agg(privilege_type) FROM (SELECT (aclexplode(datacl)).* FROM pg_database"
        " WHERE datname = %s) AS privileges WHERE grantee = %s",
        (spec.database, oid),
        database=spec.database,
    )
    return frozenset(rows[0][0] or [])


def grant_apply(server: Server, spec: GrantSpec) -> None:
    """resourcePostgreSQLGrantCreateOrUpdate: in one transaction on the target database, REVOKE ALL
    from the role, then GRANT the listed privileges (none listed: no GRANT at all)."""
    with server.connect(spec.database, autocommit=False) as conn, conn.transaction():
        server.execute(conn, "SET statement_timeout = 0")
        server.execute(
            conn,
            "SELECT pg_advisory_xact_lock(oid::bigint) FROM pg_database"
            f" WHERE datname = '{quote_literal_body(spec.database)}'",
        )
        db, role = quote_ident(spec.database), quote_ident(spec.role)
        server.execute(conn, f"REVOKE ALL PRIVILEGES ON DATABASE {db} FROM {role}")
        if spec.privileges:
            sql = f"GRANT {','.join(sorted(spec.privileges))} ON DATABASE {db} TO {role}"
            if spec.with_grant_option:
                sql += " WITH GRANT OPTION"
            server.execute(conn, sql)


def grant_delete(server: Server, spec: GrantSpec) -> None:
    """resourcePostgreSQLGrantDelete: REVOKE ALL on a connection to the database."""
    with server.connect(spec.database, autocommit=False) as conn, conn.transaction():
        db, role = quote_ident(spec.database), quote_ident(spec.role)
        server.execute(conn, f"REVOKE ALL PRIVILEGES ON DATABASE {db} FROM {role}")


# ---------------------------------------------------------------------------------------------
# The engine


class Applier:
    """`pulumi up --refresh` for the postgresql:* resources of successive plans, on one server."""

    def __init__(self, admin_dsn: str) -> None:
        self.server = Server(admin_dsn)
        self.state: dict[str, StateEntry] = {}

    def apply(self, run: Plan) -> ApplyResult:
        desired = [StateEntry.of(r) for r in sql_resources(run)]
        wanted = {e.urn for e in desired}
        # Refuse up front, as the engine does, an update that deletes a protected resource.
        for urn, entry in self.state.items():
            if urn not in wanted and entry.protect:
                raise ProtectedError(f"{urn}: protected, cannot be deleted (it was removed from the plan)")

        steps: list[Step] = []
        replaced: set[str] = set()
        for entry in desired:
            mark = len(self.server.log)
            op = self._converge(self.state.get(entry.urn), entry, replaced)
            if op:
                steps.append(Step(entry.urn, op, self.server.log[mark:]))
                if op == "replace":
                    replaced.add(entry.urn)
            self.state[entry.urn] = entry

        # Deletions: what the state has and the plan does not, dependents first.
        for urn in reversed(list(self.state)):
            if urn in wanted:
                continue
            mark = len(self.server.log)
            self._delete(self.state[urn])
            steps.append(Step(urn, "delete", self.server.log[mark:]))
            del self.state[urn]
        # The state keeps the plan's order, so later deletions run dependents first.
        self.state = {e.urn: self.state[e.urn] for e in desired}
        return ApplyResult(steps)

    # -- one resource

    def _converge(self, old: StateEntry | None, new: StateEntry, replaced: set[str]) -> str | None:
        if old is None:
            self._create(new)
            return "create"
        if old.type != new.type:
            raise PlanError(f"{new.urn}: type changed from {old.type} to {new.type}")
        why = new.force_new_change(old)
        if any(u in replaced for u in new.replace_with):
            why.append("replace_with")
        why += self._dependent_replacement(new, replaced)
        if why:
            return self._replace(old, new, why)
        return self._refresh_and_update(old, new)

    def _dependent_replacement(self, new: StateEntry, replaced: set[str]) -> list[str]:
        """The engine's dependent replacements: when a resource is replaced delete-before-replace,
        every resource with a force-new property computed from it is replaced too, because that
        property is unknown until the replacement exists (calculateDependentReplacements)."""
        why = []
        for prop, urns in new.property_dependencies.items():
            if prop in FORCE_NEW[new.type] - new.ignore_changes and any(
                u in replaced and self.state[u].delete_before_replace for u in urns if u in self.state
            ):
                why.append(f"{prop} depends on a replaced resource")
        return why

    def _replace(self, old: StateEntry, new: StateEntry, why: Sequence[str]) -> str:
        if old.protect or new.protect:
            raise ProtectedError(f"{new.urn}: protected, cannot be replaced (because of {', '.join(why)})")
        if new.delete_before_replace:
            self._delete(old)
            self._create(new)
        else:  # Pulumi's default: create the replacement first, then delete the old one
            self._create(new)
            self._delete(old)
        return "replace"

    def _refresh_and_update(self, old: StateEntry, new: StateEntry) -> str | None:
        spec = new.spec
        if isinstance(spec, RoleSpec):
            assert isinstance(old.spec, RoleSpec)
            if old.spec.name != spec.name:
                raise PlanError(f"{new.urn}: role rename is not implemented")
            live_role = role_read(self.server, spec.name)
            if live_role is None:
                self._create(new)
                return "create"
            drift = role_drift(spec, live_role)
            if drift or old.spec.password != spec.password:
                role_update(self.server, old.spec, spec, drift)
                return "update"
            return None
        if isinstance(spec, DatabaseSpec):
            assert isinstance(old.spec, DatabaseSpec)
            if old.spec.name != spec.name:
                raise PlanError(f"{new.urn}: database rename is not implemented")
            live_db = database_read(self.server, spec.name)
            if live_db is None:
                self._create(new)
                return "create"
            drift = database_drift(spec, live_db)
            if any(k in FORCE_NEW_DATABASE for k in drift):
                return self._replace(old, new, drift)
            if drift:
                database_update(self.server, spec, live_db, drift)
                return "update"
            return None
        assert isinstance(spec, GrantSpec)
        live = grant_read(self.server, spec)
        if live is None or live != spec.privileges:
            grant_apply(self.server, spec)
            return "create" if live is None else "update"
        return None

    def _create(self, entry: StateEntry) -> None:
        spec = entry.spec
        if isinstance(spec, RoleSpec):
            role_create(self.server, spec)
        elif isinstance(spec, DatabaseSpec):
            database_create(self.server, spec)
        else:
            grant_apply(self.server, spec)

    def _delete(self, entry: StateEntry) -> None:
        spec = entry.spec
        if isinstance(spec, RoleSpec):
            if role_read(self.server, spec.name) is not None:
                role_delete(self.server, spec)
        elif isinstance(spec, DatabaseSpec):
            if database_read(self.server, spec.name) is not None:
                database_delete(self.server, spec)
        elif grant_read(self.server, spec) is not None:
            grant_delete(self.server, spec)
