"""What DigitalOcean does to a stack's droplets and VPC, as rules on plain data.

Nothing here reads the account (components/account.py does, with the provider's
data sources) and nothing here imports another module of the program: the stack config
(components/config.py) checks ``droplet_problems`` with the rest of the config, and
components/account.py applies ``replacement_problems`` to what it read, so the user
gets one message naming the keys before any resource is registered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol


class StackSpec(Protocol):
    """What these rules read of components/config.py's StackSpec (structural: config.py imports this
    module, so this one imports nothing of the program's)."""

    @property
    def region(self) -> str: ...
    @property
    def image(self) -> str: ...
    @property
    def monitoring(self) -> bool: ...
    @property
    def ipv6(self) -> bool: ...
    @property
    def protect(self) -> bool: ...
    @property
    def manage_dns(self) -> bool: ...
    @property
    def https(self) -> object | None: ...
    @property
    def load_balanced(self) -> bool: ...
    @property
    def replica_count(self) -> int: ...
    @property
    def move_to_vpc(self) -> bool: ...
    @property
    def model_fields_set(self) -> set[str]: ...


def droplet_problems(spec: StackSpec) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if spec.load_balanced and spec.https is not None and not spec.manage_dns:
        # A lets_encrypt certificate for a load balancer is issued through DigitalOcean DNS:
        # the domain's zone must be managed there (docs/resources/certificate.md in the provider).
        out.append((
            "manage_dns",
            "with replicas >= 2 and https, the load balancer's Let's Encrypt certificate is issued through "
            "DigitalOcean DNS: the zone of 'domain' must be in DigitalOcean and manage_dns true "
            "(or remove 'https', or set replicas: 1 to let the server get its own certificate)",
        ))
    return out


# ------------------------------------------------------------------ names


def do_tag(text: str) -> str:
    """A valid DigitalOcean tag for `text` (letters, digits, ":", "-", "_"; 1-255: digitalocean/tag/tags.go)."""
    return re.sub(r"[^A-Za-z0-9:_-]", "-", text)[:255]


def stack_tag(stack: str) -> str:
    """Every droplet of the stack carries it (since the first version): the live read filters by it."""
    return do_tag(f"stack-{stack}")


def project_tag(project: str) -> str:
    """Two projects with one stack name (both `dev`) still tell their droplets apart."""
    return do_tag(f"project-{project}")


def vpc_name(droplet_name: str, project: str, stack: str) -> str:
    """The stack's VPC. VPC names are unique per account (docs/resources/vpc.md in the provider, "Must be
    unique"), so the project and stack are in it: two stacks or projects with one droplet_name both `up`."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", f"{droplet_name}-vpc-{project}-{stack}").strip("-.")[:255]


def legacy_vpc_name(droplet_name: str) -> str:
    """The VPC's name before it carried the project and stack (renamed in place: `name` is not ForceNew,
    digitalocean/vpc/resource_vpc.go:32-37, and Update sends it, :145-159)."""
    return f"{droplet_name}-vpc"


def project_name(droplet_name: str, project: str, stack: str) -> str:
    """The DigitalOcean project grouping the stack's resources. Project names are unique per account (the API's
    projects create: "the name must be unique"), and `name` updates in place (not ForceNew:
    digitalocean/project/resource_project.go:31-38, sent by Update :225-240)."""
    return f"{droplet_name} ({project}/{stack})"[:175]


def lb_tag_name(droplet_name: str, project: str, stack: str, record: StackRecord) -> str:
    """The tag that puts a droplet behind this stack's load balancer (and its firewall).

    A tag is account-wide: with one name for two stacks, each load balancer would send requests to
    the other's droplets too. A new stack's carries its project and stack; a stack keeps the tag it
    has (its name is ForceNew, digitalocean/tag/resource_tag.go:23-27: a new tag would leave the load
    balancer with no droplet until each droplet had it), as recorded, or ``<droplet_name>-lb`` for a
    stack of an earlier version.
    """
    if record.kind == "recorded" and record.lb_tag:
        return record.lb_tag
    if record.kind == "legacy":
        return do_tag(f"{droplet_name}-lb")
    return do_tag(f"{droplet_name}-lb-{project}-{stack}")


def region_default_name(region: str) -> str:
    """The VPC a stack creates first in a region with none: it becomes the region's default."""
    return f"plumber-hosting-default-{region}"


# ------------------------------------------------- what the account holds


@dataclass(frozen=True)
class LiveDroplet:
    """A droplet of this stack as the API reads it back (getDroplets, digitalocean/droplet/droplets.go)."""

    id: str
    name: str
    region: str
    image: str
    monitoring: bool
    ipv6: bool
    vpc_uuid: str
    vpc_name: str
    tags: tuple[str, ...] = ()
    size: str = ""  # its size now: a resize behind the load balancer drains it first (components/fleet.py)
    ipv4_address: str = ""  # its address now, before any change (the drain connects there)


