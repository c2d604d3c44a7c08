"""oduflow-iac: a typed Pulumi SDK and program that hosts Odoo for many teams on shared infrastructure."""

__version__ = "0.1.0"
