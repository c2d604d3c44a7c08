"""Each policy's config schema (JSON schema, validated by the engine against --policy-pack-config)."""

from __future__ import annotations

from pulumi_policy import (
    PolicyConfigSchema,
)

# --------------------------------------------------------------------------------------------
# Config schemas (JSON schema, validated by the engine against --policy-pack-config)

_PORT = {"type": "integer", "minimum": 1, "maximum": 65536}
_QUOTA = {
    "type": "object",
    "properties": {
        "cpu": {"type": "number", "minimum": 0},
        "memory_mb": {"type": "integer", "minimum": 0},
        "environments": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}
_PRODUCTION = {
    "type": "array",
    "description": "Production environments of oduflow.toml, with their database and filestore volume.",
    "items": {
        "type": "object",
        "properties": {
            "team": {"type": "string"},
            "branch": {"type": "string"},
            "database": {"type": "string"},
            "filestore": {"type": "string"},
        },
        "required": ["team", "branch", "database", "filestore"],
        "additionalProperties": False,
    },
}

PORTS_SCHEMA = PolicyConfigSchema(
    properties={
        "ranges": {
            "type": "object",
            "description": "Each team's host port range, half-open: start <= port < end.",
            "additionalProperties": {
                "type": "object",
                "properties": {"start": _PORT, "end": _PORT},
                "required": ["start", "end"],
                "additionalProperties": False,
            },
        }
    }
)
QUOTAS_SCHEMA = PolicyConfigSchema(
    properties={
        "teams": {"type": "object", "description": "Each team's quota.", "additionalProperties": _QUOTA},
        "organisation": _QUOTA,
        "environments": {
            "type": "object",
            "description": "Every Odoo container of oduflow.toml (on every server) with its team and limits; "
            "those not in the stack count with these figures.",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "team": {"type": "string"},
                    "cpu": {"type": "number", "minimum": 0},
                    "memory_mb": {"type": "integer", "minimum": 0},
                },
                "required": ["team", "cpu", "memory_mb"],
                "additionalProperties": False,
            },
        },
    }
)
ISOLATION_SCHEMA = PolicyConfigSchema(
    properties={
        "teams": {"type": "array", "description": "The team ids.", "items": {"type": "string"}},
        "shared_network": {"type": "string", "description": "The network every container may join."},
    }
)
BACKUPS_SCHEMA = PolicyConfigSchema(
    properties={
        "configured": {"type": "boolean", "description": "Whether oduflow.toml has a [backup] section."},
        "production": _PRODUCTION,
    }
)
PRODUCTION_SCHEMA = PolicyConfigSchema(properties={"production": _PRODUCTION})
INLINE_SECRETS_SCHEMA = PolicyConfigSchema(
    properties={
        "paths": {
            "type": "array",
            "description": "Key paths of oduflow.toml whose secret is written inline.",
            "items": {"type": "string"},
        }
    }
)
_FIGURES = {
    "type": "object",
    "properties": {"cpu": {"type": "number", "minimum": 0}, "memory_mb": {"type": "integer", "minimum": 0}},
    "required": ["cpu", "memory_mb"],
    "additionalProperties": False,
}
CAPACITY_SCHEMA = PolicyConfigSchema(
    properties={
        "servers": {
            "type": "object",
            "description": "Each server with a capacity, and what oduflow.toml places on it.",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "capacity": {
                        "type": "object",
                        "properties": {
                            "cpu": {"type": "number", "minimum": 0},
                            "memory_mb": {"type": "integer", "minimum": 1},
                            "disk_gb": {"type": "integer", "minimum": 1},
                        },
                        "required": ["cpu", "memory_mb", "disk_gb"],
                        "additionalProperties": False,
                    },
                    "environments": {
                        "type": "object",
                        "description": "The Odoo containers placed on the server, with their configured limits.",
                        "additionalProperties": _FIGURES,
                    },
                    "services_memory_mb": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Memory of the platform's own services on the server.",
                    },
                    "disk_gb": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Disk reserved by the teams whose own server it is.",
                    },
                },
                "required": ["capacity", "environments", "services_memory_mb", "disk_gb"],
                "additionalProperties": False,
            },
        }
    }
)
