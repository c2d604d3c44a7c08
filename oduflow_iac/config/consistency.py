"""Input that would otherwise be dropped without a word, or that contradicts itself.

(`odoo_options` the platform sets itself are refused by the allow-list, `odoo_conf.option_problem`.)

- an environment with both a `template` and an `odoo_image` of another Odoo version would clone
  a database of one version and run it on another: refused.
- `clone_from` needs Odoo's own `odoo neutralize`, which ships from Odoo 16.0 (odoo/odoo,
  odoo/cli/neutralize.py): refused on an older image, and on an image whose version neither its
  tag nor `odoo_version` tells (a copy of production that cannot be neutralised must never run);
  refused as well when the source runs another Odoo version (its database would not start), or on
  another server (the copy reads the source's PostgreSQL and filestore volume on its own server).
- `odoo_version` that contradicts the image's own tag: refused.
"""

from __future__ import annotations

from oduflow_iac.config.model import Config
from oduflow_iac.errors import Problem


def consistency_problems(config: Config, shown: str) -> list[Problem]:
    from oduflow_iac.cascade import odoo_version

    problems: list[Problem] = []
    for team_id, team in config.teams:
        for i in range(len(team.environments)):
            problems.extend(_clone_version(config, team_id, i, shown))
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


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def _clone_version(config: Config, team_id: str, i: int, shown: str) -> list[Problem]:
    from oduflow_iac.cascade import odoo_version
    from oduflow_iac.lifecycle.neutralize import MIN_ODOO_MAJOR

    team = config.team[team_id]
    env = team.environments[i]
    key = f"team.{team_id}.environments[{i}]"
    image = config.env_image(team_id, env)
    tagged = odoo_version(image)
    if env.odoo_version is not None and tagged is not None and tagged != env.odoo_version:
        return [
            Problem(
                shown, f"{key}.odoo_version", f"{env.odoo_version!r} contradicts the image {image!r}, Odoo {tagged}"
            )
        ]
    if env.clone_from is None:
        return []
    version = config.env_odoo_version(team_id, env)
    if version is None:
        return [
            Problem(
                shown,
                f"{key}.clone_from",
                f"needs Odoo {MIN_ODOO_MAJOR}.0 or later (`odoo neutralize`), and the version of {image!r} cannot "
                'be told from its tag: state it with `odoo_version = "17.0"`',
            )
        ]
    if _major(version) < MIN_ODOO_MAJOR:
        return [
            Problem(
                shown,
                f"{key}.clone_from",
                f"needs Odoo {MIN_ODOO_MAJOR}.0 or later: a copy is neutralised with `odoo neutralize`, which "
                f"Odoo ships from {MIN_ODOO_MAJOR}.0, and {image!r} is Odoo {version}",
            )
        ]
    source = next((e for e in team.environments if e.branch == env.clone_from), None)
    if source is not None and config.env_server(team_id, source) != config.env_server(team_id, env):
        return [
            Problem(
                shown,
                f"{key}.clone_from",
                f"{env.clone_from!r} runs on server {config.env_server(team_id, source)!r} and this environment on "
                f"{config.env_server(team_id, env)!r}: a copy is taken on one server (its PostgreSQL and volumes)",
            )
        ]
    theirs = config.env_odoo_version(team_id, source) if source is not None else None
    if theirs is not None and theirs != version:
        return [
            Problem(
                shown,
                f"{key}.clone_from",
                f"{env.clone_from!r} runs Odoo {theirs} and this environment Odoo {version}: "
                "its database would not start on another version",
            )
        ]
    return []
