"""Pulumi entry point: everything lives in the oduflow_iac package."""

from oduflow_iac.program import main

main()
