"""Input that would otherwise be dropped without a word, or that contradicts itself.

(`odoo_options` the platform sets itself are refused by the allow-list, `odoo_conf.option_problem`.)

- an environment with both a `template` and an `odoo_image` of another Odoo version would clone
  a database of one version and run it on another: refused.
"""

from __future__ import annotations

from oduflow_iac.config.model import Config
from oduflow_iac.errors import Problem


def consistency_problems(config: Config, shown: str) -> list[Problem]:
    from oduflow_iac.cascade import odoo_version

    problems: list[Problem] = []
    for team_id, team in config.teams:
        for i, env in enumerate(team.environments):
            key = f"team.{team_id}.environments[{i}]"
            template = team.templates.get(env.template) if env.template else None
            if template is None or env.odoo_image is None:
                continue
            theirs, ours = odoo_version(template.odoo_image), odoo_version(env.odoo_image)
            if theirs is not None and ours is not None and theirs != ours:
                problems.append(
                    Problem(
                        shown,
                        f"{key}.odoo_image",
                        f"{env.odoo_image!r} is Odoo {ours} but template {env.template!r} is Odoo {theirs} "
                        f"({template.odoo_image}): its database cannot run on another version; "
                        "remove odoo_image, or use a template of that version",
                    )
                )
    return problems
