"""Pinned images: no container runs `latest` or an untagged image (mandatory), nor a floating tag (advisory)."""

from __future__ import annotations

import re

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
)

from oduflow_iac.policy.common import CONTAINER, REMOTE_IMAGE, _name

# --------------------------------------------------------------------------------------------
# images-pinned


# A digest is `algorithm:hex` (OCI image-spec, descriptor digests); Docker refuses anything else.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
# A date stamp in a tag (`odoo:17.0-20260908`: the nightly build the image installs).
_DATE_STAMP = re.compile(r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
# Images whose full version has two numbers, from this major on (PostgreSQL 10 dropped the third:
# `16.15` is a patch release). Any other image needs three (`3.6.25`) or a date stamp.
_TWO_PART_VERSIONS = {"postgres": 10}


def _repository(name: str) -> str:
    """`docker.io/library/postgres` -> `postgres`: the registry host and Docker Hub's `library/`
    prefix dropped (a first part with a `.` or `:`, or `localhost`, is a registry)."""
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if len(parts) > 1 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def tag_is_immutable(repository: str, tag: str) -> bool:
    """Whether a tag names one release rather than a line of them: a full version (`v3.6.25`,
    `3.2.24-alpine`, `16.15-bookworm` for PostgreSQL) or a date stamp (`17.0-20260908`). `17.0`,
    `16`, `v3`, `3.6` and codenames (`bookworm-scm`, `edge`) move to every new release of their line.
    The publisher can still re-push any tag (official images are rebuilt on base-image updates):
    only a digest pins the bytes; a full-version tag at least pins the software."""
    version = tag[1:] if tag[:1] in "vV" and tag[1:2].isdigit() else tag
    head, *suffixes = version.split("-")
    numbers = head.split(".")
    if not all(n.isdigit() for n in numbers):
        return False
    if len(numbers) >= 3 or any(_DATE_STAMP.fullmatch(s) for s in suffixes):
        return True
    if len(numbers) == 1:
        return bool(_DATE_STAMP.fullmatch(head))
    since = _TWO_PART_VERSIONS.get(_repository(repository))
    return since is not None and int(numbers[0]) >= since


def _split_reference(reference: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` -> (name, tag, digest); a registry port (`registry:5000/odoo`) is not a tag."""
    rest, at, digest = reference.partition("@")
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        return rest, None, digest if at else None
    return name, tag, digest if at else None


def image_problem(reference: str) -> str | None:
    """Why an image reference pins nothing at all, or None: `:latest`, no tag (which means latest),
    or a digest that is not one (Docker refuses it)."""
    name, tag, digest = _split_reference(reference)
    if digest is not None:
        if not digest:
            return "has an empty digest"
        return None if _DIGEST.fullmatch(digest) else f"has a malformed digest {digest}"
    if not tag or not name:
        return "has no tag, which means latest"
    if tag.lower() == "latest":
        return "is tagged latest"
    return None


def floating_tag(reference: str) -> str | None:
    """The tag of a reference that no digest pins and whose tag floats (`odoo:17.0` -> `17.0`), or
    None. A digest pins whatever the tag before it says; see `tag_is_immutable` for tags."""
    name, tag, digest = _split_reference(reference)
    if digest is not None or not tag or not name or tag.lower() == "latest":
        return None  # pinned, or image_problem's case
    return None if tag_is_immutable(name, tag) else tag


def _image(args: ResourceValidationArgs) -> tuple[str, str] | None:
    """The image of a container or `RemoteImage`, and how a message names the resource."""
    if args.resource_type == CONTAINER:
        image, what = args.props.get("image"), f"container {_name(args.props, args.name)}"
    elif args.resource_type == REMOTE_IMAGE:
        image, what = args.props.get("name"), f"image resource {args.name}"
    else:
        return None
    return None if image is None else (str(image), what)


def validate_images_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every container image is pinned to a tag or a digest: never `latest`, never untagged."""
    found = _image(args)
    if found is None:
        return
    image, what = found
    problem = image_problem(image)
    if problem:
        report(f"{what} uses image {image} which {problem}; pin a digest (@sha256:...) or a release tag", None)


def validate_images_immutable(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every container image is pinned by digest or by a tag naming one release: a floating tag
    (`17.0`, `16`, `v3`) is reported with the resource and the image it names."""
    found = _image(args)
    if found is None:
        return
    image, what = found
    tag = floating_tag(image)
    if tag:
        report(
            f"{what} uses image {image} whose tag {tag} floats: it moves to each new release of its "
            "line, so hosts differ and rebuilds arrive unreviewed; pin a digest (@sha256:...) or a release tag",
            None,
        )