@dataclass(frozen=True)
class Vpc:
    id: str
    name: str


@dataclass(frozen=True)
class StackRecord:
    """The ids the stack's last `up` recorded in its own outputs (``owned_ids``), read back from its state.

    ``kind``: "new" (no outputs: nothing is the stack's yet), "legacy" (outputs of a version that
    recorded no ids: fall back to names), "recorded".
    """

    kind: str = "new"
    ssh_key: str = ""
    vpc: str = ""
    region_default: str = ""
    lb_tag: str = ""  # the load balancer's droplet tag, by name (tags have no other id)


@dataclass
class LiveStack:
    """What the program keeps of the stack as it is, decided before anything is declared."""

    record: StackRecord = field(default_factory=StackRecord)
    droplets: list[LiveDroplet] = field(default_factory=list)
    outside_vpc: bool = False  # the one-server droplet predates the stack's VPC: it stays where it is
    region_default: Vpc | None = None  # the region's default VPC, None when the region has none yet
    vpc_is_region_default: bool = False  # the stack's own VPC was the first in its region
    lb_tag: str = ""  # with replicas >= 2: the load balancer's droplet tag (lb_tag_name)


# ---------------------------------------------------------------- rules

# Inputs that make the provider create a new droplet (ForceNew, or the ipv6 CustomizeDiff) and
# that the API reads back, so a change can be named before anything runs
# (digitalocean/droplet/resource_droplet.go; the data source: digitalocean/droplet/droplets.go).
# ssh keys and user_data are not read back: their change meets Pulumi's protect error instead.
UNPROTECT = (
    "To replace it on purpose: pulumi config set plumber-hosting:protect false, pulumi up "
    "(a new droplet; every command runs again on it), then pulumi config rm plumber-hosting:protect. "
    "See README, 'Changes that replace a server'."
)


def image_is_explicit(spec: StackSpec) -> bool:
    """Whether the user's own stack config names the image (not the program's default)."""
    return "image" in spec.model_fields_set


def replacement_problems(
    spec: StackSpec, live: list[LiveDroplet], vpc_names: list[str], stack_vpc_id: str = ""
) -> tuple[list[tuple[str, str]], list[str]]:
    """With ``protect`` on, a config change that would replace a live droplet, named before anything runs;
    and the live droplets outside the stack's VPC (made before it existed). ``vpc_names``: the stack
    VPC's name, then the names it had before; ``stack_vpc_id``: its id, when the stack recorded it.

    A droplet keeps its image unless the user's config sets ``image`` (components/server.py passes
    ignore_changes for it), so a new default image never replaces a server.
    """
    out: list[tuple[str, str]] = []
    outside: list[str] = []
    for d in sorted(live, key=lambda d: d.name):
        changes: list[tuple[str, str]] = []
        if d.region and d.region != spec.region:
            changes.append(("region", f"{d.region} -> {spec.region}"))
        # A retired image has only an id (droplets.go flattens Image.ID when the slug is gone).
        if image_is_explicit(spec) and d.image and not d.image.isdigit() and d.image != spec.image:
            changes.append(("image", f"{d.image} -> {spec.image}"))
        if d.monitoring != spec.monitoring:
            changes.append(("monitoring", f"{str(d.monitoring).lower()} -> {str(spec.monitoring).lower()}"))
        if d.ipv6 and not spec.ipv6:
            changes.append(("ipv6", "true -> false (turning it on is done in place, turning it off is not)"))
        ours = (stack_vpc_id != "" and d.vpc_uuid == stack_vpc_id) or d.vpc_name in vpc_names
        if d.vpc_uuid and not ours:
            # Made before every droplet lived in the stack's VPC (components/network.py). vpc_uuid is ForceNew
            # but Optional+Computed (digitalocean/droplet/resource_droplet.go:276-282): left out, it is no
            # change, so a one-server stack keeps its droplet where it is, whatever `protect` says.
            outside.append(d.name)
            if spec.replica_count >= 2 or spec.move_to_vpc:
                why = "replicas >= 2 needs it there" if spec.replica_count >= 2 else "move_to_vpc asks for it"
                changes.append((
                    "replicas" if spec.replica_count >= 2 else "move_to_vpc",
                    f"droplet {d.name} is not in the stack's VPC {vpc_names[0]} (it was made before this version "
                    f"put every droplet there), and {why}; moving it",
                ))
        if not spec.protect:
            continue  # replaced on purpose: Pulumi carries it out
        for key, change in changes:
            keep = "To keep the server, set the key back. " if key != "protect" else ""
            out.append((key, f"{change} replaces droplet {d.name}: a new, empty server; the old one and "
                             f"everything on its disk are deleted. protect is on, so Pulumi would refuse. "
                             f"{keep}{UNPROTECT}"))
    return out, outside
