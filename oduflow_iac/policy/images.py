"""Pinned images: no container runs a floating image reference."""

from __future__ import annotations

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
)

from oduflow_iac.policy.common import CONTAINER, REMOTE_IMAGE, _name

# --------------------------------------------------------------------------------------------
# images-pinned


def image_problem(reference: str) -> str | None:
    """Why an image reference is not pinned: `:latest` or no tag (which means latest). A digest
    (`@sha256:...`) pins; a registry port (`registry:5000/odoo`) is not a tag."""
    if "@" in reference:
        return None if reference.split("@", 1)[1] else "has an empty digest"
    last = reference.rsplit("/", 1)[-1]
    name, colon, tag = last.rpartition(":")
    if not colon or not name or not tag:
        return "has no tag, which means latest"
    if tag.lower() == "latest":
        return "is tagged latest"
    return None


def validate_images_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every container image is pinned to a version tag or a digest: never `latest`, never untagged."""
    if args.resource_type == CONTAINER:
        image, what = args.props.get("image"), f"container {_name(args.props, args.name)}"
    elif args.resource_type == REMOTE_IMAGE:
        image, what = args.props.get("name"), f"image resource {args.name}"
    else:
        return
    if image is None:
        return
    problem = image_problem(str(image))
    if problem:
        report(f"{what} uses image {image} which {problem}; pin a version tag or a digest", None)
