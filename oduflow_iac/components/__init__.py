"""The component SDK: SharedInfra, TeamStack and OdooEnvironment."""

from oduflow_iac.components.odoo_environment import OdooEnvironment, OdooEnvironmentArgs
from oduflow_iac.components.refs import SharedRefs
from oduflow_iac.components.shared_infra import SharedInfra, SharedInfraArgs
from oduflow_iac.components.team_stack import TeamStack, TeamStackArgs

__all__ = [
    "OdooEnvironment",
    "OdooEnvironmentArgs",
    "SharedInfra",
    "SharedInfraArgs",
    "SharedRefs",
    "TeamStack",
    "TeamStackArgs",
]
