"""Creating an environment database: clone a template vs load the schema into an empty database.

    ODUFLOW_PG_DURABLE=1 scripts/with-postgres.sh python -m bench.template_clone
    python -m bench.template_clone --dsn "host=... user=postgres password=..." --repeat 7

A stand-in of what an Odoo template holds after `-i base,web` (several hundred tables with Odoo's
usual columns, primary keys, foreign keys, indexes, translated jsonb fields and the rows of the
big registry tables) is generated into a template database. Then, `--repeat` times each, with the
median reported:

- clone: the statement the provider issues for an environment with a template
  (CREATE DATABASE ... TEMPLATE <template>, PostgreSQL's default strategy: WAL_LOG since 15),
  and, for comparison, the same with STRATEGY FILE_COPY;
- load: CREATE DATABASE ... TEMPLATE template0, then the same DDL and rows executed in it.

The server is the one of --dsn, else ODUFLOW_TEST_PG_DSN, else libpq's PG* variables; it needs a
superuser (CREATE DATABASE). Everything the run creates is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

TEMPLATE = "oduflow_bench_template"
PREFIX = "oduflow_bench_"

# Tables every Odoo database has, with the rows a fresh base+web install puts in them (order
# matters: foreign keys only point at tables created earlier).
CORE_TABLES: list[tuple[str, int]] = [
    ("res_company", 1),
    ("res_partner", 3),
    ("res_users", 4),
    ("res_groups", 90),
    ("res_lang", 90),
    ("res_currency", 170),
    ("res_country", 250),
    ("res_country_state", 1500),
    ("ir_module_category", 80),
    ("ir_module_module", 700),
    ("ir_model", 400),
    ("ir_model_fields", 8000),
    ("ir_model_data", 14000),
    ("ir_ui_view", 1500),
    ("ir_ui_menu", 300),
    ("ir_act_window", 450),
    ("ir_model_access", 1100),
    ("ir_rule", 150),
    ("ir_config_parameter", 20),
    ("ir_attachment", 200),
    ("ir_cron", 15),
    ("ir_sequence", 30),
    ("ir_translation", 0),
    ("ir_asset", 600),
    ("ir_qweb_fields", 0),
]
WORDS = (
    "account",
    "sale",
    "stock",
    "mail",
    "web",
    "base",
    "report",
    "portal",
    "product",
    "uom",
    "hr",
    "project",
    "calendar",
    "resource",
    "digest",
    "auth",
    "bus",
    "http",
    "iap",
    "sms",
)
SUFFIXES = (
    "line",
    "template",
    "type",
    "rule",
    "wizard",
    "config",
    "tag",
    "stage",
    "log",
    "report",
    "settings",
    "mixin",
    "category",
    "alias",
    "activity",
    "message",
    "follower",
    "channel",
)


@dataclass
class Table:
    name: str
    rows: int
    columns: list[tuple[str, str]] = field(default_factory=list)
    foreign_keys: list[tuple[str, str]] = field(default_factory=list)  # (column, target table)
    indexes: list[str] = field(default_factory=list)  # indexed column
    relation: bool = False  # a many2many table: two foreign keys and a unique pair


def generate_schema(tables: int = 320, seed: int = 17) -> list[Table]:
    """A deterministic stand-in of a base+web Odoo schema with `tables` tables."""
    rng = random.Random(seed)
    out: list[Table] = []
    names: set[str] = set()

    def model_table(name: str, rows: int) -> Table:
        t = Table(name, rows)
        t.columns = [
            ("id", "serial PRIMARY KEY"),
            ("name", "jsonb" if rng.random() < 0.3 else "varchar"),
            ("active", "boolean DEFAULT true"),
            ("sequence", "integer"),
            ("create_uid", "integer"),
            ("create_date", "timestamp without time zone"),
            ("write_uid", "integer"),
            ("write_date", "timestamp without time zone"),
        ]
        for i in range(rng.randint(2, 14)):
            kind = rng.choice(("varchar", "text", "integer", "numeric", "boolean", "date", "double precision", "jsonb"))
            t.columns.append((f"x_{kind.split()[0]}_{i}", kind))
        if out:
            t.foreign_keys += [("create_uid", "res_users"), ("write_uid", "res_users")] if len(out) > 2 else []
            for i in range(rng.randint(0, 3)):
                target = rng.choice(out[: max(1, len(out))]).name
                if target == name or out[[x.name for x in out].index(target)].relation:
                    continue
                column = f"{target}_id_{i}"
                t.columns.append((column, "integer"))
                t.foreign_keys.append((column, target))
        t.indexes = [c for c, _ in t.foreign_keys] + (["name"] if rng.random() < 0.5 else [])
        return t

    for name, rows in CORE_TABLES:
        out.append(model_table(name, rows))
        names.add(name)
    while len(out) < tables:
        if rng.random() < 0.2 and len(out) > 10:
            a, b = rng.sample([t for t in out if not t.relation], 2)
            name = f"{a.name}_{b.name}_rel"[:60]
            if name in names:
                continue
            rows = rng.choice((0, 0, 5, 40)) if a.rows and b.rows else 0
            rel = Table(name, rows, relation=True)
            rel.columns = [(f"{a.name}_id", "integer NOT NULL"), (f"{b.name}_id", "integer NOT NULL")]
            rel.foreign_keys = [(f"{a.name}_id", a.name), (f"{b.name}_id", b.name)]
            rel.indexes = [f"{b.name}_id"]
            out.append(rel)
        else:
            name = f"{rng.choice(WORDS)}_{rng.choice(SUFFIXES)}"
            if rng.random() < 0.5:
                name += f"_{rng.choice(SUFFIXES)}"
            if name in names:
                continue
            out.append(model_table(name, rng.choice((0, 0, 0, 2, 10, 30, 120))))
        names.add(name)
    return out


def _value(column: str, kind: str, table: Table, by_name: dict[str, Table]) -> str:
    for fk_column, target in table.foreign_keys:
        if fk_column == column:
            n = by_name[target].rows
            return f"1 + g % {n}" if n else "NULL"
    if kind.startswith("jsonb"):
        return "jsonb_build_object('en_US', 'value ' || g, 'fr_FR', 'valeur ' || g)"
    if kind.startswith("varchar") or kind == "text":
        return f"'{column} ' || g" if kind == "varchar" else "repeat(md5(g::text), 6)"
    if kind.startswith(("integer", "double", "numeric")):
        return "g * 7"
    if kind.startswith("boolean"):
        return "g % 2 = 0"
    if kind.startswith("timestamp"):
        return "timestamp '2024-01-01' + g * interval '1 minute'"
    if kind == "date":
        return "date '2024-01-01' + g % 365"
    raise ValueError(kind)


def schema_sql(tables: Sequence[Table]) -> list[str]:
    """DDL and rows, in an order that satisfies every foreign key."""
    by_name = {t.name: t for t in tables}
    statements: list[str] = []
    for t in tables:
        cols = [f'"{c}" {k}' for c, k in t.columns]
        cols += [
            f'FOREIGN KEY ("{c}") REFERENCES "{target}" (id) ON DELETE SET NULL'
            for c, target in t.foreign_keys
            if not t.relation
        ]
        cols += [
            f'FOREIGN KEY ("{c}") REFERENCES "{target}" (id) ON DELETE CASCADE'
            for c, target in t.foreign_keys
            if t.relation
        ]
        if t.relation:
            cols.append(f'UNIQUE ("{t.columns[0][0]}", "{t.columns[1][0]}")')
        statements.append(f'CREATE TABLE "{t.name}" ({", ".join(cols)})')
        for i, c in enumerate(t.indexes):
            statements.append(f'CREATE INDEX "{t.name[:50]}_{i}_idx" ON "{t.name}" ("{c}")')
        if t.rows:
            data_cols = [(c, k) for c, k in t.columns if c != "id"]
            values = ", ".join(_value(c, k, t, by_name) for c, k in data_cols)
            if t.relation:  # distinct pairs
                a, b = (by_name[target].rows for _, target in t.foreign_keys)
                values = f"1 + g % {a}, 1 + (g / {a}) % {b}"
            names = ", ".join(f'"{c}"' for c, _ in data_cols)
            statements.append(
                f'INSERT INTO "{t.name}" ({names}) SELECT {values} FROM generate_series(0, {t.rows - 1}) g'
                + (" ON CONFLICT DO NOTHING" if t.relation else "")
            )
    return statements


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Bench:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.admin = psycopg.connect(dsn, dbname="postgres", autocommit=True)
        self.created: list[str] = []

    def execute(self, sql: str) -> None:
        self.admin.execute(sql.encode())

    def scalar(self, sql: str, database: str = "postgres") -> Any:
        with psycopg.connect(self.dsn, dbname=database, autocommit=True) as conn:
            row = conn.execute(sql.encode()).fetchone()
            return row[0] if row else None

    def create(self, name: str, clause: str) -> None:
        self.execute(f"CREATE DATABASE {_ident(name)} {clause}")
        self.created.append(name)

    def drop(self, name: str) -> None:
        self.execute(f"ALTER DATABASE {_ident(name)} IS_TEMPLATE false")
        self.execute(f"DROP DATABASE IF EXISTS {_ident(name)}")

    def load(self, name: str, statements: Sequence[str]) -> None:
        with psycopg.connect(self.dsn, dbname=name) as conn, conn.transaction():
            for sql in statements:
                conn.execute(sql.encode())

    def cleanup(self) -> None:
        for name in reversed(self.created):
            self.drop(name)
        self.created.clear()
        self.admin.close()


OPTIONS = "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' ALLOW_CONNECTIONS true CONNECTION LIMIT -1 IS_TEMPLATE false"


def measure(repeat: int, action: Callable[[int], None], before: Callable[[], None]) -> list[float]:
    times = []
    for i in range(repeat):
        before()
        start = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.template_clone", description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("ODUFLOW_TEST_PG_DSN", ""), help="superuser libpq DSN")
    parser.add_argument("--tables", type=int, default=320, help="tables in the stand-in schema (default 320)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each way, median reported (default 5)")
    ns = parser.parse_args(argv)

    bench = Bench(ns.dsn)
    version_num = int(bench.scalar("SHOW server_version_num"))
    version = bench.scalar("SHOW server_version")
    fsync = bench.scalar("SHOW fsync")
    tables = generate_schema(ns.tables)
    statements = schema_sql(tables)
    try:
        bench.create(TEMPLATE, f"TEMPLATE template0 {OPTIONS}")
        bench.load(TEMPLATE, statements)
        bench.execute(f"ALTER DATABASE {_ident(TEMPLATE)} IS_TEMPLATE true")
        size = bench.scalar(f"SELECT pg_database_size('{TEMPLATE}')")
        n_rows = sum(t.rows for t in tables)
        n_fk = sum(len(t.foreign_keys) for t in tables)
        n_idx = int(bench.scalar("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'", TEMPLATE))
        print(f"PostgreSQL {version}, fsync={fsync}")
        print(
            f"stand-in base+web schema: {len(tables)} tables, {n_idx} indexes, {n_fk} foreign keys, "
            f"{n_rows:,} rows; template {size / 1e6:.1f} MB"
        )

        def checkpoint() -> None:
            bench.execute("CHECKPOINT")

        def clone(strategy: str) -> Callable[[int], None]:
            def run(i: int) -> None:
                extra = f" STRATEGY {strategy}" if strategy and version_num >= 150000 else ""
                bench.create(
                    f"{PREFIX}clone_{strategy or 'default'}_{i}",
                    f"OWNER postgres TEMPLATE {_ident(TEMPLATE)} {OPTIONS}{extra}",
                )

            return run

        def load(i: int) -> None:
            name = f"{PREFIX}load_{i}"
            bench.create(name, f"TEMPLATE template0 {OPTIONS}")
            bench.load(name, statements)

        results = {"clone (provider's statement, default strategy)": measure(ns.repeat, clone(""), checkpoint)}
        if version_num >= 150000:
            results["clone, STRATEGY FILE_COPY"] = measure(ns.repeat, clone("FILE_COPY"), checkpoint)
        results["empty database + load schema and rows"] = measure(ns.repeat, load, checkpoint)
        medians = {k: statistics.median(v) for k, v in results.items()}
        width = max(len(k) for k in results)
        for key, runs in results.items():
            shown = ", ".join(f"{t:.3f}" for t in runs)
            print(f"  {key:<{width}}  median {medians[key]:.3f} s  min {min(runs):.3f} s  [{shown}]")
        clone_key, load_key = "clone (provider's statement, default strategy)", "empty database + load schema and rows"
        print(
            f"ratio load / clone: {medians[load_key] / medians[clone_key]:.1f}x (medians), "
            f"{min(results[load_key]) / min(results[clone_key]):.1f}x (minima)"
        )
        print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
