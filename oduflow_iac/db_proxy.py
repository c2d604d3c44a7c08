"""A team's only way to PostgreSQL: the configuration of its TCP proxy, as a pure function.

Each team's containers sit on the team's network alone; the PostgreSQL server sits on the database
network, which only the teams' proxies join. A proxy forwards one port to one address and nothing
else, so a team reaches the server (where its role and the revoked CONNECT keep it to its own
databases) but never another team's proxy or containers. Adding a team adds a proxy and leaves
the server's container untouched.
"""

from __future__ import annotations

CONFIG_PATH = "/usr/local/etc/haproxy/haproxy.cfg"  # where the official haproxy image reads it
LISTEN_PORT = 5432
# Odoo holds connections for hours (the bus's LISTEN, cron workers): idle is normal, not a fault.
IDLE_TIMEOUT = "24h"
# Docker's embedded DNS: the server's address is looked up again when its container is replaced.
DOCKER_DNS = "127.0.0.11:53"


def haproxy_config(server_host: str, server_port: int, max_connections: int) -> str:
    """TCP mode, one frontend, one backend: the team's connections to `server_host:server_port`,
    at most `max_connections` at once (the team role's own limit is enforced by PostgreSQL)."""
    return "\n".join(
        [
            "global",
            f"  maxconn {max_connections}",
            "",
            "resolvers docker",
            f"  nameserver embedded {DOCKER_DNS}",
            "  hold valid 10s",
            "",
            "defaults",
            "  mode tcp",
            "  timeout connect 5s",
            f"  timeout client {IDLE_TIMEOUT}",
            f"  timeout server {IDLE_TIMEOUT}",
            "  option clitcpka",
            "  option srvtcpka",
            "",
            "frontend postgresql",
            f"  bind :{LISTEN_PORT}",
            f"  maxconn {max_connections}",
            "  default_backend server",
            "",
            "backend server",
            # Start even while the server's container is being replaced; resolve it when it is back.
            f"  server db {server_host}:{server_port} resolvers docker init-addr last,libc,none",
            "",
        ]
    )
